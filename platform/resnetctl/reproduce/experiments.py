"""The paper's comparisons as sweeps: which nets, which base recipe, which overrides.

An `Experiment` is plain data; `sweep_request()` turns it into the `resnetctl.tune` request that
runs it (one Ray Train run per net, FIFO, so that every net gets the same budget: an early
stopping scheduler would cut exactly the deep plain nets whose failure is the result).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from resnetctl.spec import SpecError
from resnetctl.tune import SweepRequest
from resnetctl.tune.space import VARIANTS, parse_choices, parse_depths

KINDS = ("degradation", "shortcuts")
DIGITS_SPEC = "digits.yaml"
CIFAR_SPEC = "cifar10.yaml"
DEFAULT_DEPTHS = "20,56"
DEFAULT_SHORTCUT_DEPTH = 20
#: The paper warms ResNet-110 up at lr 0.01 for about 400 iterations (section 4.2).
WARMUP_DEPTH = 110
CIFAR_WARMUP = (
    "train.warmup.length=400",
    "train.warmup.unit=iteration",
    "train.warmup.start_factor=0.1",
    "train.warmup.mode=constant",
)


def packaged_spec(name: str) -> Path:
    """A base spec shipped in this package."""
    return Path(str(resources.files("resnetctl.reproduce").joinpath(name)))


def step_milestones(epochs: int) -> list[int]:
    """The paper's lr drops at 32k and 48k of 64k iterations: at 50% and 75% of the run
    (those inside the run; none for a one-epoch run)."""
    first = max(1, math.ceil(epochs * 0.5))
    second = max(first + 1, math.ceil(epochs * 0.75))
    return [m for m in (first, second) if m < epochs]


def schedule_overrides(epochs: int) -> list[str]:
    """An epoch-length run with the paper's step schedule scaled to it."""
    milestones = step_milestones(epochs)
    if not milestones:
        return [f"train.epochs={epochs}", "train.schedule={kind: constant}"]
    return [
        f"train.epochs={epochs}",
        "train.schedule.unit=epoch",
        f"train.schedule.milestones={milestones}",
    ]


@dataclass
class Experiment:
    """One of the paper's comparisons, ready to become a sweep."""

    kind: str
    depths: list[int]
    variants: list[str]
    shortcuts: list[str] | None
    base: Path
    overrides: list[str] = field(default_factory=list)
    data: Path | None = None
    epochs: int | None = None
    name: str | None = None
    max_concurrent: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def on_digits(self) -> bool:
        """Whether the experiment runs on the bundled digits (no --data)."""
        return self.data is None

    def sweep_request(self) -> SweepRequest:
        """The `resnetctl.tune` request of this experiment."""
        return SweepRequest(
            file=self.base,
            overrides=list(self.overrides),
            depths=",".join(str(d) for d in self.depths),
            shortcuts=",".join(self.shortcuts) if self.shortcuts else None,
            variants=",".join(self.variants),
            samples=1,
            max_concurrent=self.max_concurrent,
            scheduler="fifo",
            metric="val_top1_error_pct",
            mode="min",
            name=self.name,
        )


def _base_overrides(
    data: Path | None, epochs: int | None, depths: list[int], notes: list[str]
) -> tuple[Path, list[str]]:
    """The base spec and the overrides that adapt it to --data and --epochs."""
    overrides: list[str] = []
    if data is None:
        base = packaged_spec(DIGITS_SPEC)
        if epochs is not None:
            overrides += schedule_overrides(epochs)
        return base, overrides
    base = packaged_spec(CIFAR_SPEC)
    overrides.append(f"data.source.root={data.expanduser().resolve()}")
    if epochs is not None:
        # The recipe counts iterations (64k); a shorter run keeps its shape in epochs.
        overrides += ["train.iterations=null", *schedule_overrides(epochs)]
    else:
        overrides += _iterations_as_epochs(base, overrides, notes)
    if max(depths) >= WARMUP_DEPTH:
        overrides += list(CIFAR_WARMUP)
        notes.append(
            f"depth {max(depths)} is warmed up at lr 0.01 for 400 iterations as in the paper; "
            "one sweep shares one recipe, so the shallower nets are warmed up too"
        )
    if not os.environ.get("RAY_ADDRESS") and not _has_cuda():
        overrides.append("resources.use_gpu=false")
        notes.append("no GPU here: the CIFAR recipe runs on CPU workers (slow: hours per net)")
    return base, overrides


def _iterations_as_epochs(base: Path, overrides: list[str], notes: list[str]) -> list[str]:
    """The recipe's 64k iterations as whole epochs of the data at hand (milestones stay in
    iterations).

    Works around `resnetctl.tune`'s planner, which fails on iteration-length trials (it reads
    `DatasetLayout.num_train`, which does not exist; the field is `train_files`).
    """
    from resnetctl.data import DataError, prepare_dataset
    from resnetctl.spec import load_spec
    from resnetctl.spec.steps import steps_per_epoch

    spec = load_spec(base, overrides)
    length, unit = spec.train.length
    if unit != "iteration":
        return []
    try:
        layout = prepare_dataset(spec.data)
    except DataError as exc:
        raise SpecError.single("--data", str(exc)) from None
    workers = spec.resources.max_workers
    steps = steps_per_epoch(
        layout.train_files,
        spec.train.per_worker_batch(workers),
        workers,
        spec.train.accumulation_steps,
    )
    epochs = math.ceil(length / steps)
    notes.append(
        f"the recipe's {length} iterations run as {epochs} epochs of {steps} iterations "
        f"({epochs * steps} iterations; {layout.train_files} training images)"
    )
    return ["train.iterations=null", f"train.epochs={epochs}"]


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _check_epochs(epochs: int | None) -> None:
    if epochs is not None and epochs < 1:
        raise SpecError.single("--epochs", f"must be at least 1, got {epochs}")


def degradation(
    *,
    data: Path | None = None,
    depths: str = DEFAULT_DEPTHS,
    epochs: int | None = None,
    overrides: list[str] | None = None,
    name: str | None = None,
    max_concurrent: int | None = None,
    variants: str = "plain,residual",
) -> Experiment:
    """Fig. 6: plain nets and ResNets (option A) of each depth, one recipe and one budget
    (`variants` may keep only one of the two panels, e.g. to give the ResNets a longer run)."""
    _check_epochs(epochs)
    parsed = parse_depths(depths) or []
    if len(parsed) < 2:
        raise SpecError.single("--depths", "degradation compares at least two depths, e.g. 20,56")
    chosen = parse_choices(variants, "--variants", VARIANTS) or list(VARIANTS)
    notes: list[str] = []
    base, base_overrides = _base_overrides(data, epochs, parsed, notes)
    return Experiment(
        kind="degradation",
        depths=sorted(parsed),
        variants=[v for v in ("plain", "residual") if v in chosen],
        shortcuts=None,
        base=base,
        overrides=[*base_overrides, *(overrides or [])],
        data=data,
        epochs=epochs,
        name=name,
        max_concurrent=max_concurrent,
        notes=notes,
    )


def shortcuts(
    *,
    data: Path | None = None,
    depth: int = DEFAULT_SHORTCUT_DEPTH,
    epochs: int | None = None,
    overrides: list[str] | None = None,
    name: str | None = None,
    max_concurrent: int | None = None,
) -> Experiment:
    """Table 3 at one depth: options A, B and C, and the plain twin."""
    _check_epochs(epochs)
    parsed = parse_depths(str(depth)) or []
    notes: list[str] = []
    base, base_overrides = _base_overrides(data, epochs, parsed, notes)
    return Experiment(
        kind="shortcuts",
        depths=parsed,
        variants=["plain", "residual"],
        shortcuts=["A", "B", "C"],
        base=base,
        overrides=[*base_overrides, *(overrides or [])],
        data=data,
        epochs=epochs,
        name=name,
        max_concurrent=max_concurrent,
        notes=notes,
    )
