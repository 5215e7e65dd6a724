"""One name per metric: the public (MLflow, `--json`) name, `val_top1_error_pct`, is accepted
wherever a metric is named (checkpoint.metric, the plateau schedule, --set, tune --metric); the
old internal name still works, with a deprecation warning naming where it was written."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from resnetctl.spec import SpecError, dump_spec, load_spec
from resnetctl.spec.metrics import MetricNameDeprecation, internal_name, public_name
from resnetctl.spec.schema import json_schema_text
from tests.conftest import JOBS, ROOT

QUICKSTART = JOBS / "quickstart.yaml"


def test_public_and_internal_names_map_both_ways() -> None:
    assert public_name("val_top1_error") == "val_top1_error_pct"
    assert public_name("val_top1_error_ema") == "val_top1_error_ema_pct"
    assert public_name("val_loss") == "val_loss" and public_name("lr") == "lr"
    assert internal_name("val_top1_error_pct") == "val_top1_error"
    assert internal_name("val_top1_error_10crop_pct") == "val_top1_error_10crop"
    assert internal_name("val_top1_acc_pct") == "val_top1_acc_pct"  # MLflow-only: no loop name


def test_the_public_name_ranks_checkpoints_without_a_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", MetricNameDeprecation)
        spec = load_spec(QUICKSTART, ["checkpoint.metric=val_top5_error_pct"])
    assert spec.checkpoint.metric == "val_top5_error"  # what the loop reports and ranks by
    assert spec.checkpoint.mode == "min"
    assert "metric: val_top5_error_pct" in dump_spec(spec)  # written back by its public name
    assert load_spec(QUICKSTART, ["checkpoint.metric=val_loss"]).checkpoint.metric == "val_loss"


def test_the_old_name_works_with_a_warning_naming_file_and_line(tmp_path: Path) -> None:
    job = tmp_path / "job.yaml"
    job.write_text(QUICKSTART.read_text().replace("val_top1_error_pct", "val_top1_error"))
    lines = job.read_text().splitlines()
    line = next(n for n, text in enumerate(lines, 1) if text.strip().startswith("metric:"))
    with pytest.warns(MetricNameDeprecation) as caught:
        spec = load_spec(job)
    assert spec.checkpoint.metric == "val_top1_error" and spec.checkpoint.mode == "min"
    (warning,) = caught
    assert str(warning.message).startswith(
        f"{job}:{line}: checkpoint.metric: 'val_top1_error' is the old name of 'val_top1_error_pct'"
    )
    with pytest.warns(MetricNameDeprecation, match="--set train.schedule"):
        load_spec(QUICKSTART, ["train.schedule={kind: plateau, metric: val_top1_error}"])


def test_an_unknown_metric_lists_the_public_names() -> None:
    with pytest.raises(SpecError) as caught:
        load_spec(QUICKSTART, ["checkpoint.metric=val_top1_eror_pct"])
    message = str(caught.value)
    assert "unknown metric 'val_top1_eror_pct'" in message and "val_top1_error_pct" in message
    assert "'val_top1_error'," not in message


def test_the_schema_offers_the_public_names_only() -> None:
    schema = json.loads(json_schema_text())
    field = schema["$defs"]["CheckpointSpec"]["properties"]["metric"]
    assert field["default"] == "val_top1_error_pct"
    assert "val_top1_error_pct" in field["enum"] and "val_top1_error" not in field["enum"]


@pytest.mark.parametrize(
    "path",
    [*sorted(JOBS.glob("*.yaml")), *sorted((ROOT / "platform/resnetctl").glob("*/*.yaml"))],
    ids=lambda p: p.name,
)
def test_the_shipped_specs_use_the_public_names(path: Path, monkeypatch) -> None:
    monkeypatch.setenv("RESNETCTL_IMAGENET", "/data/imagenet")
    monkeypatch.setenv("RESNETCTL_CIFAR10", "/data/cifar10")
    text = path.read_text()
    if "name:" not in text or "model" not in text:
        pytest.skip("not a job spec")
    with warnings.catch_warnings():
        warnings.simplefilter("error", MetricNameDeprecation)
        load_spec(path, warnings=[])


def test_tune_takes_the_public_name_and_warns_on_the_old(tmp_path: Path) -> None:
    from resnetctl.tune.plan import SweepRequest, _check_objective

    assert _check_objective(SweepRequest(file=None, metric="val_top1_error_pct")) == "min"
    with pytest.warns(MetricNameDeprecation, match="--metric: 'val_top5_error' is the old name"):
        _check_objective(SweepRequest(file=None, metric="val_top5_error"))
    with pytest.raises(SpecError, match="use one of .*val_top1_error_pct"):
        _check_objective(SweepRequest(file=None, metric="nope"))
