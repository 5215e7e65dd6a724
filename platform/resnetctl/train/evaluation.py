"""Evaluation of a worker's model: on its validation shard, with one crop or the paper's ten,
on weights every rank agrees on."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from resnetctl.spec import JobSpec
from resnetctl.train.batches import Loader, autocast, to_device
from resnetctl.train.metrics import EpochMeter
from resnetctl.train.placement import Placement


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Loader,
    spec: JobSpec,
    device: torch.device,
    criterion: nn.Module,
    ten_crop: bool,
) -> dict[str, float]:
    """Loss and top-1/top-5 errors of `model` on `loader`, summed over the ranks by the meter."""
    model.eval()
    meter = EpochMeter(device)
    for images, labels in loader:
        images, labels = to_device(images, labels, device, spec.train.channels_last)
        with autocast(spec.train.precision, device):
            logits = eval_logits(model, images, ten_crop)
        meter.update(criterion(logits, labels), logits, labels)
    return meter.compute("val")


def eval_logits(model: nn.Module, images: torch.Tensor, ten_crop: bool) -> torch.Tensor:
    """Float logits of a batch; of a 10-crop batch, the log of the averaged probabilities."""
    if not ten_crop:
        return model(images).float()
    from resnetctl.data import ten_crop_scores

    # Log of the averaged probabilities: cross-entropy of these is the NLL of the
    # 10-crop prediction, and top-k ranks are those of the averaged probabilities.
    return ten_crop_scores(model, images).float().clamp_min(1e-12).log()


def broadcast_buffers(model: nn.Module, place: Placement) -> None:
    """Give every rank rank 0's buffers (a collective when distributed).

    DDP broadcasts buffers at the start of each training forward, then every rank updates
    its BN running statistics from its own batch: after the last step they differ. Without
    this, each rank would validate a model of its own, and the reported metric would be
    that of no saved checkpoint (the checkpoint holds rank 0's buffers).
    """
    if not (place.distributed and dist.is_available() and dist.is_initialized()):
        return
    buffers = [b for b in model.buffers() if b.numel()]
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for buffer in buffers:
        by_dtype.setdefault(buffer.dtype, []).append(buffer)
    for group in by_dtype.values():
        # One broadcast per dtype (floats and BN's int64 batch counters), not per tensor.
        flat = torch.cat([b.detach().reshape(-1) for b in group])
        dist.broadcast(flat, src=0)
        offset = 0
        for buffer in group:
            n = buffer.numel()
            buffer.data.copy_(flat[offset : offset + n].view_as(buffer))
            offset += n
