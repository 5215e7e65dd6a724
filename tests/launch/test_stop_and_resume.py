"""The embedded quickstart stopped with SIGTERM in the middle of an epoch and `--resume`d trains
exactly what an undisturbed run trains: the same `step_train_loss` at every step, each step
logged once, nothing trained twice."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest

from tests.conftest import JOBS
from tests.launch.conftest import metric_history, mlflow_runs, summary, wait_for
from tests.processes import mlflow_client

pytestmark = pytest.mark.slow

EPOCHS = 3
STEPS_PER_EPOCH = 22  # 1,437 training scans over 2 workers at 32 a worker
ARGS = (
    str(JOBS / "quickstart.yaml"),
    "--json",
    "--set",
    f"train.epochs={EPOCHS}",
    "--set",
    "checkpoint.every_n_steps=10",
    "--set",
    "train.log_every_n_steps=1",
)
# The stop's reason, alone or after the scheduled one when the stop lands on a checkpoint step
# ("checkpoint at step 40: every 10 steps; the run was asked to stop").
STOPPED = re.compile(r"^checkpoint at step (\d+): (?:[^\n]*; )?the run was asked to stop", re.M)


def _losses(workdir: Path, run_id: str) -> list[tuple[int, float]]:
    return metric_history(workdir, run_id, "step_train_loss")


def test_sigterm_mid_epoch_then_resume_trains_what_the_undisturbed_run_trains(
    submit, workdir: Path
) -> None:
    code, out, err = submit(*ARGS).wait()
    assert code == 0, err[-3000:]
    undisturbed = _losses(workdir, summary(out)["mlflow_run_id"])
    total = EPOCHS * STEPS_PER_EPOCH
    assert [step for step, _ in undisturbed] == list(range(1, total + 1))

    job = submit(*ARGS)

    def in_epoch_2() -> bool:
        assert job.process.poll() is None, job.stderr.read_text()[-3000:]
        runs = [r for r in mlflow_runs(workdir, "quickstart") if r.info.status == "RUNNING"]
        return bool(runs) and len(_losses(workdir, runs[0].info.run_id)) > STEPS_PER_EPOCH + 3

    assert wait_for(in_epoch_2, timeout=300)
    os.kill(job.process.pid, signal.SIGTERM)
    code, _, err = job.wait(timeout=180)
    assert code == 143, err[-3000:]
    stopped_at = int(STOPPED.search(err)[1])  # type: ignore[index]
    assert STEPS_PER_EPOCH < stopped_at < 2 * STEPS_PER_EPOCH, err[-3000:]
    (run,) = [r for r in mlflow_runs(workdir, "quickstart") if r.info.status == "KILLED"]
    # Nothing was trained after the stop's checkpoint: the history ends there.
    assert _losses(workdir, run.info.run_id)[-1][0] == stopped_at

    name = run.data.tags["resnetctl.run_name"]
    code, out, err = submit(*ARGS, "--resume", name).wait()
    assert code == 0, err[-3000:]
    assert summary(out)["mlflow_run_id"] == run.info.run_id
    assert f"continuing with step {stopped_at % STEPS_PER_EPOCH + 1} of epoch 2" in (
        Path(summary(out)["log_file"]).read_text()
    )
    resumed = _losses(workdir, run.info.run_id)
    # Each step once, and the very losses of the undisturbed run, before the stop and after.
    assert [step for step, _ in resumed] == list(range(1, total + 1))
    assert resumed == undisturbed
    metrics = mlflow_client(workdir).get_run(run.info.run_id).data.metrics
    assert metrics["steps_redone"] == 0 and metrics["restarts"] == 1
