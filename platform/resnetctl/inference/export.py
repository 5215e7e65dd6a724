"""Export a trained network as TorchScript, ONNX or a `torch.export` program (pt2), each with a
dynamic batch dimension, for serving without resnetctl."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Literal

import torch
from torch import nn

Format = Literal["torchscript", "onnx", "pt2"]
FORMATS: tuple[str, ...] = ("torchscript", "onnx", "pt2")
SUFFIX = {"torchscript": ".pt", "onnx": ".onnx", "pt2": ".pt2"}
#: The batch size of the example input. Not 1: torch.export specialises a dimension of size 1.
EXAMPLE_BATCH = 2
ONNX_OPSET = 18


class ExportError(RuntimeError):
    """The export failed or needs a package that is not installed."""


def example_input(channels: int, size: int, batch: int = EXAMPLE_BATCH) -> torch.Tensor:
    """A random NCHW batch of the network's input size."""
    return torch.randn(batch, channels, size, size, generator=torch.Generator().manual_seed(0))


def export_model(model: nn.Module, fmt: str, path: Path, example: torch.Tensor) -> Path:
    """Write `model` (eval mode, CPU) to `path` in format `fmt`; returns the path."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    model = model.eval().cpu()
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        if fmt == "torchscript":
            # Traced (the stage loop's getattr cannot be scripted): the network has no
            # data-dependent control flow, and flatten(x, 1) records no batch size.
            torch.jit.save(torch.jit.trace(model, example), str(path))
        elif fmt == "pt2":
            batch = torch.export.Dim("batch", min=1, max=4096)
            program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
            torch.export.save(program, str(path))
        else:
            _export_onnx(model, path, example)
    return path


def _export_onnx(model: nn.Module, path: Path, example: torch.Tensor) -> None:
    try:
        import onnx  # noqa: F401  (torch.onnx needs it; say which extra provides it)
    except ImportError:
        raise ExportError(
            "ONNX export needs the onnx package: pip install 'resnetctl[export]'"
        ) from None
    with warnings.catch_warnings():
        # Option A shortcuts slice with a step of 2, which ONNX's constant folding skips: a
        # note about optimisation, not about correctness (the parity check measures that).
        warnings.filterwarnings("ignore", message="Constant folding", category=UserWarning)
        _onnx_export(model, path, example)


def _onnx_export(model: nn.Module, path: Path, example: torch.Tensor) -> None:
    torch.onnx.export(
        model,
        (example,),
        str(path),
        input_names=["images"],
        output_names=["logits"],
        dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=ONNX_OPSET,
        dynamo=False,
    )


def load_exported(fmt: str, path: Path):  # -> a callable from a float32 NCHW tensor to logits
    """The exported model as a function of a CPU tensor (ONNX runs in onnxruntime)."""
    if fmt == "torchscript":
        module = torch.jit.load(str(path), map_location="cpu")
        return lambda x: module(x)
    if fmt == "pt2":
        module = torch.export.load(str(path)).module()
        return lambda x: module(x)
    if fmt == "onnx":
        try:
            import onnxruntime
        except ImportError:
            raise ExportError(
                "running ONNX needs onnxruntime: pip install 'resnetctl[export]'"
            ) from None
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name

        def run(x: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(session.run(None, {name: x.numpy()})[0])

        return run
    raise ExportError(f"unknown format {fmt!r}")


def max_abs_difference(model: nn.Module, fmt: str, path: Path, batch: torch.Tensor) -> float:
    """Largest absolute logit difference between `model` and its export on `batch`."""
    exported = load_exported(fmt, path)
    with torch.no_grad():
        reference = model.eval()(batch)
        return float((exported(batch) - reference).abs().max())
