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
        seen.append(tuple(images.shape[-2:]))
        return model(images)

    loaded.model = spy  # type: ignore[assignment]
    module.evaluate(loaded, ["multi_scale"], batch_size=8)
    sizes = multi_scale_sizes(loaded.spec.pipeline)  # type: ignore[union-attr]
    # Each scale twice (the image and its mirror), whole images of that shorter side.
    assert sorted(seen) == sorted((s, s) for s in sizes for _ in range(2))
