"""`make`'s set-up checks: before anything is installed, an interpreter that is missing, too
old, or unable to create a venv (Debian/Ubuntu without python3-venv) gets one line naming what
to install, and no `.venv` is made. Stand-in interpreters answer the Makefile's probes as such a
machine's would."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="no make here")

# A shell script standing in for `python3`: it answers the Makefile's three probes.
FAKE = """#!/bin/sh
case "$2" in
  *"version_info <"*) exit {too_old} ;;
  *platform*) echo {version} ;;
  *ensurepip*) exit {no_venv} ;;
  *python3.*) echo python3.{minor}-venv ;;
  *) echo "unexpected: $*" >&2; exit 3 ;;
esac
"""


def make_venv(tmp_path: Path, python: str) -> subprocess.CompletedProcess[str]:
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    (tmp_path / "pyproject.toml").touch()
    return subprocess.run(
        ["make", "--no-print-directory", f"PYTHON={python}", "install"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


def fake_python(tmp_path: Path, *, version: str, venv: bool) -> str:
    minor = version.split(".")[1]
    script = tmp_path / "python3"
    script.write_text(
        FAKE.format(
            too_old=int(tuple(map(int, version.split(".")[:2])) < (3, 10)),
            version=version,
            no_venv=0 if venv else 1,
            minor=minor,
        )
    )
    script.chmod(0o755)
    return str(script)


def error_lines(done: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in done.stdout.splitlines() if line.startswith("error:")]


def test_a_missing_interpreter_is_named(tmp_path: Path) -> None:
    done = make_venv(tmp_path, "python3-that-does-not-exist")
    assert done.returncode != 0
    (line,) = error_lines(done)
    assert "no python3-that-does-not-exist on PATH" in line and "make PYTHON=" in line
    assert not (tmp_path / ".venv").exists()


def test_a_python_older_than_3_10_is_refused_by_version(tmp_path: Path) -> None:
    done = make_venv(tmp_path, fake_python(tmp_path, version="3.9.18", venv=True))
    assert done.returncode != 0
    (line,) = error_lines(done)
    assert "needs Python 3.10 or newer" in line and "3.9.18" in line
    assert not (tmp_path / ".venv").exists()


def test_a_python_without_the_venv_package_names_the_package(tmp_path: Path) -> None:
    done = make_venv(tmp_path, fake_python(tmp_path, version="3.12.3", venv=False))
    assert done.returncode != 0
    (line,) = error_lines(done)
    assert "apt install python3.12-venv" in line and "python3-venv" in line
    assert not (tmp_path / ".venv").exists()
