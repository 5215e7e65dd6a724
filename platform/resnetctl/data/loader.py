"""The iterator the training loop uses: DALI pipelines in, torch tensors out.

Epochs. Iterating a loader once is one epoch. Each `iter()` uses the loader's current epoch and
then advances it; `set_epoch(e)` sets the epoch the next `iter()` uses (call it every epoch to make
a resumed run see exactly the batches an uninterrupted one would). A fresh DALI pipeline is built
for every epoch (about 0.1 s), seeded from (seed, epoch, shard), so epoch e's batches are a
function of those numbers alone and no prefetched batch leaks from one epoch into the next.

Sharding. Training: the split is permuted from (seed, epoch), identically on every rank, and cut
to num_shards x len(loader) x batch_size files, so every rank yields the same number of full
batches (a rank with one batch more would leave the others blocked in an allreduce) and each
epoch drops a different handful of files. Validation: DALI's shards cover every file exactly
once; the padding of the last batch is cut off, so ranks may differ by one batch.
"""

from __future__ import annotations

import ctypes
import math
import os
import shutil
import tempfile
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from resnetctl.data.imagefolder import DataError, DatasetLayout, Split
from resnetctl.data.pipelines import Device, Mode, build_pipeline
from resnetctl.spec.data import DataSpec

_SEED_MOD = 2**31


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


def _derive_seed(*numbers: int) -> int:
    """A DALI seed (< 2**31) mixed from the given integers."""
    entropy = [n % 2**63 for n in numbers]
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0] % _SEED_MOD)


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
        self._lines: list[bytes] | None = None
        self._list_file: _ListFile | None = None

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

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch = self._epoch
        self._epoch += 1
        return self._run_epoch(epoch)

    def _run_epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        pipe = self._build(epoch)
        try:
            for index in range(self._batches):
                images, labels = pipe.run()[:2]
                valid = min(self.batch_size, self._shard_size - index * self.batch_size)
                yield self._to_torch(images, labels, valid)
        finally:
            del pipe

    def _file_list(self, epoch: int) -> Path:
        """Training: this epoch's permuted and truncated file list (same on every rank)."""
        if not self._shuffled:
            return self.layout.split_list(self.split)
        if self._lines is None:
            self._lines = self.layout.split_list(self.split).read_bytes().splitlines(keepends=True)
            self._list_file = _ListFile()
        assert self._list_file is not None
        keep = self.num_shards * self._shard_size
        order = np.random.default_rng([self.seed % 2**63, epoch]).permutation(len(self._lines))
        return self._list_file.write(b"".join(self._lines[i] for i in order[:keep]))

    def _build(self, epoch: int):  # -> nvidia.dali.Pipeline
        # The reader's seed must agree across ranks (its shuffle decides the shards); the
        # augmentation seed must not, or every rank would draw the same crops and flips.
        return build_pipeline(
            self.data_spec.pipeline,
            self.mode,
            file_root=str(self.layout.split_dir(self.split)),
            file_list=str(self._file_list(epoch)),
            batch_size=self.batch_size,
            shard_id=self.shard_id,
            num_shards=self.num_shards,
            shuffle=self._shuffled,
            reader_seed=_derive_seed(self.seed, epoch),
            seed=_derive_seed(self.seed, epoch, self.shard_id, 1),
            threads=self.data_spec.threads,
            prefetch=self.data_spec.prefetch,
            device=self.device,
            device_id=self.device_id,
            channels_last=self.channels_last and self.mode != "ten_crop",
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


class _ListFile:
    """A file list DALI's reader opens by path, which leaves nothing behind: an anonymous
    in-memory file (Linux's memfd, named `/proc/self/fd/N` in this process, where the reader
    runs), gone with the loader or the process however it ends; elsewhere a temp folder,
    removed when the loader is collected."""

    def __init__(self) -> None:
        self._fd: int | None = None
        if hasattr(os, "memfd_create"):
            self._fd = os.memfd_create("resnetctl-epoch-list")
            weakref.finalize(self, os.close, self._fd)
            self.path = Path(f"/proc/self/fd/{self._fd}")
        else:
            folder = Path(tempfile.mkdtemp(prefix="resnetctl-loader-"))
            weakref.finalize(self, shutil.rmtree, folder, True)
            self.path = folder / "epoch.txt"

    def write(self, data: bytes) -> Path:
        """Replace the contents with `data`; returns the path to give the reader."""
        if self._fd is None:
            self.path.write_bytes(data)
        else:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, data, 0)
        return self.path


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
