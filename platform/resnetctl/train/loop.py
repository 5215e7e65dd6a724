"""The Ray Train worker function, and the Ray-free loop it runs.

Resume contract: a run continues at the step after the checkpoint's step, with the schedule,
optimiser, scaler, step counter and RNG states of that checkpoint; a checkpoint from the middle
of an epoch also puts back each rank's input pipeline and running meters, so the rest of the run
is the one an uninterrupted run would have trained (`train.position`). A restarted worker group
takes Ray's latest checkpoint (`ray.train.get_checkpoint()`); a new run can start from a
checkpoint directory (`config["resume_checkpoint"]`, or `checkpoint.resume_from` when it is a
directory).
"""

from __future__ import annotations

import logging
import math
import os
import queue
import shutil
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Protocol

from resnetctl.spec import JobSpec
from resnetctl.spec.metrics import (
    CHECKPOINT_REASON_KEY,
    CHECKPOINT_STEP_KEY,
    NOTICE_KEY,
    RESTORE_KEY,
    STEP_REPORT_KEY,
    URGENT_KEY,
)
from resnetctl.storage.checkpoints import completeness, warn_incomplete
from resnetctl.tracking.datasets import DATASET_REPORT_KEY, describe_splits
from resnetctl.tracking.system_metrics import node_monitor
from resnetctl.train.boundary import CheckpointCause, StepCheckpoints, StopTraining
from resnetctl.train.checkpoint import (
    is_checkpoint,
    load_checkpoint,
    save_checkpoint,
    unwrap,
)
from resnetctl.train.heartbeat import rank_heartbeat
from resnetctl.train.runner import NonFiniteLossError, Placement, Runner, StepCallback
from resnetctl.train.upload import staging_dir

log = logging.getLogger(__name__)

DEFAULT_PROGRESS_EVERY = 10


class Session(Protocol):
    """What the loop needs from its host (Ray Train, or a test double)."""

    def checkpoint_dir(self) -> AbstractContextManager[str | None]:
        """A local directory holding the checkpoint to resume from, or None."""
        ...

    def report(self, metrics: dict[str, Any], checkpoint_dir: str | None, name: str) -> None:
        """Report metrics (all ranks) and, from rank 0, a checkpoint directory, which the
        session owns from then on: it deletes it once it is stored."""
        ...


class RaySession:
    """`Session` over Ray Train V2's worker API. With `upload="async"` training goes on while
    a checkpoint uploads; metric-only reports go through the same ordered queue, so they never
    wait for an upload either."""

    def __init__(self, upload: str = "async", run_name: str = "run") -> None:
        self.upload = upload
        self.run_name = run_name

    def staging_dir(self) -> Path:
        """A new local folder for one checkpoint of this run (`train.upload`)."""
        return staging_dir(self.run_name)

    @contextmanager
    def checkpoint_dir(self) -> Iterator[str | None]:
        """The latest checkpoint Ray Train restored this worker group with, as a directory;
        None when there is none or when it is incomplete (with a warning naming it)."""
        import ray.train

        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            yield None
            return
        rank0 = ray.train.get_context().get_world_rank() == 0
        where = checkpoint_uri(checkpoint)
        verdict = completeness(where)
        if not verdict:
            if rank0:
                warn_incomplete(where, verdict.reason)
            yield None
            return
        if rank0:
            # Where it lies (a bucket's URI): "resumed from ray" alone does not say.
            log.info("Ray Train restored the checkpoint %s", where)
        with checkpoint.as_directory() as directory:
            yield directory

    def report(self, metrics: dict[str, Any], checkpoint_dir: str | None, name: str) -> None:
        """`ray.train.report`, with the checkpoint directory (rank 0) under the name `name`,
        uploaded manifest last (`train.upload`)."""
        import ray.train
        from ray.train import CheckpointUploadMode

        from resnetctl.train.upload import upload_checkpoint

        checkpoint = (
            None if checkpoint_dir is None else ray.train.Checkpoint.from_directory(checkpoint_dir)
        )
        # Which node each rank ran on travels with the report: the controller records it.
        metrics = {**metrics, "node_id": ray.get_runtime_context().get_node_id()}
        mode = CheckpointUploadMode.ASYNC if self.upload == "async" else CheckpointUploadMode.SYNC
        # Every rank reports (Ray Train V2 synchronises on it); only rank 0 carries files.
        ray.train.report(
            metrics,
            checkpoint=checkpoint,
            checkpoint_dir_name=name,
            checkpoint_upload_mode=mode,
            delete_local_checkpoint_after_upload=True,
            checkpoint_upload_fn=upload_checkpoint,
        )


def checkpoint_uri(checkpoint: Any) -> str:
    """A Ray Train checkpoint's location as a URI (`s3://bucket/...`), or its local path."""
    kind = getattr(checkpoint.filesystem, "type_name", "local")
    return checkpoint.path if kind == "local" else f"{kind}://{checkpoint.path}"


def progress_callback(progress: Any) -> StepCallback | None:
    """Wrap a progress handle (a `ray.util.queue.Queue`, anything with `put_nowait`, or a
    callable) into a callback that never blocks or fails training."""
    if progress is None:
        return None
    put = getattr(progress, "put_nowait", None) or progress
    if not callable(put):
        raise TypeError(f"progress handle {progress!r} has no put_nowait and is not callable")
    state = {"alive": True}

    def send(update: dict[str, Any]) -> None:
        if not state["alive"]:
            return
        try:
            put(update)
        except queue.Full:  # ray.util.queue.Full derives from it; a slow reader drops updates
            pass
        except Exception as exc:  # the reader went away: progress is optional, training is not
            state["alive"] = False
            log.warning("progress updates stopped: %s", exc)

    return send


def parameter_checksum(model: Any) -> float:
    """Sum of all parameters in float64: equal on every rank exactly when DDP kept the replicas
    in step, so the controller can detect a silent divergence from the reports alone."""
    import torch

    with torch.no_grad():
        return float(sum(p.detach().double().sum() for p in unwrap(model).parameters()))


def checkpoint_name(epoch: int) -> str:
    """Directory name of the checkpoint written after `epoch`."""
    return f"epoch_{epoch:04d}"


def step_checkpoint_name(epoch: int, step: int) -> str:
    """Directory name of a checkpoint written in the middle of `epoch`, after global `step`."""
    return f"epoch_{epoch:04d}_step_{step:09d}"


def should_checkpoint(spec: JobSpec, epoch: int, last: bool) -> bool:
    """Checkpoints every `checkpoint.every_n_epochs` epochs and always after the last one."""
    return last or epoch % spec.checkpoint.every_n_epochs == 0


def _resume_source(spec: JobSpec, resume_checkpoint: str | None) -> str | None:
    if resume_checkpoint:
        return resume_checkpoint
    given = spec.checkpoint.resume_from
    if given and is_checkpoint(given):
        return given
    return None


def resume(runner: Runner, session: Session, resume_checkpoint: str | None = None) -> str | None:
    """Load the run's latest checkpoint (from the session) or the given directory into the
    runner. Returns where it came from, or None for a fresh start."""
    with session.checkpoint_dir() as directory:
        if directory is not None:
            _load(runner, directory)
            return "ray"
    source = _resume_source(runner.spec, resume_checkpoint)
    if source is None:
        return None
    _load(runner, source)
    return str(source)


def _load(runner: Runner, directory: str | os.PathLike[str]) -> None:
    from resnetctl.storage import StoragePath

    # `--resume` of a run kept in a bucket names a checkpoint URI: each worker downloads it.
    # On the CPU, whatever the run's device: mapping everything to CUDA would put the saved
    # numpy RNG state on the GPU, where restoring it fails. Module and optimiser
    # `load_state_dict` copy their tensors onto the device of the parameters they fill.
    with StoragePath.of(directory).local() as local:
        state, _ = load_checkpoint(local, map_location="cpu")
    runner.load_state_dict(state)


def _meta(runner: Runner, metrics: dict[str, Any]) -> dict[str, Any]:
    progress = runner.progress
    return {
        "epoch": runner.epoch,
        "step": runner.step,
        # Set in the middle of an epoch: the epoch in progress and its steps done.
        "position": (
            None
            if progress is None
            else {"epoch": progress.epoch, "steps_done": progress.steps_done}
        ),
        # A step checkpoint's ranked metric is Ray Train's placeholder, not a measurement.
        "metrics": {
            k: v
            for k, v in metrics.items()
            if k != DATASET_REPORT_KEY
            and not (CHECKPOINT_STEP_KEY in metrics and k == runner.spec.checkpoint.metric)
        },
        "model": runner.spec.model.name,
        "job": runner.spec.name,
        "world_size": runner.placement.world_size,
        "global_batch": runner.split.global_batch,
        # What `resnetctl eval|export|predict` need without the MLflow run: the network's
        # options, the input pipeline and the names of the classes the outputs stand for.
        "spec": runner.spec.model_dump(mode="json"),
        "classes": list(runner.class_names or ()),
    }


def _report(
    runner: Runner,
    session: Session,
    metrics: dict[str, Any],
    with_checkpoint: bool,
    name: str | None = None,
) -> None:
    """Report `metrics` from every rank; with a checkpoint of the runner's state (a
    collective), written by rank 0 into a staging folder that the session then owns. `name`
    defaults to the name of the last finished epoch's checkpoint."""
    name = name or checkpoint_name(runner.epoch)
    if not with_checkpoint:
        session.report(metrics, None, name)
        return
    state = runner.state_dict()  # a collective: every rank takes part
    if runner.placement.rank != 0:
        session.report(metrics, None, name)
        return
    stage = getattr(session, "staging_dir", None)
    folder = stage() if callable(stage) else staging_dir(runner.spec.name)
    try:
        save_checkpoint(folder, state, _meta(runner, metrics))
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    session.report(metrics, str(folder), name)


_WORST_SCORE = 1e300


def step_checkpoint_writer(session: Session) -> Any:
    """The `CheckpointWriter` of `StepCheckpoints`: a checkpoint from the middle of an epoch,
    reported with its step and reason; returns the seconds it took on this rank."""

    def write(runner: Runner, cause: CheckpointCause) -> float:
        started = time.monotonic()
        progress = runner.progress
        epoch = progress.epoch if progress is not None else runner.epoch
        # No validation here: the ranked metric is the worst finite value, so that Ray Train
        # ranks the checkpoint last and keeps it only while it is the latest. Not NaN or inf:
        # Ray's saved checkpoint list (JSON) turns those into null, and a resumed run's
        # controller then fails ranking it.
        worst = _WORST_SCORE if runner.spec.checkpoint.mode == "min" else -_WORST_SCORE
        metrics: dict[str, Any] = {
            CHECKPOINT_STEP_KEY: runner.step,
            CHECKPOINT_REASON_KEY: cause.reason,
            runner.spec.checkpoint.metric: worst,
        }
        if cause.notice:
            metrics[NOTICE_KEY] = 1
        if cause.urgent:
            metrics[URGENT_KEY] = 1
        if runner.placement.rank == 0:
            log.info("checkpoint at step %d (epoch %d): %s", runner.step, epoch, cause.reason)
        _report(runner, session, metrics, True, step_checkpoint_name(epoch, runner.step))
        seconds = time.monotonic() - started
        if runner.placement.rank == 0:
            # What the checkpoint cost the training: the time until the next step (an async
            # upload goes on beside it); benchmarks/checkpoints.py sums these.
            log.info("checkpoint at step %d: training resumed after %.3f s", runner.step, seconds)
        return seconds

    return write


def step_reporter(session: Session, ledger: Any = None, rank: int = 0) -> StepCallback:
    """Where `train.log_every_n_steps` metrics go: with the run's ledger, rank 0 sends them to
    the control actor with its finished step (`launch.control`: no report, no meeting of the
    workers); without one (tests, a host without a driver of ours), every rank reports them
    through the session."""

    def report(metrics: dict[str, Any]) -> None:
        session.report(metrics, None, f"step_{metrics[STEP_REPORT_KEY]:09d}")

    def send(metrics: dict[str, Any]) -> None:
        if rank == 0:
            ledger.add_metrics(metrics)

    return report if ledger is None else send


def run_training(
    spec: JobSpec,
    placement: Placement,
    session: Session,
    *,
    progress: Any = None,
    resume_checkpoint: str | None = None,
    runner: Runner | None = None,
    notices: Any = None,
    upload_seconds: Any = None,
    ledger: Any = None,
) -> dict[str, Any] | None:
    """Train to the end of the run, reporting every epoch and checkpointing between steps as
    `checkpoint` asks and on notices (`train.boundary`); returns the last epoch's metrics
    (None when the checkpoint was already at the end or the run was asked to stop).

    `ledger` (a `train.notices.RunLedger`, given to every rank) has rank 0 record every finished
    step, and its per-step metrics, with the run's control actor, so that a restart can tell
    how many steps it trains again."""
    runner = runner or Runner(spec, placement)
    source = resume(runner, session, resume_checkpoint)
    rank0 = placement.rank == 0
    if rank0 and source is not None:
        position = runner.resume_position
        log.info(
            "resumed from %s at epoch %d, step %d: continuing with %s",
            source,
            runner.epoch,
            runner.step,
            f"step {position.steps_done + 1} of epoch {position.epoch}"
            if position is not None
            else f"epoch {runner.epoch + 1}",
        )
    if source is not None:
        _report_restore(runner, session, ledger if rank0 else None)
    checkpoints = StepCheckpoints(
        spec,
        placement,
        step_checkpoint_writer(session),
        notices=notices,
        epoch_end_checkpoint=lambda epoch: should_checkpoint(spec, epoch, runner.finished),
        upload_seconds=upload_seconds or (lambda: 0.0),
    )

    def boundary(runner: Runner, epoch: int, steps_done: int, steps: int) -> None:
        if ledger is not None and rank0:
            ledger.step_done(runner.step)
        checkpoints(runner, epoch, steps_done, steps)

    try:
        return _train(spec, placement, session, runner, progress, boundary, ledger)
    except StopTraining as stop:
        if rank0:
            log.warning("stopped after a checkpoint at step %d: %s", stop.step, stop.reason)
        return None


def _report_restore(runner: Runner, session: Session, ledger: Any) -> None:
    """Every rank reports the restore once; rank 0 adds what the restart cost (with a ledger)."""
    # With the group's size and what it trains with: an elastic run's resize is a restore
    # with another number of workers (`tracking.callback` tags it).
    metrics: dict[str, Any] = {
        RESTORE_KEY: runner.step,
        "workers": runner.placement.world_size,
        "global_batch": runner.split.global_batch,
        "peak_lr": runner.split.peak_lr,
    }
    if ledger is not None:
        try:
            cost = ledger.restored(runner.step)
        except Exception as exc:  # noqa: BLE001 - accounting must never stop a restart
            log.warning("the restart's cost is not known: %s", exc)
        else:
            metrics["steps_redone"] = int(cost["steps_redone"])
            if cost.get("seconds_since_last_step") is not None:
                metrics["restart_seconds"] = float(cost["seconds_since_last_step"])
            if cost["steps_redone"] or cost.get("seconds_since_last_step") is not None:
                log.warning(
                    "restart at step %d: %d step(s) trained again; %.1f s since the last step "
                    "before the fault",
                    runner.step,
                    metrics["steps_redone"],
                    metrics.get("restart_seconds", 0.0),
                )
    session.report(metrics, None, f"restore_{runner.step:09d}")


def _train(
    spec: JobSpec,
    placement: Placement,
    session: Session,
    runner: Runner,
    progress: Any,
    boundary: Any,
    ledger: Any = None,
) -> dict[str, Any] | None:
    rank0 = placement.rank == 0
    on_step = progress_callback(progress) if rank0 else None
    every = spec.train.log_every_n_steps or DEFAULT_PROGRESS_EVERY
    metrics: dict[str, Any] | None = None
    # What rank 0 trains on travels with its first report, for tracking to log as datasets.
    datasets = data_description(runner) if rank0 else None
    while not runner.finished:
        epoch = runner.epoch + 1
        epoch_metrics = runner.run_epoch(
            epoch,
            on_step=on_step,
            every=every,
            on_metrics=step_reporter(session, ledger, placement.rank),
            boundary=boundary,
        )
        # Metrics are reduced over ranks, so every rank takes this decision alike.
        if not math.isfinite(epoch_metrics["val_loss"]):
            raise NonFiniteLossError(epoch, 0, runner.step, 0, 0, what="validation loss")
        metrics = {
            **epoch_metrics,
            "epoch": epoch,
            "step": runner.step,
            "param_checksum": parameter_checksum(runner.model),
        }
        last = runner.finished
        checkpoint = should_checkpoint(spec, epoch, last)
        if checkpoint:
            runner.offer_best(epoch, epoch_metrics)
        if last and spec.train.final_eval is not None:
            # With the last epoch's report, so tracking logs it and meta.json keeps it.
            metrics.update(runner.final_evaluation())
            if rank0:
                log.info(
                    "final %s evaluation of epoch %d: top-1 error %.2f %%",
                    spec.train.final_eval.protocol,
                    int(metrics["final_eval_epoch"]),
                    metrics["val_top1_error_10crop"],
                )
        if datasets:
            metrics[DATASET_REPORT_KEY], datasets = datasets, None
        _report(runner, session, metrics, checkpoint, checkpoint_name(epoch))
    if rank0 and metrics is None:
        log.info(
            "nothing to train: the checkpoint is at step %d of %d", runner.step, runner.total_steps
        )
    return metrics


def data_description(runner: Runner) -> dict[str, Any] | None:
    """`tracking.datasets.describe_splits` of the runner's data set (None with injected
    loaders, or when the description fails: it must never stop training)."""
    if runner.layout is None:
        return None
    try:
        return describe_splits(runner.layout, runner.spec.data.source)
    except Exception as exc:  # noqa: BLE001 - see the docstring
        log.warning("the data set is not described for tracking: %s", exc)
        return None


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train worker entry point.

    `config`: `{"spec": JobSpec.model_dump(mode="json"), "progress": optional queue or callable,
    "resume_checkpoint": optional checkpoint directory, "storage_marker": optional file the
    driver wrote into the run's storage, read back first so an unreachable storage stops the
    job before the first step, "tracking": optional `tracking.system_metrics.worker_config`, for
    one worker on each node to log the node's system metrics, "run_name": the run's name,
    "control": optional handle of the run's `launch.control.RunControl` actor, which every
    rank beats to (for the driver to name a rank that hangs) and hears stop requests from}`.
    """
    import ray
    import ray.train
    import ray.train.torch

    if config.get("storage_marker"):
        from resnetctl.storage import check_worker_access

        check_worker_access(config["storage_marker"])

    spec = JobSpec.model_validate(config["spec"])
    context = ray.train.get_context()
    device = ray.train.torch.get_device()

    def wrap(model: Any) -> Any:
        return ray.train.torch.prepare_model(model, move_to_device=device)

    placement = Placement(
        rank=context.get_world_rank(),
        world_size=context.get_world_size(),
        local_rank=context.get_local_rank(),
        device=device,
        wrap_model=wrap,
    )
    from resnetctl.train.notices import RankNotices, RunLedger
    from resnetctl.train.upload import clear_stale_staging, last_upload_seconds

    run_name = config.get("run_name") or spec.name
    if placement.rank == 0:
        clear_stale_staging(run_name)
    control = config.get("control")
    node_id = ray.get_runtime_context().get_node_id()
    with node_monitor(config.get("tracking"), node_id):
        with rank_heartbeat(control, placement) as heart:
            run_training(
                spec,
                placement,
                RaySession(spec.checkpoint.upload, run_name),
                progress=config.get("progress"),
                resume_checkpoint=config.get("resume_checkpoint"),
                runner=heart.follow(Runner(spec, placement)),
                notices=RankNotices(heart),
                upload_seconds=last_upload_seconds,
                ledger=RunLedger(control) if control is not None else None,
            )
