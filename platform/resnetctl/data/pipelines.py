"""DALI pipeline definitions for the paper's ImageNet and CIFAR inputs.

Every pipeline takes one `device` string, "cpu" or "gpu", and derives the device of every image
operator from it (the decoder runs "mixed" on the GPU, i.e. nvJPEG). Random numbers and the region
arithmetic are argument inputs and always run on the CPU. With device="cpu" no operator can be
placed on a GPU, so a CPU pipeline builds and runs on machines without CUDA.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import nvidia.dali.math as dmath
from nvidia.dali import fn, pipeline_def, types
from nvidia.dali.pipeline import Pipeline

from resnetctl.spec.data import CifarPipeline, ImageNetPipeline

Device = Literal["cpu", "gpu"]
Mode = Literal["train", "val", "ten_crop"]

_DECODER_DEVICE: dict[str, str] = {"cpu": "cpu", "gpu": "mixed"}

#: AlexNet's PCA lighting (Krizhevsky et al. 2012) on ImageNet's RGB pixels in [0, 1], as used by
#: fb.resnet.torch, the paper's reference implementation.
PCA_EIGVAL: tuple[float, float, float] = (0.2175, 0.0188, 0.0045)
PCA_EIGVEC: tuple[tuple[float, float, float], ...] = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)

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


def _reader(reader: dict[str, Any]) -> tuple[Any, Any]:
    return fn.readers.file(name="Reader", **reader)


#: Centre of the contrast jitter, mid-grey of 8-bit images (DALI's brightness_contrast default).
CONTRAST_CENTRE = 128.0


def _on(node: Any, device: Device) -> Any:
    """A CPU per-sample value as an operand of `device` arithmetic."""
    return node.gpu() if device == "gpu" else node


def _jitter(strength: float) -> Any:
    return fn.random.uniform(range=(1.0 - strength, 1.0 + strength)) if strength > 0 else 1.0


def _colour_normalise(
    images: Any, cfg: ImageNetPipeline, device: Device, channels_last: bool
) -> Any:
    """Colour augmentation, flip and normalisation: a saturation pass, then one fused normalise.

    The recipe (fb.resnet.torch's ColorJitter in a fixed order, then AlexNet's PCA lighting):
      brightness  x1 = b x                          b ~ U[1 - brightness, 1 + brightness]
      contrast    x2 = c x1 + (1 - c) 128            c ~ U[1 - contrast, 1 + contrast]
      saturation  x3 = s x2 + (1 - s) grey(x2)       s ~ U[1 - saturation, 1 + saturation]
      lighting    x4 = x3 + 255 V diag(eigval) alpha,   alpha ~ N(0, pca_lighting^2 I)
      normalise   y  = (x4 - mean) / std
    with grey(x) = 0.299 R + 0.587 G + 0.114 B (no clipping between steps, as in fb.resnet).
    Saturation is linear and leaves grey constants alone, so x3 = cb z + (1 - c) 128 with
    z = s x + (1 - s) grey(x). Only z needs a pass over the pixels; everything else is a per-channel
    affine map that crop_mirror_normalize applies for free with a per-sample mean and std:
      y = (z - mean') / std',  std' = std / (cb),  mean' = (mean - light - (1 - c) 128) / (cb).
    Measured on 375x500 JPEGs, the whole pipeline costs about 2.5 ms of CPU per image this way
    against 3.9 ms with fn.color_twist (a per-pixel matrix in float).
    """
    color = cfg.color
    if color.saturation > 0:
        s = _jitter(color.saturation)
        grey = fn.color_space_conversion(
            images, device=device, image_type=types.RGB, output_type=types.GRAY
        )
        images = images * _on(s, device) + grey * _on(1.0 - s, device)
    b, c = _jitter(color.brightness), _jitter(color.contrast)
    gain = b * c
    offset = (1.0 - c) * CONTRAST_CENTRE
    light = _lighting(color.pca_lighting)
    mean: Any = list(cfg.mean)
    std: Any = list(cfg.std)
    if light is not None or not isinstance(gain, float):
        light = light or (0.0, 0.0, 0.0)
        mean = fn.stack(*((cfg.mean[i] - light[i] - offset) / gain for i in range(3)))
        std = fn.stack(*(cfg.std[i] / gain for i in range(3)))
    return fn.crop_mirror_normalize(
        images,
        device=device,
        dtype=types.FLOAT,
        output_layout=_layout(channels_last),
        mean=mean,
        std=std,
        mirror=_mirror(cfg.flip),
    )


def _lighting(pca_lighting: float) -> tuple[Any, Any, Any] | None:
    """Per-sample RGB offsets of AlexNet's PCA lighting on the 0-255 scale (None when off)."""
    if pca_lighting <= 0:
        return None
    alpha = fn.random.normal(shape=3, stddev=pca_lighting)
    return tuple(
        sum(255.0 * PCA_EIGVEC[i][j] * PCA_EIGVAL[j] * alpha[j] for j in range(3)) for i in range(3)
    )


def _policy(images: Any, cfg: ImageNetPipeline | CifarPipeline, crop: int) -> Any:
    """`cfg.auto_augment` on uint8 HWC crops (what `nvidia.dali.auto_aug` takes), so it runs
    before colour and normalisation. Its operators follow the device of `images`; the pipeline
    must be built with `enable_conditionals=True` (each op is chosen per sample)."""
    if cfg.auto_augment is None:
        return images
    from nvidia.dali.auto_aug import auto_augment, rand_augment, trivial_augment

    # Translations relative to the crop (the libraries' defaults are absolute, for 224 crops).
    shape = (crop, crop)
    if cfg.auto_augment == "rand_augment":
        return rand_augment.rand_augment(
            images, n=cfg.rand_augment_n, m=cfg.rand_augment_m, shape=shape
        )
    if cfg.auto_augment == "trivial_augment":
        return trivial_augment.trivial_augment_wide(images, shape=shape)
    return auto_augment.auto_augment_image_net(images, shape=shape)


#: torchvision's RandomErasing defaults: area fraction and aspect-ratio range of the rectangle.
ERASE_AREA: tuple[float, float] = (0.02, 0.33)
ERASE_RATIO: tuple[float, float] = (0.3, 3.3)


def _random_erasing(images: Any, probability: float, device: Device) -> Any:
    """Erase one rectangle to 0 (the mean after normalisation) with `probability`, per sample.
    Area and log-aspect are uniform as in torchvision; the rectangle is clipped to the image."""
    if probability <= 0:
        return images
    area = fn.random.uniform(range=ERASE_AREA)
    ratio = dmath.exp(fn.random.uniform(range=tuple(math.log(r) for r in ERASE_RATIO)))
    height = dmath.min(dmath.sqrt(area * ratio), 1.0)
    width = dmath.min(dmath.sqrt(area / ratio), 1.0)
    u = fn.random.uniform(range=(0.0, 1.0), shape=2)
    if fn.random.coin_flip(probability=probability):
        images = fn.erase(
            images,
            device=device,
            anchor=fn.stack(u[0] * (1.0 - height), u[1] * (1.0 - width)),
            shape=fn.stack(height, width),
            normalized_anchor=True,
            normalized_shape=True,
            axis_names="HW",
            fill_value=0.0,
        )
    return images


def _mirror(flip: bool) -> Any:
    return fn.random.coin_flip(probability=0.5) if flip else 0


def _layout(channels_last: bool) -> str:
    return "HWC" if channels_last else "CHW"


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


@pipeline_def(enable_conditionals=True)
def imagenet_train(
    *,
    reader: dict[str, Any],
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
    images = _policy(images, cfg, cfg.crop)
    # Colour runs on the crop only: colour-correcting pixels the crop discards was the
    # dominant cost in the measurements of verified.md.
    images = _colour_normalise(images, cfg, device, channels_last)
    images = _random_erasing(images, cfg.random_erasing, device)
    return (images, labels, *extras)


@pipeline_def
def imagenet_val(
    *,
    reader: dict[str, Any],
    cfg: ImageNetPipeline,
    device: Device,
    channels_last: bool,
) -> tuple[Any, Any]:
    """Shorter side resized to val_resize, centre val_crop crop, normalised.

    The centre crop is decoded as a region of the original (see `scale_crop_region`).
    """
    jpegs, labels = _reader(reader)
    images, _ = decode_region(jpegs, device, float(cfg.val_resize), cfg.val_crop, 0.5, 0.5)
    images = fn.crop_mirror_normalize(
        images,
        device=device,
        dtype=types.FLOAT,
        output_layout=_layout(channels_last),
        mean=list(cfg.mean),
        std=list(cfg.std),
    )
    return images, labels


@pipeline_def
def imagenet_ten_crop(
    *,
    reader: dict[str, Any],
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
        fn.crop_mirror_normalize(
            images,
            device=device,
            dtype=types.FLOAT,
            output_layout="CHW",
            crop=(cfg.val_crop, cfg.val_crop),
            crop_pos_y=pos_y,
            crop_pos_x=pos_x,
            mean=list(cfg.mean),
            std=list(cfg.std),
            mirror=mirror,
        )
        for mirror in (0, 1)
        for pos_y, pos_x in TEN_CROP_POSITIONS
    ]
    return fn.stack(*views, axis=0, axis_name="V"), labels


@pipeline_def(enable_conditionals=True)
def cifar_train(
    *,
    reader: dict[str, Any],
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
    images = _policy(images, cfg, cfg.crop)
    images = fn.crop_mirror_normalize(
        images,
        device=device,
        dtype=types.FLOAT,
        output_layout=_layout(channels_last),
        mean=list(cfg.mean),
        std=list(cfg.std),
        mirror=_mirror(cfg.flip),
    )
    return _random_erasing(images, cfg.random_erasing, device), labels


@pipeline_def
def cifar_val(
    *,
    reader: dict[str, Any],
    cfg: CifarPipeline,
    device: Device,
    channels_last: bool,
) -> tuple[Any, Any]:
    """The plain image, normalised (the paper tests on the single original image)."""
    jpegs, labels = _reader(reader)
    images = fn.decoders.image(jpegs, device=_DECODER_DEVICE[device], output_type=types.RGB)
    images = fn.crop_mirror_normalize(
        images,
        device=device,
        dtype=types.FLOAT,
        output_layout=_layout(channels_last),
        mean=list(cfg.mean),
        std=list(cfg.std),
    )
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
    file_root: str,
    file_list: str,
    batch_size: int,
    shard_id: int,
    num_shards: int,
    shuffle: bool,
    reader_seed: int,
    seed: int,
    threads: int,
    prefetch: int,
    device: Device,
    device_id: int | None,
    channels_last: bool = False,
    **options: Any,
) -> Pipeline:
    """Instantiate and build the DALI pipeline for `cfg.kind` and `mode`.

    `reader_seed` must be equal on all ranks (the reader's shuffle decides which files land in
    which shard); `seed` drives augmentation and should differ per rank. A CPU pipeline gets
    device_id=None: DALI's CPU_ONLY_DEVICE_ID still initialises CUDA and fails without a driver.
    Shuffled (training) readers do not pad; the loader hands them shards of whole batches.
    """
    try:
        definition = DEFINITIONS[(cfg.kind, mode)]
    except KeyError:
        raise ValueError(f"no {mode!r} pipeline for {cfg.kind!r} inputs") from None
    if device not in _DECODER_DEVICE:
        raise ValueError(f"device must be 'cpu' or 'gpu', not {device!r}")
    if device == "gpu" and device_id is None:
        raise ValueError("device='gpu' needs device_id (the local GPU index)")
    reader = {
        "file_root": file_root,
        "file_list": file_list,
        "shard_id": shard_id,
        "num_shards": num_shards,
        "random_shuffle": shuffle,
        "seed": reader_seed,
        "stick_to_shard": True,
        "pad_last_batch": not shuffle,
        # The loader already permutes the whole split every epoch; the reader's buffer only
        # mixes within a shard, and a large one makes every epoch start by reading it full.
        "initial_fill": max(2 * batch_size, 32),
    }
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
        **options,
    )
    pipe.build()
    return pipe


def pipeline_devices(pipe: Pipeline) -> set[str]:
    """Devices ("cpu" or "gpu") of every operator output in a built pipeline."""
    # DALI has no public list of a pipeline's operators; `_ops` is the graph it built.
    return {out.device for op in pipe._ops for out in op.outputs}
