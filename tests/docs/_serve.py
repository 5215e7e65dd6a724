"""`python _serve.py OUTPUT PID SECONDS`: wait until the server a docs block started (process
PID, its output in OUTPUT) has printed an http:// URL and that URL answers; exit 0, or 1 with
the output when the process ends first or the time runs out. The docs test then sends the
block Ctrl-C, as a reader would."""

from __future__ import annotations

import re
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

URL = re.compile(r"^(http://127\.0\.0\.1:\d+)/\S*$", re.MULTILINE)


def answers(base: str) -> bool:
    try:
        with urllib.request.urlopen(base + "/", timeout=5) as response:  # noqa: S310 (loopback)
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def main(output: Path, pid: int, seconds: float) -> int:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        text = output.read_text() if output.exists() else ""
        found = URL.search(text)
        if found and answers(found.group(1)):
            print(f"served: {found.group(0)}")
            return 0
        if not alive(pid):
            break
        time.sleep(1)
    print(f"nothing answered; the block printed:\n{output.read_text()[-3000:]}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])))
