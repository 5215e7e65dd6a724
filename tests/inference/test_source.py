"""MODEL -> network, spec and class names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from resnetctl.inference.source import ModelSourceError, as_module, load_model
from resnetctl.storage import RunRecord
from resnetctl.storage.checkpoints import write_manifest


def test_a_checkpoint_carries_its_spec_and_class_names(colour_run: tuple[Path, Path]) -> None:
    _, checkpoint = colour_run
    meta = json.loads((checkpoint / "meta.json").read_text())
    assert meta["classes"] == ["blue", "red"]
    loaded = load_model(str(checkpoint))
    assert loaded.classes == ("blue", "red")
    assert loaded.spec is not None and loaded.spec.model.name == "cifar_resnet8"
    assert not loaded.model.training
    state = torch.load(checkpoint / "state.pt", weights_only=True)["model"]
    assert torch.equal(loaded.model.state_dict()["fc.weight"], state["fc.weight"])


def test_a_run_name_picks_the_best_checkpoint(
    colour_run: tuple[Path, Path], tmp_path: Path
) -> None:
    import shutil

    _, checkpoint = colour_run
    storage = tmp_path / "runs"
    run = storage / "colours-1"
    for epoch, error in ((1, 10.0), (2, 50.0)):
        target = run / f"epoch_{epoch:04d}"
        shutil.copytree(checkpoint, target)
        meta = json.loads((target / "meta.json").read_text())
        meta.update(epoch=epoch, metrics={**meta["metrics"], "val_top1_error": error})
        (target / "meta.json").write_text(json.dumps(meta))
        write_manifest(target)  # the edited meta.json is the checkpoint's now
    RunRecord("colours-1", "colours", "", "").save(storage)
    loaded = load_model("colours-1", storage=storage)
    assert loaded.checkpoint == (run / "epoch_0001").resolve()
    assert loaded.epoch == 1


def test_a_checkpoint_ranked_by_its_ema_loads_the_ema_weights(
    colour_run: tuple[Path, Path], tmp_path: Path
) -> None:
    """eval, export and predict of a run ranked by `val_*_ema` serve the weights that won the
    ranking, as the logged model does, not the raw ones saved beside them."""
    import shutil

    _, checkpoint = colour_run
    target = tmp_path / "epoch_0003"
    shutil.copytree(checkpoint, target)
    state = torch.load(target / "state.pt", weights_only=True)
    ema = {k: v * 0.5 if v.is_floating_point() else v for k, v in state["model"].items()}
    state["ema"] = {"module": ema, "updates": 7}
    torch.save(state, target / "state.pt")
    meta = json.loads((target / "meta.json").read_text())
    meta["spec"]["train"]["ema"] = {"decay": 0.9}
    meta["spec"]["checkpoint"]["metric"] = "val_top1_error_ema"
    (target / "meta.json").write_text(json.dumps(meta))
    write_manifest(target)

    weights = load_model(str(target)).model.state_dict()
    assert torch.equal(weights["fc.weight"], ema["fc.weight"])
    assert not torch.equal(weights["fc.weight"], state["model"]["fc.weight"])

    meta["spec"]["checkpoint"]["metric"] = "val_top1_error"
    (target / "meta.json").write_text(json.dumps(meta))
    write_manifest(target)
    weights = load_model(str(target)).model.state_dict()
    assert torch.equal(weights["fc.weight"], state["model"]["fc.weight"])


def test_an_incomplete_checkpoint_is_named_with_what_it_lacks(
    colour_run: tuple[Path, Path], tmp_path: Path
) -> None:
    import shutil

    _, checkpoint = colour_run
    target = tmp_path / "epoch_0002"
    shutil.copytree(checkpoint, target)
    (target / "state.pt").write_bytes((target / "state.pt").read_bytes()[:100])  # cut short
    with pytest.raises(ModelSourceError, match="incomplete checkpoint.*state.pt has 100 bytes"):
        load_model(str(target))


def test_unknown_model_names_what_was_looked_for(tmp_path: Path) -> None:
    with pytest.raises(ModelSourceError, match="no-such-run"):
        load_model("no-such-run", storage=tmp_path)


def test_a_pt2_model_is_used_through_its_module() -> None:
    model = torch.nn.Linear(3, 2)
    program = torch.export.export(model, (torch.randn(2, 3),))
    module = as_module(program)
    x = torch.randn(2, 3)
    assert torch.allclose(module(x), model(x))
    assert as_module(model) is model


def test_a_run_in_a_bucket_loads_its_best_complete_checkpoint_and_skips_a_partial_one(
    colour_run: tuple[Path, Path],
    tmp_path: Path,
    bucket: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """What `resnetctl eval RUN` (and export, predict) loads when the runs are kept in a bucket:
    the best complete checkpoint, chosen from the bucket's manifests, never one whose upload
    did not finish (the best-ranked one here), which is named in a warning."""
    import logging
    import shutil

    from resnetctl.storage import StoragePath
    from resnetctl.storage.checkpoints import MANIFEST

    _, checkpoint = colour_run
    root = StoragePath.of(f"s3://{bucket}/runs")
    for epoch, error in ((1, 10.0), (2, 50.0), (3, 5.0)):
        local = tmp_path / f"epoch_{epoch:04d}"
        shutil.copytree(checkpoint, local)
        meta = json.loads((local / "meta.json").read_text())
        meta.update(epoch=epoch, metrics={**meta["metrics"], "val_top1_error": error})
        (local / "meta.json").write_text(json.dumps(meta))
        write_manifest(local)
        for file in local.iterdir():
            if epoch == 3 and file.name == MANIFEST:
                continue  # its worker died before the manifest, which goes last
            (root / "colours-1" / local.name / file.name).write_bytes(file.read_bytes())
    RunRecord("colours-1", "colours", "", "").save(root)
    monkeypatch.setenv("RESNETCTL_STORAGE", str(root))

    with caplog.at_level(logging.WARNING):
        loaded = load_model("colours-1")
    assert str(loaded.checkpoint) == f"{root}/colours-1/epoch_0001"
    assert loaded.epoch == 1 and loaded.classes == ("blue", "red")
    assert f"{root}/colours-1/epoch_0003" in caplog.text and "incomplete" in caplog.text
    state = torch.load(checkpoint / "state.pt", weights_only=True)["model"]
    assert torch.equal(loaded.model.state_dict()["fc.weight"], state["fc.weight"])
    # The run's URI names it as well; the partial checkpoint named itself is refused.
    assert load_model(f"{root}/colours-1").epoch == 1
    with pytest.raises(ModelSourceError, match="epoch_0003: incomplete checkpoint"):
        load_model(f"{root}/colours-1/epoch_0003")
    with pytest.raises(ModelSourceError, match="not a checkpoint or run folder"):
        load_model("colours-2")
