"""The job's log: what libraries print while a job runs goes to the run's log file, not the
terminal; its last lines are shown on failure, and everything is echoed with --verbose."""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from resnetctl.launch.joblog import LOG_FILE, JobLog


def _chatter() -> None:
    """The kinds of output a job's libraries produce."""
    print("\x1b[36m(RayTrainWorker pid=1)\x1b[0m Reporting training result 1")  # Ray's forwarding
    print("a worker traceback line", file=sys.stderr)
    # A handler that looks sys.stderr up when it writes, as Ray's and MLflow's do.
    logging.getLogger("test.joblog").warning("Creating initial MLflow database tables...")
    sys.stdout.write("no newline yet")


@pytest.fixture
def quiet_logger() -> Iterator[logging.Logger]:
    logger = logging.getLogger("test.joblog")
    handler = logging._StderrHandler()  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.propagate = False
    yield logger
    logger.removeHandler(handler)
    logger.propagate = True


def test_output_goes_to_the_log_file_and_not_the_terminal(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], quiet_logger: logging.Logger
) -> None:
    streams = (sys.stdout, sys.stderr)
    with JobLog() as log:
        print("before the run's folder is known")
        log.attach(tmp_path / "run" / LOG_FILE)
        _chatter()
    assert (sys.stdout, sys.stderr) == streams  # put back
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == ""
    lines = (tmp_path / "run" / LOG_FILE).read_text().splitlines()
    assert lines[0].startswith("===== resnetctl: a job of this run started at")
    assert lines[1:4] == [
        "before the run's folder is known",
        "(RayTrainWorker pid=1) Reporting training result 1",  # colour codes stripped
        "a worker traceback line",
    ]
    assert "Creating initial MLflow database tables..." in lines
    assert lines[-1] == "no newline yet"


def test_a_resumed_run_appends_to_its_log(tmp_path: Path) -> None:
    for text in ("first job", "second job"):
        with JobLog() as log:
            log.attach(tmp_path / LOG_FILE)
            print(text)
    lines = (tmp_path / LOG_FILE).read_text().splitlines()
    assert [line for line in lines if not line.startswith("=====")] == ["first job", "second job"]


def test_show_tail_prints_the_last_lines_and_names_the_log(tmp_path: Path) -> None:
    with JobLog() as log:
        log.attach(tmp_path / LOG_FILE)
        for index in range(100):
            print(f"line {index}")
    stream = io.StringIO()
    log.show_tail(Console(file=stream, width=40), lines=3)
    assert stream.getvalue().splitlines() == [
        f"last 3 lines of {tmp_path / LOG_FILE}:",
        "  line 97",
        "  line 98",
        "  line 99",
    ]


def test_verbose_echoes_every_line_as_printed(tmp_path: Path) -> None:
    echoed: list[str] = []
    with JobLog(echo=echoed.append) as log:
        log.attach(tmp_path / LOG_FILE)
        print("\x1b[36m(pid=1)\x1b[0m hello")
    assert echoed == ["\x1b[36m(pid=1)\x1b[0m hello"]


def test_a_log_kept_elsewhere_is_moved_there_when_the_job_ends(tmp_path: Path) -> None:
    """A run kept in a bucket logs to a scratch file, which goes to the run's folder in the
    bucket as the job ends, leaving nothing behind; a failure shows the log where it is kept."""
    from resnetctl.storage.location import StoragePath

    kept = StoragePath.of(tmp_path / "bucket") / "run-1" / LOG_FILE
    scratch = tmp_path / "tmp" / "resnetctl-logs" / "run-1" / LOG_FILE
    with JobLog() as log:
        log.attach(scratch, keep_at=kept)
        assert log.location == str(kept)
        print("an epoch")
    assert not (tmp_path / "tmp" / "resnetctl-logs").exists()  # both scratch folders gone
    assert "an epoch" in kept.read_text().splitlines()
    stream = io.StringIO()
    log.show_tail(Console(file=stream, width=200), lines=1)
    assert stream.getvalue().splitlines()[0] == f"last 1 lines of {kept}:"
