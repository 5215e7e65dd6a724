"""DALI pipeline definitions for the paper's ImageNet and CIFAR inputs.

A definition takes its reader as an argument (`reader`: a factory from `data/readers.py`) and
defines what is done to the encoded images it yields: the same augmentation whether they come
from an image folder, a bucket or tar shards.

Every pipeline takes one `device` string, "cpu" or "gpu", and derives the device of every image
operator from it (the decoder runs "mixed" on the GPU, i.e. nvJPEG). Random numbers and the region
arithmetic are argument inputs and always run on the CPU. With device="cpu" no operator can be
placed on a GPU, so a CPU pipeline builds and runs on machines without CUDA.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import nvidia.dali.math as dmath
from nvidia.dali import fn, pipeline_def, types
from nvidia.dali.pipeline import Pipeline

from resnetctl.data.augment import (
    PCA_EIGVAL,
    PCA_EIGVEC,
    Device,
    colour_normalise,
    mirror,
    normalise,
    output_layout,
    policy,
    random_erasing,
)
from resnetctl.data.readers import READER_NAME, ReaderFactory
from resnetctl.spec.data import CifarPipeline, ImageNetPipeline

__all__ = [
    "DEFINITIONS",
    "PCA_EIGVAL",
    "PCA_EIGVEC",
    "TEN_CROP_POSITIONS",
    "Reader",
    "Device",
    "Mode",
    "build_pipeline",
    "decode_region",
    "pipeline_devices",
    "scale_crop_region",
]

Mode = Literal["train", "val", "ten_crop"]

_DECODER_DEVICE: dict[str, str] = {"cpu": "cpu", "gpu": "mixed"}

#: (crop_pos_y, crop_pos_x) of the 10-crop views, in torchvision's ten_crop order; each view is
#: followed by the same views mirrored.
TEN_CROP_POSITIONS: tuple[tuple[float, float], ...] = (
    (0.0, 0.0),
    (0.0, 1.0),
    (1.0, 0.0),
    (1.0, 1.0),
    (0.5, 0.5),
)


def scale_crop_region(
    height: Any,
    width: Any,
    shorter: Any,
    crop: int,
    pos_y: Any,
    pos_x: Any,
    minimum: Callable[[Any, Any], Any] = min,
) -> tuple[Any, Any, Any, Any]:
    """Region of the original image that "resize the shorter side to `shorter`, then take the
    crop x crop window at relative position (pos_y, pos_x)" ends up showing.

    Returns (start_y, start_x, size_y, size_x) as fractions of the original height and width.
    Works on Python/NumPy numbers and on DALI data nodes alike (pass `dali.math.min`), so the
    pipeline and its tests share this one formula.

    Why it is the same crop: the resize scales by f = shorter / min(H, W) to (H f) x (W f).
    A window of c pixels at top-left p_y (H f - c) covers, in relative coordinates, rows
    [p_y (1 - c / (H f)), p_y (1 - c / (H f)) + c / (H f)), and likewise for columns. Relative
    coordinates are invariant under the resize, so decoding just that region of the original and
    resizing it to c x c gives the same pixels up to resampling, for the same (shorter, p_y, p_x):
    the distribution of crops is unchanged, while the decoder, the resize and the colour
    operators skip all the pixels the crop would throw away.
    """
    short_side = minimum(height, width)
    size_y = crop * short_side / (height * shorter)
    size_x = crop * short_side / (width * shorter)
    return pos_y * (1.0 - size_y), pos_x * (1.0 - size_x), size_y, size_x


#: A reader factory, or the keyword arguments of `fn.readers.file` (kept for callers that
#: build a file reader's arguments themselves).
Reader = ReaderFactory | dict[str, Any]


def _reader(reader: Reader) -> tuple[Any, Any]:
    if callable(reader):
        return reader()
    return fn.readers.file(name=READER_NAME, **reader)


def _image_shape(jpegs: Any) -> tuple[Any, Any]:
    shape = fn.peek_image_shape(jpegs, dtype=types.FLOAT)
    return shape[0], shape[1]


def decode_region(
    jpegs: Any,
    device: Device,
    shorter: Any,
    crop: int,
    pos_y: Any,
    pos_x: Any,
    *,
    resize: bool = True,
) -> tuple[Any, Any]:
    """Decode only the region `scale_crop_region` selects and resize it to crop x crop
    (`resize=False` leaves it at its decoded size, for benchmarks). Returns (images, region)."""
    height, width = _image_shape(jpegs)
    y0, x0, size_y, size_x = scale_crop_region(
        height, width, shorter, crop, pos_y, pos_x, minimum=dmath.min
    )
    images = fn.decoders.image_slice(
        jpegs,
        device=_DECODER_DEVICE[device],
        output_type=types.RGB,
        rel_start=fn.stack(y0, x0),
        rel_shape=fn.stack(size_y, size_x),
        axis_names="HW",
    )
    if resize:
        images = fn.resize(images, device=device, size=(crop, crop), antialias=True)
    return images, fn.stack(y0, x0, size_y, size_x)


@pipeline_def
def imagenet_train(
    *,
    reader: Reader,
    cfg: ImageNetPipeline,
    device: Device,
    channels_last: bool,
    region_decode: bool = True,
    debug: bool = False,
) -> tuple[Any, ...]:
    """The paper's training input (section 3.4), or Inception's random-resized crop.

    Outputs (images, labels), plus (shorter side, region y0/x0/h/w) when `debug` with `scale`.
    `region_decode=False` is the textbook resize-then-crop (kept as a benchmark reference).
    """
    jpegs, labels = _reader(reader)
    extras: tuple[Any, ...] = ()
    if cfg.train_crop == "scale":
        shorter = fn.random.uniform(range=[float(v) for v in cfg.scale_range])
        pos = fn.random.uniform(range=(0.0, 1.0), shape=2)
        if region_decode:
            images, region = decode_region(jpegs, device, shorter, cfg.crop, pos[0], pos[1])
            extras = (shorter, region) if debug else ()
        else:
            images = fn.decoders.image(jpegs, device=_DECODER_DEVICE[device], output_type=types.RGB)
            images = fn.resize(images, device=device, resize_shorter=shorter, antialias=True)
            images = fn.crop(
                images,
                device=device,
                crop=(cfg.crop, cfg.crop),
                crop_pos_y=pos[0],
                crop_pos_x=pos[1],
            )
    else:
        images = fn.decoders.image_random_crop(
            jpegs,
            device=_DECODER_DEVICE[device],
            output_type=types.RGB,
            random_area=list(cfg.rrc_area),
            random_aspect_ratio=list(cfg.rrc_ratio),
            num_attempts=10,
        )
        images = fn.resize(images, device=device, size=(cfg.crop, cfg.crop), antialias=True)
    images = policy(images, cfg, cfg.crop)
    # Colour runs on the crop only: colour-correcting pixels the crop discards was the
    # dominant cost in the measurements of verified.md.
    images = colour_normalise(images, cfg, device, channels_last)
    images = random_erasing(images, cfg.random_erasing, device)
    return (images, labels, *extras)


@pipeline_def
def imagenet_val(
    *,
    reader: Reader,
    cfg: ImageNetPipeline,
    device: Device,
    channels_last: bool,
) -> tuple[Any, Any]:
    """Shorter side resized to val_resize, centre val_crop crop, normalised.

    The centre crop is decoded as a region of the original (see `scale_crop_region`).
    """
    jpegs, labels = _reader(reader)
    images, _ = decode_region(jpegs, device, float(cfg.val_resize), cfg.val_crop, 0.5, 0.5)
    images = normalise(images, device, output_layout(channels_last), list(cfg.mean), list(cfg.std))
    return images, labels


@pipeline_def
def imagenet_ten_crop(
    *,
    reader: Reader,
    cfg: ImageNetPipeline,
    device: Device,
    channels_last: bool,
) -> tuple[Any, Any]:
    """The paper's 10-crop testing: the four corners and the centre of the image resized to
    val_resize, and their mirror images. Each sample is 10 x C x val_crop x val_crop."""
    del channels_last  # views are stacked on a leading axis; NCHW per view
    jpegs, labels = _reader(reader)
    images = fn.decoders.image(jpegs, device=_DECODER_DEVICE[device], output_type=types.RGB)
    images = fn.resize(images, device=device, resize_shorter=float(cfg.val_resize), antialias=True)
    views = [
        normalise(
            images,
            device,
            "CHW",
            list(cfg.mean),
            list(cfg.std),
            crop=(cfg.val_crop, cfg.val_crop),
            crop_pos_y=pos_y,
            crop_pos_x=pos_x,
            mirror=mirror,
        )
        for mirror in (0, 1)
        for pos_y, pos_x in TEN_CROP_POSITIONS
    ]
    return fn.stack(*views, axis=0, axis_name="V"), labels


@pipeline_def
def cifar_train(
    *,
    reader: Reader,
    cfg: CifarPipeline,
    device: Device,
    channels_last: bool,
) -> tuple[Any, Any]:
    """The paper's CIFAR training input (section 4.2): `pad` zero pixels on each side, a random
    crop x crop crop at an integer offset drawn uniformly, random horizontal flip."""
    jpegs, labels = _reader(reader)
    height, width = _image_shape(jpegs)
    images = fn.decoders.image(jpegs, device=_DECODER_DEVICE[device], output_type=types.RGB)
    u = fn.random.uniform(range=(0.0, 1.0), shape=2)
    starts = []
    for axis, extent in enumerate((height, width)):
        # `slack` + 1 integer offsets fit in the padded image; floor(u * (slack + 1)) draws one of
        # them uniformly (a rounded continuous position would halve the odds of the two ends).
        slack = dmath.max(extent + float(2 * cfg.pad - cfg.crop), 0.0)
        offset = dmath.min(dmath.floor(u[axis] * (slack + 1.0)), slack)
        starts.append(offset - float(cfg.pad))
    images = fn.slice(
        images,
        device=device,
        start=fn.cast(fn.stack(*starts), dtype=types.INT32),
        shape=[cfg.crop, cfg.crop],
        axis_names="HW",
        out_of_bounds_policy="pad",
        fill_values=0,
    )
    images = policy(images, cfg, cfg.crop)
    images = normalise(
        images,
        device,
        output_layout(channels_last),
        list(cfg.mean),
        list(cfg.std),
        mirror=mirror(cfg.flip),
    )
    return random_erasing(images, cfg.random_erasing, device), labels


@pipeline_def
def cifar_val(
    *,
    reader: Reader,
    cfg: CifarPipeline,
    device: Device,
    channels_last: bool,
) -> tuple[Any, Any]:
    """The plain image, normalised (the paper tests on the single original image)."""
    jpegs, labels = _reader(reader)
    images = fn.decoders.image(jpegs, device=_DECODER_DEVICE[device], output_type=types.RGB)
    images = normalise(images, device, output_layout(channels_last), list(cfg.mean), list(cfg.std))
    return images, labels


#: (pipeline kind, mode) -> DALI pipeline definition.
DEFINITIONS: dict[tuple[str, str], Callable[..., Pipeline]] = {
    ("imagenet", "train"): imagenet_train,
    ("imagenet", "val"): imagenet_val,
    ("imagenet", "ten_crop"): imagenet_ten_crop,
    ("cifar", "train"): cifar_train,
    ("cifar", "val"): cifar_val,
}


def build_pipeline(
    cfg: ImageNetPipeline | CifarPipeline,
    mode: Mode,
    *,
    reader: Reader,
    batch_size: int,
    seed: int,
    threads: int,
    prefetch: int,
    device: Device,
    device_id: int | None,
    channels_last: bool = False,
    **options: Any,
) -> Pipeline:
    """Instantiate and build the DALI pipeline for `cfg.kind` and `mode`, reading with `reader`.

    `seed` drives augmentation and should differ per rank. A CPU pipeline gets device_id=None:
    DALI's CPU_ONLY_DEVICE_ID still initialises CUDA and fails without a driver. `options` go
    to the pipeline (e.g. `enable_checkpointing`, `checkpoint`).
    """
    try:
        definition = DEFINITIONS[(cfg.kind, mode)]
    except KeyError:
        raise ValueError(f"no {mode!r} pipeline for {cfg.kind!r} inputs") from None
    if device not in _DECODER_DEVICE:
        raise ValueError(f"device must be 'cpu' or 'gpu', not {device!r}")
    if device == "gpu" and device_id is None:
        raise ValueError("device='gpu' needs device_id (the local GPU index)")
    conditionals = needs_conditionals(cfg, mode)
    pipe = definition(
        reader=reader,
        cfg=cfg,
        device=device,
        channels_last=channels_last,
        batch_size=batch_size,
        num_threads=threads,
        device_id=device_id if device == "gpu" else None,
        seed=seed,
        prefetch_queue_depth=prefetch,
        enable_conditionals=conditionals,
        **options,
    )
    if conditionals:
        remove_generated_sources()
    pipe.build()
    return pipe


def needs_conditionals(cfg: ImageNetPipeline | CifarPipeline, mode: Mode) -> bool:
    """Whether the pipeline chooses operators per sample (`if` on a DataNode): the policy
    augmentations and random erasing of training. Only then is it built with DALI's
    conditionals, whose conversion of the definition writes generated code to files."""
    return mode == "train" and (cfg.auto_augment is not None or cfg.random_erasing > 0)


#: The module names DALI's AutoGraph gives the code it generates, each in a file of its own.
_GENERATED = "__autograph_generated_file"


def remove_generated_sources() -> None:
    """Delete the files of the code DALI's AutoGraph generated in this process, once loaded.

    It writes them to the temp folder and removes them at interpreter exit, which a Ray worker
    never reaches (it is ended, not exited): every run would leave its files behind. The
    modules stay loaded; only their source files go.
    """
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if name.startswith(_GENERATED) and path:
            Path(path).unlink(missing_ok=True)


def pipeline_devices(pipe: Pipeline) -> set[str]:
    """Devices ("cpu" or "gpu") of every operator output in a built pipeline."""
    # DALI has no public list of a pipeline's operators; `_ops` is the graph it built.
    return {out.device for op in pipe._ops for out in op.outputs}
