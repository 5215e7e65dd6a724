"""`resnetctl status`, `logs [-f]` and `stop` of a run on the embedded local Ray, by its run
name, as they work for a cluster job by its id: a real `submit` in a session of its own, then
the three commands as a user types them in another terminal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.launch.conftest import metric_history, mlflow_runs, resnetctl, wait_for
from tests.launch.rays import session_processes
from tests.processes import kill_group

pytestmark = pytest.mark.slow


def test_status_logs_and_stop_of_an_embedded_run_by_name(submit, workdir: Path) -> None:
    job = submit("job.yaml", "--set", "train.epochs=500")
    storage = Path(os.environ["RESNETCTL_STORAGE"])

    def first_epoch_logged() -> bool:
        assert job.process.poll() is None, job.stderr.read_text()[-3000:]
        runs = mlflow_runs(workdir)
        return bool(runs) and bool(metric_history(workdir, runs[0].info.run_id, "val_loss"))

    assert wait_for(first_epoch_logged, timeout=240)
    (folder,) = storage.iterdir()
    run_name = folder.name

    shown = resnetctl("status", run_name, "--json", cwd=workdir)
    assert shown.returncode == 0, shown.stderr
    report = json.loads(shown.stdout)
    assert report["state"] == "RUNNING" and report["where"] == "local"
    assert report["driver"]["pid"] == job.process.pid  # the submit process, on this host
    assert report["mlflow_run_id"] == mlflow_runs(workdir)[0].info.run_id

    logs = resnetctl("logs", run_name, cwd=workdir)
    assert logs.returncode == 0 and "===== resnetctl: a job of this run started" in logs.stdout
    with (workdir / "follow.txt").open("w") as followed:
        follower = subprocess.Popen(
            [sys.executable, "-m", "resnetctl", "logs", run_name, "--follow"],
            cwd=workdir,
            stdout=followed,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            env={**os.environ, "RAY_ADDRESS": ""},
        )
    try:
        stopped = resnetctl("stop", run_name, "--json", cwd=workdir, timeout=300)
        assert stopped.returncode == 0, stopped.stderr
        report = json.loads(stopped.stdout)
        assert report["state"] == "STOPPED" and report["mlflow_status"] == "KILLED", report
        assert f"--resume {run_name}" in report["message"] and "kept" in report["message"]
        # The driver took Ctrl-C's path: the run is resumable, and its Ray is gone with it.
        code, _, err = job.wait(timeout=60)
        assert code == 143, err[-3000:]
        assert "interrupted: the run is marked KILLED" in err
        assert wait_for(lambda: not session_processes(job.process.pid), 30)
        # `logs --follow` ended with the run, having printed what the run logged.
        assert follower.wait(timeout=60) == 0
        assert (workdir / "follow.txt").read_text() == (folder / "resnetctl.log").read_text()
    finally:
        kill_group(follower)
    (run,) = mlflow_runs(workdir)
    assert run.info.status == "KILLED"
    after = resnetctl("status", run_name, cwd=workdir)
    assert after.stdout.startswith(f"{run_name}: STOPPED"), after.stdout + after.stderr
    again = resnetctl("stop", run_name, cwd=workdir)  # nothing left to stop
    assert again.returncode == 0 and again.stdout.startswith(f"{run_name}: STOPPED")
