"""What a sweep runs: the base spec and its `search` section, the model grid of the CLI flags,
every trial's spec checked, the data prepared and the capacity counted, all before anything
starts. The result is the sweep record (`SweepRecord`), which `tune.run` executes.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from resnetctl.host import usable_cpus
from resnetctl.spec import JobSpec, SpecError
from resnetctl.spec.errors import SpecIssue
from resnetctl.spec.loader import load_spec_text, parse_overrides, with_values
from resnetctl.spec.metrics import (
    EPOCH_METRICS,
    default_mode,
    internal_name,
    public_name,
    warn_old_name,
)
from resnetctl.spec.yaml_lines import UnreadableFile, read_text
from resnetctl.tune.record import SCHEDULERS, SweepError, SweepRecord, trial_label
from resnetctl.tune.space import (
    SHORTCUTS,
    VARIANTS,
    ModelPoint,
    SearchSpace,
    TrialConfig,
    model_points,
    parse_choices,
    parse_depths,
)

DEFAULT_SPEC = "default.yaml"
#: What the trial's own actor reserves. It only waits on the Ray Train controller (which takes
#: no CPU) while the Train workers get their own placement group, so it asks for memory, not a
#: CPU: a core held by an idle actor would leave half of a 2-core machine unused, and two
#: 1-worker trials run side by side instead. (Ray needs a non-empty request to place it.)
TRIAL_DRIVER_RESOURCES: dict[str, float] = {"memory": 256 * 1024**2}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
#: More distinct failures than this only repeat themselves.
MAX_REPORTED_ISSUES = 12


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
    metric: str = "val_top1_error_pct"
    mode: str | None = None
    grace_period: int = 1
    reduction_factor: float = 2.0
    name: str | None = None


def default_spec_text() -> str:
    """The packaged default base spec (digits, CIFAR-style input)."""
    return resources.files("resnetctl.tune").joinpath(DEFAULT_SPEC).read_text(encoding="utf-8")


def plan_sweep(request: SweepRequest) -> SweepRecord:
    """Check everything that can be checked before a trial starts and return the sweep record.

    Raises `SpecError` (exit 2) for a bad spec or `search` section, an unknown depth, shortcut
    or variant, an empty search space, an unknown metric, or a trial spec that would not
    validate.
    """
    from resnetctl.storage import storage_root
    from resnetctl.tracking.store import resolve_tracking_uri

    text, source = _base_text(request)
    base = load_spec_text(text, source, request.overrides)
    space, notes = _search_space(base, text, request)
    mode = _check_objective(request)
    base = _absolute_paths(base)
    specs = _check_trials(base, space)
    max_t = _check_data(specs)
    _check_scheduler(request, max_t)
    max_concurrent = _check_capacity(specs, request.max_concurrent)
    storage = storage_root()
    return SweepRecord(
        name=_sweep_name(request, base, storage),
        base=base,
        base_source=source,
        space=space,
        metric=internal_name(request.metric),  # what the trials report
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
        numbered_runs=request.samples > 1 or not space.labels_unique(),
        trial_driver=dict(TRIAL_DRIVER_RESOURCES),
        notes=notes,
    )


def _base_text(request: SweepRequest) -> tuple[str, str]:
    """The base spec's text and its name in messages (the file, or the packaged default)."""
    if request.file is None:
        return default_spec_text(), "<default spec>"
    try:
        return read_text(request.file), str(request.file)
    except UnreadableFile as exc:
        raise SpecError.single(str(request.file), str(exc)) from None


def _search_space(base: JobSpec, text: str, request: SweepRequest) -> tuple[SearchSpace, list[str]]:
    """The model grid of the flags and the spec's searched fields; notes for the user."""
    domains = dict(base.search or {})
    depths = parse_depths(request.depths)
    shortcuts = parse_choices(request.shortcuts, "--shortcuts", SHORTCUTS)
    variants = parse_choices(request.variants, "--variants", VARIANTS)
    given = {"--depths": depths, "--shortcuts": shortcuts, "--variants": variants}
    flags = [flag for flag, value in given.items() if value is not None]
    points: list[ModelPoint] = []
    notes: list[str] = []
    if flags:
        clash = [path for path in domains if path == "model" or path.startswith("model.")]
        if clash:
            raise SpecError.single(
                base.where("search", clash[0]),
                f"{', '.join(flags)} and the search section both choose the model; "
                "use one or the other",
                f"search.{clash[0]}",
            )
        base_model = {
            "family": base.model.family,
            "depth": base.model.depth,
            "variant": base.model.variant,
            "shortcut": _written_shortcut(text, request.overrides),
        }
        points, note = model_points(base_model, depths, shortcuts, variants)
        notes += [note] if note else []
    space = SearchSpace(models=points, domains=domains)
    if space.empty:
        raise SpecError.single(
            "tune",
            "the search space is empty: give --depths, --shortcuts or --variants, or a "
            "`search` section in the spec (e.g. train.base_lr: {loguniform: [0.01, 0.3]})",
        )
    return space, notes


def _written_shortcut(text: str, overrides: Sequence[str]) -> str | None:
    """The shortcut the spec's YAML (or --set) gives; None means the family's default, which a
    point of another family must not inherit (the resolved spec always names one)."""
    data = yaml.safe_load(text) or {}
    model = data.get("model") if isinstance(data, dict) else None
    shortcut = model.get("shortcut") if isinstance(model, dict) else None
    for path, value, _ in parse_overrides(overrides):
        if path == ("model", "shortcut"):
            shortcut = value
        elif path == ("model",) and isinstance(value, dict):
            shortcut = value.get("shortcut")
    return shortcut


def _check_objective(request: SweepRequest) -> str:
    """The metric must be one trials report (by its public name; the internal one is accepted
    with a deprecation warning); returns the mode (min or max)."""
    if internal_name(request.metric) not in EPOCH_METRICS:
        known = ", ".join(public_name(m) for m in EPOCH_METRICS)
        raise SpecError.single(
            "--metric", f"trials do not report {request.metric!r}; use one of {known}"
        )
    warn_old_name(request.metric, "--metric")
    mode = request.mode or default_mode(request.metric)
    if mode not in ("min", "max"):
        raise SpecError.single("--mode", f"expected min or max, got {mode!r}")
    if request.scheduler not in SCHEDULERS:
        raise SpecError.single(
            "--scheduler", f"unknown scheduler {request.scheduler!r}; use {', '.join(SCHEDULERS)}"
        )
    if request.samples < 1:
        raise SpecError.single("--samples", f"must be at least 1, got {request.samples}")
    return mode


def _check_scheduler(request: SweepRequest, max_t: int) -> None:
    if request.scheduler != "asha":
        return
    if request.grace_period < 1 or request.grace_period > max_t:
        raise SpecError.single(
            "--grace-period",
            f"must be between 1 and the trials' {max_t} epochs, got {request.grace_period}",
        )
    if request.reduction_factor <= 1:
        raise SpecError.single(
            "--reduction-factor", f"must be > 1, got {request.reduction_factor:g}"
        )


def _absolute_paths(spec: JobSpec) -> JobSpec:
    """Trials run in their own working directory: relative data paths become absolute."""
    source = spec.data.source
    absolute: dict[str, Any] = {}
    root = getattr(source, "root", None)
    if root is not None and not isinstance(root, str) and not Path(root).is_absolute():
        absolute["data.source.root"] = str(Path(root).resolve())
    cache = getattr(source, "cache_dir", None)
    if cache is not None and not Path(cache).is_absolute():
        absolute["data.source.cache_dir"] = str(Path(cache).resolve())
    if not absolute:
        return spec.model_copy(update={"search": None})
    return with_values(spec, absolute, spec.where("data", "source"))


def _check_trials(base: JobSpec, space: SearchSpace) -> list[JobSpec]:
    """Validate the spec of every model point and of every searched value (or bound)."""
    issues: dict[tuple[str, str, str], SpecIssue] = {}
    specs: list[JobSpec] = []
    for assignments in space.check_points():
        label = _assignments_label(assignments)
        try:
            specs.append(with_values(base, assignments, f"trial {label}"))
        except SpecError as exc:
            for issue in exc.issues:
                key = (label, issue.field, issue.message)
                issues.setdefault(key, SpecIssue(f"trial {label}", issue.field, issue.message))
    if issues:
        raise SpecError(list(issues.values())[:MAX_REPORTED_ISSUES])
    return specs


def _assignments_label(assignments: dict[str, Any]) -> str:
    point = None
    if "model.depth" in assignments:
        point = ModelPoint(
            family=assignments["model.family"],
            depth=assignments["model.depth"],
            variant=assignments["model.variant"],
            shortcut=assignments["model.shortcut"],
        )
    params = {k: v for k, v in assignments.items() if not k.startswith("model.")}
    return trial_label(TrialConfig(model=point, params=params))


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
            workers = spec.resources.max_workers
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
    need = max(s.resources.max_workers * s.resources.cpus_per_worker for s in specs)
    if need > cpus:
        raise SpecError.single(
            "resources.workers",
            f"a trial needs {need:g} CPUs for its workers but this machine has {cpus}; "
            "lower resources.workers or cpus_per_worker (e.g. --set resources.workers=1)",
        )
    return requested or max(1, int(cpus // need))


def _sweep_name(request: SweepRequest, base: JobSpec, storage: Any) -> str:
    """`--name`, or `<job>-tune-<UTC time>`; a sweep of that name must not exist yet."""
    from resnetctl.storage import new_run_name

    name = request.name or new_run_name(f"{base.name}-tune")
    if not _NAME.fullmatch(name):
        raise SpecError.single("--name", f"{name!r}: use letters, digits, '.', '_', '-'")
    if (storage / name).exists():
        raise SpecError.single(
            "--name", f"sweep {name!r} exists under {storage}; continue it with --resume {name}"
        )
    return name


def load_sweep(name: str) -> SweepRecord:
    """The record of an earlier sweep under the storage root, for `--resume`."""
    from ray import tune

    from resnetctl.storage import storage_root
    from resnetctl.tune.run import ray_path

    storage = storage_root()
    record = SweepRecord.load(storage, name)
    if record is None or not tune.Tuner.can_restore(**ray_path(storage / name)):
        known = sorted(p.parent.name for p in storage.glob("*/resnetctl-sweep.json"))
        hint = f"; known sweeps: {', '.join(known[-5:])}" if known else ""
        raise SweepError(f"no sweep named {name!r} to resume under {storage}{hint}")
    return record
