"""Real sweeps on an embedded Ray: trials are Ray Train runs, tracked as MLflow child runs under
one parent. One interrupted-and-resumed sweep is shared by several tests; each Ray start costs
tens of seconds."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from resnetctl.spec import load_spec
from tests.launch.rays import foreign_ray, session_processes
from tests.tune.conftest import (
    kill_group,
    mlflow_client,
    start_sweep,
    sweep_runs,
    trial_states,
    wait_for,
)

pytestmark = pytest.mark.slow

SWEEP = "tiny"
PARENT_TAG = "mlflow.parentRunId"
TRIAL_TAG = "resnetctl.tune.trial_id"
ROLE_TAG = "resnetctl.tune.role"


def _checkpoint_files(folder: Path) -> dict[str, float]:
    return {str(p.relative_to(folder)): p.stat().st_mtime for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def resumed(sweep_dir: Path, processes: list) -> dict:
    """Two depths x two variants, one epoch each, two at a time: stopped with SIGTERM to the
    driver once Tune has recorded a finished trial, then continued with --resume; a user's
    `ray start --head` runs on the machine all along (its address file where `ray.init()`
    looks)."""
    with foreign_ray(sweep_dir) as foreign:
        foreign_address = foreign.address_file.read_text()
        outcome = _stopped_and_resumed(sweep_dir, processes, foreign.env)
        outcome["foreign_nodes_and_jobs"] = foreign.nodes_and_jobs() if foreign.running else None
        outcome["foreign_address_kept"] = foreign.address_file.read_text() == foreign_address
    return outcome


def _stopped_and_resumed(sweep_dir: Path, processes: list, env: dict[str, str]) -> dict:
    args = ["--json", "--export-best", "best.yaml"]
    first = start_sweep(
        sweep_dir, "base.yaml", "--depths", "8,14", "--variants", "residual,plain",
        "--max-concurrent", "2", "--name", SWEEP, *args, tag="first", env=env,
    )  # fmt: skip
    processes.append(first)
    experiment = sweep_dir / "runs" / SWEEP

    def a_trial_finished() -> bool:
        assert first.process.poll() is None, first.stderr.read_text()[-3000:]
        return "TERMINATED" in trial_states(experiment).values()

    assert wait_for(a_trial_finished, timeout=240), first.stderr.read_text()[-3000:]
    finished = {t for t, s in trial_states(experiment).items() if s == "TERMINATED"}
    processes_before = len(session_processes(first.process.pid))
    os.kill(first.process.pid, signal.SIGTERM)  # the driver alone, as `kill` or a scheduler
    try:
        stop_code: int | None = first.process.wait(timeout=90)
    except subprocess.TimeoutExpired:
        stop_code = None
    left = wait_for(lambda: not session_processes(first.process.pid), 15)
    # Whatever the outcome, nothing of the first sweep may take the resume's CPUs.
    kill_group(first.process)
    for straggler in session_processes(first.process.pid):
        straggler.kill()
    parent = [r for r in sweep_runs(sweep_dir) if r.data.tags.get(ROLE_TAG) == "parent"]
    stopped = {
        "code": stop_code,
        "out": first.stdout.read_text(),
        "err": first.stderr.read_text(),
        "finished": finished,
        "processes_before": processes_before,
        "none_left": left,
        "parent_status": [r.info.status for r in parent],
    }
    children = {
        run.data.tags[TRIAL_TAG]: run for run in sweep_runs(sweep_dir) if TRIAL_TAG in run.data.tags
    }
    before = {
        trial: {
            "run_id": children[trial].info.run_id,
            "end_time": children[trial].info.end_time,
            "files": _checkpoint_files(experiment / "train" / trial),
        }
        for trial in finished
    }
    second = start_sweep(sweep_dir, "--resume", SWEEP, *args, tag="second", env=env)
    processes.append(second)
    code, out, err = second.wait(timeout=360)
    return {"code": code, "out": out, "err": err, "finished": finished, "before": before,
            "experiment": experiment, "stopped": stopped}  # fmt: skip


def test_sigterm_stops_the_sweep_and_its_ray_and_marks_the_parent_killed(resumed: dict) -> None:
    stopped = resumed["stopped"]
    assert stopped["code"] == 143, stopped["err"][-4000:]
    assert f"continue with `resnetctl tune --resume {SWEEP}`" in stopped["err"]
    assert stopped["processes_before"] > 5  # driver, Ray's daemons, trials, their workers
    assert stopped["none_left"]
    assert stopped["parent_status"] == ["KILLED"]
    # Tune hands back every trial it stopped or had not started as terminated: they are not
    # reported as finished (trials it had not created yet are not reported at all), and the
    # resume runs them (test_resumed_sweep_completes_and_ranks_every_trial).
    result = json.loads(stopped["out"])
    assert result["interrupted"]
    statuses = {t["trial_id"]: t["status"] for t in result["trials"]}
    assert {statuses[trial] for trial in stopped["finished"]} == {"finished"}
    assert set(statuses.values()) <= {"finished", "interrupted"}, statuses
    assert "interrupted" in statuses.values() or len(statuses) < 4, statuses


def test_another_ray_on_the_machine_is_neither_joined_nor_disturbed(resumed: dict) -> None:
    assert resumed["code"] == 0, resumed["err"][-4000:]
    assert resumed["foreign_nodes_and_jobs"] == (1, 0)  # still up, no node lost, no job of ours
    assert resumed["foreign_address_kept"]


def test_resumed_sweep_completes_and_ranks_every_trial(resumed: dict) -> None:
    assert resumed["code"] == 0, resumed["err"][-4000:]
    result = json.loads(resumed["out"])
    assert result["sweep"] == SWEEP and not result["interrupted"]
    trials = result["trials"]
    assert len(trials) == 4
    assert [t["rank"] for t in trials] == [1, 2, 3, 4]
    assert {(t["depth"], t["variant"]) for t in trials} == {
        (8, "residual"),
        (14, "residual"),
        (8, "plain"),
        (14, "plain"),
    }
    assert all(t["status"] == "finished" and t["epochs"] == 1 for t in trials)
    values = [t["metric"] for t in trials]
    assert values == sorted(values) and all(0 <= v <= 100 for v in values)
    assert result["best"]["trial_id"] == trials[0]["trial_id"]


def test_finished_trials_are_not_run_again(resumed: dict, sweep_dir: Path) -> None:
    assert resumed["code"] == 0, resumed["err"][-4000:]
    assert resumed["finished"], "no trial had finished before the kill"
    runs = [r for r in sweep_runs(sweep_dir) if TRIAL_TAG in r.data.tags]
    for trial, before in resumed["before"].items():
        mine = [r for r in runs if r.data.tags[TRIAL_TAG] == trial]
        assert [r.info.run_id for r in mine] == [before["run_id"]]  # no second child run
        assert mine[0].info.end_time == before["end_time"]  # never reopened
        # No new checkpoint, no rewritten file: its Train run was not started again.
        assert _checkpoint_files(resumed["experiment"] / "train" / trial) == before["files"]
        assert f"trial {trial} " not in resumed["err"]  # the resumed driver never ran it


def test_parent_run_holds_one_child_per_trial(resumed: dict, sweep_dir: Path) -> None:
    assert resumed["code"] == 0, resumed["err"][-4000:]
    result = json.loads(resumed["out"])
    runs = sweep_runs(sweep_dir)
    (parent,) = [r for r in runs if r.data.tags.get("resnetctl.tune.role") == "parent"]
    assert parent.info.run_id == result["mlflow_parent_run_id"]
    assert parent.info.status == "FINISHED" and parent.info.run_name == SWEEP
    children = [r for r in runs if r.info.run_id != parent.info.run_id]
    assert len(children) == 4
    # Each child is named by its trial's network, unique in the sweep.
    assert {c.info.run_name for c in children} == {
        "cifar_resnet8-A", "cifar_plain8", "cifar_resnet14-A", "cifar_plain14",
    }  # fmt: skip
    client = mlflow_client(sweep_dir)
    for child in children:
        assert child.data.tags[PARENT_TAG] == parent.info.run_id
        assert child.info.status == "FINISHED"
        for key in ("val_top1_error_pct", "train_top1_error_pct", "train_loss"):
            assert [m.step for m in client.get_metric_history(child.info.run_id, key)] == [1], key
        assert child.data.params["model.depth"] in ("8", "14")
    assert {c.info.run_id for c in children} == {t["run_id"] for t in result["trials"]}
    files = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"results.csv", "plots", "best", "spec"} <= files
    table = client.download_artifacts(parent.info.run_id, "results.csv", str(sweep_dir))
    lines = Path(table).read_text().strip().splitlines()
    assert lines[0].startswith("rank,trial_id,status,model,depth,shortcut,variant")
    assert len(lines) == 5
    plots = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert plots == {"plots/error_curves.png"}


def test_exported_best_spec_is_a_job_submit_accepts(resumed: dict, sweep_dir: Path) -> None:
    assert resumed["code"] == 0, resumed["err"][-4000:]
    best = json.loads(resumed["out"])["best"]
    spec = load_spec(sweep_dir / "best.yaml")
    assert spec.model.depth == best["depth"] and spec.model.variant == best["variant"]
    assert spec.tracking.experiment == "sweeps" and spec.train.epochs == 1
    done = subprocess.run(
        [sys.executable, "-m", "resnetctl", "submit", "best.yaml", "--dry-run", "--json"],
        cwd=sweep_dir,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["spec"]["model"]["name"] == spec.model.name


def test_asha_stops_the_clearly_worse_trial(sweep_dir: Path, processes: list) -> None:
    # Two trials one after the other: lr 0.1 learns; lr 1e-7 cannot, and ASHA compares it with
    # the first trial's epoch-1 and epoch-2 results (rungs at 1, 2, 4 with grace 1, factor 2).
    spec = (sweep_dir / "base.yaml").read_text().replace("  epochs: 1", "  epochs: 4")
    spec += "search:\n  train.base_lr: {grid: [0.1, 0.0000001]}\n"
    (sweep_dir / "asha.yaml").write_text(spec)
    sweep = start_sweep(
        sweep_dir, "asha.yaml", "--metric", "train_loss", "--max-concurrent", "1",
        "--grace-period", "1", "--reduction-factor", "2", "--name", "asha", "--json",
        tag="asha",
    )  # fmt: skip
    processes.append(sweep)
    code, out, err = sweep.wait(timeout=300)
    assert code == 0, err[-4000:]
    result = json.loads(out)
    by_lr = {t["params"]["train.base_lr"]: t for t in result["trials"]}
    good, bad = by_lr["0.1"], by_lr["1e-07"]
    assert good["status"] == "finished" and good["epochs"] == 4
    assert bad["status"] == "stopped" and 1 <= bad["epochs"] < 4
    assert result["best"]["trial_id"] == good["trial_id"]
    client = mlflow_client(sweep_dir)
    stopped = client.get_run(bad["run_id"])
    assert stopped.data.tags["resnetctl.tune.stopped_early"] == "true"
    assert stopped.info.status == "KILLED"
    history = client.get_metric_history(bad["run_id"], "train_loss")
    assert [m.step for m in history] == list(range(1, bad["epochs"] + 1))
