"""resnetctl.footprint: one cache folder, nothing of MLflow's or matplotlib's in the home, and
nothing of torch's compiler in the temp folder."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from resnetctl import footprint

# A user's shell, not CI's: MLflow turns its telemetry off by itself where any of these is set.
_CI_MARKERS = ("CI", "PYTEST_CURRENT_TEST", "GITHUB_ACTIONS")

_RUN_AND_PLOT = """
import sys
from pathlib import Path

# As in every resnetctl process (the CLI, a job's driver, a Ray worker loading the training
# loop), the package comes first: MLflow 3 writes its telemetry id when it is imported.
import resnetctl  # noqa: F401
import mlflow  # noqa: F401
from resnetctl.tracking.plots import plot_error_curves

out = Path(sys.argv[1])
plot_error_curves({"a": {"val_top1_error": [(1, 50.0), (2, 40.0)]}}, out / "curves.png")
# What every run does to log its model: a torch.export program (torch._dynamo is imported).
import torch
from resnetctl.models import create_model

network = create_model("cifar_resnet8", num_classes=3).eval()
batch = torch.export.Dim("batch", min=1, max=64)
torch.export.export(network, (torch.zeros(2, 3, 16, 16),), dynamic_shapes=({0: batch},))
if sys.argv[2] == "onnx":  # `resnetctl export`'s check of an ONNX file, in onnxruntime
    from resnetctl.inference.export import example_input, export_model, max_abs_difference

    path = export_model(network, "onnx", out / "m.onnx", example_input(3, 16))
    assert max_abs_difference(network, "onnx", path, example_input(3, 16)) < 1e-4
"""


def test_cache_root_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RESNETCTL_CACHE", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert footprint.cache_root() == tmp_path / "a"
    assert footprint.cache_root(tmp_path / "b") == tmp_path / "b"
    monkeypatch.delenv("RESNETCTL_CACHE")
    assert footprint.cache_root() == tmp_path / "xdg" / "resnetctl"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert footprint.cache_root() == Path.home() / ".cache" / "resnetctl"


def test_a_users_telemetry_setting_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "false")
    footprint.turn_off_telemetry()
    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "false"
    monkeypatch.delenv("MLFLOW_DISABLE_TELEMETRY")
    footprint.turn_off_telemetry()
    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "true"


def test_a_users_compile_cache_is_kept(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RESNETCTL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))
    monkeypatch.setenv("TORCHINDUCTOR_CPP_CACHE_PRECOMPILE_HEADERS", "1")
    footprint.keep_compile_cache_out_of_temp()
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "mine")
    assert os.environ["TORCHINDUCTOR_CPP_CACHE_PRECOMPILE_HEADERS"] == "1"
    for name in footprint.compile_cache_defaults():
        monkeypatch.delenv(name)
    footprint.keep_compile_cache_out_of_temp()
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "cache" / "torchinductor")
    assert os.environ["TORCHINDUCTOR_CPP_CACHE_PRECOMPILE_HEADERS"] == "0"


def test_a_home_that_cannot_be_found_leaves_torchs_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("RESNETCTL_CACHE", "XDG_CACHE_HOME", *footprint.compile_cache_defaults()):
        monkeypatch.delenv(name, raising=False)

    def no_home() -> Path:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(Path, "home", staticmethod(no_home))
    footprint.keep_compile_cache_out_of_temp()
    assert "TORCHINDUCTOR_CACHE_DIR" not in os.environ


def test_mlflow_a_plot_an_export_and_onnxruntime_leave_nothing_in_home_or_temp(
    tmp_path: Path,
) -> None:
    home, cache, temp = tmp_path / "home", tmp_path / "cache", tmp_path / "tmp"
    home.mkdir()
    temp.mkdir()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in _CI_MARKERS
        and not key.startswith("XDG_")
        and key not in ("MPLCONFIGDIR", *footprint.TELEMETRY_OFF)
        and not key.startswith("TORCHINDUCTOR_")
    }
    env.update(HOME=str(home), RESNETCTL_CACHE=str(cache), TMPDIR=str(temp))
    onnx = "onnx" if importlib.util.find_spec("onnxruntime") else "no-onnx"
    subprocess.run(
        [sys.executable, "-c", _RUN_AND_PLOT, str(tmp_path), onnx], env=env, check=True, timeout=300
    )
    assert (tmp_path / "curves.png").stat().st_size > 0
    assert sorted(p.relative_to(home).as_posix() for p in home.rglob("*")) == []
    # torch's compiler keeps its cache in resnetctl's, not in the temp folder.
    assert sorted(p.name for p in temp.iterdir()) == []
    assert (cache / "torchinductor").is_dir()
    # matplotlib's font cache went to resnetctl's cache, where the next run finds it.
    assert list((cache / "matplotlib").glob("fontlist-*.json"))
