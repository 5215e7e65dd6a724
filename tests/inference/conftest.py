"""A tiny network trained in-process on two visibly different classes (red and blue images),
shared by the inference tests: the checkpoint a real run writes, without Ray."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from resnetctl.spec import JobSpec
from resnetctl.train.loop import run_training
from resnetctl.train.runner import Placement
from tests.analysis.conftest import mlflow_template  # noqa: F401  (a fixture, shared)
from tests.storage.conftest import bucket, s3_server  # noqa: F401  (fixtures, shared)
from tests.train._helpers import FakeSession

SIZE = 16
COLOURS = {"blue": (20, 40, 220), "red": (220, 30, 20)}


def colour_image(path: Path, rgb: tuple[int, int, int], seed: int, size: int = SIZE) -> Path:
    """A noisy image of one colour, as PNG."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(rgb) + rng.normal(0, 25, (size, size, 3)), 0, 255)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8)).save(path)
    return path


def colour_folder(root: Path, per_class: int = 8) -> Path:
    """`root/{train,val}/{blue,red}/*.png`."""
    for split, count in (("train", per_class), ("val", 4)):
        for c, (name, rgb) in enumerate(COLOURS.items()):
            for i in range(count):
                colour_image(root / split / name / f"{i}.png", rgb, seed=1000 * c + i + len(split))
    return root


def colour_spec(root: Path, **model: object) -> JobSpec:
    return JobSpec.model_validate(
        {
            "name": "colours",
            "model": {"name": "cifar_resnet8", **model},
            "data": {
                "source": {"kind": "imagefolder", "root": str(root)},
                "pipeline": {"kind": "cifar", "crop": SIZE, "pad": 2},
                "threads": 1,
            },
            "train": {
                "epochs": 3,
                "batch_size_per_worker": 8,
                "base_lr": 0.05,
                "lr_reference_batch": 8,
                "schedule": {"kind": "constant"},
            },
        }
    )


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    # Tiny models: one intra-op thread beats two fighting over two busy cores.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="package")
def colour_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """(the image folder, the last checkpoint of a 3-epoch run on it)."""
    base = tmp_path_factory.mktemp("colours")
    root = colour_folder(base / "data")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        session = FakeSession(base / "run")
        (base / "run").mkdir()
        run_training(colour_spec(root), Placement(), session)
    finally:
        torch.set_num_threads(before)
    yield root, session.checkpoints[-1]
