"""What a worker trains on and with: its loaders and its model, wrapped for DDP."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sized
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from resnetctl.spec import JobSpec
from resnetctl.train.batches import Loader
from resnetctl.train.placement import Placement, all_reduce

log = logging.getLogger(__name__)


@dataclass
class Loaders:
    """The loaders of one worker, and what building them learnt about the data."""

    train: Loader
    val: Loader
    num_classes: int
    ten_crop: bool = False  # validation batches are N x 10 x C x H x W
    layout: Any = None  # the prepared data set (None with injected loaders)
    options: dict[str, Any] = field(default_factory=dict)  # for loaders built later


def build_loaders(spec: JobSpec, place: Placement) -> Loaders:
    """This rank's shard of the training and validation sets, as DALI loaders."""
    from resnetctl.data import build_loader, build_ten_crop_loader, prepare_dataset, resolve_device

    layout = _prepare_dataset(spec, place, prepare_dataset)
    data_device = resolve_device(spec.data.device, place.device.type == "cuda")
    on_gpu = data_device == "gpu"
    common: dict[str, Any] = {
        "batch_size": spec.split(place.world_size).per_worker_batch,
        "shard_id": place.rank,
        "num_shards": place.world_size,
        "device": data_device,
        "device_id": place.device.index if on_gpu else None,
    }
    seeded = {"seed": spec.train.seed, "channels_last": spec.train.channels_last}
    train = build_loader(spec.data, layout, "train", **seeded, **common)
    pipeline = spec.pipeline
    ten_crop = pipeline.kind == "imagenet" and pipeline.ten_crop
    if ten_crop:
        val = build_ten_crop_loader(spec.data, layout, **common)
    else:
        val = build_loader(spec.data, layout, "val", **seeded, **common)
    return Loaders(train, val, len(layout.classes), ten_crop, layout, common)


def _prepare_dataset(spec: JobSpec, place: Placement, prepare: Callable[[Any], Any]) -> Any:
    """Prepare the data set on local rank 0 first so ranks of a node do not race to write
    the same cached files, then everywhere (a cache hit for the others)."""
    if not place.distributed or not dist.is_initialized():
        return prepare(spec.data)
    layout = prepare(spec.data) if place.local_rank == 0 else None
    dist.barrier()
    return layout if layout is not None else prepare(spec.data)


def build_model(
    spec: JobSpec, place: Placement, model: nn.Module | None, num_classes: int
) -> nn.Module:
    """The spec's network (or the injected `model`) on the worker's device, wrapped for DDP."""
    model = network(spec, place, model, num_classes)
    model = model.to(place.device)
    if spec.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return wrap(place, model)


def network(
    spec: JobSpec, place: Placement, model: nn.Module | None, num_classes: int
) -> nn.Module:
    """The spec's network (or the injected `model`) as the worker trains it, still on the CPU:
    initialised from `model.init` and with SyncBatchNorm where `train.sync_bn` asks for it."""
    if model is not None:
        return maybe_sync_bn(spec, place, model)
    from resnetctl.models import create_model

    name = spec.model.name
    assert name is not None, "ModelSpec resolves its name during validation"
    model = maybe_sync_bn(spec, place, create_model(name, **spec.model.create_options(num_classes)))
    if spec.model.init is not None:
        # After the SyncBN conversion, which makes new BN modules without the hooks that keep
        # frozen layers in eval mode (SyncBN's state dict keys are BN's, so the weights load
        # alike); before DDP wraps it: every rank loads the same weights, and DDP's broadcast
        # from rank 0 then changes nothing.
        from resnetctl.train.init import initialise

        initialise(model, spec.model.init)
    return model


def maybe_sync_bn(spec: JobSpec, place: Placement, model: nn.Module) -> nn.Module:
    """`model` with SyncBatchNorm when `train.sync_bn` asks for it and it can run."""
    if not (spec.train.sync_bn and place.distributed):
        return model
    if place.device.type == "cpu":
        # torch's SyncBatchNorm only runs on accelerators; per-rank BN is the fallback.
        if place.rank == 0:
            log.warning("train.sync_bn ignored: SyncBatchNorm needs GPUs")
        return model
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


def wrap(place: Placement, model: nn.Module) -> nn.Module:
    """`model` wrapped by the placement's wrapper, else by DDP when distributed."""
    if place.wrap_model is not None:
        return place.wrap_model(model)
    if not place.distributed:
        return model
    device_ids = [place.device.index] if place.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def agreed_steps_per_epoch(loader: Loader, accumulation_steps: int, device: torch.device) -> int:
    """Steps per epoch, the minimum over ranks: a rank with one more batch than the others
    would wait forever in DDP's all-reduce."""
    if not isinstance(loader, Sized):
        raise TypeError("the training loader must define len()")
    # The loader yields micro-batches; an optimiser step takes `accumulation_steps`.
    steps = len(loader) // accumulation_steps
    if dist.is_available() and dist.is_initialized():
        # On the run's device: NCCL only reduces CUDA tensors.
        agreed = torch.tensor([steps], dtype=torch.int64, device=device)
        steps = int(all_reduce(agreed, dist.ReduceOp.MIN).item())
    if steps < 1:
        raise ValueError(
            "the training shard of some rank is smaller than one batch: lower the batch size "
            "or the number of workers"
        )
    return steps
