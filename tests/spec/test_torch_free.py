"""Validating a job spec imports neither torch, torchvision nor ray: `resnetctl validate` on a
laptop must not pay seconds of imports (or need a GPU stack) to check a YAML file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HEAVY = ("torch", "torchvision", "ray")
SPEC = """\
name: torch-free
model: {family: cifar, depth: 20}
data: {source: {kind: synthetic}}
train: {epochs: 1, global_batch_size: 8}
checkpoint: {metric: val_loss}
"""


def _heavy_modules_after(code: str, tmp_path: Path) -> list[str]:
    """The heavy modules a fresh interpreter has imported after running `code`."""
    spec = tmp_path / "job.yaml"
    spec.write_text(SPEC)
    report = f"print([m for m in {HEAVY!r} if m in sys.modules])\n"
    result = subprocess.run(
        [sys.executable, "-c", "import sys\n" + code.format(spec=str(spec)) + report],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ,
    )
    assert result.returncode == 0, result.stderr
    return eval(result.stdout.strip().splitlines()[-1])  # noqa: S307 (our own list literal)


def test_loading_a_spec_imports_no_torch(tmp_path: Path) -> None:
    code = (
        "from resnetctl.spec import load_spec\n"
        "spec = load_spec({spec!r})\n"
        "assert spec.model.name == 'cifar_resnet20' and spec.data.pipeline.kind == 'cifar'\n"
    )
    assert _heavy_modules_after(code, tmp_path) == []


def test_resnetctl_validate_imports_no_torch(tmp_path: Path) -> None:
    code = (
        "import runpy\n"
        "sys.argv = ['resnetctl', 'validate', {spec!r}]\n"
        "try:\n"
        "    runpy.run_module('resnetctl', run_name='__main__')\n"
        "except SystemExit as exc:\n"
        "    assert exc.code in (0, None), exc.code\n"
    )
    assert _heavy_modules_after(code, tmp_path) == []
