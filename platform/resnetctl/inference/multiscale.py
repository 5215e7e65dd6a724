"""Table 4's multi-scale test, batched: whole images at several shorter sides, grouped by shape.

A whole image resized to a shorter side keeps its aspect ratio, so one DALI batch holds images of
many shapes, and a network forward needs one shape per batch. Forwarding each batch's shapes
apart (the first version of this protocol) turns a batch of 32 ImageNet images into a dozen
small forwards. `ShapeBuckets` instead keeps every resized view in a bucket of its shape across
DALI batches (bucketing by aspect ratio: the images of one aspect ratio and size share a bucket
at every scale) and forwards a bucket when it holds a full batch, so nearly every forward is a
full batch whatever the mix of shapes. A memory budget bounds the views waiting in buckets: past
it, the fullest bucket is forwarded early. BatchNorm runs in inference mode, so an image's
scores do not depend on the batch it shares: the results equal one-image-at-a-time forwards up
to float rounding (tests/inference/test_multiscale.py).

Mirror images are flipped in torch, inside the forward of their original's bucket: one DALI
resize per scale instead of two outputs per scale, and a flip is exact (normalisation is per
channel, so it commutes with the flip).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from resnetctl.spec.data import ImageNetPipeline

#: Bytes of resized views that may wait in buckets (per worker) before the fullest is forwarded.
PENDING_BYTES = 512 * 2**20


@dataclass
class _Bucket:
    keys: list[int] = field(default_factory=list)
    views: list[torch.Tensor] = field(default_factory=list)
    nbytes: int = 0


@dataclass
class _Image:
    label: int
    remaining: int
    scores: torch.Tensor | None = None


class ShapeBuckets:
    """Views of images (C x H x W tensors, any H and W) grouped by shape and forwarded in
    batches of `batch_size`; an image is finished once all its `views_per_image` views are.

    `scores` maps an N x C x H x W batch to N rows of class scores (summed over the mirror
    images if any); an image's result is the mean of its views' rows.
    `pending_bytes=0` forwards what each `flush_if_over` call finds, shape by shape: the
    one-batch-at-a-time grouping, kept as the benchmark's reference.
    """

    def __init__(
        self,
        scores: Callable[[torch.Tensor], torch.Tensor],
        views_per_image: int,
        batch_size: int,
        pending_bytes: int = PENDING_BYTES,
        divisor: int | None = None,
    ) -> None:
        if views_per_image < 1 or batch_size < 1:
            raise ValueError("views_per_image and batch_size must be at least 1")
        self.scores = scores
        self.views_per_image = views_per_image
        self.divisor = divisor or views_per_image
        self.batch_size = batch_size
        self.pending_bytes = pending_bytes
        self.forwards = 0
        self._buckets: dict[tuple[int, ...], _Bucket] = {}
        self._images: dict[int, _Image] = {}
        self._pending = 0
        self._finished: list[tuple[int, torch.Tensor, int]] = []

    def add_image(self, key: int, label: int) -> None:
        """Announce image `key` (unique) with its label, before its views are added."""
        self._images[key] = _Image(label, self.views_per_image)

    def add_view(self, key: int, view: torch.Tensor) -> None:
        """A view of image `key`; forwards its bucket once it holds a full batch."""
        bucket = self._buckets.setdefault(tuple(view.shape), _Bucket())
        bucket.keys.append(key)
        bucket.views.append(view)
        size = view.numel() * view.element_size()
        bucket.nbytes += size
        self._pending += size
        if len(bucket.keys) >= self.batch_size:
            self._forward(tuple(view.shape))

    def flush_if_over(self) -> None:
        """Forward the fullest buckets until the waiting views fit the memory budget."""
        while self._buckets and self._pending > self.pending_bytes:
            fullest = max(self._buckets, key=lambda shape: len(self._buckets[shape].keys))
            self._forward(fullest)

    def flush(self) -> None:
        """Forward every bucket (the end of the data)."""
        for shape in list(self._buckets):
            self._forward(shape)

    def finished(self) -> list[tuple[int, torch.Tensor, int]]:
        """(key, mean scores over the views, label) of the images finished since the last call."""
        done, self._finished = self._finished, []
        return done

    def _forward(self, shape: tuple[int, ...]) -> None:
        bucket = self._buckets.pop(shape)
        self._pending -= bucket.nbytes
        for start in range(0, len(bucket.keys), self.batch_size):
            keys = bucket.keys[start : start + self.batch_size]
            rows = self.scores(torch.stack(bucket.views[start : start + self.batch_size]))
            self.forwards += 1
            for key, row in zip(keys, rows, strict=True):
                image = self._images[key]
                image.scores = row if image.scores is None else image.scores + row
                image.remaining -= 1
                if image.remaining == 0:
                    del self._images[key]
                    assert image.scores is not None
                    self._finished.append((key, image.scores / self.divisor, image.label))


def mirrored_scores(
    model: Any, mirrors: bool
) -> Callable[[torch.Tensor], torch.Tensor]:  # N x C x H x W -> N x classes
    """Softmax scores of a batch, plus those of its mirror images when `mirrors` (one forward
    of 2N images)."""

    def scores(images: torch.Tensor) -> torch.Tensor:
        n = images.shape[0]
        batch = torch.cat([images, images.flip(-1)]) if mirrors else images
        probs = model(batch).float().softmax(dim=-1)
        return probs[:n] + probs[n:] if mirrors else probs

    return scores


def _pipeline(cfg: ImageNetPipeline, scales: list[int], device: str, **kwargs: Any) -> Any:
    from nvidia.dali import fn, pipeline_def, types

    decoder = {"cpu": "cpu", "gpu": "mixed"}[device]

    @pipeline_def
    def whole_images(reader: dict[str, Any]) -> tuple[Any, ...]:
        jpegs, labels = fn.readers.file(name="Reader", **reader)
        images = fn.decoders.image(jpegs, device=decoder, output_type=types.RGB)
        views = [
            fn.crop_mirror_normalize(
                fn.resize(images, device=device, resize_shorter=float(scale), antialias=True),
                device=device,
                dtype=types.FLOAT,
                output_layout="CHW",
                mean=list(cfg.mean),
                std=list(cfg.std),
            )
            for scale in scales
        ]
        return (*views, labels)

    return whole_images(**kwargs)


def multi_scale_batches(
    model: Any,
    cfg: ImageNetPipeline,
    layout: Any,
    *,
    batch_size: int,
    scales: list[int],
    mirrors: bool,
    threads: int,
    shard_id: int = 0,
    num_shards: int = 1,
    device: str = "cpu",
    device_id: int | None = None,
    pending_bytes: int = PENDING_BYTES,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(image indices within the shard, averaged scores, data labels) of shard `shard_id` of
    the validation split, each image at every shorter side of `scales` (and mirrored when
    `mirrors`). DALI's shards cover every image exactly once, as the other protocols' loaders."""
    from resnetctl.data.loader import shard_bounds

    start, end = shard_bounds(layout.val_files, shard_id, num_shards)
    total = end - start
    if total == 0:
        return
    batch = min(batch_size, total)
    reader = {
        "file_root": str(layout.val_dir),
        "file_list": str(layout.val_list),
        "shard_id": shard_id,
        "num_shards": num_shards,
        "stick_to_shard": True,
        "random_shuffle": False,
        "pad_last_batch": True,
    }
    pipe = _pipeline(
        cfg,
        scales,
        device,
        reader=reader,
        batch_size=batch,
        num_threads=threads,
        device_id=device_id if device == "gpu" else None,
        seed=0,
    )
    pipe.build()
    target = torch.device("cuda", device_id or 0) if device == "gpu" else torch.device("cpu")
    buckets = ShapeBuckets(
        mirrored_scores(model, mirrors),
        views_per_image=len(scales),
        divisor=len(scales) * (2 if mirrors else 1),
        batch_size=batch_size,
        pending_bytes=pending_bytes,
    )
    try:
        for index in range(math.ceil(total / batch)):
            *views, labels = pipe.run()
            if device == "gpu":
                views = [view.as_cpu() for view in views]
                labels = labels.as_cpu()
            label_array = np.array(labels.as_tensor()).reshape(-1)
            for i in range(min(batch, total - index * batch)):
                key = index * batch + i
                buckets.add_image(key, int(label_array[i]))
                for view in views:
                    # A copy: DALI reuses its output buffers at the next run().
                    buckets.add_view(key, torch.from_numpy(np.array(view.at(i))).to(target))
            buckets.flush_if_over()
            yield from _finished(buckets)
        buckets.flush()
        yield from _finished(buckets)
    finally:
        del pipe


def _finished(
    buckets: ShapeBuckets,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    done = buckets.finished()
    if done:
        keys, scores, labels = zip(*done, strict=True)
        yield torch.tensor(keys), torch.stack(scores), torch.tensor(labels)
