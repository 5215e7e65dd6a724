"""CPU stand-ins for the Runner's GPU-only paths, so that code nobody can run here is at least
executed here: fp16 autocast with an enabled GradScaler (torch runs both on the CPU), SyncBN
conversion and its train/eval/checkpoint behaviour, and DDP's device ids under NCCL. What they
cannot show is CUDA kernels or NCCL itself; `test_resume_device.py` covers the device moves of a
resume with a meta device, and its CUDA test runs where there is a GPU."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from resnetctl.models import create_model
from resnetctl.train import build as build_module
from resnetctl.train.checkpoint import load_checkpoint, save_checkpoint, unwrap
from resnetctl.train.loop import _load
from resnetctl.train.metrics import EpochMeter
from resnetctl.train.runner import Placement, Runner
from tests.train._dist import run_distributed
from tests.train._helpers import batches, job_spec, tiny_model

GPU = {"resources": {"use_gpu": True}}


def _fp16_runner(**train: Any) -> Runner:
    # The spec asks for GPUs (fp16 needs them); the Runner is given the CPU.
    spec = job_spec(train={"precision": "fp16", **train}, **GPU)
    return Runner(spec, model=tiny_model(), train_loader=batches(3), val_loader=batches(1))


def test_fp16_steps_go_through_the_enabled_grad_scaler() -> None:
    torch.manual_seed(0)
    runner = _fp16_runner()
    assert runner.scaler.is_enabled()
    metrics = runner.run_epoch(1)
    # Half precision and loss scaling round, they don't change the run: fp32's epoch, to 1 %.
    torch.manual_seed(0)
    fp32 = Runner(job_spec(), model=tiny_model(), train_loader=batches(3), val_loader=batches(1))
    expected = fp32.run_epoch(1)
    for key in ("train_loss", "val_loss"):
        assert metrics[key] == pytest.approx(expected[key], rel=1e-2), key
    # update() ran after each of the 3 steps, and none was skipped (no backoff).
    assert runner.scaler.state_dict()["_growth_tracker"] == 3
    assert runner.scaler.get_scale() == 65536.0


class NaNOnce(nn.Module):
    """NaN logits on the first training forward only."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = tiny_model()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        out = self.inner(x)
        return out * float("nan") if self.training and self.calls == 1 else out


def test_a_non_finite_fp16_step_is_skipped_by_the_scaler_which_backs_off() -> None:
    spec = job_spec(train={"precision": "fp16", "max_nonfinite_steps": 1}, **GPU)
    runner = Runner(spec, model=NaNOnce(), train_loader=batches(1), val_loader=batches(1))
    before = [p.detach().clone() for p in runner.model.parameters()]
    images, labels = batches(1)[0]
    runner.train_step(images, labels, 1, 1, EpochMeter())
    # The scaler saw inf/NaN gradients: no optimiser step, half the scale; the step counts.
    assert all(torch.equal(a, b) for a, b in zip(before, runner.model.parameters(), strict=True))
    assert runner.scaler.get_scale() == 32768.0
    assert runner.step == 1
    runner.train_step(images, labels, 1, 2, EpochMeter())
    assert not all(
        torch.equal(a, b) for a, b in zip(before, runner.model.parameters(), strict=True)
    )


def test_the_scaler_state_survives_a_checkpoint(tmp_path: Any) -> None:
    runner = _fp16_runner()
    runner.run_epoch(1)
    runner.scaler.update(1024.0)  # a state a fresh scaler would not have
    save_checkpoint(tmp_path, runner.state_dict(), {"epoch": 1})
    restored = _fp16_runner()
    _load(restored, tmp_path)
    assert restored.scaler.state_dict() == runner.scaler.state_dict()


def test_sync_bn_converts_on_gpu_placements_and_falls_back_on_cpu() -> None:
    spec = job_spec(train={"sync_bn": True}, **GPU)
    cuda = Placement(world_size=2, device=torch.device("cuda", 1))
    converted = build_module.maybe_sync_bn(spec, cuda, tiny_model())
    assert any(isinstance(m, nn.SyncBatchNorm) for m in converted.modules())
    kept = build_module.maybe_sync_bn(spec, Placement(world_size=2), tiny_model())
    assert not any(isinstance(m, nn.SyncBatchNorm) for m in kept.modules())


def _frozen_init_spec(tmp_path: Any, freeze: list[str]) -> Any:
    """A SyncBN job fine-tuning cifar_resnet8 from a checkpoint with `freeze` frozen."""
    source = create_model("cifar_resnet8", num_classes=4)
    save_checkpoint(tmp_path / "source", {"model": source.state_dict()}, {})
    init = {"source": str(tmp_path / "source"), "freeze": freeze}
    model = {"name": "cifar_resnet8", "num_classes": 4, "init": init}
    return job_spec(train={"sync_bn": True}, model=model, **GPU)


def test_sync_bn_conversion_keeps_the_freezing_of_fine_tuned_layers(tmp_path: Any) -> None:
    # The network a GPU worker builds (converted to SyncBN because the placement is on CUDA),
    # trained here on the CPU: a frozen SyncBN layer is in eval mode, where torch takes plain
    # BN's path (no collective, no GPU), while the trained ones normalise by the batch.
    spec = _frozen_init_spec(tmp_path, ["stem", "layer1"])
    cuda = Placement(world_size=2, device=torch.device("cuda", 0))
    model = build_module.network(spec, cuda, None, num_classes=4)
    sync = {name for name, m in model.named_modules() if isinstance(m, nn.SyncBatchNorm)}
    assert not any(type(m) is nn.BatchNorm2d for m in model.modules()), (
        "every BN layer is converted"
    )
    frozen = {name for name in sync if name == "bn1" or name.startswith("layer1.")}
    assert frozen and sync - frozen
    modes: dict[str, bool] = {}
    for name, module in model.named_modules():
        if name in sync:
            module.register_forward_hook(
                lambda m, args, out, name=name: modes.__setitem__(name, m.training)
            )
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-3)
    model.train()
    for _ in range(2):
        loss = model(torch.randn(8, 3, 16, 16) * 3 + 1).logsumexp(1).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    after = model.state_dict()
    moved = [
        key
        for key in before
        if key.rsplit(".", 1)[0] in frozen and not torch.equal(before[key], after[key])
    ]
    assert not moved, f"frozen SyncBN tensors changed in a training step: {moved}"
    # They ran in eval mode, the trained ones in training mode.
    assert {name for name, training in modes.items() if not training} == frozen
    # ... while the layers left to train did learn and track their batches.
    assert not torch.equal(before["layer2.0.bn1.weight"], after["layer2.0.bn1.weight"])
    assert not torch.equal(before["layer2.0.bn1.running_mean"], after["layer2.0.bn1.running_mean"])


def _sync_bn_frozen_on_gpus(rank: int, world: int, source: Path) -> dict[str, Any]:
    spec = _frozen_init_spec(source, ["stem", "layer1"])
    place = Placement.from_process_group(use_gpu=True)
    torch.cuda.set_device(place.device)
    runner = Runner(spec, place, train_loader=batches(2, seed=rank), val_loader=batches(1))
    before = {k: v.cpu().clone() for k, v in unwrap(runner.model).state_dict().items()}
    runner.train_epoch(1)
    after = {k: v.cpu() for k, v in unwrap(runner.model).state_dict().items()}
    return {"before": before, "after": after}


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_sync_bn_under_nccl_keeps_the_freezing_of_fine_tuned_layers(tmp_path: Path) -> None:
    ranks = run_distributed(_sync_bn_frozen_on_gpus, 2, tmp_path / "out", tmp_path, backend="nccl")
    for result in ranks:
        before, after = result["before"], result["after"]
        frozen = [k for k in before if k.startswith(("bn1.", "conv1.", "layer1."))]
        assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
        key = "layer2.0.bn1.running_mean"
        assert not torch.equal(before[key], after[key])
    # Synchronised statistics: the trained layers' running means agree across the ranks.
    torch.testing.assert_close(
        ranks[0]["after"]["layer2.0.bn1.running_mean"],
        ranks[1]["after"]["layer2.0.bn1.running_mean"],
    )


def test_a_sync_bn_model_trains_validates_and_checkpoints_like_plain_bn(tmp_path: Any) -> None:
    # In one process SyncBN normalises like BN: same weights, same metrics, same state keys, so
    # checkpoints (and the final evaluation's copy) move freely between the two.
    torch.manual_seed(0)
    plain = tiny_model()
    synced = nn.SyncBatchNorm.convert_sync_batchnorm(tiny_model())
    synced.load_state_dict(plain.state_dict())
    spec = job_spec()
    results = []
    for model in (plain, synced):
        runner = Runner(spec, model=model, train_loader=batches(2), val_loader=batches(1, seed=3))
        results.append(runner.run_epoch(1))
    for key in ("train_loss", "val_loss", "val_top1_error"):
        assert results[0][key] == pytest.approx(results[1][key], rel=1e-5)
    assert plain.state_dict().keys() == synced.state_dict().keys()
    save_checkpoint(tmp_path, {"model": synced.state_dict()}, {})
    tiny_model().load_state_dict(load_checkpoint(tmp_path)[0]["model"])


def test_ddp_under_nccl_is_given_the_local_gpu_and_gloo_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[dict[str, Any]] = []

    def fake_ddp(model: nn.Module, **kwargs: Any) -> nn.Module:
        calls.append(kwargs)
        return model

    monkeypatch.setattr(build_module, "DistributedDataParallel", fake_ddp)
    for device in (torch.device("cuda", 3), torch.device("cpu")):
        build_module.wrap(Placement(world_size=2, device=device), tiny_model())
    assert [c["device_ids"] for c in calls] == [[3], None]


def test_channels_last_reaches_the_weights_and_the_training_batches() -> None:
    def epoch(**train: Any) -> tuple[Runner, dict[str, float]]:
        torch.manual_seed(0)
        spec = job_spec(train=train)
        runner = Runner(spec, model=tiny_model(), train_loader=batches(2), val_loader=batches(1))
        return runner, runner.run_epoch(1)

    runner, metrics = epoch(channels_last=True)
    conv = next(m for m in runner.model.modules() if isinstance(m, nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    images, labels = runner._to_device(*batches(1)[0])
    assert images.is_contiguous(memory_format=torch.channels_last)
    assert labels.dtype == torch.int64
    # A memory layout, not other arithmetic: the default layout's epoch, to rounding.
    _, expected = epoch()
    assert metrics["train_loss"] == pytest.approx(expected["train_loss"], rel=1e-4)
    assert metrics["val_loss"] == pytest.approx(expected["val_loss"], rel=1e-4)
    # ... which a tolerance this tight tells from a run that did differ.
    assert epoch(base_lr=0.5)[1]["val_loss"] != pytest.approx(expected["val_loss"], rel=1e-4)
