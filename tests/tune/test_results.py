"""What the sweep's parent run shows of its trials."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from mlflow import MlflowClient

from resnetctl.tune.results import _curves


def test_the_comparison_reads_trial_curves_under_new_and_old_names(tmp_path: Path) -> None:
    """Trials log `*_pct` names; runs of a sweep begun before that logged the bare names. The
    comparison plot draws both rather than an empty figure."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("sweep", artifact_location=str(tmp_path / "art"))
    new = client.create_run(experiment).info.run_id
    old = client.create_run(experiment).info.run_id
    for epoch, error in ((1, 40.0), (2, 20.0)):
        client.log_metric(new, "val_top1_error_pct", error, step=epoch)
        client.log_metric(new, "train_top1_error_pct", error + 1, step=epoch)
        client.log_metric(old, "val_top1_error", error + 5, step=epoch)
    rows = [
        SimpleNamespace(run_id=new, label="resnet8-A", trial_id="t1"),
        SimpleNamespace(run_id=old, label="plain8", trial_id="t2"),
        SimpleNamespace(run_id=None, label="never-started", trial_id="t3"),
    ]
    curves = _curves(SimpleNamespace(tracking_uri=uri), rows)
    assert curves == {
        "resnet8-A": {
            "train_top1_error": [(1, 41.0), (2, 21.0)],
            "val_top1_error": [(1, 40.0), (2, 20.0)],
        },
        "plain8": {"train_top1_error": [], "val_top1_error": [(1, 45.0), (2, 25.0)]},
    }
