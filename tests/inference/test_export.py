"""Exported models compute the checkpoint's logits, at a batch size other than the example's."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from resnetctl.inference.export import (
    EXAMPLE_BATCH,
    FORMATS,
    SUFFIX,
    ExportError,
    example_input,
    export_model,
    max_abs_difference,
)
from resnetctl.inference.source import load_model


@pytest.mark.parametrize("fmt", FORMATS)
def test_export_has_the_checkpoint_logits(
    fmt: str, colour_run: tuple[Path, Path], tmp_path: Path
) -> None:
    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
    loaded = load_model(str(colour_run[1]))
    path = export_model(loaded.model, fmt, tmp_path / f"m{SUFFIX[fmt]}", example_input(3, 16))
    batch = torch.randn(EXAMPLE_BATCH + 3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    # Trained weights, not the initial ones: a wrong or stale export would differ by far more.
    assert max_abs_difference(loaded.model, fmt, path, batch) < 1e-4


def test_onnx_graph_runs_in_onnxruntime_with_a_dynamic_batch(
    colour_run: tuple[Path, Path], tmp_path: Path
) -> None:
    onnxruntime = pytest.importorskip("onnxruntime")
    loaded = load_model(str(colour_run[1]))
    path = export_model(loaded.model, "onnx", tmp_path / "m.onnx", example_input(3, 16))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"images": torch.randn(7, 3, 16, 16).numpy()})
    assert logits.shape == (7, 2)


def test_unknown_format_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="unknown format 'tflite'"):
        export_model(torch.nn.Linear(2, 2), "tflite", tmp_path / "m", torch.randn(2, 2))
