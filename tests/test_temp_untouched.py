"""The suite leaves nothing of resnetctl's in the temp folder: every process it starts (the
CLI, Ray, Ray's workers, DALI's code generation, multiprocessing) uses the suite's own temp
folder (`TMPDIR`, tests/conftest.py), so what is left there after the last test is what the
code under test left. Allowed: pytest's own folder (`tmp_path`), Ray's session folders (`ray`)
and file locks (`_ray_lockfiles`, Ray AIR's `filelock`), torch's compile cache
(`torchinductor_USER`, made when `torch._dynamo` is imported), onnxruntime's telemetry session
file (`.ses`, written when `onnxruntime` is imported) and the suite's Ray token.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import suite_temp_folder

#: What the suite itself keeps in its temp folder, and what Ray, torch and onnxruntime keep.
ALLOWED = re.compile(
    r"^(pytest-of-.*|ray|_ray_lockfiles|torchinductor_.*|\.ses|resnetctl-ray-token-.*)$"
)


def left_behind(folder: Path) -> list[str]:
    """The entries of `folder` that nothing allows to be there."""
    return sorted(p.name for p in folder.iterdir() if not ALLOWED.match(p.name))


def test_the_allowance_is_narrow(tmp_path: Path) -> None:
    ours = [
        "pymp-x1",
        "__autograph_generated_filea1b2.py",
        "resnetctl-loader-x",
        "resnetctl-system-metrics-run-node.lock",
        "resnetctl-ckpt-tiny-x",
        "tmpab12",
    ]
    for name in ours:
        (tmp_path / name).mkdir()
    (tmp_path / "ray").mkdir()
    assert "ray" not in left_behind(tmp_path) and len(left_behind(tmp_path)) == 6


@pytest.mark.last
def test_the_suite_left_nothing_in_the_temp_folder(pytestconfig: pytest.Config) -> None:
    folder = suite_temp_folder(pytestconfig)
    assert not left_behind(folder), (
        f"left in the suite's temp folder {folder}: {left_behind(folder)}; a run, a test or a "
        "walkthrough must remove what it puts there (or not put it there)"
    )
