"""The run's control actor (`launch.control`), used as a plain object: the driver's stop
request reaches the ranks in the answer to their heartbeats, and what a restart cost."""

from __future__ import annotations

import time

from resnetctl.launch.control import RunControl
from resnetctl.train.heartbeat import RankHeartbeat
from resnetctl.train.notices import RankNotices

IDENTITY = {"rank": 0, "world_size": 2, "pid": 11, "node_ip": "10.0.0.1", "node_id": "a" * 56}


def test_a_stop_request_is_in_the_answer_to_the_next_beat() -> None:
    control = RunControl()
    heart = RankHeartbeat(lambda what, fields: getattr(control, what)(**fields), IDENTITY)
    notices = RankNotices(heart, preemption=lambda: None)
    heart.beat()
    assert not notices.current().stop
    control.request_stop("Ctrl-C")
    control.request_stop("SIGTERM")  # the first reason stays
    assert not notices.current().stop  # heard at the next beat, not before
    heart.beat()
    notice = notices.current()
    assert notice.stop and notice.reason == "Ctrl-C" and not notice.preempted


def test_rays_preemption_mark_is_a_notice_with_its_deadline() -> None:
    heart = RankHeartbeat(lambda what, fields: None, IDENTITY)
    drained = (1_700_000_030.0, "node ab is drained")
    notice = RankNotices(heart, preemption=lambda: drained).current()
    assert notice.preempted and notice.deadline == 1_700_000_030.0 and not notice.stop
    assert notice.reason == "node ab is drained"


def test_a_restore_counts_the_steps_trained_past_its_checkpoint() -> None:
    control = RunControl()
    assert control.restored(0)["steps_redone"] == 0  # nothing trained before: a fresh start
    for step in range(1, 38):
        control.step_done(step)
    restart = control.restored(30)
    assert restart["steps_redone"] == 7
    assert 0 <= restart["seconds_since_last_step"] < 5
    control.step_done(31)  # the new group trains steps it already trained: no new high water
    time.sleep(0.01)
    assert control.restored(35)["steps_redone"] == 2
    assert control.summary() == {"restarts": 3, "steps_redone": 9, "high_water": 37}


def test_per_step_metrics_go_to_mlflow_in_batches_and_a_step_trained_again_is_logged_again(
    tmp_path,
) -> None:
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    run_id = client.create_run(client.create_experiment("steps")).info.run_id
    control = RunControl(uri, run_id)
    for step in (1, 2, 3):
        control.step_done(step, {"global_step": step, "step_train_loss": 1.0 / step})
    control.step_done(4)  # not due: no metrics
    assert control.flush() == 3 and control.flush() == 0
    control.restored(2)
    time.sleep(0.01)  # MLflow's timestamps are in milliseconds
    control.step_done(3, {"global_step": 3, "step_train_loss": 0.25})  # after the restore
    control.flush()
    history = client.get_metric_history(run_id, "step_train_loss")
    assert sorted((m.step, m.value) for m in history) == [
        (1, 1.0),
        (2, 0.5),
        (3, 0.25),
        (3, 1.0 / 3),
    ]
    # The redone step's second value is logged later: the one a reader takes as the last.
    last = max((m for m in history if m.step == 3), key=lambda m: m.timestamp)
    assert last.value == 0.25
