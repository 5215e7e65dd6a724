"""Tune sees epoch reports only: a per-step report is not a training iteration."""

from __future__ import annotations

from typing import Any

from resnetctl.tune.trainable import epoch_reports_to_tune_class


def test_step_reports_do_not_reach_tune() -> None:
    cls = epoch_reports_to_tune_class()
    callback = cls.__new__(cls)  # its __init__ needs a live Tune session
    seen: list[dict[str, Any]] = []
    callback._training_actor_item_queue = type("Q", (), {"put": staticmethod(seen.append)})()
    callback.after_report(None, [{"global_step": 10, "step_train_loss": 1.0}], None)
    callback.after_report(None, [{"epoch": 1, "val_top1_error": 50.0}], None)
    assert seen == [{"epoch": 1, "val_top1_error": 50.0}]
