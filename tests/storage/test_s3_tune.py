"""`resnetctl tune --storage s3://...`: the sweep record, Tune's state and every trial's
checkpoints are objects in the bucket, and `tune --resume NAME` with that storage finds the
sweep there and restores Tune's state from it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.tune.conftest import TINY_BASE, kill_group, start_sweep

pytestmark = pytest.mark.slow


def test_a_sweep_in_a_bucket_runs_and_resumes_from_it(
    s3_server, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "base.yaml").write_text(TINY_BASE)
    storage = f"s3://{bucket}/sweeps"
    args = ("--depths", "8", "--variants", "residual", "--storage", storage, "--json")
    first = start_sweep(tmp_path, "base.yaml", *args, "--name", "s3sweep", tag="first")
    try:
        code, out, err = first.wait(timeout=400)
    finally:
        kill_group(first.process)
    assert code == 0, err[-4000:]
    (trial,) = json.loads(out)["trials"]
    assert trial["status"] == "finished" and trial["epochs"] == 1
    keys = s3_server.keys(bucket, "sweeps/s3sweep/")
    assert "sweeps/s3sweep/resnetctl-sweep.json" in keys
    assert any(k.startswith("sweeps/s3sweep/experiment_state") for k in keys), keys
    trial_dir = f"sweeps/s3sweep/train/{trial['trial_id']}/epoch_0001"
    assert f"{trial_dir}/state.pt" in keys and f"{trial_dir}/meta.json" in keys, keys
    local = tmp_path / "runs"  # start_sweep's RESNETCTL_STORAGE: --storage wins over it
    assert not local.exists() or not any(local.iterdir())

    # --resume: the record and Tune's state are found in the bucket and the tuner restores from
    # it (in-process; `fit` on a finished sweep would only start Ray to train nothing).
    monkeypatch.setenv("RESNETCTL_STORAGE", storage)
    from resnetctl.tune import SweepError, load_sweep
    from resnetctl.tune.run import build_tuner

    record = load_sweep("s3sweep")
    assert record.storage == storage and str(record.experiment_path) == f"{storage}/s3sweep"
    results = build_tuner(record, resume=True).get_results()
    assert [r.metrics["trial_id"] for r in results] == [trial["trial_id"]]
    with pytest.raises(SweepError, match="no sweep named 'nope'.*known sweeps: s3sweep"):
        load_sweep("nope")
