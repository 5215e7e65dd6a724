"""Checkpoints: the full training state round-trips, RNG included, through weights_only loads."""

from __future__ import annotations

import json
import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from resnetctl.storage.checkpoints import write_manifest
from resnetctl.train.checkpoint import (
    META_FILE,
    STATE_FILE,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from resnetctl.train.runner import Runner
from tests.train._helpers import batches, job_spec, tiny_model


def _draws() -> tuple[list[float], list[float], list[float]]:
    return torch.rand(5).tolist(), np.random.rand(5).tolist(), [random.random() for _ in range(5)]


def test_rng_state_round_trip_gives_the_same_next_numbers(tmp_path: Path) -> None:
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    np.random.randn()  # leaves a cached gaussian in numpy's state
    save_checkpoint(tmp_path, {"rng": capture_rng_state()}, {"epoch": 0})
    expected = _draws()
    _draws()  # move every generator on
    state, _ = load_checkpoint(tmp_path)
    restore_rng_state(state["rng"])
    assert _draws() == expected


def test_loading_refuses_pickled_code(tmp_path: Path) -> None:
    class Payload:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (print, ("pwned",))

    with open(tmp_path / STATE_FILE, "wb") as f:
        pickle.dump({"x": Payload()}, f, protocol=2)
    # A complete folder (its manifest matches): what refuses it is weights_only loading.
    (tmp_path / META_FILE).write_text('{"format_version": 2, "epoch": 1}')
    write_manifest(tmp_path)
    with pytest.raises(pickle.UnpicklingError):
        load_checkpoint(tmp_path)


def test_missing_state_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a complete checkpoint: no state.pt"):
        load_checkpoint(tmp_path)


def _runner(**train: object) -> Runner:
    spec = job_spec(
        train={"schedule": {"kind": "plateau", "patience": 0}, "epochs": 4, **train},
    )
    return Runner(spec, model=tiny_model(), train_loader=batches(3), val_loader=batches(1, seed=9))


def test_runner_state_round_trips_through_a_checkpoint_directory(tmp_path: Path) -> None:
    runner = _runner(optimizer={"momentum": 0.9})
    for epoch in (1, 2):
        runner.run_epoch(epoch)
    # Force a plateau decision so the schedule has state worth restoring.
    runner.schedule.on_epoch_end({"val_top1_error": 1e9})
    metrics = {"val_top1_error": 12.5}
    save_checkpoint(tmp_path, runner.state_dict(), {"epoch": runner.epoch, "metrics": metrics})
    expected_draws = _draws()

    meta = json.loads((tmp_path / META_FILE).read_text())
    assert (meta["epoch"], meta["metrics"]) == (2, metrics)

    restored = _runner(optimizer={"momentum": 0.9})
    state, _ = load_checkpoint(tmp_path)
    restored.load_state_dict(state)
    assert _draws() == expected_draws
    assert (restored.epoch, restored.step) == (2, 6)
    assert restored.lr() == pytest.approx(runner.lr())
    assert restored.schedule.state_dict() == runner.schedule.state_dict()
    for a, b in zip(
        runner.model.state_dict().values(), restored.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)
    momentum = [s["momentum_buffer"] for s in restored.optimizer.state_dict()["state"].values()]
    original = [s["momentum_buffer"] for s in runner.optimizer.state_dict()["state"].values()]
    assert momentum and all(torch.equal(a, b) for a, b in zip(momentum, original, strict=True))


def test_restored_runner_trains_exactly_like_the_original(tmp_path: Path) -> None:
    runner = _runner()
    runner.run_epoch(1)
    save_checkpoint(tmp_path, runner.state_dict(), {"epoch": 1})
    restored = _runner()
    restored.load_state_dict(load_checkpoint(tmp_path)[0])
    a = runner.run_epoch(2)
    b = restored.run_epoch(2)
    assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-6)
    for p, q in zip(runner.model.parameters(), restored.model.parameters(), strict=True):
        assert torch.allclose(p, q)


def test_a_checkpoint_ranked_by_its_ema_hands_over_the_ema_weights() -> None:
    from resnetctl.train.checkpoint import ranked_weights

    state = {"model": {"w": 1}, "ema": {"module": {"w": 2}, "updates": 5}}
    assert ranked_weights(state, "val_top1_error_ema") == {"w": 2}
    assert ranked_weights(state, "val_top1_error") == {"w": 1}
    assert ranked_weights({"model": {"w": 1}}, "val_top1_error_ema") == {"w": 1}
