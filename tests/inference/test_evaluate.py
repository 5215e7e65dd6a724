"""The paper's test protocols on a trained network."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from resnetctl.data.imagefolder import DataError
from resnetctl.inference.evaluate import PROTOCOLS, evaluate, label_map, multi_scale_sizes
from resnetctl.inference.source import load_model
from resnetctl.spec.data import CifarPipeline, ImageNetPipeline


def test_center_reproduces_the_runs_validation_and_all_protocols_classify(
    colour_run: tuple[Path, Path],
) -> None:
    _, checkpoint = colour_run
    loaded = load_model(str(checkpoint))
    results, layout = evaluate(loaded, list(PROTOCOLS), batch_size=3)
    by_name = {r.protocol: r for r in results}
    meta = json.loads((checkpoint / "meta.json").read_text())
    # The same images through the same operators as the run's own validation.
    assert by_name["center"].loss == pytest.approx(meta["metrics"]["val_loss"], rel=1e-4)
    assert by_name["center"].top1_error == pytest.approx(meta["metrics"]["val_top1_error"])
    for result in results:
        assert result.images == layout.val_files == 8
        assert result.top1_error == 0.0, result
    # Flip is on in this spec: 10 views, and multi-scale with mirrors.
    assert by_name["ten_crop"].views.startswith("10 crops of 16, resized to 18")
    assert "mirrors" in by_name["multi_scale"].views


def test_a_data_folder_with_other_classes_is_refused() -> None:
    with pytest.raises(DataError, match="cat"):
        label_map(("cat", "red"), ("blue", "red"))
    assert label_map(("red",), ("blue", "red")).tolist() == [1]


def test_multi_scale_sizes_follow_the_paper_scaled_to_the_crop() -> None:
    assert multi_scale_sizes(ImageNetPipeline()) == [224, 256, 384, 480, 640]
    assert multi_scale_sizes(CifarPipeline(crop=32)) == [32, 37, 55, 69, 91]


def test_multi_scale_averages_scales(colour_run: tuple[Path, Path]) -> None:
    from resnetctl.inference import evaluate as module

    loaded = load_model(str(colour_run[1]))
    seen: list[tuple[int, ...]] = []
    model = loaded.model

    def spy(images: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(images.shape))
        return model(images)

    loaded.model = spy  # type: ignore[assignment]
    module.evaluate(loaded, ["multi_scale"], batch_size=8)
    sizes = multi_scale_sizes(loaded.spec.pipeline)  # type: ignore[union-attr]
    # The 8 images of one shape at each scale in one forward with their 8 mirror images.
    assert sorted(seen) == sorted((16, 3, s, s) for s in sizes)


def test_imagenet_protocols_use_the_specs_geometry_and_mirrors() -> None:
    from resnetctl.inference.source import LoadedModel
    from resnetctl.models import create_model
    from resnetctl.spec import JobSpec

    spec = JobSpec.model_validate(
        {
            "name": "tiny-imagenet",
            "model": {"name": "resnet18"},
            "data": {
                "source": {
                    "kind": "synthetic",
                    "num_classes": 3,
                    "train_per_class": 2,
                    "val_per_class": 2,
                    "image_size": [40, 48],
                },
                "pipeline": {
                    "kind": "imagenet",
                    "crop": 32,
                    "scale_range": [32, 40],
                    "val_resize": 36,
                    "val_crop": 32,
                },
                "threads": 1,
            },
            "train": {"epochs": 1, "batch_size_per_worker": 2},
        }
    )
    torch.manual_seed(0)
    model = create_model("resnet18", num_classes=3).eval()
    seen: list[tuple[int, ...]] = []

    def spy(images: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(images.shape))
        return model(images)

    loaded = LoadedModel(model=spy, spec=spec, classes=None, origin="test")  # type: ignore[arg-type]
    results, _ = evaluate(loaded, ["ten_crop", "multi_scale"], batch_size=6)
    ten_crop, multi_scale = results
    assert ten_crop.images == multi_scale.images == 6
    assert ten_crop.views == "10 crops of 32, resized to 36"
    assert seen[0] == (60, 3, 32, 32)  # 6 images x 10 views
    # Whole 40x48 images at shorter sides 32..91 (and mirrors): width follows the aspect ratio.
    # One forward per scale: the 6 images, all of one shape, and their mirror images.
    shapes = {shape[2:] for shape in seen[1:]}
    assert (32, 38) in shapes and (91, 109) in shapes and len(seen[1:]) == 5
    assert {shape[0] for shape in seen[1:]} == {12}
