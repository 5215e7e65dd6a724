"""Each metric's default ranking direction: what `checkpoint.mode` and plateau schedules use
when the spec leaves it out."""

from __future__ import annotations

from resnetctl.spec.metrics import LOGGED_METRICS, default_mode

HIGHER_IS_BETTER = {"lr", "images_per_second", "final_eval_epoch"}


def test_losses_errors_and_durations_are_minimised_the_rest_maximised() -> None:
    modes = {metric: default_mode(metric) for metric in LOGGED_METRICS}
    assert {m for m, mode in modes.items() if mode == "max"} == HIGHER_IS_BETTER
    assert modes["val_top1_error_ema"] == modes["val_loss_10crop"] == "min"
    assert modes["epoch_seconds"] == modes["data_wait_seconds"] == "min"
    assert len(modes) == 18  # 11 per epoch, 3 EMA, 4 of the final evaluation
