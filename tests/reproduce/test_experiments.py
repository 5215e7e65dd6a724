"""The experiment definitions: which nets, which recipe, which overrides; checked by the tune
package's planner (no Ray)."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from resnetctl.cli.reproduce import app
from resnetctl.reproduce import degradation, plan, shortcuts
from resnetctl.reproduce import experiments as exp
from resnetctl.spec import SpecError, load_spec
from tests.conftest import JOBS


def test_degradation_defaults_to_plain_and_resnet_20_and_56_on_digits() -> None:
    experiment = degradation()
    assert experiment.depths == [20, 56] and experiment.variants == ["plain", "residual"]
    assert experiment.base.name == "digits.yaml" and experiment.on_digits
    request = experiment.sweep_request()
    # FIFO: an early-stopping scheduler would cut the deep plain nets whose failure is the point
    assert request.scheduler == "fifo" and request.samples == 1
    assert request.depths == "20,56" and request.variants == "plain,residual"
    assert request.shortcuts is None and request.metric == "val_top1_error_pct"


def test_the_digits_recipe_is_the_papers_cifar_recipe_scaled() -> None:
    spec = load_spec(exp.packaged_spec(exp.DIGITS_SPEC))
    assert spec.train.scaled_lr(1) == pytest.approx(0.05)  # 0.1 at batch 128, batch 64
    assert spec.train.optimizer.momentum == 0.9 and spec.train.optimizer.weight_decay == 1e-4
    assert spec.train.schedule.kind == "step" and spec.train.schedule.milestones == [10, 15]
    assert spec.train.epochs == 20 and spec.model.shortcut == "A"
    assert spec.train.warmup.mode == "constant" and spec.train.warmup.start_factor == 0.1


@pytest.mark.parametrize(
    ("epochs", "milestones"), [(1, []), (2, [1]), (4, [2, 3]), (20, [10, 15]), (30, [15, 23])]
)
def test_epochs_keep_the_schedule_shape(epochs: int, milestones: list[int]) -> None:
    assert exp.step_milestones(epochs) == milestones
    spec = load_spec(exp.packaged_spec(exp.DIGITS_SPEC), degradation(epochs=epochs).overrides)
    assert spec.train.length == (epochs, "epoch")
    if milestones:
        assert spec.train.schedule.milestones == milestones
    else:
        assert spec.train.schedule.kind == "constant"


def test_user_overrides_come_last() -> None:
    experiment = degradation(epochs=4, overrides=["train.epochs=6"])
    assert experiment.overrides[-1] == "train.epochs=6"
    assert load_spec(experiment.base, experiment.overrides).train.epochs == 6


def test_the_cifar_base_is_the_recipe_of_the_jobs_folder(tmp_path: Path) -> None:
    env = {"RESNETCTL_CIFAR10": str(tmp_path)}
    ours = load_spec(exp.packaged_spec(exp.CIFAR_SPEC), env=env)
    jobs = load_spec(JOBS / "cifar-r20.yaml", env=env)
    assert ours.train == jobs.train
    assert ours.data == jobs.data
    assert ours.resources == jobs.resources
    assert (ours.model.name, ours.model.shortcut) == (jobs.model.name, jobs.model.shortcut)
    warm = load_spec(JOBS / "cifar-r110.yaml", env=env).train.warmup
    overrides = dict(o.split("=", 1) for o in exp.CIFAR_WARMUP)
    assert warm.length == int(overrides["train.warmup.length"]) and warm.mode == "constant"


def image_folders(root: Path, per_class: int = 130) -> Path:
    """CIFAR-10's layout in miniature: train/<class>/*.png and val/<class>/*.png."""
    from PIL import Image

    for split, count in (("train", per_class), ("val", 2)):
        for name in ("cat", "dog"):
            folder = root / split / name
            folder.mkdir(parents=True)
            for index in range(count):
                Image.new("RGB", (32, 32), (index, 0, 0)).save(folder / f"{index}.png")
    return root


def test_data_switches_to_the_cifar_recipe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(exp, "_has_cuda", lambda: False)
    data = image_folders(tmp_path / "cifar")
    experiment = degradation(data=data, depths="20,32,44,56")
    assert experiment.base.name == "cifar10.yaml" and not experiment.on_digits
    spec = load_spec(experiment.base, experiment.overrides)
    assert spec.data.source.root == data.resolve()
    assert not spec.resources.use_gpu and spec.train.warmup.length == 0
    # 64k iterations as whole epochs: 260 images, 2 workers of 64 -> 2 steps per epoch
    assert spec.train.length == (32000, "epoch")
    assert spec.train.schedule.milestones == [32000, 48000]
    assert spec.train.schedule.unit == "iteration"
    assert any("64000 iterations run as 32000 epochs" in note for note in experiment.notes)
    short = load_spec(experiment.base, degradation(data=data, epochs=10).overrides)
    assert short.train.length == (10, "epoch") and short.train.schedule.milestones == [5, 8]
    with pytest.raises(SpecError, match="--data"):
        degradation(data=tmp_path / "missing")


def test_depth_110_gets_the_papers_warmup(tmp_path: Path) -> None:
    experiment = degradation(data=image_folders(tmp_path / "cifar", 4), depths="20,110")
    spec = load_spec(experiment.base, experiment.overrides)
    assert spec.train.warmup.length == 400 and spec.train.warmup.unit == "iteration"
    assert any("warmed up" in note for note in experiment.notes)


def test_bad_depths_are_usage_errors() -> None:
    with pytest.raises(SpecError, match="at least two depths"):
        degradation(depths="20")
    with pytest.raises(SpecError, match="not a depth"):
        degradation(depths="20,x")
    with pytest.raises(SpecError, match="--epochs"):
        degradation(epochs=0)


def test_shortcuts_compare_a_b_c_and_plain() -> None:
    experiment = shortcuts(depth=32)
    request = experiment.sweep_request()
    assert request.depths == "32" and request.shortcuts == "A,B,C"
    assert request.variants == "plain,residual" and request.scheduler == "fifo"


def test_planning_checks_every_net_without_starting_ray() -> None:
    record = plan(shortcuts(epochs=2))
    labels = sorted(point.label for point in record.space.models)
    assert labels == ["cifar_plain20", "cifar_resnet20-A", "cifar_resnet20-B", "cifar_resnet20-C"]
    assert record.scheduler == "fifo" and record.space.size(record.samples) == 4
    assert record.max_t == 2
    specs = [record.trial_spec({"model": p.as_config()}) for p in record.space.models]
    assert {s.model.name for s in specs} == {"cifar_plain20", "cifar_resnet20"}
    assert {s.model.shortcut for s in specs} == {None, "A", "B", "C"}


def test_the_command_reports_usage_errors_with_exit_2() -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["degradation", "--depths", "20"])
    assert result.exit_code == 2 and "at least two depths" in result.stderr
    result = runner.invoke(app, ["shortcuts", "--depth", "21"])
    assert result.exit_code == 2 and "6n+2" in result.stderr
    assert isinstance(app, typer.Typer)
    assert runner.invoke(app, ["degradation", "--help"]).exit_code == 0


def test_degradation_can_train_one_panel_only() -> None:
    assert degradation(variants="residual").variants == ["residual"]
    assert degradation(variants="residual,plain").variants == ["plain", "residual"]
    with pytest.raises(SpecError, match="--variants"):
        degradation(variants="wide")


def test_resuming_an_unknown_sweep_is_a_usage_error() -> None:
    result = CliRunner().invoke(app, ["degradation", "--resume", "nope"])
    assert result.exit_code == 2 and "no sweep named 'nope'" in result.stderr
