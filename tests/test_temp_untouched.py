"""The suite leaves nothing of resnetctl's in the temp folder: every process it starts (the
CLI, Ray, Ray's workers, DALI's code generation, multiprocessing) uses the suite's own temp
folder (`TMPDIR`, tests/conftest.py), so what is left there after the last test is what the
code under test left. Allowed: pytest's own folder (`tmp_path`), Ray's session folders (`ray`)
and file locks (`_ray_lockfiles`, Ray AIR's `filelock`), onnxruntime's telemetry session file
(`.ses`, written when `onnxruntime` is imported), the suite's Ray token and the suite's
TorchInductor cache (`torchinductor`, its `TORCHINDUCTOR_CACHE_DIR`). Not torch's default
`torchinductor_USER`: resnetctl keeps that cache in its own folder (resnetctl.footprint).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import SUITE_COMPILE_CACHE, suite_temp_folder

#: What the suite itself keeps in its temp folder, and what Ray and onnxruntime keep.
ALLOWED = re.compile(
    rf"^(pytest-of-.*|ray|_ray_lockfiles|\.ses|resnetctl-ray-token-.*|{SUITE_COMPILE_CACHE})$"
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
        "torchinductor_root",  # torch's default compile cache
    ]
    for name in ours:
        (tmp_path / name).mkdir()
    for allowed in ("ray", SUITE_COMPILE_CACHE):
        (tmp_path / allowed).mkdir()
    assert left_behind(tmp_path) == sorted(ours)


@pytest.mark.last
def test_the_suite_left_nothing_in_the_temp_folder(pytestconfig: pytest.Config) -> None:
    folder = suite_temp_folder(pytestconfig)
    assert not left_behind(folder), (
        f"left in the suite's temp folder {folder}: {left_behind(folder)}; a run, a test or a "
        "walkthrough must remove what it puts there (or not put it there)"
    )
