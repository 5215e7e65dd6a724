"""A checkpoint exists only once it is complete: its manifest, written last, names every file
with its size and digest. Every reader skips an incomplete folder with a warning naming it."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from resnetctl.storage import best_checkpoint, checkpoints, latest_checkpoint, resolve_resume
from resnetctl.storage.checkpoints import (
    MANIFEST,
    META,
    STATE,
    IncompleteCheckpointError,
    completeness,
    load_state,
    scan,
)
from resnetctl.storage.runs import remove_incomplete
from resnetctl.train.checkpoint import save_checkpoint


def _save(folder: Path, step: int, epoch: int, error: float | None = None) -> Path:
    metrics = {} if error is None else {"val_top1_error": error}
    return save_checkpoint(
        folder,
        {"model": {"w": torch.ones(3) * step}},
        {"epoch": epoch, "step": step, "metrics": metrics},
    )


def test_a_saved_checkpoint_is_complete_and_its_manifest_comes_last(tmp_path: Path) -> None:
    folder = _save(tmp_path / "a", step=4, epoch=1)
    manifest = json.loads((folder / MANIFEST).read_text())
    assert sorted(manifest["files"]) == [META, STATE]
    assert manifest["files"][STATE]["size"] == (folder / STATE).stat().st_size
    # Written last: no file of the folder is newer than the manifest.
    newest = max(p.stat().st_mtime_ns for p in folder.iterdir() if p.name != MANIFEST)
    assert (folder / MANIFEST).stat().st_mtime_ns >= newest
    assert completeness(folder)
    state, meta = load_state(folder)
    assert torch.equal(state["model"]["w"], torch.full((3,), 4.0)) and meta["step"] == 4


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda f: (f / MANIFEST).unlink(), "no manifest.json"),
        (lambda f: (f / STATE).unlink(), "state.pt is missing"),
        (lambda f: (f / STATE).write_bytes((f / STATE).read_bytes()[:-7]), "state.pt has"),
        (lambda f: (f / MANIFEST).write_text("{not json"), "unreadable manifest.json"),
    ],
)
def test_a_half_written_checkpoint_is_incomplete_and_says_why(
    tmp_path: Path, damage, reason: str
) -> None:
    folder = _save(tmp_path / "a", step=4, epoch=1)
    damage(folder)
    verdict = completeness(folder)
    assert not verdict and reason in verdict.reason
    with pytest.raises(IncompleteCheckpointError, match=reason):
        load_state(folder)


def test_bytes_that_differ_from_the_manifest_are_refused_on_load(tmp_path: Path) -> None:
    folder = _save(tmp_path / "a", step=4, epoch=1)
    data = bytearray((folder / STATE).read_bytes())
    data[-5] ^= 0xFF  # same size, other bytes: the size check passes, the digest does not
    (folder / STATE).write_bytes(bytes(data))
    assert completeness(folder)
    with pytest.raises(IncompleteCheckpointError, match="does not match its manifest"):
        load_state(folder)


def test_a_checkpoint_from_before_manifests_counts_when_both_files_are_there(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "old"
    folder.mkdir()
    torch.save({"model": {}}, folder / STATE)
    (folder / META).write_text(json.dumps({"format_version": 1, "epoch": 2, "step": 8}))
    assert completeness(folder)
    (folder / STATE).unlink()
    assert not completeness(folder)


def test_readers_skip_an_incomplete_checkpoint_with_a_warning_naming_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run = tmp_path / "runs" / "quickstart-20261206-100000"
    _save(run / "epoch_0001", step=22, epoch=1, error=4.0)
    _save(run / "epoch_0002", step=44, epoch=2, error=2.0)
    partial = _save(run / "epoch_0003_step_000000050", step=50, epoch=2)
    (partial / MANIFEST).unlink()  # its worker died before the manifest went up
    lone = run / "epoch_0003_step_000000060"
    lone.mkdir()
    (lone / STATE).write_bytes(b"x" * 10)  # died before meta.json, too
    with caplog.at_level(logging.WARNING):
        found = checkpoints(run)
    assert sorted(path.name for _, path in found) == ["epoch_0001", "epoch_0002"]
    warned = caplog.text
    assert str(partial) in warned and str(lone) in warned and "incomplete" in warned
    assert latest_checkpoint(run).name == "epoch_0002"
    assert best_checkpoint(run, "val_top1_error", "min").name == "epoch_0002"
    checkpoint, _ = resolve_resume(str(run), tmp_path / "runs")
    assert checkpoint.name == "epoch_0002"
    with pytest.raises(FileNotFoundError, match="incomplete checkpoint: no manifest.json"):
        resolve_resume(str(partial), tmp_path / "runs")
    # The driver removes what its dead workers left once the run has ended.
    assert sorted(p.name for p in remove_incomplete(run)) == [partial.name, lone.name]
    assert [p.name for p, verdict in scan(run)] == ["epoch_0001", "epoch_0002"]


def test_the_latest_checkpoint_is_the_one_trained_furthest_mid_epoch_included(
    tmp_path: Path,
) -> None:
    run = tmp_path / "run"
    _save(run / "epoch_0002", step=44, epoch=2, error=2.0)
    _save(run / "epoch_0002_step_000000050", step=50, epoch=2)  # in the middle of epoch 3
    assert latest_checkpoint(run).name == "epoch_0002_step_000000050"
    # Ranked by a metric only epoch ends have: the mid-epoch one is never "best".
    assert best_checkpoint(run, "val_top1_error", "min").name == "epoch_0002"
