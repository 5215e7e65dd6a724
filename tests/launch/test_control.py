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
