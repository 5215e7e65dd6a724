"""The docs run as pasted: every shell block of a page that a CPU machine can run is run, in
order, in one bash session (so a variable one block sets is there for the next, as in a reader's
terminal), in a fresh working folder holding the repository's files, with an empty HOME and the
bundled data. Blocks with a marker are parsed only (tests/docs/test_docs_parse.py; the markers
are listed in tests/docs/_blocks.py); `RESNETCTL_DOCS_ALL=1` also runs those marked
`needs: time`.

The working folder is a checkout as `make quickstart` leaves it: `.venv/bin` is the venv running
this test (marked installed, so `make` installs nothing), every other file of the repository is
linked in. The README starts without the venv on the PATH (its own commands put it there);
the pages of docs/ start with it on the PATH, as the README tells a reader to have it. The
README's `make test` is this suite and is not run again.

Each page prints how long each of its blocks took; the figures also go to `timings.json` in
the test's folder, and the whole terminal session to `session.log`. `RESNETCTL_DOCS_KEEP=DIR`
copies both to DIR/PAGE.log and DIR/PAGE.json (to refresh a page's transcripts).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.docs._blocks import PAGES, Block, blocks
from tests.processes import kill_group

pytestmark = pytest.mark.slow

RUN_ALL = os.environ.get("RESNETCTL_DOCS_ALL") == "1"
KEEP = os.environ.get("RESNETCTL_DOCS_KEEP")
#: Lines of runnable blocks that are not run here, and why.
NOT_HERE = {"make test": "the test suite, which is running this test"}
#: Entries of the repository that are a user's own state, not part of a fresh checkout.
NOT_A_CHECKOUT = {
    ".git",
    ".venv",
    ".resnetctl",
    "mlflow.db",
    "mlruns",
    "mlartifacts",
    "dist",
    "build",
    "ray_results",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
}
#: The environment a user's shell would not have: the suite's own settings.
SUITE_ONLY = (
    "RAY_ADDRESS",
    "RAY_AUTH_TOKEN",
    "RAY_AUTH_TOKEN_PATH",
    "RAY_AUTH_MODE",
    "MLFLOW_TRACKING_URI",
    "RESNETCTL_STORAGE",
    "RESNETCTL_IMAGENET",
    "RESNETCTL_CIFAR10",
    "VIRTUAL_ENV",
    # The suite's compile cache, and the defaults resnetctl set in this process: a user's shell
    # has neither, and resnetctl's processes set their own (resnetctl.footprint).
    "TORCHINDUCTOR_CACHE_DIR",
    "TORCHINDUCTOR_CPP_CACHE_PRECOMPILE_HEADERS",
)
SERVE_SECONDS = 180
PAGE_SECONDS = 3600


def runs(block: Block) -> bool:
    """Whether the docs test runs `block` (a serving block is run, then stopped)."""
    if not block.is_shell or block.tested_by is not None:
        return False
    if block.needs is not None:
        return RUN_ALL and block.needs == "time"
    return True


RUN_PAGES = [page for page in PAGES if any(runs(b) for b in blocks(page))]


def checkout(work: Path) -> Path:
    """`work` as a checkout after `make quickstart`: the repository's files linked in, and a
    `.venv` whose `bin` is this test's venv, newer than pyproject.toml (nothing to install)."""
    work.mkdir()
    for entry in ROOT.iterdir():
        if entry.name in NOT_A_CHECKOUT or entry.name == "pyproject.toml":
            continue
        (work / entry.name).symlink_to(entry)
    pyproject = work / "pyproject.toml"
    pyproject.write_bytes((ROOT / "pyproject.toml").read_bytes())
    os.utime(pyproject, (0, 0))
    venv = work / ".venv"
    venv.mkdir()
    bin_dir = Path(sys.executable).parent
    (venv / "bin").symlink_to(bin_dir)
    (venv / ".installed").touch()
    return bin_dir


def session_script(page: Path, marks: Path, output: Path) -> str:
    """The bash session: each runnable block in order, its start and end written to `marks`."""
    parts = [
        "set -eo pipefail",
        f"exec 3>>{shlex.quote(str(marks))}",
        'mark() { echo "$1 $2 $(date +%s.%N)" >&3; }',
    ]
    for number, block in enumerate(blocks(page)):
        if not runs(block):
            continue
        script = block.script()
        for line, why in NOT_HERE.items():
            skipped = f": not run here: {why}"
            script = re.sub(rf"^{re.escape(line)}\b.*$", skipped, script, flags=re.M)
        parts.append(f"echo '===== {block.where}'; mark start {number}")
        if block.serves:
            served = output / f"serve-{number}.out"
            parts += [
                "set -m",  # the block in a process group of its own, for its Ctrl-C
                f"( {script.strip()}\n) > {shlex.quote(str(served))} 2>&1 &",
                "serving=$!",
                f'"$DOCS_PYTHON" "$DOCS_SERVE" {shlex.quote(str(served))} $serving {SERVE_SECONDS}',
                "kill -INT -- -$serving",
                "wait $serving",
                "set +m",
            ]
        else:
            parts.append(script)
        parts.append(f"mark end {number}")
    return "\n".join(parts) + "\n"


def environment(home: Path, bin_dir: Path, on_path: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SUITE_ONLY}
    path = [p for p in env["PATH"].split(os.pathsep) if Path(p) != bin_dir]
    if on_path:
        path.insert(0, str(bin_dir))
    return {
        **env,
        "HOME": str(home),
        "PATH": os.pathsep.join(path),
        "PYTHONUNBUFFERED": "1",
        "DOCS_PYTHON": sys.executable,
        "DOCS_SERVE": str(Path(__file__).with_name("_serve.py")),
    }


def read_marks(marks: Path) -> dict[int, dict[str, float]]:
    found: dict[int, dict[str, float]] = {}
    for line in marks.read_text().splitlines() if marks.exists() else []:
        what, number, at = line.split()
        found.setdefault(int(number), {})[what] = float(at)
    return found


@pytest.mark.parametrize("page", RUN_PAGES, ids=[str(p.relative_to(ROOT)) for p in RUN_PAGES])
def test_the_page_runs_as_pasted(
    page: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work, home = tmp_path / "work", tmp_path / "home"
    home.mkdir()
    bin_dir = checkout(work)
    marks, log = tmp_path / "marks.txt", tmp_path / "session.log"
    (tmp_path / "session.sh").write_text(session_script(page, marks, tmp_path))
    env = environment(home, bin_dir, on_path=page.name != "README.md")
    started = time.monotonic()
    with log.open("w") as out:
        shell = subprocess.Popen(
            ["bash", str(tmp_path / "session.sh")],
            cwd=work,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        code = shell.wait(timeout=PAGE_SECONDS)
    finally:
        kill_group(shell)
    total = time.monotonic() - started
    times = read_marks(marks)
    rows = []
    for number, block in enumerate(blocks(page)):
        if not block.is_shell:
            continue
        seconds = times.get(number, {})
        if not runs(block):
            status = f"parsed ({block.marker})"
        elif "end" in seconds:
            status = "ran"
        else:
            status = "FAILED" if "start" in seconds else "not reached"
        took = seconds.get("end", time.time()) - seconds["start"] if "start" in seconds else None
        rows.append({"block": block.where, "status": status, "seconds": took})
    (tmp_path / "timings.json").write_text(json.dumps({"total": total, "blocks": rows}, indent=1))
    if KEEP:
        Path(KEEP).mkdir(parents=True, exist_ok=True)
        (Path(KEEP) / f"{page.stem}.log").write_bytes(log.read_bytes())
        (Path(KEEP) / f"{page.stem}.json").write_bytes((tmp_path / "timings.json").read_bytes())
    with capsys.disabled():
        print(f"\n{page.relative_to(ROOT)}: {total:.0f} s in all")
        for row in rows:
            took = "" if row["seconds"] is None else f"{row['seconds']:7.1f} s"
            print(f"  {row['block']:<28} {took:>9}  {row['status']}")
    assert code == 0, f"{page.name}: exit {code}; the session's end:\n{log.read_text()[-5000:]}"
    assert all(r["status"] == "ran" or r["status"].startswith("parsed") for r in rows), rows
