"""`model.init`: fine-tuning from a run's checkpoint or a torchvision state-dict file."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import torch

from resnetctl.models import create_model
from resnetctl.spec import JobSpec
from resnetctl.spec.model import ModelInit
from resnetctl.train.checkpoint import save_checkpoint
from resnetctl.train.init import InitError, initialise
from resnetctl.train.loop import run_training
from resnetctl.train.runner import Placement, Runner
from tests.train._helpers import FakeSession, job_spec


def test_torchvision_weights_load_with_a_new_head(tmp_path: Path) -> None:
    torchvision = pytest.importorskip("torchvision")
    file = tmp_path / "resnet18.pth"
    # weights=None: no download; random weights serve as well to check the mapping.
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), file)
    source = torch.load(file, weights_only=True)
    model = initialise(
        create_model("resnet18", num_classes=10),
        ModelInit(source=str(file), kind="torchvision", head="replace"),
    )
    own = model.state_dict()
    assert own["fc.weight"].shape == (10, 512)
    body = [k for k in source if not k.startswith("fc.")]
    assert len(body) == len(own) - 2
    assert all(torch.equal(own[k], source[k]) for k in body)

    # Both refusals come before any tensor is copied: one target model serves both.
    target = create_model("resnet18", num_classes=10)
    with pytest.raises(InitError, match="1000 outputs, this model 10"):
        initialise(target, ModelInit(source=str(file), kind="torchvision", head="keep"))
    torch.save({k: v for k, v in source.items() if k != "conv1.weight"}, file)
    with pytest.raises(InitError, match="does not fit: missing: conv1.weight"):
        initialise(target, ModelInit(source=str(file)))


def test_frozen_stages_keep_their_weights_and_batch_norm_statistics(tmp_path: Path) -> None:
    file = tmp_path / "w.pt"
    torch.save(create_model("cifar_resnet8", num_classes=4).state_dict(), file)
    model = initialise(
        create_model("cifar_resnet8", num_classes=4),
        ModelInit(source=str(file), freeze=["stem", "layer1"]),
    )
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-3)
    model.train()
    for _ in range(2):
        loss = model(torch.randn(8, 3, 16, 16) * 3 + 1).logsumexp(1).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    after = model.state_dict()
    frozen = [k for k in before if k.startswith(("conv1.", "bn1.", "layer1."))]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    assert not torch.equal(before["layer2.0.conv1.weight"], after["layer2.0.conv1.weight"])
    assert not torch.equal(before["layer2.0.bn1.running_mean"], after["layer2.0.bn1.running_mean"])


def digits_spec(source: dict, epochs: int, model: dict | None = None) -> JobSpec:
    return JobSpec.model_validate(
        {
            "name": "digits-small",
            "model": {"name": "cifar_resnet8", **(model or {})},
            "data": {
                "source": source,
                "pipeline": {"kind": "cifar", "crop": 16, "pad": 2, "flip": False},
                "threads": 1,
            },
            "train": {
                "epochs": epochs,
                "batch_size_per_worker": 32,
                "base_lr": 0.1,
                "lr_reference_batch": 32,
                "schedule": {"kind": "constant"},
                "seed": 0,
            },
        }
    )


def test_fine_tuning_a_digits_net_on_two_classes(tmp_path: Path) -> None:
    """A digits net, fine-tuned on 3 vs 8 with a new 2-way head and its stem frozen."""
    base_spec = digits_spec({"kind": "digits", "image_size": 16}, epochs=2)
    base = FakeSession(tmp_path / "base")
    (tmp_path / "base").mkdir()
    run_training(base_spec, Placement(), base)
    checkpoint = base.checkpoints[-1]

    from resnetctl.data import prepare_dataset

    digits = prepare_dataset(base_spec.data)
    subset = tmp_path / "three-eight"
    for split in ("train", "val"):
        for name in ("3", "8"):
            shutil.copytree(digits.split_dir(split) / name, subset / split / name)
    source = {"kind": "imagefolder", "root": str(subset)}
    init = {"source": str(checkpoint), "head": "replace", "freeze": ["stem"]}
    tuned = Runner(digits_spec(source, epochs=1, model={"init": init}))
    base_weights = torch.load(checkpoint / "state.pt", weights_only=True)["model"]
    metrics = tuned.run_epoch(1)

    weights = tuned.model.state_dict()
    assert weights["fc.weight"].shape[0] == 2
    for key in ("conv1.weight", "bn1.weight", "bn1.running_mean", "bn1.running_var"):
        assert torch.equal(weights[key], base_weights[key]), key
    assert not torch.equal(weights["layer3.0.conv1.weight"], base_weights["layer3.0.conv1.weight"])
    # 72 validation scans of 3 and 8 after one epoch of 9 steps: chance is 50 %.
    assert metrics["val_top1_error"] < 15.0, metrics


def _ema_ranked_run(folder: Path) -> dict[str, dict[str, torch.Tensor]]:
    """A run ranked by `val_top1_error_ema`: two checkpoints, each with its own raw and EMA
    weights; epoch 1 is the better by the raw metric, epoch 2 by the EMA metric (the run's).
    Returns each checkpoint's weights by name ("1/model", "2/ema", ...)."""
    spec = job_spec(
        train={"ema": {"decay": 0.9}},
        checkpoint={"metric": "val_top1_error_ema", "every_n_epochs": 1},
    )
    weights: dict[str, dict[str, torch.Tensor]] = {}
    for epoch, raw_error, ema_error in ((1, 10.0, 30.0), (2, 20.0, 5.0)):
        torch.manual_seed(epoch)
        raw, ema = (create_model("cifar_resnet8", num_classes=4).state_dict() for _ in "ab")
        weights[f"{epoch}/model"], weights[f"{epoch}/ema"] = raw, ema
        meta = {
            "epoch": epoch,
            "metrics": {"val_top1_error": raw_error, "val_top1_error_ema": ema_error},
            "model": "cifar_resnet8",
            "spec": spec.model_dump(mode="json"),
        }
        state = {"model": raw, "ema": {"module": ema, "updates": 4 * epoch}}
        save_checkpoint(folder / f"epoch_{epoch:04d}", state, meta)
    return weights


def _same(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())


def test_fine_tuning_from_a_run_ranked_by_an_ema_metric_takes_its_best_ema_weights(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # As eval, export and predict do (`ranked_weights`): the weights that won the ranking.
    weights = _ema_ranked_run(tmp_path / "run")
    with caplog.at_level(logging.INFO, logger="resnetctl.train.init"):
        model = initialise(
            create_model("cifar_resnet8", num_classes=4), ModelInit(source=str(tmp_path / "run"))
        )
    taken = [k for k, w in weights.items() if _same(model, w)]
    assert taken == ["2/ema"], f"fine-tuning started from {taken or 'other weights'}"
    assert "EMA weights" in caplog.text and "epoch_0002" in caplog.text, caplog.text
    # A checkpoint named directly: its own EMA weights, since its run ranks by them.
    model = initialise(
        create_model("cifar_resnet8", num_classes=4),
        ModelInit(source=str(tmp_path / "run" / "epoch_0001")),
    )
    assert _same(model, weights["1/ema"])
