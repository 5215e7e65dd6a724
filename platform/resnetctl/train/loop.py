"""The Ray Train worker function, and the Ray-free loop it runs.

Resume contract: a run continues at the epoch after the checkpoint's epoch, with the schedule,
optimiser, scaler, step counter and RNG states of that checkpoint. A restarted worker group takes
Ray's latest checkpoint (`ray.train.get_checkpoint()`); a new run can start from a checkpoint
directory (`config["resume_checkpoint"]`, or `checkpoint.resume_from` when it is a directory).
"""

from __future__ import annotations

import logging
import math
import os
import queue
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Protocol

from resnetctl.spec import JobSpec
from resnetctl.spec.metrics import STEP_REPORT_KEY
from resnetctl.tracking.datasets import DATASET_REPORT_KEY, describe_splits
from resnetctl.tracking.system_metrics import node_monitor
from resnetctl.train.checkpoint import (
    is_checkpoint,
    load_checkpoint,
    save_checkpoint,
    unwrap,
)
from resnetctl.train.heartbeat import rank_heartbeat
from resnetctl.train.runner import NonFiniteLossError, Placement, Runner, StepCallback

log = logging.getLogger(__name__)

DEFAULT_PROGRESS_EVERY = 10


class Session(Protocol):
    """What the loop needs from its host (Ray Train, or a test double)."""

    def checkpoint_dir(self) -> AbstractContextManager[str | None]:
        """A local directory holding the checkpoint to resume from, or None."""
        ...

    def report(self, metrics: dict[str, Any], checkpoint_dir: str | None, name: str) -> None:
        """Report an epoch's metrics (all ranks) and, from rank 0, a checkpoint directory."""
        ...


class RaySession:
    """`Session` over Ray Train V2's worker API."""

    @contextmanager
    def checkpoint_dir(self) -> Iterator[str | None]:
        """The latest checkpoint Ray Train restored this worker group with, as a directory."""
        import ray.train

        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            yield None
            return
        if ray.train.get_context().get_world_rank() == 0:
            # Where it lies (a bucket's URI): "resumed from ray" alone does not say.
            log.info("Ray Train restored the checkpoint %s", checkpoint_uri(checkpoint))
        with checkpoint.as_directory() as directory:
            yield directory

    def report(self, metrics: dict[str, Any], checkpoint_dir: str | None, name: str) -> None:
        """`ray.train.report`, with the checkpoint directory (rank 0) under the name `name`."""
        import ray.train

        checkpoint = (
            None if checkpoint_dir is None else ray.train.Checkpoint.from_directory(checkpoint_dir)
        )
        # Which node each rank ran on travels with the report: the controller records it.
        metrics = {**metrics, "node_id": ray.get_runtime_context().get_node_id()}
        # Every rank reports (Ray Train V2 synchronises on it); only rank 0 carries files.
        ray.train.report(metrics, checkpoint=checkpoint, checkpoint_dir_name=name)


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
    return {
        "epoch": runner.epoch,
        "step": runner.step,
        "metrics": {k: v for k, v in metrics.items() if k != DATASET_REPORT_KEY},
        "model": runner.spec.model.name,
        "job": runner.spec.name,
        "world_size": runner.placement.world_size,
        "global_batch": runner.spec.train.global_batch(runner.placement.world_size),
        # What `resnetctl eval|export|predict` need without the MLflow run: the network's
        # options, the input pipeline and the names of the classes the outputs stand for.
        "spec": runner.spec.model_dump(mode="json"),
        "classes": list(runner.class_names or ()),
    }


def _report(
    runner: Runner, session: Session, metrics: dict[str, Any], with_checkpoint: bool
) -> None:
    name = checkpoint_name(runner.epoch)
    if not with_checkpoint:
        session.report(metrics, None, name)
        return
    state = runner.state_dict()  # a collective: every rank takes part
    if runner.placement.rank != 0:
        session.report(metrics, None, name)
        return
    with tempfile.TemporaryDirectory(prefix="resnetctl-ckpt-") as tmp:
        save_checkpoint(Path(tmp), state, _meta(runner, metrics))
        session.report(metrics, tmp, name)


def step_reporter(session: Session) -> StepCallback:
    """Reports `train.log_every_n_steps` metrics through the session, without a checkpoint:
    they travel to the controller's tracking callback like the epoch metrics."""

    def report(metrics: dict[str, Any]) -> None:
        session.report(metrics, None, f"step_{metrics[STEP_REPORT_KEY]:09d}")

    return report


def run_training(
    spec: JobSpec,
    placement: Placement,
    session: Session,
    *,
    progress: Any = None,
    resume_checkpoint: str | None = None,
    runner: Runner | None = None,
) -> dict[str, Any] | None:
    """Train to the end of the run, reporting every epoch; returns the last epoch's metrics
    (None when the checkpoint was already at the end)."""
    runner = runner or Runner(spec, placement)
    source = resume(runner, session, resume_checkpoint)
    rank0 = placement.rank == 0
    if rank0 and source is not None:
        log.info(
            "resumed from %s at epoch %d, step %d: continuing with epoch %d",
            source,
            runner.epoch,
            runner.step,
            runner.epoch + 1,
        )
    on_step = progress_callback(progress) if rank0 else None
    every = spec.train.log_every_n_steps or DEFAULT_PROGRESS_EVERY
    metrics: dict[str, Any] | None = None
    # What rank 0 trains on travels with its first report, for tracking to log as datasets.
    datasets = data_description(runner) if rank0 else None
    while not runner.finished:
        epoch = runner.epoch + 1
        epoch_metrics = runner.run_epoch(
            epoch, on_step=on_step, every=every, on_metrics=step_reporter(session)
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
        _report(runner, session, metrics, checkpoint)
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
    one worker on each node to log the node's system metrics, "heartbeat": optional
    `launch.hang` monitor actor the rank beats to, for the driver to name a rank that hangs}`.
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
    node_id = ray.get_runtime_context().get_node_id()
    with node_monitor(config.get("tracking"), node_id):
        with rank_heartbeat(config.get("heartbeat"), placement) as heart:
            run_training(
                spec,
                placement,
                RaySession(),
                progress=config.get("progress"),
                resume_checkpoint=config.get("resume_checkpoint"),
                runner=heart.follow(Runner(spec, placement)),
            )
