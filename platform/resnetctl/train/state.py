"""A worker's training state: what a checkpoint holds, and putting it back on resume."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import torch.distributed as dist

from resnetctl.spec.metrics import EMA_METRICS
from resnetctl.train.checkpoint import capture_rng_state, restore_rng_state, unwrap
from resnetctl.train.placement import Placement, seed_everything
from resnetctl.train.resize import SavedProgress, resume_step

if TYPE_CHECKING:
    from resnetctl.train.runner import Runner

log = logging.getLogger(__name__)


def gather_rng(place: Placement) -> list[dict[str, Any]]:
    """Every rank's RNG state, by rank (a collective when distributed)."""
    state = capture_rng_state()
    if not (place.distributed and dist.is_initialized()):
        return [state]
    gathered: list[Any] = [None] * place.world_size
    dist.all_gather_object(gathered, state)
    return gathered


def training_state(runner: Runner) -> dict[str, Any]:
    """The full training state of `runner` (a collective: gathers every rank's RNG state)."""
    return {
        "model": unwrap(runner.model).state_dict(),
        "optimizer": runner.optimizer.state_dict(),
        "schedule": runner.schedule.state_dict(),
        "scaler": runner.scaler.state_dict(),
        "epoch": runner.epoch,
        "step": runner.step,
        "world_size": runner.placement.world_size,
        # What a resume with another number of workers needs to map the step counter.
        "steps_per_epoch": runner.steps_per_epoch,
        "global_batch": runner.spec.train.global_batch(runner.placement.world_size),
        "rng": gather_rng(runner.placement),
        **({"best": runner.best.state_dict(runner.epoch)} if runner.best is not None else {}),
        **({"ema": runner.ema.state_dict()} if runner.ema is not None else {}),
    }


def restore_training_state(runner: Runner, state: dict[str, Any]) -> None:
    """Put `training_state()` output back into `runner`; see `Runner.load_state_dict`."""
    place = runner.placement
    epoch = int(state["epoch"])
    step = resume_step(
        runner.spec.train,
        SavedProgress.of(state, runner.spec.train),
        epoch,
        place.world_size,
        runner.steps_per_epoch,
    )
    unwrap(runner.model).load_state_dict(state["model"])
    if runner.ema is not None:
        runner.ema.resume(state.get("ema"), unwrap(runner.model), warn=place.rank == 0)
    if runner.best is not None and state.get("best"):
        ranked = state["model"]
        if runner.ema is not None and runner.spec.checkpoint.metric in EMA_METRICS:
            ranked = runner.ema.module.state_dict()
        runner.best.load_state_dict(state["best"], ranked)
    runner.optimizer.load_state_dict(state["optimizer"])
    runner.schedule.load_state_dict(state["schedule"])
    if state.get("scaler"):
        runner.scaler.load_state_dict(state["scaler"])
    runner.epoch = epoch
    if step != int(state["step"]) and place.rank == 0:
        log.warning(
            "resuming a checkpoint of %s workers on %d: step %s of %s steps per epoch is "
            "step %d of %d here (end of epoch %d)",
            state.get("world_size"),
            place.world_size,
            state["step"],
            state.get("steps_per_epoch", "?"),
            step,
            runner.steps_per_epoch,
            epoch,
        )
    runner.step = step
    rng = state.get("rng") or []
    if len(rng) == place.world_size:
        restore_rng_state(rng[place.rank])
    else:
        seed_everything(runner.spec.train.seed + 1_000_003 * place.rank + runner.epoch)
