"""The paper's test protocols on a trained network, on one shard of the validation data.

- `center`: the run's own validation input. ImageNet: the shorter side resized to val_resize,
  the centre val_crop crop. CIFAR: the whole image (the paper's CIFAR test). It reproduces the
  run's per-epoch `val_*` metrics.
- `ten_crop`: section 3.4's "standard 10-crop testing": the four corners and the centre of the
  image resized to val_resize, and their mirror images, softmax scores averaged.
- `multi_scale`: Table 4's fully-convolutional test: the whole image, shorter side resized to
  each of {224, 256, 384, 480, 640}, through the network (it ends in global average pooling,
  so any size works), softmax scores averaged over the scales and their mirror images (the
  fully-convolutional test of VGG, which the paper follows, averages the flips too).

Networks whose test crop is not 224 (CIFAR-style inputs) get the same geometry scaled by
crop / 224: a 32-pixel net is tested 10-crop on images resized to 37, and multi-scale at shorter
sides {32, 37, 55, 69, 91}. A network trained without flips (`pipeline.flip: false`, e.g. the
digits) is not tested on mirror images: 10-crop is then the 5 crops, multi-scale the 5 scales.

Every protocol runs on a shard of the validation split (`Shard`; DALI's readers cover every
image exactly once over the shards) and yields `Counts`, which add up over shards: the eval job
(`launch.evaluation`) runs one shard per Ray worker, `evaluate` runs the only shard in this
process. `multi_scale` batches the views of equal shape across images (`inference.multiscale`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from resnetctl.data.imagefolder import DataError, DatasetLayout
from resnetctl.inference.preprocess import PAPER_RESIZE, as_imagenet, scaled, test_crop
from resnetctl.inference.source import LoadedModel
from resnetctl.spec import JobSpec
from resnetctl.spec.data import ImageNetPipeline

PROTOCOLS: tuple[str, ...] = ("center", "ten_crop", "multi_scale")
#: Table 4's shorter sides, for a 224-pixel test crop.
PAPER_SCALES: tuple[int, ...] = (224, 256, 384, 480, 640)
METRIC_PREFIX = "eval_"


@dataclass(frozen=True)
class ProtocolResult:
    """One protocol's numbers on one data set (errors in percent, as the paper's tables)."""

    protocol: str
    top1_error: float
    top5_error: float
    loss: float
    images: int
    views: str

    def metrics(self) -> dict[str, float]:
        """MLflow metric names and values (`eval_top1_error_ten_crop_pct`, ...: errors in
        percent end in `_pct`, as `tracking.names` has it)."""
        from resnetctl.tracking.names import mlflow_name

        return {
            mlflow_name(f"{METRIC_PREFIX}top1_error_{self.protocol}"): self.top1_error,
            mlflow_name(f"{METRIC_PREFIX}top5_error_{self.protocol}"): self.top5_error,
            f"{METRIC_PREFIX}loss_{self.protocol}": self.loss,
        }

    def as_dict(self) -> dict[str, Any]:
        """The JSON form of `resnetctl eval --json`: errors as `top1_error_pct`, ...."""
        from resnetctl.tracking.names import mlflow_name

        return {mlflow_name(key): value for key, value in asdict(self).items()}


def folder_layout(path: Path) -> DatasetLayout:
    """The layout of `--data PATH`: an image folder with `val/` (its validation split) or a
    folder of class folders."""
    from resnetctl.data.imagefolder import layout_for_folder
    from resnetctl.footprint import cache_root

    path = Path(path).expanduser()
    split = "val" if (path / "val").is_dir() else "."
    return layout_for_folder(path, split, split, cache=cache_root())


def label_map(data_classes: tuple[str, ...], model_classes: tuple[str, ...] | None) -> torch.Tensor:
    """Data label -> model output index: the class folders are matched by name."""
    if model_classes is None:
        return torch.arange(len(data_classes))
    index = {name: i for i, name in enumerate(model_classes)}
    unknown = [name for name in data_classes if name not in index]
    if unknown:
        raise DataError(
            f"class folders the model was not trained on: {', '.join(unknown[:10])} (the model "
            f"knows {', '.join(model_classes[:10])}{' ...' if len(model_classes) > 10 else ''})"
        )
    return torch.tensor([index[name] for name in data_classes])


@dataclass(frozen=True)
class Counts:
    """What one shard of a protocol adds up to: images, top-1/top-5 hits and the summed NLL.
    Counts of shards add up to the whole set's (the job's all-reduce is this `+`)."""

    images: int = 0
    top1: int = 0
    top5: int = 0
    loss_sum: float = 0.0

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            self.images + other.images,
            self.top1 + other.top1,
            self.top5 + other.top5,
            self.loss_sum + other.loss_sum,
        )

    def metrics(self) -> tuple[float, float, float]:
        """(top-1 error %, top-5 error %, mean loss); NaN without images."""
        if self.images == 0:
            nan = float("nan")
            return nan, nan, nan
        return (
            100.0 * (1.0 - self.top1 / self.images),
            100.0 * (1.0 - self.top5 / self.images),
            self.loss_sum / self.images,
        )


def count(
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    mapping: torch.Tensor,
    on_images: Callable[[int], None] | None = None,
) -> Counts:
    """Counts of batches of (averaged probabilities, data labels); `on_images(n)` after each
    batch of n images."""
    from resnetctl.train.metrics import topk_correct

    images = top1 = top5 = 0
    loss_sum = 0.0
    for probs, labels in batches:
        # The scores' device: multi-scale's labels come from the CPU whatever the model's is.
        targets = mapping.to(probs.device)[labels.to(probs.device).view(-1).long()]
        log_probs = probs.float().clamp_min(1e-12).log()
        hits = topk_correct(log_probs, targets).tolist()
        loss_sum += float(nn.functional.nll_loss(log_probs, targets, reduction="sum"))
        images += int(targets.shape[0])
        top1 += int(hits[0])
        top5 += int(hits[1])
        if on_images is not None:
            on_images(int(targets.shape[0]))
    return Counts(images, top1, top5, loss_sum)


@dataclass(frozen=True)
class Shard:
    """Which part of the validation split a worker evaluates, and where: shard `index` of
    `count` (DALI's reader shards cover every image exactly once), DALI and the model on
    `device` ("cpu", or "gpu" with the local GPU `device_id`)."""

    index: int = 0
    count: int = 1
    device: str = "cpu"
    device_id: int | None = None


def protocol_batches(
    protocol: str,
    model: Any,
    spec: JobSpec,
    layout: DatasetLayout,
    batch_size: int,
    shard: Shard = Shard(),
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(averaged probabilities, data labels) batches of `protocol` on one shard."""
    check_protocols([protocol])
    return _BATCHES[protocol](model, spec, layout, batch_size, shard)


def _center(model: Any, spec: JobSpec, layout: DatasetLayout, batch: int, shard: Shard):
    from resnetctl.data import build_loader

    loader = build_loader(
        spec.data,
        layout,
        "val",
        batch_size=batch,
        shard_id=shard.index,
        num_shards=shard.count,
        device=shard.device,  # type: ignore[arg-type]
        device_id=shard.device_id,
    )
    for images, labels in loader:
        yield model(images).float().softmax(dim=-1), labels


def _ten_crop(model: Any, spec: JobSpec, layout: DatasetLayout, batch: int, shard: Shard):
    from resnetctl.data import build_ten_crop_loader, ten_crop_scores

    cfg = as_imagenet(spec.pipeline, ten_crop_resize(spec.pipeline))
    data = spec.data.model_copy(update={"pipeline": cfg})
    loader = build_ten_crop_loader(
        data,
        layout,
        batch_size=batch,
        shard_id=shard.index,
        num_shards=shard.count,
        device=shard.device,  # type: ignore[arg-type]
        device_id=shard.device_id,
    )
    mirrors = spec.pipeline.flip
    for images, labels in loader:
        # The pipeline's views are the 5 crops, then their mirrors.
        yield ten_crop_scores(model, images if mirrors else images[:, :5]), labels


def _multi_scale(model: Any, spec: JobSpec, layout: DatasetLayout, batch: int, shard: Shard):
    from resnetctl.inference.multiscale import multi_scale_batches

    sizes = multi_scale_sizes(spec.pipeline)
    for _, scores, labels in multi_scale_batches(
        model,
        as_imagenet(spec.pipeline, sizes[0]),
        layout,
        batch_size=batch,
        scales=sizes,
        mirrors=spec.pipeline.flip,
        threads=spec.data.threads,
        shard_id=shard.index,
        num_shards=shard.count,
        device=shard.device,
        device_id=shard.device_id,
    ):
        yield scores, labels


_BATCHES: dict[str, Callable[..., Iterator[tuple[torch.Tensor, torch.Tensor]]]] = {
    "center": _center,
    "ten_crop": _ten_crop,
    "multi_scale": _multi_scale,
}


def ten_crop_resize(cfg: Any) -> int:
    """The shorter side 10-crop testing resizes to: val_resize (ImageNet), else the paper's 256
    scaled to the crop."""
    resize = cfg.val_resize if isinstance(cfg, ImageNetPipeline) else None
    return resize or scaled(PAPER_RESIZE, cfg)


def multi_scale_sizes(cfg: Any) -> list[int]:
    """Table 4's shorter sides scaled to the network's test crop (see the module docstring)."""
    return list(dict.fromkeys(scaled(s, cfg) for s in PAPER_SCALES))


def views(protocol: str, cfg: Any) -> str:
    """What one image becomes under `protocol`, as the results table says it."""
    mirrors = cfg.flip
    if protocol == "center":
        return "1 (centre crop)" if isinstance(cfg, ImageNetPipeline) else "1 (image)"
    if protocol == "ten_crop":
        crop = test_crop(cfg)
        return f"{10 if mirrors else 5} crops of {crop}, resized to {ten_crop_resize(cfg)}"
    flips = " and mirrors" if mirrors else ""
    return f"shorter side {'/'.join(map(str, multi_scale_sizes(cfg)))}{flips}"


def result(protocol: str, counts: Counts, cfg: Any) -> ProtocolResult:
    """The table row of `protocol` from the counts of every shard, added up."""
    top1, top5, loss = counts.metrics()
    return ProtocolResult(protocol, top1, top5, loss, counts.images, views(protocol, cfg))


def check_protocols(protocols: list[str]) -> None:
    """Raise ValueError naming the first unknown protocol."""
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown:
        raise ValueError(f"unknown protocol {unknown[0]!r}; use {', '.join(PROTOCOLS)}")


def eval_layout(spec: JobSpec, data_path: Path | None) -> DatasetLayout:
    """The data a protocol runs on: `--data PATH`, else the run's own validation split."""
    from resnetctl.data import prepare_dataset

    return folder_layout(data_path) if data_path is not None else prepare_dataset(spec.data)


def evaluate_shard(
    model: Any,
    spec: JobSpec,
    layout: DatasetLayout,
    mapping: torch.Tensor,
    protocol: str,
    *,
    batch_size: int,
    shard: Shard = Shard(),
    on_images: Callable[[int], None] | None = None,
) -> Counts:
    """The counts of `protocol` on one shard of the validation split (what a worker of the
    eval job computes)."""
    with torch.no_grad():
        batches = protocol_batches(protocol, model, spec, layout, batch_size, shard)
        return count(batches, mapping, on_images)


def eval_inputs(
    loaded: LoadedModel, protocols: list[str], data_path: Path | None = None
) -> tuple[JobSpec, DatasetLayout, torch.Tensor]:
    """The spec, the data and the label mapping an evaluation of `loaded` runs on; raises
    ValueError (no spec, unknown protocol) or DataError (the data) before anything runs."""
    spec = loaded.spec
    if spec is None:
        raise ValueError(f"{loaded.origin}: no spec found, so its test input is unknown")
    check_protocols(protocols)
    layout = eval_layout(spec, data_path)
    return spec, layout, label_map(tuple(layout.classes), loaded.classes)


def evaluate(
    loaded: LoadedModel,
    protocols: list[str],
    *,
    data_path: Path | None = None,
    batch_size: int = 32,
) -> tuple[list[ProtocolResult], DatasetLayout]:
    """Each protocol's top-1/top-5 error of `loaded` on `data_path` (default: the run's own
    validation data), in this process: one shard of one (the eval job's workers each run
    `evaluate_shard` on a shard of their own)."""
    spec, layout, mapping = eval_inputs(loaded, protocols, data_path)
    results = []
    for protocol in protocols:
        counts = evaluate_shard(
            loaded.model, spec, layout, mapping, protocol, batch_size=batch_size
        )
        results.append(result(protocol, counts, spec.pipeline))
    return results, layout


def log_results(loaded: LoadedModel, results: list[ProtocolResult]) -> bool:
    """Log the results to the model's MLflow run as `eval_*` metrics; False when it has none."""
    if not (loaded.run_id and loaded.tracking_uri):
        return False
    import time

    from mlflow import MlflowClient
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    step = loaded.epoch or 0
    metrics = [
        Metric(key, value, now, step)
        for result in results
        for key, value in result.metrics().items()
        if math.isfinite(value)
    ]
    MlflowClient(loaded.tracking_uri).log_batch(loaded.run_id, metrics=metrics)
    return True
