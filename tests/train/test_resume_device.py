"""Resuming onto an accelerator: the loop's load path keeps the RNG state on the CPU and lets the
model and optimiser move their own tensors to the run's device.

No GPU here, so the target device is `meta`: like CUDA, it is not the CPU, and a meta tensor can
neither be converted to numpy nor copied back to the CPU, which is exactly what restoring a
numpy or torch RNG state needs. Before the fix the loop loaded the checkpoint with
`map_location=runner.device`, and `restore_rng_state` failed on the meta copy just as it failed
with `TypeError` on a CUDA copy. What the meta runner cannot show is that CUDA kernels run: the
CUDA test below does, where there is a GPU.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from resnetctl.train.checkpoint import save_checkpoint
from resnetctl.train.loop import _load
from resnetctl.train.runner import Placement, Runner
from tests.train._helpers import batches, job_spec, tiny_model

SPEC = {"optimizer": {"momentum": 0.9}, "epochs": 3}


def _runner(device: torch.device) -> Runner:
    return Runner(
        job_spec(train=SPEC),
        Placement(device=device),
        model=tiny_model(),
        train_loader=batches(3),
        val_loader=batches(1),
    )


def _checkpoint(tmp_path: Path) -> Path:
    runner = _runner(torch.device("cpu"))
    runner.run_epoch(1)
    save_checkpoint(tmp_path, runner.state_dict(), {"epoch": 1})
    return tmp_path


def test_loading_for_another_device_restores_rng_on_cpu_and_moves_model_and_optimizer(
    tmp_path: Path,
) -> None:
    directory = _checkpoint(tmp_path)
    expected = torch.load(directory / "state.pt", weights_only=True)
    runner = _runner(torch.device("meta"))
    _load(runner, directory)
    # The RNG state was restored from CPU tensors: the next draws are the saved generator's.
    saved = torch.Generator().set_state(expected["rng"][0]["torch"])
    assert torch.equal(torch.rand(4), torch.rand(4, generator=saved))
    assert (runner.epoch, runner.step) == (1, 3)
    # Model and optimiser tensors live on the run's device, not where the file was read.
    assert {p.device.type for p in runner.model.parameters()} == {"meta"}
    buffers = [s["momentum_buffer"] for s in runner.optimizer.state.values()]
    assert buffers and {b.device.type for b in buffers} == {"meta"}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_resume_on_cuda_continues_like_the_cpu_run(tmp_path: Path) -> None:
    directory = _checkpoint(tmp_path)
    runner = _runner(torch.device("cuda", 0))
    _load(runner, directory)
    assert {p.device.type for p in runner.model.parameters()} == {"cuda"}
    buffers = [s["momentum_buffer"] for s in runner.optimizer.state.values()]
    assert buffers and {b.device.type for b in buffers} == {"cuda"}
    metrics = runner.run_epoch(2)
    on_cpu = _runner(torch.device("cpu"))
    _load(on_cpu, directory)
    expected = on_cpu.run_epoch(2)
    for key in ("train_loss", "val_loss"):
        assert metrics[key] == pytest.approx(expected[key], rel=1e-3), key
