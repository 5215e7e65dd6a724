"""The epoch loop against a fake Ray session: reports, checkpoint cadence, resume at epoch+1."""

from __future__ import annotations

import queue
from pathlib import Path
from typing import Any

import pytest

from resnetctl.spec.metrics import EPOCH_METRICS
from resnetctl.train.checkpoint import META_FILE, STATE_FILE, read_meta
from resnetctl.train.loop import progress_callback, run_training
from resnetctl.train.runner import Placement, Runner
from tests.train._helpers import FakeSession, batches, job_spec, tiny_model


def _run(
    tmp: Path,
    epochs: int = 4,
    every: int = 2,
    resume_from: Path | None = None,
    resume_checkpoint: str | None = None,
    **train: Any,
) -> tuple[FakeSession, Runner]:
    spec = job_spec(train={"epochs": epochs, **train}, checkpoint={"every_n_epochs": every})
    runner = Runner(spec, model=tiny_model(), train_loader=batches(3), val_loader=batches(1))
    session = FakeSession(tmp, resume_from=resume_from)
    run_training(spec, Placement(), session, runner=runner, resume_checkpoint=resume_checkpoint)
    return session, runner


def test_every_epoch_reports_the_metric_keys_and_checkpoints_follow_the_cadence(
    tmp_path: Path,
) -> None:
    session, _ = _run(tmp_path / "a", epochs=5, every=2)
    metrics = [m for m, _, _ in session.reports]
    assert [m["epoch"] for m in metrics] == [1, 2, 3, 4, 5]
    assert [m["step"] for m in metrics] == [3, 6, 9, 12, 15]
    assert set(metrics[0]) == {*EPOCH_METRICS, "epoch", "step", "param_checksum"}
    # Every 2 epochs, and always after the last.
    assert [p.name for p in session.checkpoints] == ["epoch_0002", "epoch_0004", "epoch_0005"]
    last = session.checkpoints[-1]
    assert (last / STATE_FILE).is_file() and (last / META_FILE).is_file()
    meta = read_meta(last)
    assert (meta["epoch"], meta["step"], meta["metrics"]["epoch"]) == (5, 15, 5)


def test_a_restarted_worker_group_continues_after_the_checkpoint_epoch(tmp_path: Path) -> None:
    first, runner = _run(tmp_path / "a", epochs=4, every=2)
    epoch2 = first.checkpoints[0]
    resumed, again = _run(tmp_path / "b", epochs=4, every=2, resume_from=epoch2)
    assert [m["epoch"] for m, _, _ in resumed.epoch_reports] == [3, 4]
    assert [m["step"] for m, _, _ in resumed.epoch_reports] == [9, 12]
    assert again.step == runner.step


def test_resume_checkpoint_path_is_used_when_ray_has_none(tmp_path: Path) -> None:
    first, _ = _run(tmp_path / "a", epochs=3, every=1)
    resumed, _ = _run(tmp_path / "b", epochs=3, resume_checkpoint=str(first.checkpoints[0]))
    assert [m["epoch"] for m, _, _ in resumed.epoch_reports] == [2, 3]


def test_rays_checkpoint_wins_over_the_resume_path(tmp_path: Path) -> None:
    first, _ = _run(tmp_path / "a", epochs=3, every=1)
    one, two, _ = first.checkpoints
    resumed, _ = _run(tmp_path / "b", epochs=3, resume_from=two, resume_checkpoint=str(one))
    assert [m["epoch"] for m, _, _ in resumed.epoch_reports] == [3]


def test_a_finished_checkpoint_trains_nothing(tmp_path: Path) -> None:
    first, _ = _run(tmp_path / "a", epochs=2, every=1)
    resumed, _ = _run(tmp_path / "b", epochs=2, resume_from=first.checkpoints[-1])
    assert resumed.epoch_reports == []
    assert [m["restored_step"] for m, _, _ in resumed.reports] == [6]


def test_iteration_runs_report_a_partial_last_epoch_with_a_checkpoint(tmp_path: Path) -> None:
    session, _ = _run(tmp_path / "a", epochs=None, iterations=7, every=5)
    assert [(m["epoch"], m["step"]) for m, _, _ in session.reports] == [(1, 3), (2, 6), (3, 7)]
    assert [p.name for p in session.checkpoints] == ["epoch_0003"]


def test_plateau_state_is_carried_across_a_resume(tmp_path: Path) -> None:
    raw = {"window": 1, "cooldown": 0, "max_drops": None}
    plateau = {"schedule": {"kind": "plateau", "patience": 0, "threshold": 0.5, **raw}}
    first, runner = _run(tmp_path / "a", epochs=4, every=1, **plateau)
    # The val error of this tiny net never improves by half: the rate drops after epochs 2, 3.
    assert [m["lr"] for m, _, _ in first.reports] == pytest.approx([0.1, 0.1, 0.01, 0.001])
    resumed, again = _run(tmp_path / "b", epochs=4, resume_from=first.checkpoints[1], **plateau)
    assert again.schedule.state_dict() == runner.schedule.state_dict()
    assert resumed.epoch_reports[-1][0]["lr"] == pytest.approx(first.reports[-1][0]["lr"])


def test_progress_drops_updates_when_the_queue_is_full() -> None:
    q: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=1)
    send = progress_callback(q)
    assert send is not None
    send({"step": 1})
    send({"step": 2})  # dropped, no exception, no blocking
    assert q.get_nowait() == {"step": 1}


def test_a_broken_progress_reader_is_disabled_not_fatal() -> None:
    calls: list[dict[str, Any]] = []

    def broken(update: dict[str, Any]) -> None:
        calls.append(update)
        raise ConnectionError("actor died")

    send = progress_callback(broken)
    assert send is not None
    send({"step": 1})
    send({"step": 2})
    assert len(calls) == 1


def test_step_metrics_are_reported_every_n_global_steps_without_checkpoints(
    tmp_path: Path,
) -> None:
    session, runner = _run(
        tmp_path, epochs=3, every=1, log_every_n_steps=2, schedule={"kind": "cosine"}
    )
    steps = [m for m, _, _ in session.reports if "global_step" in m]
    epochs = [m for m, _, _ in session.reports if "epoch" in m]
    # 3 steps per epoch: the count runs across epochs, 9 steps in all.
    assert [m["global_step"] for m in steps] == [2, 4, 6, 8]
    assert all(path is None for m, path, _ in session.reports if "global_step" in m)
    assert len(session.checkpoints) == len(epochs) == 3
    for m in steps:
        # The rate of the reported step (global step s is 0-based index s - 1).
        assert m["step_lr"] == pytest.approx(runner.schedule.lr(m["global_step"] - 1))
        assert m["step_train_loss"] > 0 and m["step_images_per_second"] > 0
        assert "step_grad_norm" not in m and "epoch" not in m


def test_no_step_reports_without_log_every_n_steps(tmp_path: Path) -> None:
    session, _ = _run(tmp_path, epochs=2, every=1)
    assert all("global_step" not in m for m, _, _ in session.reports)
