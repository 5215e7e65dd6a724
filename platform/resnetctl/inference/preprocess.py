"""The input of a trained network at test time, for any of resnetctl's pipelines.

The test protocols and `predict` run through the ImageNet pipeline's validation operators
(resize the shorter side, centre crop, normalise). A CIFAR-pipeline model gets an equivalent
ImageNet configuration with its own mean, std and crop, so the same operators serve both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from resnetctl.spec.data import CifarPipeline, ImageNetPipeline

#: The paper's test geometry: a 224 crop of the image resized to 256 (section 3.4).
PAPER_CROP = 224
PAPER_RESIZE = 256


def test_crop(cfg: ImageNetPipeline | CifarPipeline) -> int:
    """The side of the network's test input: val_crop (ImageNet) or crop (CIFAR)."""
    return cfg.val_crop if isinstance(cfg, ImageNetPipeline) else cfg.crop


def scaled(size: int, cfg: ImageNetPipeline | CifarPipeline) -> int:
    """A size of the paper's 224-pixel geometry, scaled to this network's test crop:
    256 -> 256 for a 224 crop, 256 -> 37 for CIFAR's 32."""
    return max(1, round(size * test_crop(cfg) / PAPER_CROP))


def as_imagenet(cfg: ImageNetPipeline | CifarPipeline, resize: int) -> ImageNetPipeline:
    """An ImageNet pipeline configuration whose validation input is "shorter side to `resize`,
    centre crop of the test crop", with `cfg`'s normalisation."""
    crop = test_crop(cfg)
    if isinstance(cfg, ImageNetPipeline):
        return cfg.model_copy(update={"val_resize": resize})
    return ImageNetPipeline(
        crop=crop,
        scale_range=(max(crop, resize), max(crop, resize)),
        flip=cfg.flip,
        mean=cfg.mean,
        std=cfg.std,
        val_resize=resize,
        val_crop=crop,
    )


def predict_resize(cfg: ImageNetPipeline | CifarPipeline) -> int:
    """The shorter side `predict` resizes images to: val_resize (ImageNet); the crop itself for
    CIFAR, whose test input is the whole image."""
    return cfg.val_resize if isinstance(cfg, ImageNetPipeline) else cfg.crop


def file_batches(
    files: list[Path], cfg: ImageNetPipeline, batch_size: int, threads: int = 1
) -> Any:  # Iterator[torch.Tensor]
    """N x C x crop x crop batches of the image files, in order, through DALI's CPU
    validation pipeline (`imagenet_val` over a file list)."""
    from resnetctl.data.pipelines import imagenet_val

    if not files:
        return
    batch = min(batch_size, len(files))
    reader = {
        "files": [str(f) for f in files],
        "labels": list(range(len(files))),
        "random_shuffle": False,
        "pad_last_batch": True,
    }
    pipe = imagenet_val(
        reader=reader,
        cfg=cfg,
        device="cpu",
        channels_last=False,
        batch_size=batch,
        num_threads=threads,
        device_id=None,
        seed=0,
    )
    pipe.build()
    done = 0
    try:
        while done < len(files):
            images, _ = pipe.run()
            array = np.stack([np.asarray(images.at(i)) for i in range(len(images))])
            take = min(batch, len(files) - done)
            done += take
            yield torch.from_numpy(array[:take])
    finally:
        del pipe
