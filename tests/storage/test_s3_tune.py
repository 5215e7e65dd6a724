"""`resnetctl tune --storage s3://...`: the sweep record, Tune's state and every trial's
checkpoints are objects in the bucket, and `tune --resume NAME --storage s3://...` finds the
sweep there and continues it (a finished sweep: nothing is trained again)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.tune.conftest import TINY_BASE, kill_group, start_sweep

pytestmark = pytest.mark.slow


def test_a_sweep_in_a_bucket_runs_and_resumes_from_it(
    s3_server, bucket: str, tmp_path: Path
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

    second = start_sweep(tmp_path, "--resume", "s3sweep", "--storage", storage, "--json", tag="2")
    try:
        code, out, err = second.wait(timeout=400)
    finally:
        kill_group(second.process)
    assert code == 0, err[-4000:]
    (again,) = json.loads(out)["trials"]
    assert again["trial_id"] == trial["trial_id"] and again["status"] == "finished"
    assert f"trial {trial['trial_id']} " not in err  # finished: not run again
    unknown = start_sweep(tmp_path, "--resume", "nope", "--storage", storage, tag="3")
    code, _, err = unknown.wait(timeout=120)
    assert code == 2 and "no sweep named 'nope'" in err and "known sweeps: s3sweep" in err
