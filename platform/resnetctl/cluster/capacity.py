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

from resnetctl.cluster.config import (
    ClusterConfig,
    ConfigIssue,
    NodeType,
    fmt_number,
    load_config,
)
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
    need_cpu = float(res.cpus_per_worker)
    need_gpu = float(res.gpus_per_worker) if res.use_gpu else 0.0
    bundle = {"CPU": need_cpu, **({"GPU": need_gpu} if need_gpu else {})}
    total = res.workers
    shape = _bundle_text(bundle)
    base = dict(
        job=spec.name,
        config=str(config.path),
        cluster=config.name,
        workers=total,
        worker_resources=bundle,
        idle_timeout_s=config.idle_timeout_s,
    )

    # Per type: workers one node holds and how many nodes the autoscaler may start.
    capacity: dict[str, int] = {}
    limits: dict[str, int] = {}
    candidates: dict[str, str] = {}
    for node_type in config.node_types:
        per_node = _workers_per_node(node_type, need_cpu, need_gpu)
        capacity[node_type.name] = per_node
        limits[node_type.name] = _node_limit(config, node_type)
        if per_node:
            candidates[node_type.name] = (
                f"{per_node} per node, up to {limits[node_type.name]} node(s)"
            )
        else:
            candidates[node_type.name] = _why_not(node_type, need_cpu, need_gpu)

    head = config.head
    head_slots = capacity.get(head.name, 0) if head else 0
    head_alloc = (
        [Allocation(head.name, 0, head_slots, min(head_slots, total), head.describe(), True)]
        if head and head_slots
        else []
    )
    remaining = max(0, total - head_slots)
    usable = [
        t
        for t in config.workers
        if capacity[t.name] and limits[t.name] > 0 and (need_gpu or not t.gpus)
    ]
    if not need_gpu and not usable:
        # A CPU job may borrow GPU machines, but only when nothing cheaper exists.
        usable = [t for t in config.workers if capacity[t.name] and limits[t.name] > 0]
    notes: list[str] = []
    if remaining == 0:
        return PlacementPlan(
            **base,
            fits=True,
            allocations=tuple(head_alloc),
            notes=("the head node holds every worker",),
            candidates=candidates,
        )

    single = []
    for node_type in usable:
        nodes = math.ceil(remaining / capacity[node_type.name])
        if nodes <= limits[node_type.name]:
            wasted_gpus = nodes * node_type.gpus - remaining * need_gpu
            single.append((wasted_gpus, nodes, node_type))
    if single:
        _, nodes, best = min(single, key=lambda item: (item[0], item[1]))
        per_node = capacity[best.name]
        alloc = Allocation(best.name, nodes, per_node, remaining, best.describe())
        if best.min_workers:
            running = min(nodes, best.min_workers)
            notes.append(f"{running} of the {best.name} nodes run all the time (min_workers)")
        if best.gpus and not need_gpu:
            notes.append(f"{best.name} has GPUs that this CPU job leaves idle")
        spare = nodes * per_node - remaining
        if spare:
            notes.append(f"room for {spare} more worker(s) on the last {best.name} node")
        return PlacementPlan(
            **base,
            fits=True,
            allocations=(*head_alloc, alloc),
            notes=tuple(notes),
            candidates=candidates,
        )

    # No single type suffices: fill the roomiest types first, within the cluster-wide cap.
    allocations = list(head_alloc)
    left, budget = remaining, _global_budget(config)
    for node_type in sorted(usable, key=lambda t: -capacity[t.name]):
        if left <= 0 or budget <= 0:
            break
        per_node = capacity[node_type.name]
        nodes = min(math.ceil(left / per_node), limits[node_type.name], budget)
        if nodes <= 0:
            continue
        placed = min(left, nodes * per_node)
        allocations.append(
            Allocation(node_type.name, nodes, per_node, placed, node_type.describe())
        )
        left -= placed
        budget -= nodes
    if left <= 0:
        notes.append("needs several node types: the autoscaler starts each as bundles demand")
        return PlacementPlan(
            **base,
            fits=True,
            allocations=tuple(allocations),
            notes=tuple(notes),
            candidates=candidates,
        )

    problems = _problems(
        config, spec, shape, total, remaining, capacity, limits, usable, need_gpu, total - left
    )
    return PlacementPlan(
        **base,
        fits=False,
        allocations=tuple(allocations),
        problems=tuple(problems),
        candidates=candidates,
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
    if cpus > node_type.cpus + 1e-9 or gpus > node_type.gpus + 1e-9:
        return 0
    by_cpu = math.floor(node_type.cpus / cpus + 1e-9) if cpus else math.inf
    by_gpu = math.floor(node_type.gpus / gpus + 1e-9) if gpus else math.inf
    count = min(by_cpu, by_gpu)
    return 0 if count == math.inf else int(count)


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


def _problems(
    config: ClusterConfig,
    spec: JobSpec,
    shape: str,
    total: int,
    remaining: int,
    capacity: dict[str, int],
    limits: dict[str, int],
    usable: list[NodeType],
    need_gpu: float,
    placed: int,
) -> list[ConfigIssue]:
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
