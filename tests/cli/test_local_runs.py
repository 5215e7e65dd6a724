"""`status`, `logs` and `stop` of a run in the run storage, by name, without Ray: the run is a
record, an MLflow run in a sqlite store and a driver process that behaves as `submit` does on
SIGTERM (marks the MLflow run KILLED and exits 143). The end-to-end test on a real embedded run
is tests/launch/test_local_run_commands.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from resnetctl.launch.driver import DRIVER_FILE, Driver
from resnetctl.launch.outcome import RunSummary
from resnetctl.storage import RunRecord, StoragePath
from tests.analysis.conftest import copy_store
from tests.processes import kill_group, wait_for

# A stand-in driver: waits for SIGTERM, then ends the MLflow run KILLED as `submit` does.
DRIVER = textwrap.dedent(
    """
    import signal, sys, time
    from mlflow import MlflowClient
    uri, run_id, ready = sys.argv[1:]
    def stop(signum, frame):
        MlflowClient(uri).set_terminated(run_id, "KILLED")
        sys.exit(143)
    signal.signal(signal.SIGTERM, stop)
    open(ready, "w").close()
    while True:
        time.sleep(0.1)
    """
)


def recorded_run(storage: Path, uri: str, name: str = "tiny-20261206-120000") -> RunRecord:
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    found = client.get_experiment_by_name("e")
    experiment = found.experiment_id if found else client.create_experiment("e")
    run = client.create_run(experiment, run_name=name)
    record = RunRecord(name, name.rsplit("-", 2)[0], uri, run.info.run_id)  # JOB-DATE-TIME
    record.save(storage)
    (storage / name / "resnetctl.log").write_text("epoch 1/3  train error 50.00%\n")
    return record


@pytest.fixture
def storage() -> Path:
    return Path(os.environ["RESNETCTL_STORAGE"])


@pytest.fixture
def uri(mlflow_template: Path, tmp_path: Path) -> str:
    return copy_store(mlflow_template, tmp_path / "store")


def test_status_and_logs_of_a_local_run_by_name(cli, storage: Path, uri: str) -> None:
    record = recorded_run(storage, uri)
    Driver.this_process().save(StoragePath.of(storage / record.run_name))
    shown = cli("status", record.run_name, "--json")
    assert shown.code == 0, shown.stderr
    report = json.loads(shown.stdout)
    assert report["state"] == "RUNNING" and report["where"] == "local"
    assert report["mlflow_run_id"] == record.mlflow_run_id
    assert report["driver"]["pid"] == os.getpid()
    logs = cli("logs", record.run_name)
    assert logs.code == 0 and logs.stdout == "epoch 1/3  train error 50.00%\n"
    lines = cli("logs", record.run_name, "--json")
    assert json.loads(lines.stdout) == {
        "run": record.run_name,
        "line": "epoch 1/3  train error 50.00%",
    }


def test_a_finished_run_reports_its_summary(cli, storage: Path, uri: str) -> None:
    from mlflow import MlflowClient

    record = recorded_run(storage, uri)
    MlflowClient(uri).set_terminated(record.mlflow_run_id, "FINISHED")
    summary = RunSummary(
        succeeded=True,
        run_name=record.run_name,
        mlflow_run_id=record.mlflow_run_id,
        mlflow_url=uri,
        storage_path=str(storage / record.run_name),
        seconds=85.5,
        startup_seconds=30.4,
        epochs_completed=8,
        metrics={"best_val_top1_error_pct": 0.5556, "best_epoch": 6.0},
    )
    summary.save(StoragePath.of(storage / record.run_name))
    shown = cli("status", record.run_name)
    assert shown.code == 0
    assert shown.stdout.startswith(f"{record.run_name}: SUCCEEDED (8 epochs, ")
    assert "best_val_top1_error_pct 0.5556 at epoch 6" in shown.stdout
    report = json.loads(cli("status", record.run_name, "--json").stdout)
    assert report["summary"] == summary.as_dict()
    stopped = cli("stop", record.run_name)  # nothing to stop: it says how the run ended
    assert stopped.code == 0 and stopped.stdout.startswith(f"{record.run_name}: SUCCEEDED")


def test_stop_sends_the_driver_sigterm_and_waits_for_killed(
    cli, storage: Path, uri: str, tmp_path: Path
) -> None:
    record = recorded_run(storage, uri)
    ready = tmp_path / "ready"
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER, uri, record.mlflow_run_id, str(ready)],
        start_new_session=True,
    )
    try:
        assert wait_for(ready.exists, 60, interval=0.2)
        import psutil

        # The stand-in, not this process, is the run's driver.
        started = psutil.Process(driver.pid).create_time()
        Driver(Driver.this_process().host, driver.pid, started).save(
            StoragePath.of(storage / record.run_name)
        )
        assert json.loads(cli("status", record.run_name, "--json").stdout)["state"] == "RUNNING"
        stopped = cli("stop", record.run_name, "--json")
        assert stopped.code == 0, stopped.stderr
        report = json.loads(stopped.stdout)
        assert report["state"] == "STOPPED" and report["mlflow_status"] == "KILLED"
        assert f"--resume {record.run_name}" in report["message"]
        assert driver.wait(timeout=10) == 143
        assert f"SIGTERM to its driver (pid {driver.pid} on " in stopped.stderr
    finally:
        kill_group(driver)


def test_a_gone_driver_is_reported_and_not_stopped(cli, storage: Path, uri: str) -> None:
    record = recorded_run(storage, uri)
    script = [sys.executable, "-c", "import os; print(os.getpid())"]
    gone = subprocess.run(script, capture_output=True, text=True, check=True)
    Driver(Driver.this_process().host, int(gone.stdout), 1.0).save(
        StoragePath.of(storage / record.run_name)
    )
    shown = cli("status", record.run_name)
    assert shown.stdout.startswith(f"{record.run_name}: FAILED (its driver (pid ")
    stopped = cli("stop", record.run_name)
    assert stopped.code == 2 and "is gone without recording the run's end" in stopped.stderr


def test_a_driver_on_another_host_is_named_and_not_signalled(cli, storage: Path, uri: str) -> None:
    record = recorded_run(storage, uri)
    folder = StoragePath.of(storage / record.run_name)
    Driver("gpu-head-7", os.getpid(), 1.0).save(folder)
    assert json.loads((storage / record.run_name / DRIVER_FILE).read_text())["host"] == "gpu-head-7"
    shown = cli("status", record.run_name)
    assert shown.stdout == f"{record.run_name}: RUNNING (driver pid {os.getpid()} on gpu-head-7)\n"
    stopped = cli("stop", record.run_name)
    assert stopped.code == 2
    assert "driven from another machine (pid" in stopped.stderr and "gpu-head-7" in stopped.stderr


def test_an_unknown_run_names_the_storage_and_the_cluster_option(
    cli, storage: Path, uri: str
) -> None:
    recorded_run(storage, uri)
    for command in ("status", "logs", "stop"):
        missing = cli(command, "no-such-run")
        assert missing.code == 2
        assert f"no run 'no-such-run' under {storage}" in missing.stderr
        assert "tiny-20261206-120000" in missing.stderr and "--address" in missing.stderr


def test_list_names_the_newest_run_for_a_script(cli, storage: Path, uri: str) -> None:
    recorded_run(storage, uri, "zeta-20261206-110000")
    recorded_run(storage, uri, "alpha-20261206-120000")  # later, though it sorts first by name
    recorded_run(storage, uri, "zeta-20261205-090000")
    assert cli("list", "--last").stdout == "alpha-20261206-120000\n"
    assert cli("list", "--job", "zeta", "--last").stdout == "zeta-20261206-110000\n"
    rows = json.loads(cli("list", "--job", "zeta", "--json").stdout)
    assert [r["run"] for r in rows] == ["zeta-20261205-090000", "zeta-20261206-110000"]
    none = cli("list", "--job", "nope", "--last")
    assert none.code == 2 and none.stdout == "" and "no run of job 'nope'" in none.stderr
