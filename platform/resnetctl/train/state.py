"""A worker's training state: what a checkpoint holds, and putting it back on resume.

Between epochs that is the model, optimiser, schedule, scaler, EMA, counters and every rank's
RNG states. In the middle of an epoch (`Runner.progress` is set) it adds where the epoch
stands: `position` (the epoch and its steps done) and, by rank, the input pipeline's state and
the running meters (`train.position`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import torch.distributed as dist

from resnetctl.spec.metrics import EMA_METRICS
from resnetctl.train.checkpoint import capture_rng_state, restore_rng_state, unwrap
from resnetctl.train.placement import Placement, seed_everything
from resnetctl.train.position import SavedPosition
from resnetctl.train.resize import LRRamp, SavedProgress, resized_steps_done, resume_step

if TYPE_CHECKING:
    from resnetctl.train.runner import Runner

log = logging.getLogger(__name__)


def gather_ranks(place: Placement, local: dict[str, Any]) -> list[dict[str, Any]]:
    """Every rank's `local`, by rank (a collective when distributed)."""
    if not (place.distributed and dist.is_initialized()):
        return [local]
    gathered: list[Any] = [None] * place.world_size
    dist.all_gather_object(gathered, local)
    return gathered


def training_state(runner: Runner) -> dict[str, Any]:
    """The full training state of `runner` (a collective: gathers every rank's RNG state and,
    in the middle of an epoch, its input pipeline's state and meters)."""
    local: dict[str, Any] = {"rng": capture_rng_state()}
    progress = runner.progress
    if progress is not None:
        local.update(progress.rank_state())
    ranks = gather_ranks(runner.placement, local)
    state = {
        "model": unwrap(runner.model).state_dict(),
        "optimizer": runner.optimizer.state_dict(),
        "schedule": runner.schedule.state_dict(),
        "scaler": runner.scaler.state_dict(),
        "epoch": runner.epoch,
        "step": runner.step,
        "world_size": runner.placement.world_size,
        # What a resume with another number of workers needs to map the step counter.
        "steps_per_epoch": runner.steps_per_epoch,
        "global_batch": runner.split.global_batch,
        **({"lr_ramp": runner.lr_ramp.state_dict()} if runner.lr_ramp is not None else {}),
        "rng": [entry.pop("rng") for entry in ranks],
        "nonfinite": runner.nonfinite.state_dict(),
        **({"best": runner.best.state_dict(runner.epoch)} if runner.best is not None else {}),
        **({"ema": runner.ema.state_dict()} if runner.ema is not None else {}),
    }
    if progress is not None:
        state["position"] = {"epoch": progress.epoch, "steps_done": progress.steps_done}
        state["ranks"] = ranks
    return state


def restore_training_state(runner: Runner, state: dict[str, Any]) -> None:
    """Put `training_state()` output back into `runner`; see `Runner.load_state_dict`."""
    place = runner.placement
    epoch = int(state["epoch"])
    position = state.get("position")
    same_world = state.get("world_size") in (None, place.world_size)
    resized: SavedPosition | None = None
    if position is not None and not same_world:
        resized = _resized_position(runner, state, position)
        # The epoch's start is mapped like an epoch-end checkpoint; its steps come on top.
        state = {**state, "step": int(state["step"]) - int(position["steps_done"])}
        position = None
    progress = SavedProgress.of(state, runner.spec.train)
    step = resume_step(
        runner.spec.train,
        progress,
        epoch,
        place.world_size,
        runner.steps_per_epoch,
        runner.split.global_batch,
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
    if state.get("nonfinite"):
        runner.nonfinite.load_state_dict(state["nonfinite"])
    runner.resume_position = None
    if resized is not None:
        runner.step += resized.steps_done
        runner.resume_position = resized
    runner.lr_ramp = _lr_ramp(runner, state, progress.global_batch, runner.step)
    if position is not None:
        ranks = state.get("ranks") or []
        mine = ranks[place.rank] if len(ranks) == place.world_size else None
        runner.resume_position = SavedPosition.of(position, mine)
    rng = state.get("rng") or []
    if len(rng) == place.world_size:
        restore_rng_state(rng[place.rank])
    else:
        seed_everything(runner.spec.train.seed + 1_000_003 * place.rank + runner.epoch)


def _resized_position(
    runner: Runner, state: dict[str, Any], position: dict[str, Any]
) -> SavedPosition:
    """Where a world of another size continues a checkpoint from the middle of an epoch.

    Each rank's pipeline state belongs to the old sharding, so the new world starts the epoch's
    data from its beginning and draws (and skips) as many images per rank as the old world's
    steps trained on: the position in images and so the step and the rate are kept, but the
    images the rest of the epoch sees are those the new sharding puts there, not the ones the
    old world had not reached yet (some are seen twice in this epoch, others not at all). The
    epoch's running meters, summed over the old ranks, go to rank 0, so the epoch's train error
    still counts its first part."""
    place = runner.placement
    done = int(position["steps_done"])
    saved_batch = state.get("global_batch")
    steps = resized_steps_done(
        done, saved_batch, runner.split.global_batch, runner.steps_per_epoch
    )
    ranks = state.get("ranks") or []
    meters = [r["meter"] for r in ranks if r.get("meter") is not None]
    meter = None
    if meters and place.rank == 0:
        meter = sum(meters[1:], meters[0].clone())
    timing = ranks[0].get("timing") if ranks and place.rank == 0 else None
    if place.rank == 0:
        log.warning(
            "resize: the checkpoint is from step %d of epoch %d with %s workers; with %d "
            "workers that epoch goes on after %d steps of %d images, its data drawn again in "
            "the new sharding (a resume with another number of workers is not exact)",
            done,
            int(position["epoch"]),
            state.get("world_size"),
            place.world_size,
            steps,
            runner.split.global_batch,
        )
    return SavedPosition(
        epoch=int(position["epoch"]),
        steps_done=steps,
        data=None,
        meter=meter,
        timing=(float(timing[0]), float(timing[1])) if timing else (0.0, 0.0),
    )


def _lr_ramp(
    runner: Runner, state: dict[str, Any], saved_batch: int | None, step: int
) -> LRRamp | None:
    """The ramp from the old global batch's rate to this one's after a `scale_lr` resize, or
    the one a checkpoint written during a ramp was in."""
    resources = runner.spec.resources
    batch = runner.split.global_batch
    if saved_batch is not None and saved_batch != batch and resources.elastic:
        if resources.elastic_policy == "scale_lr" and resources.resize_warmup_steps > 0:
            return LRRamp(step, resources.resize_warmup_steps, saved_batch / batch)
        return None
    ramp = state.get("lr_ramp")
    return None if not ramp else LRRamp(int(ramp["start"]), int(ramp["steps"]), ramp["first"])
