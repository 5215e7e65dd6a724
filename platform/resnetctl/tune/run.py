"""Run a planned sweep (or continue a stopped one) under Ray Tune: Ray from the launch layer,
the MLflow parent run opened first, the Tuner built from the sweep record, and the results
ranked and logged on the parent at the end (`tune.results`)."""

from __future__ import annotations

import os
import time
from typing import Any

from resnetctl.launch import embedded
from resnetctl.storage import StoragePath
from resnetctl.tune.record import SweepError, SweepRecord, trial_label
from resnetctl.tune.results import SweepOutcome, finish_parent, rank_trials, start_parent

#: Seconds between snapshots of Tune's experiment state: a sweep killed right after a trial
#: finished must find that trial finished on `--resume` (Tune's automatic period is >= 10 s).
EXPERIMENT_SNAPSHOT_S = "2"


def run_sweep(record: SweepRecord, *, resume: bool = False, console: Any = None) -> SweepOutcome:
    """Run (or continue) the sweep, track it in MLflow, and rank its trials."""
    from resnetctl.tracking.store import TrackingError, check_reachable
    from resnetctl.tune.view import TrialView

    started = time.monotonic()
    try:
        check_reachable(record.tracking_uri)
    except TrackingError as exc:
        raise SweepError(str(exc)) from None
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", EXPERIMENT_SNAPSHOT_S)
    owns_ray = embedded.ensure_ray(os.environ.get("RAY_ADDRESS"), env_vars=embedded.worker_env())
    parent = None
    try:
        if not record.max_concurrent:
            record.max_concurrent = _cluster_capacity(record)
        parent = _open_parent(record, resume)
        record.save()
        tuner = build_tuner(record, resume)
        with TrialView(record, console):
            results = tuner.fit()
        unfinished = _unfinished_trials(results)
        # Tune creates trials as it goes: a stopped sweep may not have created them all.
        interrupted = bool(unfinished) or len(results) < record.space.size(record.samples)
        rows = rank_trials(record, results, unfinished)
        finish_parent(parent, record, rows, interrupted)
        return SweepOutcome(
            record=record,
            rows=rows,
            interrupted=interrupted,
            parent_run_id=parent.run_id,
            parent_url=parent.url,
            seconds=time.monotonic() - started,
        )
    except BaseException:
        if parent is not None:
            parent.end("KILLED")
        raise
    finally:
        if owns_ray:
            embedded.stop()
        _clear_trials_staging(record)


def _clear_trials_staging(record: SweepRecord) -> None:
    """Remove the checkpoint staging folders that trials' workers on this machine left when
    they were stopped in the middle of a checkpoint (a trial's run name is its id)."""
    from resnetctl.storage import StorageError
    from resnetctl.train.upload import clear_stale_staging

    try:
        trials = [folder.name for folder in record.train_storage.iterdir()]
    except (OSError, StorageError):
        return
    for trial in trials:
        clear_stale_staging(trial)


def _open_parent(record: SweepRecord, resume: bool) -> Any:
    """The parent run of a resumed sweep, reopened; else a new one, noted in the record."""
    from resnetctl.tracking.run import JobRun

    if resume and record.parent_run_id:
        parent = JobRun(record.tracking_uri, record.parent_run_id)
        parent.client.update_run(parent.run_id, status="RUNNING")
        return parent
    parent = start_parent(record)
    record.parent_run_id = parent.run_id
    return parent


def _cluster_capacity(record: SweepRecord) -> int:
    """Trials that fit the connected cluster at once (at least one)."""
    import ray

    spec = record.trial_spec(record.space.first_config())
    cpus = ray.cluster_resources().get("CPU", 1.0)
    need = spec.resources.max_workers * spec.resources.cpus_per_worker
    fits = int(cpus // need)
    if spec.resources.use_gpu:
        gpus = ray.cluster_resources().get("GPU", 0.0)
        fits = min(fits, int(gpus // (spec.resources.max_workers * spec.resources.gpus_per_worker)))
    return max(1, fits)


def ray_path(folder: StoragePath) -> dict[str, Any]:
    """`path` (and `storage_filesystem` for a bucket) as `Tuner.restore`/`can_restore` take
    them."""
    options = folder.ray_storage()
    return {"path": options.pop("storage_path"), **options}


def build_tuner(record: SweepRecord, resume: bool) -> Any:
    """The Tuner of the sweep: restored from its saved state (`resume`), else new."""
    from ray import tune

    from resnetctl.tune.trainable import run_trial
    from resnetctl.tune.view import SweepCallback

    trainable = tune.with_resources(
        tune.with_parameters(run_trial, sweep=record.as_dict()),
        tune.PlacementGroupFactory([dict(record.trial_driver)]),
    )
    if resume:
        return tune.Tuner.restore(
            **ray_path(record.experiment_path), trainable=trainable, resume_unfinished=True
        )
    return tune.Tuner(
        trainable,
        param_space=record.space.param_space(),
        tune_config=tune.TuneConfig(
            metric=record.metric,
            mode=record.mode,
            scheduler=_scheduler(record),
            num_samples=record.samples,
            max_concurrent_trials=record.max_concurrent,
            trial_name_creator=trial_name,
            trial_dirname_creator=trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=record.name,
            **StoragePath.of(record.storage).ray_storage(),
            callbacks=[SweepCallback(record.as_dict())],
            failure_config=tune.FailureConfig(max_failures=0),
            verbose=0,
        ),
    )


def _scheduler(record: SweepRecord) -> Any:
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    if record.scheduler == "fifo":
        return FIFOScheduler()
    return ASHAScheduler(
        time_attr="epoch",  # epochs, not Tune iterations: a resumed trial keeps counting
        max_t=record.max_t,
        grace_period=record.grace_period,
        reduction_factor=record.reduction_factor,
    )


# Tune pickles these two by reference into the sweep's `tuner.pkl`: their names are part of
# every saved sweep (`tune/sweep.py` keeps the names older sweeps saved).
def trial_name(trial: Any) -> str:
    """Tune's name of a trial: its network (or first searched value) and its id."""
    return f"{trial_label(trial.config).split(' ')[0]}_{trial.trial_id}"


def trial_dirname(trial: Any) -> str:
    """The trial's directory under the sweep: its id (as the Ray Train run of the trial)."""
    return trial.trial_id


def _unfinished_trials(results: Any) -> set[str]:
    """The trials a stopped sweep did not finish, which `--resume` runs.

    Stopped by a signal, Tune saves the sweep's state and then marks every trial it stops, or
    never started, TERMINATED in the results it returns; only the saved state tells them apart.
    """
    from ray.tune import ExperimentAnalysis
    from ray.tune.experiment import Trial

    try:
        saved = ExperimentAnalysis(results.experiment_path, storage_filesystem=results.filesystem)
    except Exception:  # noqa: BLE001 - no readable state: the results are all there is
        return set()
    done = (Trial.TERMINATED, Trial.ERROR)
    return {trial.trial_id for trial in saved.trials if trial.status not in done}
