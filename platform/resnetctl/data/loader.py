"""The iterator the training loop uses: DALI pipelines in, torch tensors out.

Epochs. Iterating a loader once is one epoch. Each `iter()` uses the loader's current epoch and
then advances it; `set_epoch(e)` sets the epoch the next `iter()` uses (call it every epoch to make
a resumed run see exactly the batches an uninterrupted one would). A fresh DALI pipeline is built
for every epoch (about 0.1 s), seeded from (seed, epoch, shard), so epoch e's batches are a
function of those numbers alone and no prefetched batch leaks from one epoch into the next.

Resuming in the middle of an epoch. Training pipelines are built with DALI's checkpointing on:
`checkpoint()` of an epoch's iterator is the pipeline's state after the batches it has handed
out (reader position, shuffle buffer, every random operator's state), and
`resume_epoch(epoch, state, batches_done)` makes the next `iter()` rebuild that epoch's pipeline
from it, so the rest of the epoch is the batches an uninterrupted run would have seen, bit for
bit (DALI accounts for the batches it had prefetched).

Sharding. Training: the split is permuted from (seed, epoch), identically on every rank, and cut
to num_shards x len(loader) x batch_size files, so every rank yields the same number of full
batches (a rank with one batch more would leave the others blocked in an allreduce) and each
epoch drops a different handful of files. Validation: DALI's shards cover every file exactly
once; the padding of the last batch is cut off, so ranks may differ by one batch.

Readers. Which encoded images a rank reads, and through which DALI reader, is the split
reader's business (`data/splits.py`, chosen by the prepared data set's kind); tar shards give
each rank a fixed part of the split instead (`data/shards/reading.py`), with the same batch
counts.
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Iterator
from typing import Literal

import numpy as np
import torch

from resnetctl.data.imagefolder import DataError, DatasetLayout, Split
from resnetctl.data.pipelines import Device, Mode, build_pipeline
from resnetctl.data.readers import derive_seed as _derive_seed
from resnetctl.data.splits import split_reader
from resnetctl.spec.data import DataSpec


def resolve_device(requested: Literal["auto", "cpu", "gpu"], cuda_available: bool) -> Device:
    """Where DALI runs: `auto` picks the GPU when there is one; `gpu` without CUDA is an error."""
    if requested == "auto":
        return "gpu" if cuda_available else "cpu"
    if requested == "gpu" and not cuda_available:
        raise DataError(
            "data.device is 'gpu' but this worker sees no CUDA device; use 'cpu' or 'auto'"
        )
    if requested not in ("cpu", "gpu"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'gpu', not {requested!r}")
    return requested


def shard_bounds(num_files: int, shard_id: int, num_shards: int) -> tuple[int, int]:
    """[start, end) of a shard in DALI's reader (start = floor(N * shard_id / num_shards))."""
    return num_files * shard_id // num_shards, num_files * (shard_id + 1) // num_shards


class DaliLoader:
    """Batches of one split on one shard; `len()` batches per epoch.

    Yields (images, labels): images float32 on the loader's device, N x C x H x W (channels_last
    memory format if asked), or N x 10 x C x H x W for 10-crop evaluation; labels int64 (N,).
    """

    def __init__(
        self,
        data_spec: DataSpec,
        layout: DatasetLayout,
        split: Split,
        *,
        mode: Mode,
        batch_size: int,
        shard_id: int,
        num_shards: int,
        seed: int,
        device: Device,
        device_id: int | None,
        channels_last: bool,
    ) -> None:
        if data_spec.pipeline is None:
            raise ValueError(
                "data_spec.pipeline is None: the job-spec layer must fill it from the model family"
            )
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', not {split!r}")
        if device not in ("cpu", "gpu"):
            raise ValueError(f"device must be 'cpu' or 'gpu' (see resolve_device), not {device!r}")
        if device == "cpu" and device_id is not None:
            raise ValueError("device='cpu' takes device_id=None")
        if batch_size < 1 or num_shards < 1 or not 0 <= shard_id < num_shards:
            raise ValueError(
                f"need batch_size >= 1 and 0 <= shard_id < num_shards, got batch_size="
                f"{batch_size}, shard_id={shard_id}, num_shards={num_shards}"
            )
        self.data_spec = data_spec
        self.layout = layout
        self.split: Split = split
        self.mode: Mode = mode
        self.batch_size = batch_size
        self.shard_id = shard_id
        self.num_shards = num_shards
        self.seed = seed
        self.device: Device = device
        self.device_id = device_id
        self.channels_last = channels_last
        self._epoch = 0
        self._resume: tuple[int, bytes, int] | None = None

        total = layout.split_files(split)
        where = layout.split_dir(split)
        self._shuffled = mode == "train"
        if self._shuffled:
            self._batches = total // num_shards // batch_size
            if self._batches == 0:
                raise DataError(
                    f"{where}: {total} images cannot fill one batch of {batch_size} on each of "
                    f"{num_shards} shards"
                )
            self._shard_size = self._batches * batch_size
        else:
            start, end = shard_bounds(total, shard_id, num_shards)
            self._shard_size = end - start
            if self._shard_size == 0:
                raise DataError(f"{where}: {total} images are too few for {num_shards} shards")
            self._batches = math.ceil(self._shard_size / batch_size)
        self._reader = split_reader(
            layout,
            split,
            shuffled=self._shuffled,
            keep=num_shards * self._shard_size,
            shard_id=shard_id,
            num_shards=num_shards,
            seed=seed,
            batch_size=batch_size,
            source=data_spec.source,
        )

    def __len__(self) -> int:
        return self._batches

    @property
    def epoch(self) -> int:
        """The epoch the next `iter()` will produce."""
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Make the next `iter()` produce epoch `epoch`."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, not {epoch}")
        self._epoch = epoch

    def resume_epoch(self, epoch: int, state: bytes, batches_done: int) -> None:
        """Make the next `iter()` continue epoch `epoch` after its first `batches_done` batches,
        from an `EpochIterator.checkpoint()` taken at that point."""
        if not self._shuffled:
            raise ValueError("only a training loader resumes in the middle of an epoch")
        if not 0 <= batches_done <= self._batches:
            raise ValueError(f"batches_done {batches_done} is not in [0, {self._batches}]")
        self.set_epoch(epoch)
        self._resume = (epoch, state, batches_done)

    def __iter__(self) -> EpochIterator:
        epoch = self._epoch
        self._epoch += 1
        resume, self._resume = self._resume, None
        if resume is not None and resume[0] == epoch:
            return EpochIterator(self, epoch, state=resume[1], start=resume[2])
        return EpochIterator(self, epoch)

    def _build(self, epoch: int, state: bytes | None = None):  # -> nvidia.dali.Pipeline
        # Only training pipelines are resumed mid-epoch; checkpointing costs the others nothing
        # but is not needed.
        resumable: dict[str, object] = {}
        if self._shuffled:
            resumable["enable_checkpointing"] = True
            if state is not None:
                resumable["checkpoint"] = state
        # The reader's seed must agree across ranks (its shuffle decides the shards); the
        # augmentation seed must not, or every rank would draw the same crops and flips.
        return build_pipeline(
            self.data_spec.pipeline,
            self.mode,
            reader=self._reader.reader(epoch, _derive_seed(self.seed, epoch)),
            batch_size=self.batch_size,
            seed=_derive_seed(self.seed, epoch, self.shard_id, 1),
            threads=self.data_spec.threads,
            prefetch=self.data_spec.prefetch,
            device=self.device,
            device_id=self.device_id,
            channels_last=self.channels_last and self.mode != "ten_crop",
            **resumable,
        )

    def _to_torch(self, images, labels, valid: int) -> tuple[torch.Tensor, torch.Tensor]:
        shapes = images.shape()
        if any(s != shapes[0] for s in shapes):
            raise DataError(
                f"{self.layout.split_dir(self.split)}: images of different sizes in one batch "
                f"({sorted({tuple(s) for s in shapes})[:3]}); the CIFAR pipeline needs images of "
                "one size"
            )
        target = torch.device("cuda", self.device_id) if self.device == "gpu" else None
        out = torch.empty((len(shapes), *shapes[0]), dtype=torch.float32, device=target)
        if self.device == "gpu":
            # Ordered on torch's stream, and blocking: the next pipe.run() may recycle DALI's
            # output buffer, which an asynchronous copy could still be reading.
            stream = torch.cuda.current_stream(target)
            images.copy_to_external(
                ctypes.c_void_p(out.data_ptr()),
                ctypes.c_void_p(stream.cuda_stream),
                non_blocking=False,
            )
        else:
            images.copy_to_external(ctypes.c_void_p(out.data_ptr()))
        label_tensor = torch.from_numpy(np.array(labels.as_tensor()).reshape(-1).astype(np.int64))
        if target is not None:
            label_tensor = label_tensor.to(target, non_blocking=True)
        out, label_tensor = out[:valid], label_tensor[:valid]
        if self.channels_last and self.mode != "ten_crop":
            # DALI wrote N x H x W x C: the permuted view is NCHW in channels_last memory format.
            out = out.permute(0, 3, 1, 2)
        return out, label_tensor


class EpochIterator(Iterator[tuple[torch.Tensor, torch.Tensor]]):
    """One epoch of a `DaliLoader`: its batches, and the pipeline's state between them."""

    def __init__(
        self, loader: DaliLoader, epoch: int, *, state: bytes | None = None, start: int = 0
    ) -> None:
        self.loader = loader
        self.epoch = epoch
        self.index = start  # batches handed out so far in this epoch
        self._pipe = loader._build(epoch, state)

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        loader = self.loader
        if self._pipe is None or self.index >= len(loader):
            self.close()
            raise StopIteration
        images, labels = self._pipe.run()[:2]
        valid = min(loader.batch_size, loader._shard_size - self.index * loader.batch_size)
        self.index += 1
        return loader._to_torch(images, labels, valid)

    def checkpoint(self) -> bytes:
        """The pipeline's state after the batches handed out so far (see `resume_epoch`)."""
        if self._pipe is None:
            raise RuntimeError("the epoch's pipeline is closed")
        return bytes(self._pipe.checkpoint())

    def close(self) -> None:
        """Free the epoch's pipeline (its threads and buffers) now."""
        self._pipe = None


def build_loader(
    data_spec: DataSpec,
    layout: DatasetLayout,
    split: Split = "train",
    *,
    batch_size: int,
    shard_id: int = 0,
    num_shards: int = 1,
    seed: int = 0,
    device: Device = "cpu",
    device_id: int | None = None,
    channels_last: bool = False,
) -> DaliLoader:
    """The loader of `split` for shard `shard_id` of `num_shards` (use the global rank and the
    world size). `device` comes from `resolve_device`; `device_id` is the local GPU index
    (None on CPU). Training batches are augmented with `data_spec.pipeline`'s recipe."""
    return DaliLoader(
        data_spec,
        layout,
        split,
        mode=split,
        batch_size=batch_size,
        shard_id=shard_id,
        num_shards=num_shards,
        seed=seed,
        device=device,
        device_id=device_id,
        channels_last=channels_last,
    )


def build_ten_crop_loader(
    data_spec: DataSpec,
    layout: DatasetLayout,
    *,
    batch_size: int,
    shard_id: int = 0,
    num_shards: int = 1,
    device: Device = "cpu",
    device_id: int | None = None,
) -> DaliLoader:
    """Validation loader for the paper's 10-crop testing (ImageNet pipeline only): images are
    N x 10 x C x val_crop x val_crop; average a model's outputs with `ten_crop_scores`."""
    if data_spec.pipeline is not None and data_spec.pipeline.kind != "imagenet":
        raise ValueError("10-crop testing needs the imagenet pipeline")
    return DaliLoader(
        data_spec,
        layout,
        "val",
        mode="ten_crop",
        batch_size=batch_size,
        shard_id=shard_id,
        num_shards=num_shards,
        seed=0,
        device=device,
        device_id=device_id,
        channels_last=False,
    )


def ten_crop_scores(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Class probabilities averaged over the 10 views of each image (N x 10 x C x H x W in)."""
    n, views = images.shape[:2]
    logits = model(images.flatten(0, 1))
    return logits.softmax(dim=-1).view(n, views, -1).mean(dim=1)
