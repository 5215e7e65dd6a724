"""Where a job's chatter goes: what Ray and MLflow log, the lines Ray forwards from its workers
and anything else the driver prints go to `resnetctl.log` in the run's folder, so that the
terminal keeps the progress view, one line per epoch and the summary.

All of it is written to `sys.stdout` / `sys.stderr` as they are when the write happens (Ray's
forwarded worker output and its log handler, MLflow's log stream, `warnings`, Python's last-resort
log handler), so swapping the two streams while the job runs catches it without reconfiguring
either library. What is written to the file descriptors themselves (C++ logs of Ray's core
worker, a crash dump) is not caught and still reaches the terminal.
"""

from __future__ import annotations

import io
import re
import sys
import tempfile
import threading
from collections import deque
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from resnetctl.storage import StoragePath

LOG_FILE = "resnetctl.log"
#: How many of the log's last lines a failed job shows.
TAIL_LINES = 40

# Colour and cursor codes: Ray colours its "(pid=…)" prefixes even when writing to a file.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")


def log_location(storage: StoragePath, run_name: str) -> tuple[Path, StoragePath | None]:
    """Where the job's log is written while it runs, and where it is kept when the job ends:
    the run's folder when that is on this machine. An object in a bucket cannot be appended to
    line by line, so a run kept in one logs to a local scratch file, moved into the run's
    folder in the bucket when the job ends."""
    if storage.is_local:
        return Path(storage / run_name / LOG_FILE), None
    local = Path(tempfile.gettempdir()) / "resnetctl-logs" / run_name / LOG_FILE
    kept = storage / run_name / LOG_FILE
    return local, kept


class _LineStream(io.TextIOBase):
    """A text stream that hands every complete line to `sink`."""

    def __init__(self, sink: Callable[[str], None], original: IO[str]):
        super().__init__()
        self._sink = sink
        self._original = original
        self._partial = ""
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            self._partial += text
            *lines, self._partial = self._partial.split("\n")
        for line in lines:
            self._sink(line)
        return len(text)

    def flush(self) -> None:
        """Partial lines wait for their newline; each line reaches the log as it ends."""

    def close_partial(self) -> None:
        """Hand over what is left without a newline."""
        with self._lock:
            rest, self._partial = self._partial, ""
        if rest:
            self._sink(rest)

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False  # libraries then write plain text into the log

    def fileno(self) -> int:
        # Code that writes to the descriptor (faulthandler's crash dumps) reaches the terminal.
        return self._original.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"


class JobLog:
    """While entered, everything printed in this process goes to the job's log instead of the
    terminal: into memory until `attach` names the file, then into the file.

    `echo` (`--verbose`) receives every line as well, as it was printed.
    """

    def __init__(self, echo: Callable[[str], None] | None = None, keep: int = 200):
        self.echo = echo
        self.path: Path | None = None
        self._kept: Any = None  # attach(keep_at=...): where the log goes when the job ends
        self._file: IO[str] | None = None
        self._pending: list[str] = []
        self._recent: deque[str] = deque(maxlen=keep)
        self._lock = threading.RLock()
        self._saved: tuple[Any, Any] | None = None

    def __enter__(self) -> JobLog:
        self._saved = (sys.stdout, sys.stderr)
        sys.stdout = _LineStream(self.write, sys.stdout)
        sys.stderr = _LineStream(self.write, sys.stderr)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._saved is not None
        streams = (sys.stdout, sys.stderr)
        sys.stdout, sys.stderr = self._saved
        for stream in streams:
            if isinstance(stream, _LineStream):
                stream.close_partial()
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
        self._keep()

    @property
    def location(self) -> str | None:
        """Where the whole log is to be read: the file, or where it is kept once the job ends."""
        if self._kept is not None:
            return str(self._kept)
        return str(self.path) if self.path else None

    def _keep(self) -> None:
        """Move the closed log to `keep_at`; on failure it stays where it is, and says so."""
        if self._kept is None or self.path is None or not self.path.is_file():
            return
        try:
            self._kept.write_bytes(self.path.read_bytes())
        except OSError as exc:
            print(f"the job's log stays at {self.path}: {exc}", file=sys.stderr)
            self._kept = None
            return
        self.path.unlink()
        for folder in (self.path.parent, self.path.parent.parent):
            try:
                folder.rmdir()  # this run's scratch folder, then theirs when it is empty
            except OSError:
                break

    def write(self, line: str) -> None:
        """Add one line (without its newline) to the log."""
        clean = _ANSI.sub("", line).rstrip("\r")
        with self._lock:
            self._recent.append(clean)
            if self._file is not None:
                self._file.write(clean + "\n")
                self._file.flush()  # a crash or a SIGKILL loses no line already printed
            else:
                self._pending.append(clean)
        if self.echo is not None:
            self.echo(line)

    def attach(self, path: Path, keep_at: Any = None) -> None:
        """Write the log to `path` (appended to, so a resumed run keeps one log), starting with
        what was printed before the run's folder was known. With `keep_at` (a file of run
        storage: an object in a bucket cannot be appended to line by line), the log is moved
        there when the job ends, and its folder removed if that leaves it empty."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self._kept = keep_at
        with self._lock:
            self._file = path.open("a", encoding="utf-8")
            self.path = path
            started = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
            self._file.write(f"===== resnetctl: a job of this run started at {started} =====\n")
            self._file.writelines(line + "\n" for line in self._pending)
            self._pending.clear()
            self._file.flush()

    def tail(self, lines: int = TAIL_LINES) -> list[str]:
        """The last `lines` lines of the log."""
        with self._lock:
            return list(self._recent)[-lines:]

    def show_tail(self, console: Any, lines: int = TAIL_LINES) -> None:
        """Print the log's last lines on `console`, under a line naming the whole log."""
        where = self.location or "the job's output"
        shown = self.tail(lines)
        console.print(
            f"last {len(shown)} lines of {where}:", markup=False, highlight=False, soft_wrap=True
        )
        for line in shown:
            console.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)
