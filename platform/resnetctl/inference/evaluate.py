"""The paper's test protocols on a trained network (single process, DALI on the CPU).

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
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from resnetctl.data.imagefolder import DataError, DatasetLayout
from resnetctl.inference.preprocess import PAPER_RESIZE, as_imagenet, scaled, test_crop
from resnetctl.inference.source import LoadedModel
from resnetctl.spec.data import DataSpec, ImageNetPipeline
from resnetctl.train.metrics import EpochMeter

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
    from resnetctl.data.imagefolder import cache_root, layout_for_folder

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


def _measure(
    model: nn.Module, batches: Iterator[tuple[torch.Tensor, torch.Tensor]], mapping: torch.Tensor
) -> tuple[dict[str, float], int]:
    """Top-1/top-5 error and NLL of batches of (averaged probabilities, data labels)."""
    meter = EpochMeter("cpu")
    criterion = nn.NLLLoss()
    for probs, labels in batches:
        targets = mapping[labels.view(-1).long()]
        log_probs = probs.float().clamp_min(1e-12).log()
        meter.update(criterion(log_probs, targets), log_probs, targets)
    metrics = meter.compute("val")
    return metrics, int(meter.global_samples)


def _center(model: nn.Module, data: DataSpec, layout: DatasetLayout, batch: int) -> Iterator[Any]:
    from resnetctl.data import build_loader

    loader = build_loader(data, layout, "val", batch_size=batch, device="cpu")
    for images, labels in loader:
        yield model(images).float().softmax(dim=-1), labels


def _ten_crop(
    model: nn.Module, data: DataSpec, layout: DatasetLayout, batch: int, mirrors: bool
) -> Iterator[Any]:
    from resnetctl.data import build_ten_crop_loader, ten_crop_scores

    loader = build_ten_crop_loader(data, layout, batch_size=batch, device="cpu")
    for images, labels in loader:
        # The pipeline's views are the 5 crops, then their mirrors.
        yield ten_crop_scores(model, images if mirrors else images[:, :5]), labels


def _multi_scale_pipeline(cfg: ImageNetPipeline, scales: list[int], mirrors: bool, **kwargs: Any):
    from nvidia.dali import fn, pipeline_def, types

    @pipeline_def
    def full_images(reader: dict[str, Any]) -> tuple[Any, ...]:
        jpegs, labels = fn.readers.file(name="Reader", **reader)
        images = fn.decoders.image(jpegs, device="cpu", output_type=types.RGB)
        views = []
        for scale in scales:
            resized = fn.resize(images, resize_shorter=float(scale), antialias=True)
            for mirror in (0, 1) if mirrors else (0,):
                views.append(
                    fn.crop_mirror_normalize(
                        resized,
                        dtype=types.FLOAT,
                        output_layout="CHW",
                        mean=list(cfg.mean),
                        std=list(cfg.std),
                        mirror=mirror,
                    )
                )
        return (*views, labels)

    return full_images(**kwargs)


def _multi_scale(
    model: nn.Module,
    cfg: ImageNetPipeline,
    layout: DatasetLayout,
    batch: int,
    scales: list[int],
    mirrors: bool,
    threads: int,
) -> Iterator[Any]:
    reader = {
        "file_root": str(layout.val_dir),
        "file_list": str(layout.val_list),
        "random_shuffle": False,
        "pad_last_batch": True,
    }
    total = layout.val_files
    batch = min(batch, total)
    pipe = _multi_scale_pipeline(
        cfg,
        scales,
        mirrors,
        reader=reader,
        batch_size=batch,
        num_threads=threads,
        device_id=None,
        seed=0,
    )
    pipe.build()
    try:
        for index in range(math.ceil(total / batch)):
            *views, labels = pipe.run()
            valid = min(batch, total - index * batch)
            scores = None
            for view in views:
                probs = _view_scores(model, [np.asarray(view.at(i)) for i in range(valid)])
                scores = probs if scores is None else scores + probs
            assert scores is not None
            label_tensor = torch.from_numpy(np.array(labels.as_tensor()).reshape(-1)[:valid])
            yield scores / len(views), label_tensor
    finally:
        del pipe


def _view_scores(model: nn.Module, arrays: list[np.ndarray]) -> torch.Tensor:
    """Softmax scores of images that may differ in size: one forward per distinct shape."""
    out: list[torch.Tensor | None] = [None] * len(arrays)
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i, array in enumerate(arrays):
        by_shape.setdefault(array.shape, []).append(i)
    for indices in by_shape.values():
        images = torch.from_numpy(np.stack([arrays[i] for i in indices]))
        probs = model(images).float().softmax(dim=-1)
        for row, i in enumerate(indices):
            out[i] = probs[row]
    return torch.stack(out)  # type: ignore[arg-type]


def multi_scale_sizes(cfg: Any) -> list[int]:
    """Table 4's shorter sides scaled to the network's test crop (see the module docstring)."""
    return list(dict.fromkeys(scaled(s, cfg) for s in PAPER_SCALES))


def evaluate(
    loaded: LoadedModel,
    protocols: list[str],
    *,
    data_path: Path | None = None,
    batch_size: int = 32,
) -> tuple[list[ProtocolResult], DatasetLayout]:
    """Each protocol's top-1/top-5 error of `loaded` on `data_path` (default: the run's own
    validation data)."""
    from resnetctl.data import prepare_dataset

    spec = loaded.spec
    if spec is None:
        raise ValueError(f"{loaded.origin}: no spec found, so its test input is unknown")
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown:
        raise ValueError(f"unknown protocol {unknown[0]!r}; use {', '.join(PROTOCOLS)}")
    layout = folder_layout(data_path) if data_path is not None else prepare_dataset(spec.data)
    mapping = label_map(tuple(layout.classes), loaded.classes)
    cfg = spec.pipeline
    mirrors = cfg.flip
    model = loaded.model
    crop = test_crop(cfg)
    results = []
    with torch.no_grad():
        for protocol in protocols:
            if protocol == "center":
                batches = _center(model, spec.data, layout, batch_size)
                views = "1 (centre crop)" if isinstance(cfg, ImageNetPipeline) else "1 (image)"
            elif protocol == "ten_crop":
                resize = cfg.val_resize if isinstance(cfg, ImageNetPipeline) else None
                resize = resize or scaled(PAPER_RESIZE, cfg)
                data = spec.data.model_copy(update={"pipeline": as_imagenet(cfg, resize)})
                batches = _ten_crop(model, data, layout, batch_size, mirrors)
                views = f"{10 if mirrors else 5} crops of {crop}, resized to {resize}"
            else:
                sizes = multi_scale_sizes(cfg)
                imagenet = as_imagenet(cfg, sizes[0])
                batches = _multi_scale(
                    model, imagenet, layout, batch_size, sizes, mirrors, spec.data.threads
                )
                flips = " and mirrors" if mirrors else ""
                views = f"shorter side {'/'.join(map(str, sizes))}{flips}"
            metrics, images = _measure(model, batches, mapping)
            results.append(
                ProtocolResult(
                    protocol=protocol,
                    top1_error=metrics["val_top1_error"],
                    top5_error=metrics["val_top5_error"],
                    loss=metrics["val_loss"],
                    images=images,
                    views=views,
                )
            )
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
