"""A sweep from start to end: check the request before anything starts, run the Tuner (or
restore it), track the sweep as an MLflow parent run with one child per trial, rank the trials.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
import tempfile
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from resnetctl.host import usable_cpus
from resnetctl.launch import embedded
from resnetctl.spec import JobSpec, SpecError, dump_spec
from resnetctl.spec.errors import SpecIssue
from resnetctl.spec.loader import load_spec_text, parse_overrides
from resnetctl.spec.metrics import EPOCH_METRICS, default_mode
from resnetctl.storage import StoragePath
from resnetctl.tune.record import SweepRecord, build_trial_spec, trial_label
from resnetctl.tune.space import (
    SHORTCUTS,
    VARIANTS,
    SearchSpace,
    describe_value,
    model_points,
    parse_choices,
    parse_depths,
    parse_search_section,
)

DEFAULT_SPEC = "default.yaml"
SCHEDULERS = ("asha", "fifo")
#: What the trial's own actor reserves. It only waits on the Ray Train controller (which takes
#: no CPU) while the Train workers get their own placement group, so it asks for memory, not a
#: CPU: a core held by an idle actor would leave half of a 2-core machine unused, and two
#: 1-worker trials run side by side instead. (Ray needs a non-empty request to place it.)
TRIAL_DRIVER_RESOURCES: dict[str, float] = {"memory": 256 * 1024**2}
#: Seconds between snapshots of Tune's experiment state: a sweep killed right after a trial
#: finished must find that trial finished on `--resume` (Tune's automatic period is >= 10 s).
EXPERIMENT_SNAPSHOT_S = "2"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class SweepError(RuntimeError):
    """The sweep cannot start (tracking store, Ray, an unknown or finished sweep)."""


@dataclass
class SweepRequest:
    """What the user asked for on the command line."""

    file: Path | None = None
    overrides: Sequence[str] = ()
    depths: str | None = None
    shortcuts: str | None = None
    variants: str | None = None
    samples: int = 1
    max_concurrent: int | None = None
    scheduler: str = "asha"
    metric: str = "val_top1_error"
    mode: str | None = None
    grace_period: int = 1
    reduction_factor: float = 2.0
    name: str | None = None


def default_spec_text() -> str:
    """The packaged default base spec (digits, CIFAR-style input)."""
    return resources.files("resnetctl.tune").joinpath(DEFAULT_SPEC).read_text(encoding="utf-8")


def split_search(text: str, name: str) -> tuple[str, Any, str, dict[str, str]]:
    """Take the `search` section out of a spec's text.

    Returns the text with the section's lines blanked (so every other key keeps its line number
    in error messages), the section, where it starts, and the `file:line` of each of its keys.
    """
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return text, None, name, {}  # the spec loader reports the syntax error with its line
    if not isinstance(node, yaml.MappingNode):
        return text, None, name, {}
    for key, value in node.value:
        if key.value != "search":
            continue
        lines = text.splitlines(keepends=True)
        start, end = key.start_mark.line, value.end_mark.line
        if value.end_mark.column > 0:  # a flow mapping, or a last line without newline
            end += 1
        for index in range(start, min(max(end, start + 1), len(lines))):
            lines[index] = "\n"
        keys = {}
        if isinstance(value, yaml.MappingNode):
            keys = {k.value: f"{name}:{k.start_mark.line + 1}" for k, _ in value.value}
        section = (yaml.safe_load(text) or {}).get("search")
        return "".join(lines), section, f"{name}:{start + 1}", keys
    return text, None, name, {}


def _raw_shortcut(text: str, overrides: Sequence[str]) -> str | None:
    """The shortcut the spec's YAML (or --set) gives; None means the family's default."""
    data = yaml.safe_load(text) or {}
    model = data.get("model") if isinstance(data, dict) else None
    shortcut = model.get("shortcut") if isinstance(model, dict) else None
    for path, value, _ in parse_overrides(overrides):
        if path == ("model", "shortcut"):
            shortcut = value
        elif path == ("model",) and isinstance(value, dict):
            shortcut = value.get("shortcut")
    return shortcut


def _absolute_paths(spec: JobSpec) -> JobSpec:
    """Trials run in their own working directory: relative data paths become absolute."""
    source = spec.data.source
    root = getattr(source, "root", None)
    if root is not None and not isinstance(root, str) and not Path(root).is_absolute():
        source.root = Path(root).resolve()
    cache = getattr(source, "cache_dir", None)
    if cache is not None and not Path(cache).is_absolute():
        source.cache_dir = Path(cache).resolve()
    return spec


def plan_sweep(request: SweepRequest) -> SweepRecord:
    """Check everything that can be checked before a trial starts and return the sweep record.

    Raises `SpecError` (exit 2) for a bad spec, an unknown depth, shortcut or variant, an empty
    search space, an unknown metric, or a trial spec that would not validate.
    """
    from resnetctl.storage import new_run_name, storage_root
    from resnetctl.tracking.store import resolve_tracking_uri

    if request.file is not None:
        if not request.file.is_file():
            what = "is a directory, not a file" if request.file.is_dir() else "no such file"
            raise SpecError.single(str(request.file), what)
        text, source = request.file.read_text(encoding="utf-8"), str(request.file)
    else:
        text, source = default_spec_text(), "<default spec>"
    stripped, section, section_at, key_lines = split_search(text, source)
    base = load_spec_text(stripped, source, list(request.overrides))
    domains = parse_search_section(section, section_at, key_lines)

    depths = parse_depths(request.depths)
    shortcuts = parse_choices(request.shortcuts, "--shortcuts", SHORTCUTS)
    variants = parse_choices(request.variants, "--variants", VARIANTS)
    flags = [
        flag
        for flag, given in (
            ("--depths", depths),
            ("--shortcuts", shortcuts),
            ("--variants", variants),
        )
        if given is not None
    ]
    if flags:
        clash = [path for path in domains if path == "model" or path.startswith("model.")]
        if clash:
            raise SpecError.single(
                key_lines.get(clash[0], section_at),
                f"{', '.join(flags)} and the search section both choose the model; "
                "use one or the other",
                f"search.{clash[0]}",
            )
    notes: list[str] = []
    points = []
    if flags:
        base_model = {
            "family": base.model.family,
            "depth": base.model.depth,
            "variant": base.model.variant,
            "shortcut": _raw_shortcut(stripped, request.overrides),
        }
        points, note = model_points(base_model, depths, shortcuts, variants)
        if note:
            notes.append(note)
    space = SearchSpace(points, domains)
    if space.empty:
        raise SpecError.single(
            "tune",
            "the search space is empty: give --depths, --shortcuts or --variants, or a "
            "`search` section in the spec (e.g. train.base_lr: {loguniform: [0.01, 0.3]})",
        )
    if request.metric not in EPOCH_METRICS:
        raise SpecError.single(
            "--metric",
            f"trials do not report {request.metric!r}; use one of {', '.join(EPOCH_METRICS)}",
        )
    mode = request.mode or default_mode(request.metric)
    if mode not in ("min", "max"):
        raise SpecError.single("--mode", f"expected min or max, got {mode!r}")
    if request.scheduler not in SCHEDULERS:
        raise SpecError.single(
            "--scheduler", f"unknown scheduler {request.scheduler!r}; use {', '.join(SCHEDULERS)}"
        )
    if request.samples < 1:
        raise SpecError.single("--samples", f"must be at least 1, got {request.samples}")

    base = _absolute_paths(base)
    base_yaml = dump_spec(base)
    specs = _check_trials(base_yaml, space)
    max_t = _check_data(specs)
    if request.scheduler == "asha":
        if request.grace_period < 1 or request.grace_period > max_t:
            raise SpecError.single(
                "--grace-period",
                f"must be between 1 and the trials' {max_t} epochs, got {request.grace_period}",
            )
        if request.reduction_factor <= 1:
            raise SpecError.single(
                "--reduction-factor", f"must be > 1, got {request.reduction_factor:g}"
            )
    max_concurrent = _check_capacity(specs, request.max_concurrent)

    storage = storage_root()
    name = request.name or new_run_name(f"{base.name}-tune")
    if not _NAME.fullmatch(name):
        raise SpecError.single("--name", f"{name!r}: use letters, digits, '.', '_', '-'")
    if (storage / name).exists():
        raise SpecError.single(
            "--name", f"sweep {name!r} exists under {storage}; continue it with --resume {name}"
        )
    return SweepRecord(
        name=name,
        base_yaml=base_yaml,
        base_source=source,
        space=space.as_dict(),
        metric=request.metric,
        mode=mode,
        scheduler=request.scheduler,
        samples=request.samples,
        max_concurrent=max_concurrent,
        max_t=max_t,
        grace_period=request.grace_period,
        reduction_factor=request.reduction_factor,
        tracking_uri=resolve_tracking_uri(base),
        experiment=base.tracking.experiment,
        storage=str(storage),
        trial_driver=dict(TRIAL_DRIVER_RESOURCES),
        notes=notes,
    )


def _check_trials(base_yaml: str, space: SearchSpace) -> list[JobSpec]:
    """Validate the spec of every model point and of every searched value (or bound)."""
    issues: dict[tuple[str, str, str], SpecIssue] = {}
    specs: list[JobSpec] = []
    for assignments in space.check_points():
        try:
            specs.append(build_trial_spec(base_yaml, assignments))
        except SpecError as exc:
            label = _assignments_label(assignments)
            for issue in exc.issues:
                key = (label, issue.field, issue.message)
                issues.setdefault(key, SpecIssue(f"trial {label}", issue.field, issue.message))
    if issues:
        raise SpecError(list(issues.values())[:12])
    return specs


def _assignments_label(assignments: Mapping[str, Any]) -> str:
    config: dict[str, Any] = {"params": {}}
    if "model.depth" in assignments:
        from resnetctl.tune.space import ModelPoint

        config["model"] = ModelPoint(
            assignments["model.family"],
            assignments["model.depth"],
            assignments["model.variant"],
            assignments["model.shortcut"],
        ).as_dict()
    config["params"] = {k: v for k, v in assignments.items() if not k.startswith("model.")}
    return trial_label(config)


def _check_data(specs: Sequence[JobSpec]) -> int:
    """Prepare each distinct data set once (so trials never race to write the cache, and a
    missing folder fails now) and return the longest run in epochs (ASHA's max_t)."""
    from resnetctl.data import DataError, prepare_dataset
    from resnetctl.launch.plan import steps_per_epoch
    from resnetctl.spec.local_checks import check_local

    layouts: dict[str, Any] = {}
    longest = 1
    for spec in specs:
        if not os.environ.get("RAY_ADDRESS"):
            check_local(spec)
        key = spec.data.model_dump_json()
        if key not in layouts:
            try:
                layouts[key] = prepare_dataset(spec.data)
            except DataError as exc:
                where = spec.where("data", "source")
                raise SpecError.single(where, str(exc), "data.source") from None
        length, unit = spec.train.length
        if unit == "iteration":
            workers = spec.resources.workers
            per_epoch = steps_per_epoch(
                layouts[key].train_files,
                spec.train.per_worker_batch(workers),
                workers,
                spec.train.accumulation_steps,
            )
            length = math.ceil(length / per_epoch)
        longest = max(longest, length)
    return longest


def _check_capacity(specs: Sequence[JobSpec], requested: int | None) -> int:
    """Concurrent trials: as asked, else as many as the machine's CPUs (and GPUs) hold;
    0 means "decide once connected to the cluster"."""
    if requested is not None and requested < 1:
        raise SpecError.single("--max-concurrent", f"must be at least 1, got {requested}")
    if os.environ.get("RAY_ADDRESS"):
        return requested or 0
    cpus = usable_cpus()
    need = max(s.resources.workers * s.resources.cpus_per_worker for s in specs)
    if need > cpus:
        raise SpecError.single(
            "resources.workers",
            f"a trial needs {need:g} CPUs for its workers but this machine has {cpus}; "
            "lower resources.workers or cpus_per_worker (e.g. --set resources.workers=1)",
        )
    return requested or max(1, int(cpus // need))


def load_sweep(name: str) -> SweepRecord:
    """The record of an earlier sweep under the storage root, for `--resume`."""
    from ray import tune

    from resnetctl.storage import storage_root

    storage = storage_root()
    record = SweepRecord.load(storage, name)
    if record is None or not tune.Tuner.can_restore(**_ray_path(storage / name)):
        known = sorted(p.parent.name for p in storage.glob("*/resnetctl-sweep.json"))
        hint = f"; known sweeps: {', '.join(known[-5:])}" if known else ""
        raise SweepError(f"no sweep named {name!r} to resume under {storage}{hint}")
    return record


# --------------------------------------------------------------------------------------------
# Running


@dataclass
class TrialRow:
    """One trial in the ranked table."""

    rank: int | None
    trial_id: str
    label: str
    status: str
    model: str
    depth: int | None
    shortcut: str | None
    variant: str | None
    params: dict[str, str]
    epochs: int
    planned_epochs: int | None
    metric: float | None
    best: float | None
    seconds: float | None
    run_id: str | None
    error: str | None = None
    config: dict[str, Any] = field(default_factory=dict, repr=False)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict (without the raw Tune config)."""
        data = asdict(self)
        data.pop("config")
        return data


@dataclass
class SweepOutcome:
    """What a sweep produced."""

    record: SweepRecord
    rows: list[TrialRow]
    interrupted: bool
    parent_run_id: str
    parent_url: str
    seconds: float

    @property
    def best(self) -> TrialRow | None:
        """The first-ranked trial, if any trial reported the metric."""
        return self.rows[0] if self.rows and self.rows[0].rank == 1 else None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "sweep": self.record.name,
            "experiment_path": str(self.record.experiment_path),
            "metric": self.record.metric,
            "mode": self.record.mode,
            "scheduler": self.record.scheduler,
            "interrupted": self.interrupted,
            "seconds": round(self.seconds, 1),
            "mlflow_parent_run_id": self.parent_run_id,
            "mlflow_url": self.parent_url,
            "best": self.best.as_dict() if self.best else None,
            "trials": [row.as_dict() for row in self.rows],
            "notes": self.record.notes,
        }


def _cluster_capacity(record: SweepRecord) -> int:
    import ray

    spec = record.trial_spec(_first_config(record))
    cpus = ray.cluster_resources().get("CPU", 1.0)
    need = spec.resources.workers * spec.resources.cpus_per_worker
    fits = int(cpus // need)
    if spec.resources.use_gpu:
        gpus = ray.cluster_resources().get("GPU", 0.0)
        fits = min(fits, int(gpus // (spec.resources.workers * spec.resources.gpus_per_worker)))
    return max(1, fits)


def _first_config(record: SweepRecord) -> dict[str, Any]:
    space = record.search
    config: dict[str, Any] = {}
    if space.models:
        config["model"] = space.models[0].as_dict()
    if space.domains:
        config["params"] = {p: d.values[0] for p, d in space.domains.items()}
    return config


def _start_parent(record: SweepRecord) -> Any:
    """The sweep's MLflow parent run: settings as params, the base spec and space as files."""
    import json

    from mlflow import MlflowClient
    from mlflow.entities import Param

    from resnetctl.tracking.run import JobRun, environment_tags
    from resnetctl.tracking.store import default_artifact_root

    client = MlflowClient(record.tracking_uri)
    experiment = client.get_experiment_by_name(record.experiment)
    experiment_id = (
        experiment.experiment_id
        if experiment is not None
        else client.create_experiment(
            record.experiment, artifact_location=default_artifact_root(record.tracking_uri)
        )
    )
    tags = {
        **environment_tags(),
        "resnetctl.tune.sweep": record.name,
        "resnetctl.tune.role": "parent",
        "resnetctl.job": yaml.safe_load(record.base_yaml)["name"],
    }
    run = client.create_run(experiment_id, run_name=record.name, tags=tags)
    space = record.search
    params = {
        "tune.metric": record.metric,
        "tune.mode": record.mode,
        "tune.scheduler": record.scheduler,
        "tune.samples": str(record.samples),
        "tune.max_concurrent": str(record.max_concurrent),
        "tune.trials": str(space.size(record.samples)),
        "tune.base_spec": record.base_source,
        **(
            {
                "tune.grace_period": str(record.grace_period),
                "tune.reduction_factor": f"{record.reduction_factor:g}",
            }
            if record.scheduler == "asha"
            else {}
        ),
        **({"search.model": ", ".join(p.label for p in space.models)} if space.models else {}),
        **{f"search.{path}": domain.describe() for path, domain in space.domains.items()},
    }
    client.log_batch(run.info.run_id, params=[Param(k, v[:6000]) for k, v in params.items()])
    parent = JobRun(record.tracking_uri, run.info.run_id)
    parent.log_text(record.base_yaml, "spec/base.yaml")
    parent.log_text(json.dumps(record.space, indent=2), "search/space.json")
    return parent


def _ray_path(folder: StoragePath) -> dict[str, Any]:
    """`path` (and `storage_filesystem` for a bucket) as `Tuner.restore`/`can_restore` take
    them."""
    options = folder.ray_storage()
    return {"path": options.pop("storage_path"), **options}


def _tuner(record: SweepRecord, resume: bool) -> Any:
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    from resnetctl.tune.trainable import run_trial
    from resnetctl.tune.view import SweepCallback

    trainable = tune.with_resources(
        tune.with_parameters(run_trial, sweep=record.as_dict()),
        tune.PlacementGroupFactory([dict(record.trial_driver)]),
    )
    if resume:
        return tune.Tuner.restore(
            **_ray_path(record.experiment_path), trainable=trainable, resume_unfinished=True
        )
    scheduler = (
        ASHAScheduler(
            time_attr="epoch",  # epochs, not Tune iterations: a resumed trial keeps counting
            max_t=record.max_t,
            grace_period=record.grace_period,
            reduction_factor=record.reduction_factor,
        )
        if record.scheduler == "asha"
        else FIFOScheduler()
    )
    return tune.Tuner(
        trainable,
        param_space=record.search.param_space(),
        tune_config=tune.TuneConfig(
            metric=record.metric,
            mode=record.mode,
            scheduler=scheduler,
            num_samples=record.samples,
            max_concurrent_trials=record.max_concurrent,
            trial_name_creator=_trial_name,
            trial_dirname_creator=_trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=record.name,
            **StoragePath.of(record.storage).ray_storage(),
            callbacks=[SweepCallback(record.as_dict())],
            failure_config=tune.FailureConfig(max_failures=0),
            verbose=0,
        ),
    )


def _trial_name(trial: Any) -> str:
    return f"{trial_label(trial.config).split(' ')[0]}_{trial.trial_id}"


def _trial_dirname(trial: Any) -> str:
    return trial.trial_id


def run_sweep(record: SweepRecord, *, resume: bool = False, console: Any = None) -> SweepOutcome:
    """Run (or continue) the sweep, track it in MLflow, and rank its trials."""
    from resnetctl.tracking.run import JobRun
    from resnetctl.tracking.store import TrackingError, check_reachable
    from resnetctl.tune.view import TrialView

    started = time.monotonic()
    try:
        check_reachable(record.tracking_uri)
    except TrackingError as exc:
        raise SweepError(str(exc)) from None
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", EXPERIMENT_SNAPSHOT_S)
    owns_ray = embedded.ensure_ray(os.environ.get("RAY_ADDRESS"))
    parent = None
    try:
        if not record.max_concurrent:
            record.max_concurrent = _cluster_capacity(record)
        if resume and record.parent_run_id:
            parent = JobRun(record.tracking_uri, record.parent_run_id)
            parent.client.update_run(parent.run_id, status="RUNNING")
        else:
            parent = _start_parent(record)
            record.parent_run_id = parent.run_id
        record.save()
        tuner = _tuner(record, resume)
        with TrialView(record, console):
            results = tuner.fit()
        unfinished = _unfinished_trials(results)
        # Tune creates trials as it goes: a stopped sweep may not have created them all.
        interrupted = bool(unfinished) or len(results) < record.search.size(record.samples)
        rows = rank_trials(record, results, unfinished)
        _finish_parent(parent, record, rows, interrupted)
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


def _children(record: SweepRecord) -> dict[str, Any]:
    """The sweep's child runs by trial id."""
    from mlflow import MlflowClient

    from resnetctl.tune.trainable import PARENT_TAG, TRIAL_TAG

    client = MlflowClient(record.tracking_uri)
    experiment = client.get_experiment_by_name(record.experiment)
    if experiment is None:
        return {}
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`{PARENT_TAG}` = '{record.parent_run_id}'",
        max_results=10_000,
    )
    return {run.data.tags.get(TRIAL_TAG, ""): run for run in runs}


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


def rank_trials(
    record: SweepRecord,
    results: Any,
    unfinished: Collection[str] = (),
) -> list[TrialRow]:
    """Every trial, best first by its last reported metric; trials without it come last.
    `unfinished` trials (of a stopped sweep) are "interrupted"."""
    from resnetctl.tune.view import TrialFacts, trial_state

    children = _children(record)
    facts = TrialFacts(record)
    rows: list[TrialRow] = []
    for result in results:
        metrics = result.metrics or {}
        trial_id = str(metrics.get("trial_id") or Path(result.path).name)
        config = dict(result.config or {})
        info = facts.of(trial_id, config)
        epoch = metrics.get("epoch")
        value = _finite(metrics.get(record.metric))
        history = _history(result, record.metric)
        best = (min if record.mode == "min" else max)(history) if history else value
        if result.error is not None:
            status = "error"
        elif trial_id in unfinished:
            status = "interrupted"
        else:
            status = trial_state("TERMINATED", epoch, info.get("epochs"))
        child = children.get(trial_id)
        rows.append(
            TrialRow(
                rank=None,
                trial_id=trial_id,
                label=info["label"],
                status=status,
                model=str(info.get("model", "")),
                depth=info.get("depth"),
                shortcut=info.get("shortcut"),
                variant=info.get("variant"),
                params=dict(info.get("params", {})),
                epochs=int(epoch or 0),
                planned_epochs=info.get("epochs"),
                metric=value,
                best=best,
                seconds=_finite(metrics.get("time_total_s")),
                run_id=child.info.run_id if child else None,
                error=_first_line(result.error) if result.error is not None else None,
                config=config,
            )
        )
    sign = 1.0 if record.mode == "min" else -1.0
    ranked = sorted(
        (r for r in rows if r.metric is not None and r.status != "error"),
        key=lambda r: sign * (r.metric or 0.0),
    )
    for index, row in enumerate(ranked, 1):
        row.rank = index
    rest = [r for r in rows if r.rank is None]
    return ranked + sorted(rest, key=lambda r: r.trial_id)


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _history(result: Any, metric: str) -> list[float]:
    frame = getattr(result, "metrics_dataframe", None)
    if frame is None or metric not in getattr(frame, "columns", ()):
        return []
    return [v for v in (_finite(x) for x in frame[metric].tolist()) if v is not None]


def _first_line(error: BaseException) -> str:
    seen: BaseException = error
    while seen.__cause__ is not None:
        seen = seen.__cause__
    lines = [line for line in str(seen).strip().splitlines() if line.strip()]
    return f"{type(seen).__name__}: {lines[-1] if lines else ''}"


def rows_csv(record: SweepRecord, rows: Sequence[TrialRow]) -> str:
    """The ranked table as CSV (one column per searched field)."""
    params = list(record.search.domains)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(
        [
            "rank",
            "trial_id",
            "status",
            "model",
            "depth",
            "shortcut",
            "variant",
            *params,
            "epochs",
            record.metric,
            f"best_{record.metric}",
            "seconds",
            "mlflow_run_id",
            "error",
        ]
    )
    for row in rows:
        writer.writerow(
            [
                row.rank or "",
                row.trial_id,
                row.status,
                row.model,
                row.depth,
                row.shortcut,
                row.variant,
                *(row.params.get(p, "") for p in params),
                row.epochs,
                _csv_number(row.metric),
                _csv_number(row.best),
                _csv_number(row.seconds),
                row.run_id or "",
                row.error or "",
            ]
        )
    return buffer.getvalue()


def _csv_number(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def _curves(record: SweepRecord, rows: Sequence[TrialRow]) -> dict[str, dict[str, list]]:
    """Each trial's train and val top-1 error per epoch, from its child run."""
    from mlflow import MlflowClient

    client = MlflowClient(record.tracking_uri)
    curves: dict[str, dict[str, list]] = {}
    for row in rows:
        if not row.run_id:
            continue
        label = row.label if row.label not in curves else f"{row.label} {row.trial_id}"
        curves[label] = {
            key: [(m.step, m.value) for m in client.get_metric_history(row.run_id, key)]
            for key in ("train_top1_error", "val_top1_error")
        }
    return curves


def _finish_parent(
    parent: Any, record: SweepRecord, rows: Sequence[TrialRow], interrupted: bool
) -> None:
    """Results table, comparison plot (the paper's Fig. 6 style) and best spec on the parent."""
    from resnetctl.tracking.plots import sweep_comparison_png

    parent.log_text(rows_csv(record, rows), "results.csv")
    curves = _curves(record, rows)
    if curves:
        with tempfile.TemporaryDirectory() as tmp:
            path = sweep_comparison_png(curves, Path(tmp) / "error_curves.png", record.name)
            parent.client.log_artifact(parent.run_id, str(path), "plots")
    best = rows[0] if rows and rows[0].rank == 1 else None
    if best is not None:
        parent.log_text(best_spec_yaml(record, best), "best/spec.yaml")
        parent.client.log_metric(parent.run_id, f"best_{record.metric}", best.metric or 0.0)
        parent.set_tags(
            {
                "resnetctl.tune.best_trial": best.trial_id,
                "resnetctl.tune.best_run_id": best.run_id or "",
                "resnetctl.tune.best_label": best.label,
            }
        )
    parent.end("KILLED" if interrupted else "FINISHED")


def best_spec(record: SweepRecord, row: TrialRow) -> JobSpec:
    """The resolved spec of a trial, as `resnetctl submit` takes it."""
    return record.trial_spec(row.config)


def best_spec_yaml(record: SweepRecord, row: TrialRow) -> str:
    """The trial's spec as a job YAML with a header saying where it came from."""
    header = (
        f"# Best trial {row.trial_id} ({row.label}) of sweep {record.name}: "
        f"{record.metric} {describe_value(row.metric)} after {row.epochs} epochs.\n"
        f"# Run it with: resnetctl submit FILE\n"
    )
    return header + dump_spec(best_spec(record, row))
