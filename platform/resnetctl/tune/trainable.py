"""The Tune function trainable: each trial builds its spec, opens (or reopens) its MLflow child
run, and fits one Ray Train run of `resnetctl`'s training loop.

Under Ray Train V2 a `TorchTrainer` cannot be handed to a `Tuner`; a function trainable that
fits the trainer is the supported pattern. Ray Train reports reach Tune through
`TuneReportCallback`, and MLflow through `EpochMetricsCallback`, both on the Train controller.
"""

from __future__ import annotations

from typing import Any

from resnetctl.spec import JobSpec
from resnetctl.storage import StoragePath
from resnetctl.tracking import tags
from resnetctl.tune.facts import trial_run_name
from resnetctl.tune.record import RECORD_FILE, SweepRecord, trial_label


def open_child_run(record: SweepRecord, trial_id: str, spec: JobSpec, label: str) -> Any:
    """Reopen the trial's child run when the trial is restarted (a resumed sweep), else create
    it under the parent: one run per trial, however often the trial starts."""
    from mlflow import MlflowClient

    from resnetctl.spec import dump_spec
    from resnetctl.tracking.run import JobRun
    from resnetctl.tracking.store import default_artifact_root

    client = MlflowClient(record.tracking_uri)
    existing = tags.find_child_run(client, spec.tracking.experiment, record.parent_run_id, trial_id)
    if existing is not None:
        client.update_run(existing.info.run_id, status="RUNNING")
        return JobRun(record.tracking_uri, existing.info.run_id)
    # Named by the trial (`resnet34-B`) in the runs table; the parent keeps the sweep's name.
    run_name = trial_run_name(label, trial_id, record.numbered_runs)
    named = spec.model_copy(
        update={"tracking": spec.tracking.model_copy(update={"run_name": run_name})}
    )
    return JobRun.start(
        named,
        record.tracking_uri,
        resolved_yaml=dump_spec(spec),
        artifact_root=default_artifact_root(record.tracking_uri),
        extra_tags={
            tags.PARENT_TAG: record.parent_run_id,
            tags.SWEEP_TAG: record.name,
            tags.TRIAL_TAG: trial_id,
            tags.RUN_NAME_TAG: trial_id,
            tags.LABEL_TAG: label,
        },
    )


def epoch_reports_to_tune_class() -> type:
    """`TuneReportCallback` forwarding epoch reports only: a checkpoint between steps or the
    report of a restore is not a Tune iteration (schedulers such as ASHA count reports as
    training iterations). Built on call: importing Ray Tune is slow."""
    from ray.tune.integration.ray_train import TuneReportCallback

    class EpochReportsToTune(TuneReportCallback):
        def after_report(self, run_context: Any, metrics: Any, checkpoint: Any) -> None:
            if not metrics or "epoch" not in metrics[0]:
                return
            super().after_report(run_context, metrics, checkpoint)

    return EpochReportsToTune


def run_trial(config: dict[str, Any], *, sweep: dict[str, Any]) -> None:
    """Tune function trainable: fit one Ray Train run of the trial's spec.

    `config` is the trial's point of the search space; `sweep` the sweep record (bound with
    `tune.with_parameters`). The Train run is named after the trial and stored under the
    sweep's directory, so a trial restarted by `--resume` continues from its own latest
    checkpoint (Ray Train restores a run of the same name and storage path).
    """
    import ray
    from ray import tune

    from resnetctl.launch.control import start_control
    from resnetctl.launch.trainer import build_trainer
    from resnetctl.tracking.callback import EpochMetricsCallback
    from resnetctl.tracking.system_metrics import worker_config

    record = SweepRecord.model_validate(sweep)
    trial_id = tune.get_context().get_trial_id()
    spec = record.trial_spec(config)
    label = trial_label(config, spec)
    run = open_child_run(record, trial_id, spec, label)
    _backfill_epochs(run, record.train_storage / trial_id)
    done = _completed_metrics(record, trial_id, spec)
    if done is not None:
        # The Train run ended but the sweep was killed before Tune recorded it: Ray Train would
        # restore at the last epoch and report nothing, so Tune gets the final metrics here.
        tune.report(done)
        run.end("FINISHED")
        return
    # The trial's per-step metrics, and its ranks' heartbeats, go through a control actor of its
    # own, beside this trial's driver.
    control = start_control(run.uri, run.run_id)
    trainer = build_trainer(
        spec,
        run_name=trial_id,
        storage_path=record.train_storage,
        loop_config={
            "spec": spec.model_dump(mode="json"),
            "progress": None,
            # Workers read the sweep record back before their first step (storage.access).
            "storage_marker": str(record.experiment_path / RECORD_FILE),
            "tracking": worker_config(run.uri, run.run_id, spec.tracking.system_metrics_interval_s),
            "run_name": trial_id,
            "control": control,
        },
        callbacks=[
            EpochMetricsCallback(run.uri, run.run_id),
            epoch_reports_to_tune_class()(),
        ],
    )
    # A failure leaves the run open on purpose: the driver's callback closes it as FAILED, or
    # as KILLED when the scheduler stopped the trial (stopping also makes `fit` raise here).
    try:
        trainer.fit()
    finally:
        ray.get(control.flush.remote(), timeout=60)
    if run.logged_epochs():
        run.log_curves(label)
    run.end("FINISHED")


def _completed_metrics(record: SweepRecord, trial_id: str, spec: JobSpec) -> dict[str, Any] | None:
    """The last epoch's metrics when the trial's Train run already trained to the end."""
    import json

    from resnetctl.storage import CHECKPOINT_META, latest_checkpoint

    length, unit = spec.train.length
    last = latest_checkpoint(record.train_storage / trial_id)
    if last is None or unit != "epoch":
        return None
    meta = json.loads((last / CHECKPOINT_META).read_text())
    if int(meta.get("epoch", 0)) < length:
        return None
    return dict(meta.get("metrics") or {})


def _backfill_epochs(run: Any, folder: StoragePath) -> None:
    """Log the epochs whose checkpoint exists but whose metrics never reached MLflow: a sweep
    killed between Ray Train persisting a checkpoint and its controller's callbacks loses them,
    and the restored run continues after that epoch."""
    import json
    import time

    from mlflow.entities import Metric

    from resnetctl.spec.metrics import EPOCH_METRICS
    from resnetctl.storage import CHECKPOINT_META
    from resnetctl.tracking.names import to_mlflow

    logged = run.logged_epochs()
    now = int(time.time() * 1000)
    for meta_file in folder.glob(f"*/{CHECKPOINT_META}"):
        try:
            meta = json.loads(meta_file.read_text())
        except (OSError, ValueError):
            continue
        epoch, metrics = meta.get("epoch"), meta.get("metrics") or {}
        if not isinstance(epoch, int) or epoch in logged:
            continue
        logged_names = to_mlflow(metrics, EPOCH_METRICS).items()
        batch = [Metric(k, value, now, epoch) for k, value in logged_names]
        if batch:
            run.client.log_batch(run.run_id, metrics=batch)
