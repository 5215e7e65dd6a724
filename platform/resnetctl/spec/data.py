"""`data`: where images come from and how they are augmented."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, PlainValidator, WithJsonSchema, model_validator

from resnetctl.spec.base import StrictModel

PositiveInt = Annotated[int, Field(ge=1)]
Triple = tuple[float, float, float]

# ImageNet statistics on the 0-255 scale, the form DALI's crop_mirror_normalize expects.
IMAGENET_MEAN: Triple = (123.675, 116.28, 103.53)
IMAGENET_STD: Triple = (58.395, 57.12, 57.375)
# CIFAR-10 training-set statistics on the 0-255 scale.
CIFAR_MEAN: Triple = (125.307, 122.961, 113.8575)
CIFAR_STD: Triple = (62.9932, 62.0887, 66.7048)


def _data_root(value: object) -> Path | str:
    # A URI stays a string: as a Path, `s3://bucket/x` would collapse to `s3:/bucket/x`.
    if isinstance(value, str) and "://" in value and not value.startswith("file://"):
        return value
    if isinstance(value, str) and value.startswith("file://"):
        value = value[len("file://") :]
    if isinstance(value, (str, Path)) and str(value):
        return Path(value)
    raise ValueError("expected a folder path or an object-store URI such as s3://bucket/prefix")


#: A local folder (a Path) or an object-store URI (`s3://bucket/prefix`, kept as a string).
DataRoot = Annotated[
    Path | str,
    PlainValidator(_data_root),
    WithJsonSchema({"type": "string", "minLength": 1}),
]


class ImageFolderSource(StrictModel):
    """Images in ImageNet's layout: `ROOT/train/<class>/*.JPEG` and `ROOT/val/<class>/*`."""

    kind: Literal["imagefolder"] = Field("imagefolder", description="Selects this variant.")
    root: DataRoot = Field(
        description="Folder holding the train and val sub-folders: a local path, or an "
        "object-store URI (`s3://bucket/prefix`) that every worker reads directly, with the "
        "endpoint and keys from the standard AWS variables (`AWS_ENDPOINT_URL`, ...)."
    )
    train_dir: str = Field("train", min_length=1, description="Training sub-folder of root.")
    val_dir: str = Field("val", min_length=1, description="Validation sub-folder of root.")


class DigitsSource(StrictModel):
    """scikit-learn's handwritten digits (1,797 real 8x8 scans, 10 classes), bundled with the
    package and written once as PNG files in ImageNet's layout."""

    kind: Literal["digits"] = Field("digits", description="Selects this variant.")
    image_size: int = Field(
        32, ge=8, le=256, description="Side of the written images; the 8x8 scans are upsampled."
    )
    val_fraction: float = Field(
        0.2,
        gt=0.0,
        lt=1.0,
        description="Share of each class held out for validation (fixed split).",
    )
    cache_dir: Path | None = Field(
        None,
        description="Where the image files are written; default: the user cache directory "
        "(`$XDG_CACHE_HOME/resnetctl` or `~/.cache/resnetctl`).",
    )


class SyntheticSource(StrictModel):
    """Random images of chosen size and classes, written as JPEG files (tests and benchmarks)."""

    kind: Literal["synthetic"] = Field("synthetic", description="Selects this variant.")
    num_classes: int = Field(10, ge=2, le=10_000, description="Number of classes.")
    train_per_class: int = Field(32, ge=1, description="Training images per class.")
    val_per_class: int = Field(8, ge=1, description="Validation images per class.")
    image_size: tuple[PositiveInt, PositiveInt] = Field(
        (64, 64), description="Height and width of the generated images in pixels."
    )
    seed: int = Field(0, ge=0, description="Seed of the generator: same seed, same files.")
    cache_dir: Path | None = Field(
        None, description="Where the files are written; default: the user cache directory."
    )


class ShardsSource(StrictModel):
    """Images packed into WebDataset tar shards by `resnetctl data pack`: `ROOT/manifest.json`
    names the classes, the shards and their counts, so starting a run reads that one file and
    lists nothing."""

    kind: Literal["shards"] = Field("shards", description="Selects this variant.")
    root: DataRoot = Field(
        description="Folder or bucket holding `manifest.json` and the shards, as `resnetctl "
        "data pack` wrote them: a local path, or an object-store URI (`s3://bucket/prefix`) "
        "with the endpoint and keys from the standard AWS variables."
    )
    shuffle_buffer: int = Field(
        1024,
        ge=1,
        le=1_000_000,
        description="Training samples each worker holds and draws from at random (DALI's "
        "`initial_fill`): shards are read in a new order every epoch, each one front to back, "
        "through this buffer. Costs this many encoded images of memory per worker.",
    )
    stage: bool = Field(
        True,
        description="From a bucket: copy the shards a worker reads into the node's cache folder "
        "(`$RESNETCTL_CACHE/shards/`; each shard is one large download, kept for later runs) "
        "before its first epoch, and read them there. false: DALI reads every image from the "
        "bucket with a request of its own (no local disk needed, far slower). Ignored for a "
        "local folder, which is read in place.",
    )


DataSource = Annotated[
    ImageFolderSource | DigitsSource | SyntheticSource | ShardsSource, Field(discriminator="kind")
]


class ColorAugment(StrictModel):
    """Colour augmentation strengths; 0 turns a component off."""

    brightness: float = Field(
        0.4, ge=0.0, le=1.0, description="Brightness jitter, factor in [1-b, 1+b]."
    )
    contrast: float = Field(
        0.4, ge=0.0, le=1.0, description="Contrast jitter, factor in [1-c, 1+c]."
    )
    saturation: float = Field(
        0.4, ge=0.0, le=1.0, description="Saturation jitter, factor in [1-s, 1+s]."
    )
    pca_lighting: float = Field(
        0.1,
        ge=0.0,
        le=1.0,
        description="Std of AlexNet's PCA lighting noise along ImageNet's RGB eigenvectors "
        "(the paper's 'standard colour augmentation'); 0 disables it.",
    )

    @property
    def enabled(self) -> bool:
        """Whether any colour component is active."""
        return any((self.brightness, self.contrast, self.saturation, self.pca_lighting))


class PolicyAugment(StrictModel):
    """Fields shared by the training pipelines: a learned or random augmentation policy from
    DALI's `nvidia.dali.auto_aug` on the uint8 crop, and random erasing after normalisation."""

    auto_augment: Literal["rand_augment", "trivial_augment", "auto_augment"] | None = Field(
        None,
        description="Policy applied to each training crop before colour and normalisation: "
        "`rand_augment` (RandAugment, `rand_augment_n` ops of magnitude `rand_augment_m`), "
        "`trivial_augment` (TrivialAugment Wide), `auto_augment` (AutoAugment's ImageNet "
        "policy). Translations scale with the crop. null: none (the paper).",
    )
    rand_augment_n: int = Field(2, ge=1, le=10, description="RandAugment: ops per image.")
    rand_augment_m: int = Field(
        9, ge=0, le=30, description="RandAugment: magnitude, of 31 bins (timm's rand-m9-n2)."
    )
    random_erasing: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="Probability of erasing one random rectangle of each training image (area "
        "2-33 %, aspect 0.3-3.3, Zhong et al.; torchvision's RandomErasing) to 0 after "
        "normalisation, i.e. to the mean colour. 0: off.",
    )


class ImageNetPipeline(PolicyAugment):
    """The paper's ImageNet input (section 3.4): scale augmentation, crop, flip, colour."""

    kind: Literal["imagenet"] = Field("imagenet", description="Selects this variant.")
    train_crop: Literal["scale", "random_resized_crop"] = Field(
        "scale",
        description="`scale`: shorter side resized to a random size in scale_range, then a "
        "random crop (the paper). `random_resized_crop`: Inception-style area/aspect crop "
        "(modern recipes).",
    )
    scale_range: tuple[PositiveInt, PositiveInt] = Field(
        (256, 480), description="Range of the random shorter side for `scale` crops, in pixels."
    )
    rrc_area: tuple[float, float] = Field(
        (0.08, 1.0), description="Area range of random_resized_crop, as a fraction of the image."
    )
    rrc_ratio: tuple[float, float] = Field(
        (3 / 4, 4 / 3), description="Aspect-ratio range of random_resized_crop."
    )
    crop: int = Field(224, ge=8, description="Side of the square training crop.")
    flip: bool = Field(True, description="Random horizontal flip with probability 0.5.")
    color: ColorAugment = Field(default_factory=ColorAugment, description="Colour augmentation.")
    mean: Triple = Field(IMAGENET_MEAN, description="Per-channel mean on the 0-255 scale.")
    std: Triple = Field(IMAGENET_STD, description="Per-channel std on the 0-255 scale.")
    val_resize: int = Field(256, ge=8, description="Validation: shorter side resized to this.")
    val_crop: int = Field(224, ge=8, description="Validation: centre crop side.")
    ten_crop: bool = Field(
        False, description="Evaluate with the paper's 10-crop testing (corners, centre, flips)."
    )

    @model_validator(mode="after")
    def _check_sizes(self) -> ImageNetPipeline:
        lo, hi = self.scale_range
        if lo > hi:
            raise ValueError(
                f"scale_range {list(self.scale_range)}: lower bound exceeds upper bound"
            )
        if self.train_crop == "scale" and self.crop > lo:
            raise ValueError(
                f"crop {self.crop} is larger than the smallest scale {lo}: the crop would not fit"
            )
        if self.val_crop > self.val_resize:
            raise ValueError(f"val_crop {self.val_crop} exceeds val_resize {self.val_resize}")
        for name, (a, b) in (("rrc_area", self.rrc_area), ("rrc_ratio", self.rrc_ratio)):
            if not 0 < a <= b:
                raise ValueError(f"{name} {[a, b]} must satisfy 0 < low <= high")
        if self.rrc_area[1] > 1:
            raise ValueError("rrc_area upper bound must be at most 1")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std {list(self.std)} must be positive")
        return self


class CifarPipeline(PolicyAugment):
    """The paper's CIFAR input (section 4.2): pad, random crop, flip; plain image at test."""

    kind: Literal["cifar"] = Field("cifar", description="Selects this variant.")
    pad: int = Field(4, ge=0, le=64, description="Zero padding on each side before the crop.")
    crop: int = Field(32, ge=8, description="Side of the square training crop.")
    flip: bool = Field(True, description="Random horizontal flip with probability 0.5.")
    mean: Triple = Field(CIFAR_MEAN, description="Per-channel mean on the 0-255 scale.")
    std: Triple = Field(CIFAR_STD, description="Per-channel std on the 0-255 scale.")

    @model_validator(mode="after")
    def _check_std(self) -> CifarPipeline:
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std {list(self.std)} must be positive")
        return self


Pipeline = Annotated[ImageNetPipeline | CifarPipeline, Field(discriminator="kind")]


class DataSpec(StrictModel):
    """Where the images come from and how the loader augments them."""

    source: DataSource = Field(
        description="The data set: imagefolder, digits, synthetic or shards."
    )
    pipeline: Pipeline | None = Field(
        None,
        description="Input pipeline; default: the model family's (imagenet or cifar) "
        "with the paper's settings.",
    )
    threads: int = Field(2, ge=1, le=64, description="DALI CPU threads per worker.")
    device: Literal["auto", "cpu", "gpu"] = Field(
        "auto",
        description="Where DALI decodes and augments: `auto` uses the GPU (nvJPEG) when the worker "
        "has one, else CPU operators.",
    )
    prefetch: int = Field(2, ge=1, le=16, description="Batches DALI prepares ahead.")
