"""`data.pipeline.auto_augment` and `random_erasing` in the CPU training pipelines."""

from __future__ import annotations

import numpy as np
import pytest

from resnetctl.data import prepare_dataset
from resnetctl.spec.data import CifarPipeline, ImageNetPipeline
from tests.data._helpers import IDENTITY, NO_COLOR, cifar_spec, save
from tests.data.test_pipelines import _run

SIZE = 24
POLICIES = ["rand_augment", "trivial_augment", "auto_augment"]


@pytest.fixture(scope="module")
def bright_layout(tmp_path_factory: pytest.TempPathFactory):
    """Eight 24x24 images with no zero pixel, so an erased (zeroed) pixel is unmistakable."""
    root = tmp_path_factory.mktemp("bright")
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for i in range(8):
            save(root / split / f"c{i % 2}" / f"{i}.png", rng.integers(40, 250, (SIZE, SIZE, 3)))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RESNETCTL_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        layout = prepare_dataset(cifar_spec(root, crop=SIZE))
    return layout


def cifar(**fields: object) -> CifarPipeline:
    # No padding, no flip, identity normalisation: without a policy the output is the image.
    return CifarPipeline(pad=0, crop=SIZE, flip=False, **IDENTITY, **fields)


@pytest.mark.parametrize("policy", POLICIES)
def test_cifar_policy_changes_images_and_stays_in_range(bright_layout, policy: str) -> None:
    (plain, labels) = _run(cifar(), bright_layout, "train", 8)
    (augmented, same_labels) = _run(cifar(auto_augment=policy), bright_layout, "train", 8)
    assert (labels == same_labels).all() and augmented.shape == plain.shape
    changed = [not np.array_equal(a, p) for a, p in zip(augmented, plain, strict=True)]
    assert sum(changed) >= 4, changed  # an op can be the identity for a sample, not for most
    assert augmented.min() >= 0.0 and augmented.max() <= 255.0


def test_imagenet_policy_runs_on_the_uint8_crop(bright_layout) -> None:
    cfg = dict(crop=16, scale_range=(16, 24), val_resize=16, val_crop=16, flip=False)
    base = ImageNetPipeline(color=NO_COLOR, **IDENTITY, **cfg)
    (plain,) = _run(base, bright_layout, "train", 8)[:1]
    policy = base.model_copy(update={"auto_augment": "rand_augment", "rand_augment_m": 15})
    (augmented,) = _run(policy, bright_layout, "train", 8)[:1]
    assert augmented.shape == plain.shape == (8, 3, 16, 16)
    assert not np.array_equal(augmented, plain)
    assert augmented.min() >= 0.0 and augmented.max() <= 255.0


def test_random_erasing_zeroes_one_rectangle_per_image(bright_layout) -> None:
    (erased,) = _run(cifar(random_erasing=1.0), bright_layout, "train", 8)[:1]
    (plain,) = _run(cifar(), bright_layout, "train", 8)[:1]
    for image, original in zip(erased, plain, strict=True):
        zero = (image == 0).all(axis=0)  # H x W
        rows, cols = np.flatnonzero(zero.any(axis=1)), np.flatnonzero(zero.any(axis=0))
        assert rows.size and cols.size
        # The zeros fill exactly the bounding box, and everything else is the image.
        assert zero.sum() == rows.size * cols.size
        assert rows[-1] - rows[0] + 1 == rows.size and cols[-1] - cols[0] + 1 == cols.size
        np.testing.assert_array_equal(image[:, ~zero], original[:, ~zero])
        assert zero.mean() <= 0.33 + 2 * (1 / SIZE)  # torchvision's area range, pixel-rounded


def test_random_erasing_off_erases_nothing(bright_layout) -> None:
    (images,) = _run(cifar(random_erasing=0.0), bright_layout, "train", 8)[:1]
    assert (images > 0).all()
