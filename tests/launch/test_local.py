"""`resnetctl submit` on the embedded local Ray: DDP on 2 CPU workers, MLflow, checkpoints,
resume, fault tolerance (a SIGKILLed worker: the group restarts from the latest checkpoint at
the next epoch and step), SIGINT and SIGTERM, another Ray on the machine. Each test starts a
real Ray; they are the slow part of the suite."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from resnetctl.spec.metrics import EPOCH_METRICS
from resnetctl.tracking.names import mlflow_name
from tests.launch.conftest import metric_history, mlflow_runs, summary, wait_for
from tests.launch.rays import ForeignRay, foreign_ray, session_processes, stale_address_file
from tests.processes import command_lines

pytestmark = pytest.mark.slow


def _artifacts(workdir: Path, run_id: str, path: str = "") -> set[str]:
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    found: set[str] = set()
    for item in client.list_artifacts(run_id, path):
        if item.is_dir:
            found |= _artifacts(workdir, run_id, item.path)
        else:
            found.add(item.path)
    return found


def _system_metric_nodes(run) -> set[str]:
    """The node labels of the run's system metrics (`system/<node>/<metric>`)."""
    return {key.split("/")[1] for key in run.data.metrics if key.startswith("system/node-")}


def _assert_datasets(run, images: dict[str, int], classes: int) -> None:
    """The run's train and validation inputs, with their counts."""
    inputs = {i.dataset.name: i for i in run.inputs.dataset_inputs}
    assert set(inputs) == {"synthetic/train", "synthetic/val"}, inputs
    for split, context in (("train", "training"), ("val", "validation")):
        found = inputs[f"synthetic/{split}"]
        assert {t.key: t.value for t in found.tags}["mlflow.data.context"] == context
        profile = json.loads(found.dataset.profile)
        assert profile == {"num_images": images[split], "num_classes": classes}
        assert json.loads(found.dataset.source)["uri"].endswith(f"/{split}")
        assert len(found.dataset.digest) == 12


EPOCH_LINE = (
    r"^epoch (\d+)/{total}  train error \d+\.\d\d%  val error \d+\.\d\d%  \d+ img/s  "
    r"{clock}  {clock} left$"
).replace("{clock}", r"(?:\d+[hm])?\d+[ms]")


def _epoch_lines(err: str, total: int) -> list[int]:
    return [int(e) for e in re.findall(EPOCH_LINE.format(total=total), err, re.M)]


def _assert_clean_terminal(err: str) -> None:
    """Stderr holds the job's own lines: Ray's and MLflow's chatter went to the run's log."""
    for chatter in (
        "Reporting training result",
        "Checkpoint successfully created",
        "Creating initial MLflow database tables",
        "TrainController",
        "RayTrainWorker",
        "pickle",
    ):
        assert chatter not in err, err[-3000:]
    assert "\x1b[" not in err  # no colour or cursor codes without a terminal


@pytest.fixture
def foreign(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ForeignRay]:
    """A user's `ray start --head` runs on the machine, named by Ray's address file, while the
    test's `resnetctl` commands run."""
    with foreign_ray(workdir) as running:
        for name, value in running.env.items():
            monkeypatch.setenv(name, value)
        yield running


def test_two_worker_run_is_tracked_and_resumes_at_the_next_epoch(
    submit, workdir: Path, foreign: ForeignRay
) -> None:
    # Both runs start an embedded Ray of their own beside the foreign head (`ray.init()` would
    # join it and fail: "When connecting to an existing cluster, num_cpus and num_gpus must not
    # be provided"), and leave it as it was.
    foreign_address = foreign.address_file.read_text()
    # Per-step metrics every 2 of the 4 steps an epoch, through the live Ray Train run.
    code, out, err = submit(
        "job.yaml",
        "--json",
        "--set",
        "train.log_every_n_steps=2",
        "--set",
        "tracking.system_metrics_interval_s=1",
    ).wait()
    assert code == 0, err[-3000:]
    result = summary(out)
    assert result["succeeded"] and result["epochs_completed"] == 3
    _assert_clean_terminal(err)
    assert _epoch_lines(err, 3) == [1, 2, 3], err[-3000:]
    # ... and all of it is in the run's log, beside its checkpoints.
    log_file = Path(result["storage_path"]) / "resnetctl.log"
    assert result["log_file"] == str(log_file)
    log = log_file.read_text()
    assert "Reporting training result 3" in log and "checkpoint epoch_0003 uploaded in" in log
    assert "Creating initial MLflow database tables" in log
    (run,) = mlflow_runs(workdir)
    assert run.info.run_id == result["mlflow_run_id"] and run.info.status == "FINISHED"
    assert run.info.run_name == result["run_name"]  # MLflow's name is the one --resume takes
    for key in [mlflow_name(key) for key in EPOCH_METRICS] + ["val_top1_acc_pct"]:
        assert [step for step, _ in metric_history(workdir, run.info.run_id, key)] == [1, 2, 3], key
    # Rank 0's training time splits into waiting for DALI and computing.
    for (_, wait), (_, compute), (_, epoch) in zip(
        *(
            metric_history(workdir, run.info.run_id, key)
            for key in ("data_wait_seconds", "compute_seconds", "epoch_seconds")
        ),
        strict=True,
    ):
        assert 0 <= wait and 0 < compute and wait + compute < epoch
    assert _system_metric_nodes(run) == {
        f"node-{node[:8]}" for node in run.data.tags["ray.worker_nodes"].split(",")
    }
    _assert_datasets(run, images={"train": 64, "val": 16}, classes=4)
    assert run.data.params["model.num_classes"] == "4"  # left to the data by the spec
    for key in ("step_train_loss", "step_lr", "step_images_per_second"):
        history = metric_history(workdir, run.info.run_id, key)
        assert [step for step, _ in history] == [2, 4, 6, 8, 10, 12], (key, history)
        assert all(math.isfinite(value) and value > 0 for _, value in history), (key, history)
    # DDP averaged gradients: after every epoch both ranks hold the same parameters.
    assert metric_history(workdir, run.info.run_id, "ranks_param_max_diff") == [
        (1, 0.0),
        (2, 0.0),
        (3, 0.0),
    ]
    assert run.data.params["train.batch_size_per_worker"] == "8"
    assert run.data.params["model.name"] == "cifar_resnet8"
    assert run.data.tags["resnetctl.job"] == "tiny" and "torch.version" in run.data.tags
    files = _artifacts(workdir, run.info.run_id)
    assert "spec/resolved.yaml" in files
    assert "plots/error_curves.png" in files
    assert "checkpoints/best/state.pt" in files and "checkpoints/best/meta.json" in files
    assert "logs/resnetctl.log" in files
    assert result["model_uri"] and result["model_uri"].startswith("models:/")
    import mlflow.pytorch

    mlflow.set_tracking_uri(f"sqlite:///{workdir / 'mlflow.db'}")
    model = mlflow.pytorch.load_model(result["model_uri"])
    import torch

    with torch.no_grad():
        assert model(torch.zeros(3, 3, 16, 16)).shape == (3, 4)  # 4 classes, any batch size
    # The registered model is the best checkpoint's network (by val_top1_error), at its epoch.
    from mlflow import MlflowClient

    from resnetctl.inference.source import load_model

    assert result["registered_model"] == "models:/tiny@best"
    best = load_model(result["best_checkpoint"])
    registered = mlflow.pytorch.load_model("models:/tiny@best")
    images = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(registered(images), best.model(images))
    store = f"sqlite:///{workdir / 'mlflow.db'}"
    client = MlflowClient(store, registry_uri=store)
    version = client.get_model_version_by_alias("tiny", "best")
    assert version.run_id == run.info.run_id and int(version.tags["resnetctl.epoch"]) == best.epoch
    outputs = client.get_run(run.info.run_id).outputs.model_outputs
    assert [o.step for o in outputs] == [best.epoch]  # the model page's step: the best epoch
    # The summary metrics, in MLflow and in the JSON summary alike.
    logged = client.get_run(run.info.run_id).data.metrics
    errors = dict(metric_history(workdir, run.info.run_id, "val_top1_error_pct"))
    for metrics in (logged, result["metrics"]):
        assert metrics["best_epoch"] == best.epoch
        assert metrics["best_val_top1_error_pct"] == errors[best.epoch] == min(errors.values())
        assert metrics["final_val_top1_acc_pct"] == pytest.approx(100 - errors[3])
        assert 0 < metrics["startup_seconds"] < metrics["total_seconds"]
        assert metrics["model_parameters"] == sum(p.numel() for p in best.model.parameters())
        assert metrics["model_multiply_adds"] > metrics["model_parameters"]
    mlflow.set_tracking_uri(None)

    # Resuming the finished run with a longer budget continues at epoch 4, in the same MLflow
    # run (one job start saved: this used to be a test of its own).
    code, out, err = submit(
        "job.yaml", "--json", "--resume", result["run_name"], "--set", "train.epochs=4"
    ).wait()
    assert code == 0, err[-3000:]
    resumed = summary(out)
    assert resumed["mlflow_run_id"] == result["mlflow_run_id"]
    (run,) = mlflow_runs(workdir)
    assert [s for s, _ in metric_history(workdir, run.info.run_id, "train_loss")] == [1, 2, 3, 4]
    _assert_clean_terminal(err)
    assert _epoch_lines(err, 4) == [4] and "resuming from" in err
    # The run keeps one log: the resumed job's lines follow the first job's.
    log = log_file.read_text()
    assert log.count("===== resnetctl: a job of this run started") == 2
    # ... each job's line about the registry's decision among them; and the run keeps one
    # registered version (its first, or one that replaced it with a better epoch).
    assert log.count("model registry: tiny version ") == 2, log[-3000:]
    versions = client.search_model_versions("name = 'tiny'")
    assert [v.run_id for v in versions] == [run.info.run_id]
    assert resumed["registered_model"] == "models:/tiny@best" and resumed["registry_decision"]
    assert "resumed from" in log and "continuing with epoch 4" in log
    assert foreign.running and foreign.nodes_and_jobs() == (1, 0)  # no node lost, no job of ours
    assert foreign.address_file.read_text() == foreign_address


def _kill_a_train_worker(driver: int) -> str:
    """SIGKILL one Ray Train worker of the job whose driver is `driver`; returns what it
    killed, among what it found."""
    found = command_lines(psutil.Process(driver).children(recursive=True))
    workers = [p for p, line in found if "RayTrainWorker" in line]
    assert workers, "no Ray Train worker process found"
    os.kill(workers[-1].pid, signal.SIGKILL)
    return f"killed {workers[-1].pid} of {found}"


RESUMED = re.compile(r"resumed from ray at epoch (\d+), step (\d+): continuing with epoch (\d+)")


def test_a_killed_worker_is_replaced_then_ctrl_c_kills_the_run_and_its_ray(
    submit, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One run through two failures (each end-to-end run costs ~50 s): a SIGKILLed worker, after
    which Ray Train restarts the group from the latest checkpoint at the next epoch and step;
    then SIGINT, which stops the job and its Ray and leaves the run resumable. SIGTERM takes
    the same path (cli/interrupt.py, tests/cli/test_interrupt.py); a real one stops the first
    sweep of tests/tune/test_sweep.py."""
    from resnetctl.storage import latest_checkpoint, resolve_resume
    from resnetctl.train.checkpoint import load_checkpoint

    # A head that crashed left Ray's address file naming a dead cluster: the job's Ray must be
    # its own (joining would fail at once), and the file stays as it was.
    temp_root = Path(tempfile.mkdtemp(prefix="rs-", dir="/tmp"))
    try:
        stale = stale_address_file(temp_root)
        dead = stale.read_text()
        monkeypatch.setenv("RAY_TMPDIR", str(temp_root))
        job = submit("job.yaml", "--json", "--set", "train.epochs=500")
        storage = Path(os.environ["RESNETCTL_STORAGE"])

        def saved(epoch: int) -> bool:
            assert job.process.poll() is None, job.stderr.read_text()[-3000:]
            return any(storage.glob(f"*/epoch_{epoch:04d}"))

        def first_epoch_logged() -> bool:
            assert job.process.poll() is None, job.stderr.read_text()[-3000:]
            runs = mlflow_runs(workdir)
            return bool(runs) and bool(metric_history(workdir, runs[0].info.run_id, "val_loss"))

        # Logged: Ray Train's controller has the epoch's checkpoint (a checkpoint folder alone
        # may not be registered yet, and a group restarted then would start from scratch).
        assert wait_for(first_epoch_logged, timeout=240)
        killed = _kill_a_train_worker(job.process.pid)
        (log_file,) = storage.glob("*/resnetctl.log")
        assert wait_for(lambda: RESUMED.search(log_file.read_text()), timeout=120), (
            killed + log_file.read_text()[-2000:] + job.stderr.read_text()[-2000:]
        )
        epoch, step, following = map(int, RESUMED.search(log_file.read_text()).groups())
        # 64 images over 2 ranks at batch 8 make 4 steps an epoch.
        assert epoch >= 1 and step == 4 * epoch and following == epoch + 1
        assert wait_for(lambda: saved(following), timeout=60)  # the new group trains on

        ours = session_processes(job.process.pid)
        assert len(ours) > 5, ours  # the driver, Ray's daemons, the controller, 2 workers
        os.kill(job.process.pid, signal.SIGINT)  # the driver alone, not its group
        code, out, err = job.wait(timeout=60)
        assert code == 130, err[-3000:]
        assert "interrupted: the run is marked KILLED" in err
        assert wait_for(lambda: not session_processes(job.process.pid), 15), [
            line for _, line in command_lines(session_processes(job.process.pid))
        ]
        assert stale.read_text() == dead
    finally:
        shutil.rmtree(temp_root, ignore_errors=True)
    # The terminal said that a worker failed, once; every epoch was logged once, none lost.
    # (Both ranks may fail: the survivor's next collective finds its peer gone.)
    assert len(re.findall(r"^workers? failed \(ranks? [\d, ]+\): ", err, re.M)) == 1, err[-3000:]
    (run,) = mlflow_runs(workdir)
    steps = [s for s, _ in metric_history(workdir, run.info.run_id, "val_top1_error_pct")]
    assert steps == list(range(1, len(steps) + 1)) and len(steps) >= epoch, steps
    assert run.info.status == "KILLED"
    # `--resume RUN` picks the run's latest checkpoint, a whole one, and writes to its MLflow run.
    (folder,) = storage.iterdir()
    checkpoint, record = resolve_resume(folder.name, storage)
    assert record is not None and record.mlflow_run_id == run.info.run_id
    assert checkpoint == latest_checkpoint(folder)
    state, meta = load_checkpoint(checkpoint)
    assert meta["epoch"] >= 1 and "model" in state


def test_nan_loss_fails_clearly_and_keeps_last_good_checkpoint(submit, workdir: Path) -> None:
    # Epoch 1 at lr 0.1 (a constant warm-up), then 100 x 16 / 1 = 1600: the loss blows up.
    code, out, err = submit(
        "job.yaml",
        "--json",
        "--set",
        "train.base_lr=100",
        "--set",
        "train.lr_reference_batch=1",
        "--set",
        "train.warmup={length: 1, unit: epoch, start_factor: 0.0000625, mode: constant}",
        "--set",
        "train.optimizer.weight_decay=0.1",
        "--set",
        "train.epochs=6",
        "--set",
        "failure.max_failures=0",
    ).wait()
    assert code == 1 and out.strip(), err[-3000:]
    result = summary(out)
    assert not result["succeeded"] and "NonFiniteLossError" in result["error"]
    assert "non-finite" in result["error"] and "at epoch" in result["error"]
    assert 1 <= result["epochs_completed"] < 6
    # The terminal shows the end of the run's log, where the workers' error is.
    tail = err.split(f"lines of {result['log_file']}:", 1)
    assert len(tail) == 2, err[-3000:]
    assert "NonFiniteLossError" in tail[1]
    assert re.search(r"^workers? failed \(ranks? [\d, ]+\): .*non-finite", tail[0], re.M)
    assert Path(result["log_file"]).read_text().rstrip().endswith(tail[1].splitlines()[-1].strip())
    # The kept checkpoint is the last good one: epoch 1, trained at lr 0.1.
    best = Path(result["best_checkpoint"])
    assert best.name == "epoch_0001" and (best / "state.pt").is_file()
    (run,) = mlflow_runs(workdir)
    assert run.info.status == "FAILED"


def test_unreachable_tracking_uri_fails_before_training(submit, workdir: Path) -> None:
    code, out, err = submit("job.yaml", "--set", "tracking.uri=http://127.0.0.1:9").wait(120)
    assert code == 2
    assert "MLflow tracking server http://127.0.0.1:9 is unreachable" in err
    # Nothing was started or stored: no run directory, no MLflow run.
    assert not any(Path(os.environ["RESNETCTL_STORAGE"]).iterdir())
    assert not (workdir / "mlflow.db").exists()
