"""`train.lr_reference_batch` defaults to the batch of the paper's recipe for the pipeline."""

from __future__ import annotations

from typing import Any

import pytest

from resnetctl.spec import JobSpec


def _spec(model: str, **train: Any) -> JobSpec:
    return JobSpec.model_validate(
        {
            "name": "lr",
            "model": {"name": model},
            "data": {"source": {"kind": "synthetic"}},
            "train": {"epochs": 1, "global_batch_size": 128, "base_lr": 0.1, **train},
            "resources": {"workers": 2},
        }
    )


def test_a_cifar_spec_without_a_reference_batch_trains_at_the_papers_rate() -> None:
    spec = _spec("cifar_resnet20")
    assert spec.train.lr_reference_batch == 128
    assert spec.train.scaled_lr(2) == pytest.approx(0.1)  # section 4.2: 0.1 at batch 128


def test_an_imagenet_spec_keeps_256() -> None:
    spec = _spec("resnet18")
    assert spec.train.lr_reference_batch == 256
    assert spec.train.scaled_lr(2) == pytest.approx(0.05)


def test_an_explicit_reference_batch_wins_and_survives_a_round_trip() -> None:
    spec = _spec("cifar_resnet20", lr_reference_batch=64)
    again = JobSpec.model_validate(spec.model_dump(mode="json"))
    assert again.train.lr_reference_batch == 64
    assert again.train.scaled_lr(2) == pytest.approx(0.2)


def test_validation_leaves_the_sections_it_was_given_untouched() -> None:
    from resnetctl.spec.data import DataSpec
    from resnetctl.spec.runtime import CheckpointSpec
    from resnetctl.spec.train import TrainSpec

    data = DataSpec.model_validate({"source": {"kind": "synthetic"}})
    train = TrainSpec.model_validate({"epochs": 1, "global_batch_size": 128})
    checkpoint = CheckpointSpec(metric="images_per_second")
    spec = JobSpec(
        name="lr", model={"name": "cifar_resnet20"}, data=data, train=train, checkpoint=checkpoint
    )
    # The defaults each section takes from another are the spec's, not written into the
    # objects the caller still holds (one `data` may serve several specs).
    assert (spec.data.pipeline.kind, spec.train.lr_reference_batch) == ("cifar", 128)
    assert (data.pipeline, train.lr_reference_batch) == (None, None)
    assert spec.checkpoint.mode == checkpoint.mode == "max"
