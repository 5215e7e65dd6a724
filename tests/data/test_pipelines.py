"""DALI pipeline definitions on the CPU: crops, flips, colour, shapes, no GPU operator."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from resnetctl.data import build_loader, build_ten_crop_loader, prepare_dataset
from resnetctl.data.pipelines import (
    DEFINITIONS,
    PCA_EIGVAL,
    PCA_EIGVEC,
    build_pipeline,
    pipeline_devices,
    scale_crop_region,
)
from resnetctl.data.readers import file_reader
from resnetctl.spec.data import ColorAugment, ImageNetPipeline
from tests.data._helpers import (
    IDENTITY,
    NO_COLOR,
    cifar_spec,
    gradient_pixels,
    imagenet_spec,
    save,
    smooth_pixels,
)

# (height, width): landscape, portrait, square, and one that must be enlarged.
SHAPES = [(48, 72), (80, 40), (36, 36), (30, 45)]


def _run(cfg, layout, mode: str, batch: int, runs: int = 1, **options):
    """Outputs of `runs` iterations of an unshuffled pipeline over the val split, as numpy."""
    pipe = build_pipeline(
        cfg,
        mode,
        reader=file_reader(str(layout.val_dir), str(layout.val_list), batch_size=batch, seed=1),
        batch_size=batch,
        seed=7,
        threads=2,
        prefetch=1,
        device="cpu",
        device_id=None,
        **options,
    )
    assert pipeline_devices(pipe) == {"cpu"}
    results = []
    for _ in range(runs):
        results.append([np.stack([np.array(t) for t in out]) for out in pipe.run()])
    return [np.concatenate(parts) for parts in zip(*results, strict=True)]


@pytest.fixture(scope="module")
def shapes_layout(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("shapes")
    for split in ("train", "val"):
        for i, (h, w) in enumerate(SHAPES):
            save(root / split / "a" / f"{i}.png", smooth_pixels(h, w, seed=i))
    with pytest.MonkeyPatch.context() as mp:  # the autouse cache fixture is function-scoped
        mp.setenv("RESNETCTL_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        return root, prepare_dataset(imagenet_spec(root))


def _locate(crop: np.ndarray, image: np.ndarray, top: int, left: int) -> tuple[int, int, float]:
    """Offset (dy, dx) within +-3 pixels of (top, left) where `crop` best matches `image`."""
    size = crop.shape[0]
    best = (0, 0, np.inf)
    for dy in range(-3, 4):
        for dx in range(-3, 4):
            y, x = top + dy, left + dx
            if 0 <= y <= image.shape[0] - size and 0 <= x <= image.shape[1] - size:
                err = float(np.abs(crop - image[y : y + size, x : x + size]).mean())
                best = min(best, (dy, dx, err), key=lambda b: b[2])
    return best


def test_region_maths_matches_resize_then_crop() -> None:
    rng = np.random.default_rng(0)
    for _ in range(1000):
        h, w = rng.integers(40, 1000, size=2)
        shorter, crop = rng.uniform(224, 480), 224
        pos_y, pos_x = rng.uniform(0, 1, size=2)
        y0, x0, sy, sx = scale_crop_region(h, w, shorter, crop, pos_y, pos_x)
        f = shorter / min(h, w)  # resize, then crop at DALI's relative position:
        top, left = pos_y * (h * f - crop), pos_x * (w * f - crop)
        assert math.isclose(y0 * h * f, top, abs_tol=1e-6)
        assert math.isclose(x0 * w * f, left, abs_tol=1e-6)
        assert math.isclose(sy * h * f, crop) and math.isclose(sx * w * f, crop)
        assert 0 <= y0 and y0 + sy <= 1 + 1e-12 and 0 <= x0 and x0 + sx <= 1 + 1e-12


def test_scale_crop_pixels_equal_pil_resize_then_crop(shapes_layout) -> None:
    root, layout = shapes_layout
    cfg = ImageNetPipeline(crop=24, scale_range=(24, 40), flip=False, color=NO_COLOR, **IDENTITY)
    images, _, shorter, region = _run(cfg, layout, "train", len(SHAPES), runs=3, debug=True)
    for k, image in enumerate(images):
        h, w = SHAPES[k % len(SHAPES)]
        original = Image.open(layout.val_dir / "a" / f"{k % len(SHAPES)}.png")
        f = float(shorter[k]) / min(h, w)
        resized = np.asarray(
            original.resize((round(w * f), round(h * f)), Image.Resampling.BILINEAR), float
        )
        y0, x0, sy, sx = region[k]
        top = round(y0 / (1 - sy) * (resized.shape[0] - 24)) if sy < 1 else 0
        left = round(x0 / (1 - sx) * (resized.shape[1] - 24)) if sx < 1 else 0
        # Decoding an integer pixel region costs up to half a source pixel of position.
        dy, dx, err = _locate(image.transpose(1, 2, 0), resized, top, left)
        assert abs(dy) <= 1 and abs(dx) <= 1 and err < 4.0, (k, shorter[k], dy, dx, err)


def test_shorter_side_is_drawn_from_scale_range(shapes_layout) -> None:
    _, layout = shapes_layout
    cfg = ImageNetPipeline(crop=24, scale_range=(24, 40))
    _, _, shorter, region = _run(cfg, layout, "train", len(SHAPES), runs=16, debug=True)
    assert shorter.min() >= 24 and shorter.max() < 40
    assert shorter.min() < 26 and shorter.max() > 38  # spread over the whole range
    heights = np.array([SHAPES[k % len(SHAPES)][0] for k in range(len(shorter))])
    widths = np.array([SHAPES[k % len(SHAPES)][1] for k in range(len(shorter))])
    # The region is the crop's share of the image rescaled to that shorter side.
    scale = shorter / np.minimum(heights, widths)
    np.testing.assert_allclose(region[:, 2] * heights * scale, 24, rtol=1e-4)
    np.testing.assert_allclose(region[:, 3] * widths * scale, 24, rtol=1e-4)


@pytest.mark.parametrize("train_crop", ["scale", "random_resized_crop"])
def test_imagenet_train_output_shape_dtype_and_range(tmp_path: Path, train_crop: str) -> None:
    root = tmp_path / "d"
    for split in ("train", "val"):
        for i in range(8):
            save(root / split / f"c{i % 2}" / f"{i}.jpg", smooth_pixels(40, 56, seed=i))
    spec = imagenet_spec(root, train_crop=train_crop)
    layout = prepare_dataset(spec)
    images, labels = next(iter(build_loader(spec, layout, "train", batch_size=8)))
    assert images.shape == (8, 3, 24, 24) and images.dtype == torch.float32
    assert labels.shape == (8,) and labels.dtype == torch.int64
    assert set(labels.tolist()) <= {0, 1}
    cfg = spec.pipeline
    col = cfg.color
    # Pixels in [0, 255] after saturation s: [-(s-1) 255, s 255]; then b c z + (1 - c) 128 is
    # affine in each factor, so its extremes sit at the corners of the jitter ranges.
    s_max = 1 + col.saturation
    corners = [
        b * c * z + (1 - c) * 128
        for b in (1 - col.brightness, 1 + col.brightness)
        for c in (1 - col.contrast, 1 + col.contrast)
        for z in (-(s_max - 1) * 255, s_max * 255)
    ]
    # PCA lighting shifts by at most 255 * sum|v| * eigval * |alpha| (|alpha| < 6 sigma).
    light = 255 * 6 * col.pca_lighting * np.abs(np.array(PCA_EIGVEC) * PCA_EIGVAL).sum(1)
    mean, std = np.array(cfg.mean), np.array(cfg.std)
    low, high = (min(corners) - light - mean) / std, (max(corners) + light - mean) / std
    per_channel = images.permute(1, 0, 2, 3).flatten(1)
    assert (per_channel.min(1).values.numpy() >= low - 1e-4).all()
    assert (per_channel.max(1).values.numpy() <= high + 1e-4).all()
    assert images.std() > 0.1  # normalised, not a constant


def test_validation_is_a_centre_crop_of_the_resized_image(shapes_layout) -> None:
    _, layout = shapes_layout
    cfg = ImageNetPipeline(crop=24, scale_range=(24, 40), val_resize=32, val_crop=24, **IDENTITY)
    images, labels = _run(cfg, layout, "val", len(SHAPES))
    assert images.shape == (len(SHAPES), 3, 24, 24) and labels.shape == (len(SHAPES), 1)
    for k, (h, w) in enumerate(SHAPES):
        f = 32 / min(h, w)
        resized = np.asarray(
            Image.open(layout.val_dir / "a" / f"{k}.png").resize(
                (round(w * f), round(h * f)), Image.Resampling.BILINEAR
            ),
            float,
        )
        top, left = round((resized.shape[0] - 24) / 2), round((resized.shape[1] - 24) / 2)
        dy, dx, err = _locate(images[k].transpose(1, 2, 0), resized, top, left)
        assert abs(dy) <= 1 and abs(dx) <= 1 and err < 4.0, (k, dy, dx, err)


def _resized_shorter(files: list[Path], shorter: int) -> list[torch.Tensor]:
    """Each image with its shorter side resized to `shorter` by DALI's own resize (as the
    pipelines do), uncropped, as float CHW tensors: where the crops are is left to the test."""
    from nvidia.dali import fn, pipeline_def

    pixels = [np.asarray(Image.open(file).convert("RGB")) for file in files]

    @pipeline_def(batch_size=len(pixels), num_threads=1, device_id=None)
    def resize():  # noqa: ANN202 - a DALI graph
        images = fn.external_source(source=lambda: pixels, batch=True, layout="HWC")
        return fn.resize(images, resize_shorter=float(shorter), antialias=True)

    pipe = resize()
    pipe.build()
    (out,) = pipe.run()
    resized = [np.array(out.at(i)) for i in range(len(pixels))]
    return [torch.from_numpy(image).permute(2, 0, 1).float() for image in resized]


def test_ten_crop_views_are_the_corners_and_centre_and_their_mirrors(shapes_layout) -> None:
    from torchvision.transforms.v2.functional import five_crop

    _, layout = shapes_layout
    spec = imagenet_spec(layout.root, val_resize=32, val_crop=24, **IDENTITY)
    images, labels = next(iter(build_ten_crop_loader(spec, layout, batch_size=len(SHAPES))))
    assert images.shape == (len(SHAPES), 10, 3, 24, 24) and labels.shape == (len(SHAPES),)
    files = [layout.val_dir / "a" / f"{k}.png" for k in range(len(SHAPES))]
    for k, resized in enumerate(_resized_shorter(files, 32)):
        assert min(resized.shape[1:]) == 32
        # torchvision's five crops of the same resized image, pixel for pixel: top left, top
        # right, bottom left, bottom right, centre (offsets (H - 24) / 2, (W - 24) / 2).
        for view, crop in enumerate(five_crop(resized, [24, 24])):
            torch.testing.assert_close(images[k, view], crop, rtol=0, atol=0, msg=f"{k}/{view}")
            torch.testing.assert_close(images[k, 5 + view], crop.flip(-1), rtol=0, atol=0)
    # Landscape 48x72 resized to 32x48: the left corners differ from the right ones.
    assert not torch.allclose(images[0, 0], images[0, 1])


def test_flips_happen_about_half_the_time(tmp_path: Path) -> None:
    root = tmp_path / "g"
    for split in ("train", "val"):
        for i in range(25):
            save(root / split / "a" / f"{i}.png", gradient_pixels(48, 64))
    spec = imagenet_spec(root)
    layout = prepare_dataset(spec)
    loader = build_loader(spec, layout, "train", batch_size=25, seed=3)
    flipped = total = 0
    for _ in range(8):
        for images, _ in loader:
            left, right = images[..., :4].mean(dim=(1, 2, 3)), images[..., -4:].mean(dim=(1, 2, 3))
            assert ((left - right).abs() > 0.2).all()  # every crop shows the gradient
            flipped += int((left > right).sum())
            total += len(images)
    assert total == 200
    assert 70 <= flipped <= 130  # Binomial(200, 0.5): mean 100, sd 7.1

    no_flip = imagenet_spec(root, flip=False)
    images, _ = next(iter(build_loader(no_flip, layout, "train", batch_size=25)))
    assert (images[..., :4].mean(dim=(1, 2, 3)) < images[..., -4:].mean(dim=(1, 2, 3))).all()


def test_pca_lighting_follows_the_imagenet_eigenvectors(tmp_path: Path) -> None:
    root = tmp_path / "grey"
    for split in ("train", "val"):
        for i in range(50):
            save(root / split / "a" / f"{i}.png", np.full((32, 32, 3), 128))
    sigma = 0.1
    spec = imagenet_spec(
        root,
        flip=False,
        color=ColorAugment(brightness=0, contrast=0, saturation=0, pca_lighting=sigma),
        **IDENTITY,
    )
    layout = prepare_dataset(spec)
    loader = build_loader(spec, layout, "train", batch_size=50, seed=1)
    shifts = torch.cat([images.mean(dim=(2, 3)) - 128 for _ in range(4) for images, _ in loader])
    expected_sd = 255 * sigma * np.sqrt(((np.array(PCA_EIGVEC) * PCA_EIGVAL) ** 2).sum(1))
    np.testing.assert_allclose(shifts.std(0).numpy(), expected_sd, rtol=0.25)
    # The first eigenvector dominates and has all-negative components: channels move together.
    corr = np.corrcoef(shifts.T.numpy())
    assert corr[0, 1] > 0.9 and corr[1, 2] > 0.9


def test_colour_jitter_is_a_shared_gain_plus_grey_offset(tmp_path: Path) -> None:
    root = tmp_path / "flat"
    colour = np.array([200.0, 100.0, 50.0])
    for split in ("train", "val"):
        for i in range(40):
            save(root / split / "a" / f"{i}.png", np.broadcast_to(colour, (16, 16, 3)))
            save(root / split / "b" / f"{i}.png", np.full((16, 16, 3), 90))
    jitter = ColorAugment(brightness=0.4, contrast=0.4, saturation=0.4, pca_lighting=0)
    spec = imagenet_spec(
        root,
        crop=16,
        scale_range=(16, 20),
        flip=False,
        color=jitter,
        mean=(10.0, 20.0, 30.0),
        std=(2.0, 3.0, 4.0),
    )
    layout = prepare_dataset(spec)
    images, labels = next(iter(build_loader(spec, layout, "train", batch_size=80, seed=4)))
    pixels = images.mean(dim=(2, 3)).numpy() * [2.0, 3.0, 4.0] + [10.0, 20.0, 30.0]
    flat, grey = pixels[labels.numpy() == 0], pixels[labels.numpy() == 1]
    # b c (s x + (1 - s) grey(x)) + (1 - c) 128: one gain for all channels, one shared offset.
    centred = colour - colour.mean()
    gain = (flat - flat.mean(1, keepdims=True)) @ centred / (centred @ centred)
    offset = flat - gain[:, None] * colour
    assert np.abs(offset - offset.mean(1, keepdims=True)).max() < 1.0
    assert 0.6**3 - 0.01 <= gain.min() and gain.max() <= 1.4**3 + 0.01 and gain.std() > 0.05
    # Saturation leaves grey alone: grey pixels stay grey (equal channels).
    assert np.abs(grey - grey.mean(1, keepdims=True)).max() < 1.0
    assert grey.std(0).max() > 5  # yet brightness and contrast move them

    # Saturation alone keeps the luma and scales the distance from it.
    sat = spec.model_copy(
        update={
            "pipeline": spec.pipeline.model_copy(
                update={
                    "color": ColorAugment(brightness=0, contrast=0, saturation=0.4, pca_lighting=0)
                }
            )
        }
    )
    images, labels = next(iter(build_loader(sat, layout, "train", batch_size=80, seed=4)))
    pixels = images.mean(dim=(2, 3)).numpy() * [2.0, 3.0, 4.0] + [10.0, 20.0, 30.0]
    flat = pixels[labels.numpy() == 0]
    luma = np.array([0.299, 0.587, 0.114])
    np.testing.assert_allclose(flat @ luma, colour @ luma, atol=1.0)
    chroma = (flat[:, 0] - flat @ luma) / (colour[0] - colour @ luma)
    assert 0.6 - 0.01 <= chroma.min() and chroma.max() <= 1.4 + 0.01 and chroma.std() > 0.05


def test_cifar_padding_offsets_are_uniform_integers(tmp_path: Path) -> None:
    root = tmp_path / "flat"
    for split in ("train", "val"):
        for i in range(50):
            save(root / split / "a" / f"{i}.png", np.full((8, 8, 3), 200))
    spec = cifar_spec(root, pad=4, crop=8)
    layout = prepare_dataset(spec)
    loader = build_loader(spec, layout, "train", batch_size=50, seed=2)
    offsets: list[int] = []
    for _ in range(18):
        for images, _ in loader:
            assert images.shape == (50, 3, 8, 8)
            assert set(torch.unique(images).tolist()) <= {0.0, 200.0}
            rows = (images[:, 0] > 0).any(dim=2)  # N x 8: which rows show the image
            for r in rows:
                shown = r.nonzero().flatten()
                top_pad = int(shown.min())
                offsets.append(4 - top_pad if top_pad else 4 + (7 - int(shown.max())))
    counts = np.bincount(offsets, minlength=9)
    assert len(counts) == 9 and counts.sum() == 900
    # 100 expected per offset (sd 9.4); rounding a continuous position would give the end
    # offsets (0 and 8) only 50.
    assert counts.min() >= 70 and counts.max() <= 135, counts


def test_cifar_validation_is_the_plain_normalised_image(tmp_path: Path) -> None:
    root = tmp_path / "v"
    pixels = smooth_pixels(8, 8, seed=4)
    for split in ("train", "val"):
        save(root / split / "a" / "0.png", pixels)
        save(root / split / "b" / "1.png", pixels)
    spec = cifar_spec(root, pad=4, crop=8, mean=(10.0, 20.0, 30.0), std=(2.0, 4.0, 8.0))
    layout = prepare_dataset(spec)
    images, _ = next(iter(build_loader(spec, layout, "val", batch_size=2)))
    stored = np.asarray(Image.open(root / "val" / "a" / "0.png"), np.float32)
    expected = (stored - [10.0, 20.0, 30.0]) / [2.0, 4.0, 8.0]
    np.testing.assert_allclose(images[0].permute(1, 2, 0).numpy(), expected, atol=1e-4)


@pytest.mark.parametrize(("kind", "mode"), sorted(DEFINITIONS))
def test_every_cpu_pipeline_builds_and_runs_without_a_gpu(shapes_layout, kind, mode) -> None:
    _, layout = shapes_layout
    spec = imagenet_spec(layout.root) if kind == "imagenet" else cifar_spec(layout.root, crop=24)
    batch = 1 if kind == "cifar" and mode == "val" else len(SHAPES)  # CIFAR val: plain sizes
    outputs = _run(spec.pipeline, layout, mode, batch)
    assert outputs[0].dtype == np.float32 and np.isfinite(outputs[0]).all()


def _gpu_train_pipeline(layout):
    """The ImageNet training pipeline on GPU 0 (nvJPEG decode, GPU operators)."""
    return build_pipeline(
        imagenet_spec(layout.root).pipeline,
        "train",
        reader=file_reader(str(layout.val_dir), str(layout.val_list), batch_size=2, shuffle=True),
        batch_size=2,
        seed=0,
        threads=1,
        prefetch=1,
        device="gpu",
        device_id=0,
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the failure without CUDA")
def test_gpu_pipeline_without_cuda_fails_clearly(shapes_layout) -> None:
    _, layout = shapes_layout
    with pytest.raises(RuntimeError, match="(?i)cuda"):
        _gpu_train_pipeline(layout)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_pipeline_uses_nvjpeg_and_gpu_operators(shapes_layout) -> None:
    _, layout = shapes_layout
    pipe = _gpu_train_pipeline(layout)
    assert "gpu" in pipeline_devices(pipe)
    images = pipe.run()[0]
    assert images.shape()[0] == (3, 24, 24)
