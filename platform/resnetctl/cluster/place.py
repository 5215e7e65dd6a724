"""Can a cluster config supply a job? Which node types, how many nodes, and if not, why not.

A job asks for `resources.workers` bundles of `{CPU: cpus_per_worker, GPU: gpus_per_worker}`
(Ray Train's placement group; its controller takes no CPU). The autoscaler may start up to a
type's `max_workers` nodes of each type, and no more than the cluster-wide `max_workers` in
total. Ray Train packs bundles onto as few nodes as it can, so the plan fills whole nodes.

This predicts what fits; the autoscaler makes the final choice of node types itself (it scores
them by utilisation), so where several types fit, the plan names the one that wastes the fewest
GPUs, then needs the fewest nodes, then comes first in the config.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from resnetctl.bundles import copies_per_node
from resnetctl.cluster.config import ClusterConfig, ConfigIssue, NodeType, fmt_number
from resnetctl.cluster.parse import load_config

if TYPE_CHECKING:
    from resnetctl.spec import JobSpec


@dataclass(frozen=True)
class Allocation:
    """Nodes of one type given to the job."""

    node_type: str
    nodes: int
    workers_per_node: int
    workers: int
    describe: str
    head: bool = False


@dataclass(frozen=True)
class PlacementPlan:
    """Where a job's workers would run on a cluster config, or why they cannot."""

    job: str
    config: str
    cluster: str
    workers: int
    worker_resources: dict[str, float]
    fits: bool
    allocations: tuple[Allocation, ...] = ()
    problems: tuple[ConfigIssue, ...] = ()
    notes: tuple[str, ...] = ()
    idle_timeout_s: float | None = None
    candidates: dict[str, str] = field(default_factory=dict)

    @property
    def nodes(self) -> int:
        """Worker nodes the job occupies (the head is not counted)."""
        return sum(a.nodes for a in self.allocations if not a.head)

    @property
    def hosts(self) -> int:
        """Nodes that hold at least one worker, the head included: more than one needs run
        storage that every node reaches."""
        on_head = any(a.head and a.workers for a in self.allocations)
        return self.nodes + int(on_head)

    @property
    def node_counts(self) -> dict[str, int]:
        """Worker nodes the job occupies, per node type."""
        return {a.node_type: a.nodes for a in self.allocations if not a.head and a.nodes}

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready dict."""
        data = asdict(self)
        data["problems"] = [p.as_dict() for p in self.problems]
        data["nodes"] = self.nodes
        return data


def plan_placement(spec: JobSpec, config: ClusterConfig | str | os.PathLike[str]) -> PlacementPlan:
    """Plan which node types, and how many nodes of each, a job's workers need on a cluster.

    `config` is a checked `ClusterConfig` or a path to one (loaded with `load_config`, which
    raises `ClusterConfigError` for a broken file). Pure: nothing is started or contacted.
    """
    if not isinstance(config, ClusterConfig):
        config = load_config(config)
    res = spec.resources
    need = _Need(
        cpu=float(res.cpus_per_worker),
        gpu=float(res.gpus_per_worker) if res.use_gpu else 0.0,
        workers=res.max_workers,
    )
    base: dict[str, Any] = dict(
        job=spec.name,
        config=str(config.path),
        cluster=config.name,
        workers=need.workers,
        worker_resources=need.bundle,
        idle_timeout_s=config.idle_timeout_s,
    )
    # Per type: workers one node holds and how many nodes the autoscaler may start.
    capacity = {t.name: _workers_per_node(t, need.cpu, need.gpu) for t in config.node_types}
    limits = {t.name: _node_limit(config, t) for t in config.node_types}
    base["candidates"] = {
        t.name: (
            f"{capacity[t.name]} per node, up to {limits[t.name]} node(s)"
            if capacity[t.name]
            else _why_not(t, need.cpu, need.gpu)
        )
        for t in config.node_types
    }
    head = config.head
    head_slots = capacity.get(head.name, 0) if head else 0
    head_alloc = (
        [Allocation(head.name, 0, head_slots, min(head_slots, need.workers), head.describe(), True)]
        if head and head_slots
        else []
    )
    remaining = max(0, need.workers - head_slots)
    if remaining == 0:
        return PlacementPlan(
            **base,
            fits=True,
            allocations=tuple(head_alloc),
            notes=("the head node holds every worker",),
        )
    usable = [
        t
        for t in config.workers
        if capacity[t.name] and limits[t.name] > 0 and (need.gpu or not t.gpus)
    ]
    if not need.gpu and not usable:
        # A CPU job may borrow GPU machines, but only when nothing cheaper exists.
        usable = [t for t in config.workers if capacity[t.name] and limits[t.name] > 0]
    placing = _Placing(config, spec, need, capacity, limits, usable, head_alloc, remaining, base)
    return _single_type_plan(placing) or _mixed_plan(placing)


@dataclass(frozen=True)
class _Need:
    """What the job asks for: per-worker CPUs and GPUs, and how many workers."""

    cpu: float
    gpu: float
    workers: int

    @property
    def bundle(self) -> dict[str, float]:
        return {"CPU": self.cpu, **({"GPU": self.gpu} if self.gpu else {})}


@dataclass(frozen=True)
class _Placing:
    """A placement under way: the job, what each node type holds and may start, what the head
    took, and the fields every plan of this job shares (`base`)."""

    config: ClusterConfig
    spec: JobSpec
    need: _Need
    capacity: dict[str, int]
    limits: dict[str, int]
    usable: list[NodeType]
    head_alloc: list[Allocation]
    remaining: int
    base: dict[str, Any]


def _single_type_plan(p: _Placing) -> PlacementPlan | None:
    """The plan on one node type, the one that wastes the fewest GPUs, then needs the fewest
    nodes; None when no single type can hold the workers the head does not."""
    single = []
    for node_type in p.usable:
        nodes = math.ceil(p.remaining / p.capacity[node_type.name])
        if nodes <= p.limits[node_type.name]:
            wasted_gpus = nodes * node_type.gpus - p.remaining * p.need.gpu
            single.append((wasted_gpus, nodes, node_type))
    if not single:
        return None
    _, nodes, best = min(single, key=lambda item: (item[0], item[1]))
    per_node = p.capacity[best.name]
    alloc = Allocation(best.name, nodes, per_node, p.remaining, best.describe())
    notes = []
    if best.min_workers:
        running = min(nodes, best.min_workers)
        notes.append(f"{running} of the {best.name} nodes run all the time (min_workers)")
    if best.gpus and not p.need.gpu:
        notes.append(f"{best.name} has GPUs that this CPU job leaves idle")
    spare = nodes * per_node - p.remaining
    if spare:
        notes.append(f"room for {spare} more worker(s) on the last {best.name} node")
    return PlacementPlan(
        **p.base, fits=True, allocations=(*p.head_alloc, alloc), notes=tuple(notes)
    )


def _mixed_plan(p: _Placing) -> PlacementPlan:
    """No single type suffices: fill the roomiest types first, within the cluster-wide cap;
    if even that falls short, the plan says why."""
    allocations = list(p.head_alloc)
    left, budget = p.remaining, _global_budget(p.config)
    for node_type in sorted(p.usable, key=lambda t: -p.capacity[t.name]):
        if left <= 0 or budget <= 0:
            break
        per_node = p.capacity[node_type.name]
        nodes = min(math.ceil(left / per_node), p.limits[node_type.name], budget)
        if nodes <= 0:
            continue
        placed = min(left, nodes * per_node)
        allocations.append(
            Allocation(node_type.name, nodes, per_node, placed, node_type.describe())
        )
        left -= placed
        budget -= nodes
    if left <= 0:
        note = "needs several node types: the autoscaler starts each as bundles demand"
        return PlacementPlan(**p.base, fits=True, allocations=tuple(allocations), notes=(note,))
    problems = _problems(p, p.need.workers - left)
    return PlacementPlan(
        **p.base, fits=False, allocations=tuple(allocations), problems=tuple(problems)
    )


def format_placement(plan: PlacementPlan) -> str:
    """The plan as a few lines of text for a terminal."""
    bundle = _bundle_text(plan.worker_resources)
    lines = [
        f"Placement of job {plan.job} ({plan.workers} workers x {bundle}) on cluster "
        f"{plan.cluster} ({plan.config}):"
    ]
    if plan.fits:
        lines.append(f"  fits: {plan.nodes} worker node(s)")
    else:
        lines.append("  does not fit")
    for alloc in plan.allocations:
        if alloc.head:
            lines.append(
                f"    head {alloc.node_type} ({alloc.describe}): {alloc.workers} "
                "worker(s), no new node"
            )
        else:
            lines.append(
                f"    {alloc.nodes} x {alloc.node_type} ({alloc.describe}): "
                f"{alloc.workers} worker(s), {alloc.workers_per_node} per node"
            )
    for problem in plan.problems:
        lines.append(f"  why: {problem}")
    for note in plan.notes:
        lines.append(f"  note: {note}")
    if plan.fits and plan.idle_timeout_s is not None and plan.nodes:
        lines.append(
            f"  the autoscaler removes the nodes {_duration(plan.idle_timeout_s)} "
            "after they fall idle"
        )
    if not plan.fits or len(plan.candidates) > 1:
        lines.append("  node types:")
        for name, text in plan.candidates.items():
            lines.append(f"    {name}: {text}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------


def _workers_per_node(node_type: NodeType, cpus: float, gpus: float) -> int:
    return copies_per_node(
        {"CPU": cpus, "GPU": gpus}, {"CPU": node_type.cpus, "GPU": node_type.gpus}
    )


def _node_limit(config: ClusterConfig, node_type: NodeType) -> int:
    if node_type.head:
        return 0
    limit = node_type.max_workers
    if config.max_workers is not None:
        # Other types' min_workers occupy slots of the cluster-wide cap all the time.
        others = sum(t.min_workers for t in config.workers if t is not node_type)
        limit = min(limit, max(0, config.max_workers - others))
    return max(0, limit)


def _global_budget(config: ClusterConfig) -> int:
    if config.max_workers is None:
        return 2**31 - 1
    return max(0, config.max_workers)


def _why_not(node_type: NodeType, cpus: float, gpus: float) -> str:
    if gpus and not node_type.gpus:
        return "no GPUs"
    if gpus > node_type.gpus:
        return f"{fmt_number(node_type.gpus)} GPU(s) per node, a worker needs {fmt_number(gpus)}"
    if cpus > node_type.cpus:
        return f"{fmt_number(node_type.cpus)} CPU(s) per node, a worker needs {fmt_number(cpus)}"
    return "cannot hold a worker"


def _problems(p: _Placing, placed: int) -> list[ConfigIssue]:
    """Why the job does not fit: no type holds a worker, or which limit stops it."""
    config, spec, capacity, limits, usable = p.config, p.spec, p.capacity, p.limits, p.usable
    need_gpu, total, remaining = p.need.gpu, p.need.workers, p.remaining
    shape = _bundle_text(p.need.bundle)
    job = spec.name
    holders = [t for t in config.workers if capacity[t.name]]
    if not holders:
        kinds = "GPU node type" if need_gpu else "node type"
        have = "; ".join(f"{t.name}: {t.describe()}" for t in config.workers) or "none"
        return [
            config.issue(
                config.node_types_path,
                f"job {job} needs a {kinds} that holds one worker ({shape}); worker types: {have}",
            )
        ]
    problems = []
    for node_type in usable:
        per_node = capacity[node_type.name]
        needed = math.ceil(remaining / per_node)
        limit = limits[node_type.name]
        if needed > node_type.max_workers:
            problems.append(
                config.issue(
                    (*node_type.path, *config.max_workers_path),
                    f"job {job} needs {needed} {node_type.name} node(s) ({per_node} of its "
                    f"{total} workers per node) but at most {node_type.max_workers} may start",
                )
            )
        elif needed > limit and config.max_workers is not None:
            problems.append(
                config.issue(
                    ("max_workers",),
                    f"job {job} needs {needed} {node_type.name} node(s) but the cluster-wide "
                    f"max_workers {config.max_workers} leaves room for {limit}",
                )
            )
    if not problems:
        problems.append(
            config.issue(
                config.node_types_path,
                f"job {job} needs {total} workers ({shape} each); all "
                f"node types together hold {placed}",
            )
        )
    elif len(usable) > 1:
        problems.append(
            config.issue(
                config.node_types_path,
                f"all node types together hold {placed} of job {job}'s {total} workers",
                "error",
            )
        )
    return problems


def _bundle_text(bundle: dict[str, float]) -> str:
    return " + ".join(f"{fmt_number(v)} {k}" for k, v in bundle.items())


def _duration(seconds: float) -> str:
    return (
        f"{fmt_number(seconds)} s" if seconds < 120 else f"{fmt_number(round(seconds / 60, 1))} min"
    )


__all__ = ["Allocation", "PlacementPlan", "format_placement", "plan_placement"]
