"""Loading job specs: every kind of bad input is named by file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from resnetctl.spec import JobSpec, SpecError, dump_spec, load_spec
from resnetctl.spec.loader import load_spec_text

GOOD = """\
name: tiny
model:
  name: cifar_resnet20
data:
  source:
    kind: synthetic
    num_classes: 4
    image_size: [16, 16]
  pipeline:
    kind: cifar
    crop: 16
train:
  epochs: 2
  global_batch_size: 8
resources:
  workers: 2
"""


def write(tmp_path: Path, text: str, name: str = "job.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def issues(exc: pytest.ExceptionInfo[SpecError]) -> list[str]:
    return [str(i) for i in exc.value.issues]


def test_good_spec_resolves_family_defaults(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, GOOD))
    assert spec.model.family == "cifar" and spec.model.depth == 20
    assert spec.model.shortcut == "A"  # the CIFAR family's default, written back
    assert spec.train.global_batch(2) == 8 and spec.train.per_worker_batch(2) == 4


def test_family_and_depth_resolve_to_registry_name(tmp_path: Path) -> None:
    text = GOOD.replace(
        "  name: cifar_resnet20", "  family: imagenet\n  depth: 34\n  variant: plain"
    )
    text = text.replace(
        "kind: cifar\n    crop: 16",
        "kind: imagenet\n    crop: 16\n"
        "    scale_range: [16, 24]\n    val_resize: 16\n    val_crop: 16",
    )
    spec = load_spec(write(tmp_path, text))
    assert spec.model.name == "plain34" and spec.model.shortcut is None


def test_imagenet_pipeline_is_default_for_imagenet_models(tmp_path: Path) -> None:
    text = GOOD.replace("cifar_resnet20", "resnet18").replace(
        "  pipeline:\n    kind: cifar\n    crop: 16\n", ""
    )
    spec = load_spec(write(tmp_path, text))
    assert spec.pipeline.kind == "imagenet" and spec.pipeline.scale_range == (256, 480)


def test_dump_round_trips(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, GOOD))
    again = load_spec(write(tmp_path, dump_spec(spec), "again.yaml"))
    assert again.model_dump() == spec.model_dump()
    assert yaml.safe_load(dump_spec(spec))["model"]["shortcut"] == "A"


def test_missing_file() -> None:
    with pytest.raises(SpecError) as exc:
        load_spec("does/not/exist.yaml")
    assert issues(exc) == ["does/not/exist.yaml: no such file"]


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("  epochs: 2", "  epochs: [2"))
    with pytest.raises(SpecError) as exc:
        load_spec(path)
    (message,) = issues(exc)
    assert message.startswith(f"{path}:") and "YAML syntax error" in message


def test_unknown_key_suggests(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("  epochs: 2", "  epochs: 2\n  lerning_rate: 0.1"))
    with pytest.raises(SpecError) as exc:
        load_spec(path)
    (message,) = issues(exc)
    assert message.startswith(f"{path}:14: train.lerning_rate: unknown key")
    # base_lr is the closest valid field... unless difflib finds nothing close: then it lists.
    assert "did you mean" in message or "expected one of" in message


def test_unknown_key_did_you_mean(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("  epochs: 2", "  epochs: 2\n  label_smothing: 0.1"))
    with pytest.raises(SpecError) as exc:
        load_spec(path)
    assert issues(exc) == [
        f"{path}:14: train.label_smothing: unknown key 'label_smothing'; "
        "did you mean 'label_smoothing'?"
    ]


def test_unknown_key_inside_tagged_union(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("    num_classes: 4", "    num_clases: 4"))
    with pytest.raises(SpecError) as exc:
        load_spec(path)
    assert any(
        m.startswith(f"{path}:7: data.source.num_clases: unknown key")
        and "did you mean 'num_classes'" in m
        for m in issues(exc)
    )


def test_wrong_type(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("epochs: 2", "epochs: two"))
    with pytest.raises(SpecError) as exc:
        load_spec(path)
    (message,) = issues(exc)
    assert message.startswith(f"{path}:13: train.epochs:") and "'two'" in message


def test_out_of_range(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("workers: 2", "workers: 0"))
    with pytest.raises(SpecError) as exc:
        load_spec(path)
    (message,) = issues(exc)
    assert (
        message.startswith(f"{path}:16: resources.workers:")
        and "greater than or equal to 1" in message
    )


def test_depth_the_family_does_not_have(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("cifar_resnet20", "cifar_resnet21"))
    with pytest.raises(SpecError) as exc:
        load_spec(path)
    (message,) = issues(exc)
    assert message.startswith(f"{path}:2: model:")
    assert "20" in message and "56" in message  # names valid depths


def test_batch_not_divisible_by_workers(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("global_batch_size: 8", "global_batch_size: 9"))
    with pytest.raises(SpecError) as exc:
        load_spec(path)
    (message,) = issues(exc)
    assert message.startswith(f"{path}:14: train.global_batch_size:")
    assert "not divisible by resources.workers 2" in message


def test_milestones_outside_run(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        GOOD.replace(
            "  epochs: 2", "  epochs: 2\n  schedule:\n    kind: step\n    milestones: [1, 5]"
        ),
    )
    with pytest.raises(SpecError) as exc:
        load_spec(path)
    (message,) = issues(exc)
    assert "train" in message and "[5] lie outside the run of 2 epochs" in message


def test_warmup_not_shorter_than_run(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        GOOD.replace("  epochs: 2", "  epochs: 2\n  warmup:\n    length: 2\n    unit: epoch"),
    )
    with pytest.raises(SpecError) as exc:
        load_spec(path)
    assert "is not shorter than the run" in issues(exc)[0]


def test_overrides_validated_and_named(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    spec = load_spec(path, ["train.epochs=5", "train.schedule={kind: step, milestones: [3]}"])
    assert spec.train.epochs == 5 and spec.train.schedule.kind == "step"
    with pytest.raises(SpecError) as exc:
        load_spec(path, ["train.epochs=-1"])
    (message,) = issues(exc)
    assert message.startswith("--set train.epochs=-1: train.epochs:")
    with pytest.raises(SpecError) as exc:
        load_spec(path, ["train.epochz=1"])
    assert "did you mean 'epochs'" in issues(exc)[0]
    with pytest.raises(SpecError) as exc:
        load_spec(path, ["nonsense"])
    assert issues(exc)[0].startswith("--set nonsense: expected dotted.key=value")


def test_environment_variable_missing_names_variable_and_line(tmp_path: Path) -> None:
    text = GOOD.replace(
        "    kind: synthetic\n    num_classes: 4\n    image_size: [16, 16]",
        "    kind: imagefolder\n    root: ${MY_DATA}",
    )
    path = write(tmp_path, text)
    with pytest.raises(SpecError) as exc:
        load_spec(path, env={})
    (message,) = issues(exc)
    assert message.startswith(f"{path}:7: data.source.root: ${{MY_DATA}} is not set")
    spec = load_spec(path, env={"MY_DATA": str(tmp_path)})
    assert spec.data.source.root == tmp_path
    spec = load_spec(path, ["data.source.root=/elsewhere"], env={})
    assert str(spec.data.source.root) == "/elsewhere"


def test_fp16_on_cpu_refused() -> None:
    with pytest.raises(SpecError) as exc:
        load_spec_text(GOOD, overrides=["train.precision=fp16"])
    assert "fp16 needs GPUs" in issues(exc)[0]


def test_every_field_has_a_description() -> None:
    missing = []

    def walk(model: type, prefix: str) -> None:
        from resnetctl.spec.schema import _models_in

        for name, info in model.model_fields.items():
            if not info.description:
                missing.append(prefix + name)
            for child in _models_in(info.annotation):
                walk(child, f"{prefix}{name}.")

    walk(JobSpec, "")
    assert missing == []
