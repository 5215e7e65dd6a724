"""Per-worker training: schedules, optimiser, metrics, checkpoints, the `Runner` engine and the
Ray Train worker function `train_loop_per_worker`."""

from resnetctl.train.checkpoint import META_FILE, STATE_FILE, load_checkpoint, save_checkpoint
from resnetctl.train.loop import run_training, train_loop_per_worker
from resnetctl.train.runner import NonFiniteLossError, Placement, Runner
from resnetctl.train.schedules import SCHEDULES, build_schedule, register_schedule

__all__ = [
    "META_FILE",
    "SCHEDULES",
    "STATE_FILE",
    "NonFiniteLossError",
    "Placement",
    "Runner",
    "build_schedule",
    "load_checkpoint",
    "register_schedule",
    "run_training",
    "save_checkpoint",
    "train_loop_per_worker",
]
