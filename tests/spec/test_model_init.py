"""`model.init`: fine-tuning fields, with `file:line: field` errors like every other field."""

from __future__ import annotations

from pathlib import Path

import pytest

from resnetctl.spec import SpecError, load_spec
from tests.spec.test_loader import GOOD, issues, write


def with_init(init: str, model: str = "  name: cifar_resnet20\n") -> str:
    text = GOOD.replace("model:\n  name: cifar_resnet20\n", f"model:\n{model}  init:\n{init}")
    assert text != GOOD
    return text


def test_init_is_read(tmp_path: Path) -> None:
    text = with_init("    source: runs/base\n    head: replace\n    freeze: [stem, layer1]\n")
    spec = load_spec(write(tmp_path, text))
    assert spec.model.init is not None
    assert spec.model.init.freeze == ["stem", "layer1"]
    assert spec.model.init.kind == "auto" and spec.model.init.head == "replace"


@pytest.mark.parametrize(
    ("init", "model", "line", "message"),
    [
        ("    source: x\n    freeze: [stme]\n", "  name: cifar_resnet20\n", 6, "model.init.freeze"),
        ("    source: x\n    freeze: [layer4]\n", "  name: cifar_resnet20\n", 2, "layer4"),
        ("    source: x\n    hed: keep\n", "  name: cifar_resnet20\n", 6, "model.init.hed"),
        ("    source: x\n    kind: torchvision\n", "  name: cifar_resnet20\n", 2, "torchvision"),
        ("    source: x\n    kind: torchvision\n", "  name: resnet50\n", 2, "stride_in_1x1"),
    ],
)
def test_bad_init_names_file_line_and_field(
    tmp_path: Path, init: str, model: str, line: int, message: str
) -> None:
    text = with_init(init, model)
    if "resnet50" in model:
        text = text.replace("kind: cifar\n    crop: 16", "kind: imagenet\n    crop: 64")
        text = text.replace("image_size: [16, 16]", "image_size: [64, 64]")
        text = text.replace("crop: 64", "crop: 64\n    scale_range: [64, 80]\n    val_crop: 64")
    with pytest.raises(SpecError) as exc:
        load_spec(write(tmp_path, text))
    found = issues(exc)
    assert any(f"job.yaml:{line}:" in issue and message in issue for issue in found), found


def test_a_run_name_or_relative_path_becomes_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ray workers run elsewhere: the spec they receive must name the files absolutely.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RESNETCTL_STORAGE", str(tmp_path / "runs"))
    (tmp_path / "runs" / "base-1").mkdir(parents=True)
    (tmp_path / "w.pth").write_bytes(b"")
    for source, expected in (
        ("base-1", tmp_path / "runs" / "base-1"),
        ("w.pth", tmp_path / "w.pth"),
        ("elsewhere", "elsewhere"),
    ):
        spec = load_spec(write(tmp_path, with_init(f"    source: {source}\n")))
        assert spec.model.init is not None and spec.model.init.source == str(expected)


@pytest.mark.parametrize("source", ["models:/quickstart@best", "runs:/0123abcd/model"])
def test_an_mlflow_model_is_refused_as_fine_tuning_source(tmp_path: Path, source: str) -> None:
    # Fine-tuning reads weights only (checkpoints and state dicts with weights_only): an MLflow
    # model, which may be a pickle, is refused when the spec is read, not on the workers.
    from typer.testing import CliRunner

    from resnetctl.cli.app import app

    file = write(tmp_path, with_init(f"    source: {source}\n"))
    with pytest.raises(SpecError) as exc:
        load_spec(file)
    found = issues(exc)
    assert any(
        "job.yaml:" in issue and "model.init.source" in issue and "pickle" in issue
        for issue in found
    ), found
    result = CliRunner().invoke(app, ["validate", str(file)], env={"COLUMNS": "200"})
    assert result.exit_code == 2 and "pickle" in result.stderr, result.stderr
