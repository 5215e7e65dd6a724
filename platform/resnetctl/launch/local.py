"""Run a job on Ray from this process: an embedded local Ray, or a cluster this process is
part of (the Ray Jobs entrypoint runs the same function on the head node)."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from resnetctl.launch import embedded
from resnetctl.launch.driver import mark_driver
from resnetctl.launch.joblog import JobLog, log_location
from resnetctl.launch.outcome import RunSummary
from resnetctl.launch.progress import ProgressView
from resnetctl.spec import JobSpec, dump_spec
from resnetctl.storage import (
    RECORD,
    RunRecord,
    StorageError,
    StoragePath,
    new_run_name,
    resolve_resume,
    storage_root,
)
from resnetctl.tracking.store import check_reachable, default_artifact_root, resolve_tracking_uri

#: Ray Train's poll periods (seconds) that resnetctl shortens, unless set: its preemption
#: watcher's, and its controller's poll of the workers.
CONTROLLER_ENV = {
    "RAY_TRAIN_PREEMPTION_POLL_INTERVAL_S": "1",
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5",
}


class LaunchError(RuntimeError):
    """The job could not be started (tracking, resume target, resources)."""


def run_local(
    spec: JobSpec, *, spec_file: str | None = None, verbose: bool = False, live: bool = True
) -> RunSummary:
    """Train `spec` with Ray Train from this process and track it in MLflow.

    Without RAY_ADDRESS an embedded Ray sized to this machine is started and stopped.

    Stderr shows the progress (a live bar if `live` and stderr is a terminal), a line per
    epoch and, if the job fails, the last lines of its log. Everything Ray and MLflow print
    goes to that log, `resnetctl.log` in the run's folder, and with `verbose` to stderr too.
    """
    # Bound to stderr now: the job's log takes sys.stderr over. Lines are never cut or wrapped.
    console = Console(file=sys.stderr, soft_wrap=True)
    log = JobLog(echo=_echo(console) if verbose else None)
    try:
        with log:
            summary = _run(spec, spec_file, log, console, live)
    except LaunchError:
        raise  # the job did not start, and the message says why
    except Exception:
        if not verbose:
            log.show_tail(console)
        raise
    if not summary.succeeded and not verbose:
        log.show_tail(console)
    return summary


def _echo(console: Console) -> Any:
    from rich.text import Text

    def echo(line: str) -> None:
        console.print(Text.from_ansi(line), highlight=False, soft_wrap=True)

    return echo


def _run(
    spec: JobSpec, spec_file: str | None, log: JobLog, console: Console, live: bool
) -> RunSummary:
    from resnetctl.tracking.store import TrackingError

    started = time.monotonic()
    uri = resolve_tracking_uri(spec)
    try:
        check_reachable(uri)
    except TrackingError as exc:
        raise LaunchError(str(exc)) from None
    try:
        storage = storage_root()
        resume_checkpoint, record = _resume_target(spec, storage)
    except StorageError as exc:
        raise LaunchError(f"storage: {exc}") from None
    _list_bucket_data(spec)
    tracking = _in_background(uri)
    try:
        owns_ray = _ensure_ray(spec)  # before any run exists: a job that cannot start leaves none
    finally:
        # Never leave a half-migrated sqlite store behind, whatever happened to Ray.
        tracking.join()
    run = run_name = None
    try:
        run, run_name = _open_run(spec, uri, storage, record, spec_file)
        log.attach(*_log_location(storage, run_name))
        console.print(
            f"{run_name}: Ray and MLflow log to {log.location}", markup=False, highlight=False
        )
        if resume_checkpoint is not None:
            console.print(f"resuming from {resume_checkpoint}", markup=False, highlight=False)
        run.set_tags({"ray.job_id": _ray_job_id()})
        error, first_step_at = _fit(
            spec,
            run,
            run_name,
            storage,
            resume_checkpoint,
            ProgressView(spec.train.length, console, live=live),
        )
        startup = None if first_step_at is None else first_step_at - started
        return _finish(spec, run, run_name, storage, error, started, startup, log)
    except BaseException:
        if run is not None:
            run.end("KILLED")
        raise
    finally:
        if owns_ray:
            embedded.stop()
        else:
            from resnetctl.launch.capacity import autoscaler_request

            autoscaler_request([])  # the job is over: its nodes may be scaled down
        if run_name is not None:
            from resnetctl.train.upload import clear_stale_staging

            # What the workers on this machine were still uploading when they were stopped.
            clear_stale_staging(run_name)


def check_before_start(spec: JobSpec) -> None:
    """What `run_local` checks before it starts Ray, for `submit --dry-run`: the tracking
    store, the storage location, the resume target and data kept in a bucket. Raises
    LaunchError naming what is wrong."""
    from resnetctl.tracking.store import TrackingError

    try:
        check_reachable(resolve_tracking_uri(spec))
    except TrackingError as exc:
        raise LaunchError(str(exc)) from None
    try:
        _resume_target(spec, storage_root())
    except StorageError as exc:
        raise LaunchError(f"storage: {exc}") from None
    _list_bucket_data(spec)


def _in_background(uri: str) -> threading.Thread:
    """`prepare_store(uri)` in a thread: MLflow's imports and a new store's tables take seconds
    of the startup, and overlap with Ray's processes starting."""
    from resnetctl.tracking.run import prepare_store

    def prepare() -> None:
        try:
            prepare_store(uri)
        except Exception:  # noqa: BLE001 - _open_run does the same work and reports the error
            pass

    thread = threading.Thread(target=prepare, name="resnetctl-tracking", daemon=True)
    thread.start()
    return thread


def _open_run(
    spec: JobSpec, uri: str, storage: StoragePath, record: RunRecord | None, spec_file: str | None
) -> tuple[Any, str]:
    """The MLflow run to write to: the resumed run's own, or a new one; and the run name.

    Inside a Ray job submitted by `resnetctl submit --address`, the run is named after the
    submission id (RESNETCTL_RUN_NAME) so that `resnetctl list` and MLflow agree.
    """
    from resnetctl.tracking.run import JobRun

    if record is not None and record.mlflow_uri == uri:
        run = JobRun(uri, record.mlflow_run_id)
        run.client.update_run(run.run_id, status="RUNNING")
        mark_driver(storage / record.run_name)  # for `resnetctl status|stop RUN`
        return run, record.run_name
    run_name = os.environ.get("RESNETCTL_RUN_NAME") or new_run_name(spec.name)
    tags = {"resnetctl.run_name": run_name}
    if spec_file:
        tags["resnetctl.spec_file"] = spec_file
    run = JobRun.start(
        spec,
        uri,
        resolved_yaml=dump_spec(spec),
        artifact_root=default_artifact_root(uri),
        extra_tags=tags,
    )
    RunRecord(run_name, spec.name, uri, run.run_id).save(storage)
    mark_driver(storage / run_name)  # for `resnetctl status|stop RUN`
    return run, run_name


def _list_bucket_data(spec: JobSpec) -> None:
    """Data in a bucket is listed here, once per run, not by every worker at once."""
    from resnetctl.data.imagefolder import DataError
    from resnetctl.data.objectstore import prelist

    try:
        prelist(spec.data.source)
    except (DataError, StorageError) as exc:
        raise LaunchError(f"{spec.where('data', 'source', 'root')}: {exc}") from None


def _resume_target(
    spec: JobSpec, storage: StoragePath
) -> tuple[StoragePath | None, RunRecord | None]:
    target = spec.checkpoint.resume_from
    if not target:
        return None, None
    try:
        return resolve_resume(target, storage, job=spec.name)
    except FileNotFoundError as exc:
        raise LaunchError(f"{spec.where('checkpoint', 'resume_from')}: {exc}") from None


def _ensure_ray(spec: JobSpec) -> bool:
    """Join RAY_ADDRESS's cluster or start a private embedded Ray; True if this process started
    it.

    Either way, return only when the cluster has room for every worker: an embedded Ray never
    grows, so it fails at once; a cluster gets `resources.placement_timeout_s` and an
    autoscaler request.
    """
    from resnetctl.launch.capacity import CapacityError, autoscaler_request, wait_for_capacity

    # Workers see the driver's data cache and storage even where Ray's worker pool was started
    # from another environment.
    owns = embedded.ensure_ray(os.environ.get("RAY_ADDRESS"), env_vars=embedded.worker_env())
    try:
        if owns:
            wait_for_capacity(spec, timeout=0)
        else:
            wait_for_capacity(spec, request=autoscaler_request)
    except CapacityError as exc:
        if owns:
            embedded.stop()
        raise LaunchError(f"{spec.where('resources', 'workers')}: {exc}") from None
    return owns


def _ray_job_id() -> str:
    import ray

    return ray.get_runtime_context().get_job_id()


def _fit(
    spec: JobSpec,
    run: Any,
    run_name: str,
    storage: StoragePath,
    resume: StoragePath | None,
    view: ProgressView,
) -> tuple[BaseException | None, float | None]:
    """Fit the trainer in a thread while this one draws progress on `view`; returns the
    failure, if any, and when the first training step was seen.

    The first interrupt (Ctrl-C, SIGTERM) asks the workers to checkpoint and end
    (`launch.stopping`); once they have, KeyboardInterrupt goes on to stop the run as before."""
    from resnetctl.launch.badnodes import BadNodeCallback
    from resnetctl.launch.collectives import ray_barrier_timeout
    from resnetctl.launch.control import start_control
    from resnetctl.launch.hang import HangCallback
    from resnetctl.launch.progress import progress_queue as new_progress_queue
    from resnetctl.launch.stopping import GracefulStop, deferred_interrupts, deliver
    from resnetctl.launch.trainer import build_trainer
    from resnetctl.tracking.callback import EpochMetricsCallback
    from resnetctl.tracking.system_metrics import worker_config

    progress_queue = new_progress_queue()
    control = start_control(run.uri, run.run_id)
    # Read by the trainer here and propagated to its controller: Ray Train's preemption watcher
    # (on for clusters) polls every 5 s by default, and a GCP reclaim gives 30 s; the controller
    # takes one report per poll of the workers, every 2 s by default, so epochs shorter than
    # that (and checkpoints between steps) would queue up behind each other.
    for name, value in CONTROLLER_ENV.items():
        os.environ.setdefault(name, value)
    config: dict[str, Any] = {
        "spec": spec.model_dump(mode="json"),
        "progress": progress_queue,
        "resume_checkpoint": str(resume) if resume else None,
        # Every worker reads the run record back before its first step (storage.access).
        "storage_marker": str(storage / run_name / RECORD),
        # One worker on each node logs the node's system metrics into the run.
        "tracking": worker_config(run.uri, run.run_id, spec.tracking.system_metrics_interval_s),
        "run_name": run_name,
        # Every rank beats to it (the evidence for naming a rank that hangs, launch.hang) and
        # hears the driver's stop requests in the answer; rank 0 records its steps there.
        "control": control,
    }
    trainer = build_trainer(
        spec,
        run_name=run_name,
        storage_path=storage,
        loop_config=config,
        callbacks=[
            EpochMetricsCallback(run.uri, run.run_id, progress_queue),
            HangCallback(control, spec.failure.collective_timeout_s, progress_queue),
            BadNodeCallback(
                spec.failure.exclude_node_after,
                tracking_uri=run.uri,
                run_id=run.run_id,
                progress=progress_queue,
            ),
        ],
    )
    outcome: dict[str, Any] = {}

    def fit() -> None:
        try:
            with ray_barrier_timeout(spec):
                outcome["result"] = trainer.fit()
        except BaseException as exc:  # reported in the summary, not lost in a thread
            outcome["error"] = exc

    worker = threading.Thread(target=fit, name="resnetctl-fit", daemon=True)
    worker.start()
    stop = GracefulStop(control, view.console)
    with view, deferred_interrupts() as signals:
        while worker.is_alive():
            view.drain(progress_queue)
            worker.join(timeout=0.5)
            if signals and not stop.requested:
                if not stop.interrupt(training_started=view.first_event_at is not None):
                    break  # nothing trained to keep: stop at once
            if stop.overdue():
                break
        view.drain(progress_queue)
    _flush_step_metrics(control)
    result = outcome.get("result")
    error = outcome.get("error") or (getattr(result, "error", None) if result else None)
    if signals and (worker.is_alive() or error is None):
        # Stopped at once, or the workers checkpointed and ended: the run stops here as an
        # interrupted run does (the signal's own exit code).
        deliver(signals[0])
    return error, view.first_event_at


def _flush_step_metrics(control: Any) -> None:
    """The last per-step metrics into MLflow before the summary reads the run."""
    import ray

    try:
        ray.get(control.flush.remote(), timeout=60)
    except Exception as exc:  # noqa: BLE001 - they are the run's, not what decides it
        logging.getLogger(__name__).warning("the last per-step metrics are not logged: %s", exc)


def _log_location(storage: StoragePath, run_name: str) -> tuple[Path, StoragePath | None]:
    """`joblog.log_location`; a resumed run kept in a bucket first fetches the log it has."""
    local, kept = log_location(storage, run_name)
    if kept is not None and not local.exists() and kept.is_file():  # one log per run, anywhere
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(kept.read_bytes())
    return local, kept


def _finish(
    spec: JobSpec,
    run: Any,
    run_name: str,
    storage: StoragePath,
    error: BaseException | None,
    started: float,
    startup: float | None = None,
    log: JobLog | None = None,
) -> RunSummary:
    from resnetctl.storage import best_checkpoint
    from resnetctl.storage.runs import remove_incomplete
    from resnetctl.tracking.names import history
    from resnetctl.tracking.summary import final_metrics, log_summary, summary_metrics

    # Every worker has ended: a checkpoint folder without its manifest now can only be one a
    # worker died while writing.
    for partial in remove_incomplete(storage / run_name):
        logging.getLogger(__name__).warning(
            "removed the incomplete checkpoint %s (a worker died while writing it)", partial
        )
    epochs = len(history(run.client, run.run_id, "val_top1_error"))
    # Ranked from the checkpoints' own metadata: it survives a failed fit() that has no Result.
    best = best_checkpoint(
        storage / run_name, spec.checkpoint.metric, spec.checkpoint.mode or "min"
    )
    if best is not None:
        with best.local() as directory:
            run.log_checkpoint(directory, "best")
    model_uri = registered = decision = None
    if error is None and best is not None:
        from resnetctl.tracking.model import log_best_model

        # The best epoch's network, not the last's: what `checkpoints/best` holds.
        with best.local() as directory:
            handed = log_best_model(spec, run.uri, run.run_id, Path(directory), run_name)
        model_uri, registered, decision = handed.model_uri, handed.registered, handed.decision
        if decision:
            # Into the run's log (the job's log holds stderr while the job runs).
            print(f"model registry: {decision}", file=sys.stderr)
    seconds = time.monotonic() - started
    summary = summary_metrics(
        run.client, run.run_id, spec, total_seconds=seconds, startup_seconds=startup
    )
    log_summary(run.client, run.run_id, summary, step=epochs)
    if epochs:
        from resnetctl.tracking.plots import curves_title

        run.log_curves(curves_title(spec, run_name))
    if log is not None and log.path is not None and log.path.is_file():
        run.log_file(log.path, "logs")  # up to here: what Ray prints as it stops comes after
    run.end("FINISHED" if error is None else "FAILED")
    return RunSummary(
        succeeded=error is None,
        run_name=run_name,
        mlflow_run_id=run.run_id,
        mlflow_url=run.url,
        storage_path=str(storage / run_name),
        seconds=seconds,
        startup_seconds=startup,
        epochs_completed=epochs,
        metrics={**final_metrics(run.client, run.run_id), **summary},
        best_checkpoint=str(best) if best else None,
        model_uri=model_uri,
        registered_model=registered,
        registry_decision=decision,
        error=_describe(error) if error else None,
        log_file=log.location if log is not None else None,  # the bucket's, for a bucket run
    )


def _describe(error: BaseException) -> str:
    # Ray wraps worker exceptions; the innermost message is the one a user can act on.
    seen = error
    while getattr(seen, "__cause__", None) is not None:
        seen = seen.__cause__  # type: ignore[assignment]
    text = str(seen).strip().splitlines()
    return f"{type(seen).__name__}: {text[-1] if text else ''}"
