"""KubeRay `RayCluster` manifests: our own checks (there is no Kubernetes API server to ask) and
their reduction to node types, one per worker group.

KubeRay gives each Ray pod the resources of its first container: `num-cpus` from the CPU limit
(or request), `num-gpus` from the `nvidia.com/gpu` limit, unless `rayStartParams` sets them. A
mismatch between the two is the classic way to get pods that Kubernetes schedules on a GPU node
while Ray never places a GPU worker there (or the reverse), so it is an error here.
"""

from __future__ import annotations

import difflib
import math
import re
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

from resnetctl.cluster.config import (
    ClusterConfig,
    ConfigIssue,
    FieldPath,
    NodeType,
    Severity,
    issue_at,
)
from resnetctl.preemption.kubernetes import DEFAULT_GRACE_S

API_VERSION = "ray.io/v1"
GPU_KEY = "nvidia.com/gpu"
# Fields of KubeRay's v1 types (KubeRay 1.5); an unknown key close to one of these is a typo.
SPEC_FIELDS = (
    "authOptions",
    "autoscalerOptions",
    "enableInTreeAutoscaling",
    "gcsFaultToleranceOptions",
    "headGroupSpec",
    "headServiceAnnotations",
    "managedBy",
    "rayVersion",
    "suspend",
    "upgradeStrategy",
    "workerGroupSpecs",
)
HEAD_FIELDS = (
    "enableIngress",
    "headService",
    "labels",
    "rayStartParams",
    "resources",
    "serviceType",
    "template",
)
WORKER_FIELDS = (
    "groupName",
    "idleTimeoutSeconds",
    "labels",
    "maxReplicas",
    "minReplicas",
    "numOfHosts",
    "rayStartParams",
    "replicas",
    "resources",
    "scaleStrategy",
    "suspend",
    "template",
)
# Adds one issue: the field's path, the message and (by default) "error".
Add = Callable[..., None]
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_QUANTITY = re.compile(r"^([0-9.]+)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")


def parse_raycluster(
    file: Path, raw: dict[str, Any], lines: dict[FieldPath, int]
) -> tuple[ClusterConfig | None, list[ConfigIssue]]:
    """Check a `RayCluster` manifest and reduce it to node types (the head and worker groups)."""
    name = str(file)
    issues: list[ConfigIssue] = []

    def add(path: FieldPath, message: str, severity: Severity = "error") -> None:
        issues.append(issue_at(name, lines, path, message, severity))

    cluster_name = _manifest_checks(raw, add)
    spec = raw.get("spec")
    if not isinstance(spec, dict):
        add(("spec",), "missing: a RayCluster needs a spec")
        return None, issues
    _spec_checks(spec, add)
    types = [*_head_type(spec, add), *_worker_types(spec, add)]
    idle = (spec.get("autoscalerOptions") or {}).get("idleTimeoutSeconds")
    config = ClusterConfig(
        path=file,
        kind="kuberay",
        name=cluster_name,
        provider="kuberay",
        node_types=tuple(types),
        max_workers=None,
        idle_timeout_s=float(idle) if isinstance(idle, int) else 60.0,
        raw=raw,
        lines=lines,
    )
    return config, issues


def _manifest_checks(raw: dict[str, Any], add: Add) -> str:
    """Check the manifest's apiVersion, kind and name; returns the cluster's name."""
    if raw.get("apiVersion") != API_VERSION:
        add(("apiVersion",), f"{raw.get('apiVersion')!r}: KubeRay 1.x serves {API_VERSION}")
    if raw.get("kind") != "RayCluster":
        add(("kind",), f"{raw.get('kind')!r}: only RayCluster manifests are supported")
    cluster_name = str((raw.get("metadata") or {}).get("name", ""))
    if not _NAME.match(cluster_name) or len(cluster_name) > 63:
        add(
            ("metadata", "name"),
            f"{cluster_name!r} is not a valid Kubernetes name "
            "(lower-case letters, digits and '-', at most 63)",
        )
    return cluster_name


def _spec_checks(spec: dict[str, Any], add: Add) -> None:
    """The cluster-wide fields of the spec: autoscaling, Ray version, token auth."""
    _unknown_keys(spec, SPEC_FIELDS, ("spec",), add)
    if spec.get("enableInTreeAutoscaling") is not True:
        add(
            ("spec", "enableInTreeAutoscaling"),
            "not true: worker groups stay at `replicas` and never scale with the jobs",
            "warning",
        )
    options = spec.get("autoscalerOptions") or {}
    idle = options.get("idleTimeoutSeconds")
    if idle is not None and (not isinstance(idle, int) or idle < 0):
        add(("spec", "autoscalerOptions", "idleTimeoutSeconds"), "must be a whole number >= 0")
    rayversion = spec.get("rayVersion")
    if not rayversion:
        add(
            ("spec", "rayVersion"),
            "not set: KubeRay needs it for token auth and the "
            "autoscaler version; set it to the Ray in your image",
            "warning",
        )
    if (spec.get("authOptions") or {}).get("mode") not in ("token", None) or not spec.get(
        "authOptions"
    ):
        add(
            ("spec", "authOptions"),
            "token auth is not on: anyone who reaches the head "
            "service can run code; set authOptions: {mode: token}",
            "warning",
        )


def _head_type(spec: dict[str, Any], add: Add) -> list[NodeType]:
    """The head group as a node type (none if the manifest has no head group)."""
    head = spec.get("headGroupSpec")
    if not isinstance(head, dict):
        add(("spec", "headGroupSpec"), "missing: a RayCluster needs a head group")
        return []
    _unknown_keys(head, HEAD_FIELDS, ("spec", "headGroupSpec"), add)
    service = head.get("serviceType", "ClusterIP")
    if service != "ClusterIP" or head.get("enableIngress"):
        add(
            ("spec", "headGroupSpec", "serviceType"),
            f"{service}"
            f"{' with an Ingress' if head.get('enableIngress') else ''} exposes the "
            "dashboard and Jobs API outside the cluster; keep ClusterIP and use "
            "`kubectl port-forward`",
            "warning",
        )
    cpus, gpus = _group_resources(head, ("spec", "headGroupSpec"), add)
    return [NodeType("head", cpus, gpus, 0, 0, head=True, path=("spec", "headGroupSpec"))]


def _worker_types(spec: dict[str, Any], add: Add) -> list[NodeType]:
    """One node type per worker group, checking names, replica bounds and idle GPU pods."""
    groups = spec.get("workerGroupSpecs") or []
    if not isinstance(groups, list):
        add(("spec", "workerGroupSpecs"), "must be a list of worker groups")
        groups = []
    if not groups:
        add(
            ("spec", "workerGroupSpecs"),
            "no worker groups: jobs can only run on the head",
            "warning",
        )
    types: list[NodeType] = []
    seen: set[str] = set()
    for index, group in enumerate(groups):
        path: FieldPath = ("spec", "workerGroupSpecs", index)
        if not isinstance(group, dict):
            add(path, "must be a mapping")
            continue
        _unknown_keys(group, WORKER_FIELDS, path, add)
        group_name = str(group.get("groupName", ""))
        if not group_name:
            add((*path, "groupName"), "missing: every worker group needs a name")
        elif group_name in seen:
            add((*path, "groupName"), f"{group_name!r} is used by another worker group")
        seen.add(group_name)
        _watcher_grace(group, path, add)
        bounds = _replica_bounds(group, path, add)
        if bounds is None:
            continue
        low, high = bounds
        hosts = group.get("numOfHosts", 1)
        cpus, gpus = _group_resources(group, path, add)
        if gpus and low > 0:
            add(
                (*path, "minReplicas"),
                f"{low} GPU pods run (and bill) even when idle; 0 lets the autoscaler remove them",
                "warning",
            )
        types.append(
            NodeType(
                group_name or f"group-{index}", cpus, gpus, low * hosts, high * hosts, path=path
            )
        )
    return types


def _watcher_grace(group: dict[str, Any], path: FieldPath, add: Add) -> None:
    """A preStop preemption watcher must drain with the pod's own grace period: with a longer
    one, Ray would tell the training loop of a deadline after the pod's SIGKILL."""
    spec = (group.get("template") or {}).get("spec") or {}
    if not isinstance(spec, dict):
        return
    grace = spec.get("terminationGracePeriodSeconds", DEFAULT_GRACE_S)
    for index, container in enumerate(spec.get("containers") or []):
        hook = ((container or {}).get("lifecycle") or {}).get("preStop") or {}
        command = (hook.get("exec") or {}).get("command") or []
        try:
            words = [w for part in command for w in shlex.split(str(part))]
        except ValueError:
            continue
        if "watch-preemption" not in words:
            continue
        said = _option_value(words, "--grace-period-seconds")
        try:
            drained = float(said) if said is not None else DEFAULT_GRACE_S
        except ValueError:
            continue  # the watcher itself refuses it, naming the value
        if isinstance(grace, (int, float)) and drained != grace:
            where = (*path, "template", "spec", "containers", index, "lifecycle", "preStop")
            add(
                where,
                f"the preemption watcher drains with --grace-period-seconds {drained:g} but the "
                f"pod's terminationGracePeriodSeconds is {grace}: give both the same number",
                "warning",
            )


def _option_value(words: list[str], option: str) -> str | None:
    """The value of `option` in a command's words (`--opt V` or `--opt=V`), None if absent."""
    for index, word in enumerate(words):
        if word == option and index + 1 < len(words):
            return words[index + 1]
        if word.startswith(option + "="):
            return word.split("=", 1)[1]
    return None


def _replica_bounds(group: dict[str, Any], path: FieldPath, add: Add) -> tuple[int, int] | None:
    """A group's (minReplicas, maxReplicas), checked; None if either is not a whole number."""
    low, high = group.get("minReplicas", 0), group.get("maxReplicas", 2**31 - 1)
    for key, value in (("minReplicas", low), ("maxReplicas", high)):
        if not isinstance(value, int) or value < 0:
            add((*path, key), f"{value!r} must be a whole number >= 0")
    if not isinstance(low, int) or not isinstance(high, int):
        return None
    if low > high:
        add((*path, "minReplicas"), f"{low} is more than maxReplicas {high}")
    replicas = group.get("replicas", low)
    if isinstance(replicas, int) and not low <= replicas <= high:
        add(
            (*path, "replicas"),
            f"{replicas} is outside [minReplicas {low}, maxReplicas {high}]",
        )
    return low, high


def _group_resources(group: dict[str, Any], path: FieldPath, add: Add) -> tuple[float, float]:
    """The Ray CPUs and GPUs of one pod of a group, checking the pod against rayStartParams."""
    params = group.get("rayStartParams")
    params_path = (*path, "rayStartParams")
    if params is None:
        params = {}
    if not isinstance(params, dict):
        add(params_path, "must be a mapping of `ray start` options to strings")
        params = {}
    for key, value in params.items():
        if not isinstance(value, str):
            # The CRD types rayStartParams as map[string]string: the API server rejects numbers.
            add((*params_path, key), f'{value!r} must be a string (quote it: "{value}")')
    containers = (((group.get("template") or {}).get("spec") or {}).get("containers")) or []
    container_path: FieldPath = (*path, "template", "spec", "containers", 0)
    if not containers or not isinstance(containers[0], dict):
        add(
            (*path, "template", "spec", "containers"),
            "missing: the pod needs its Ray container first",
        )
        return 0.0, 0.0
    container = containers[0]
    resources = container.get("resources") or {}
    limits, requests = resources.get("limits") or {}, resources.get("requests") or {}
    res_path = (*container_path, "resources")
    for key in set(limits) & set(requests):
        low, high = _quantity(requests[key]), _quantity(limits[key])
        if low is None or high is None:
            continue
        if key == GPU_KEY and low != high:
            add(
                (*res_path, "requests", key),
                f"{requests[key]} must equal the limit "
                f"{limits[key]} (Kubernetes does not overcommit GPUs)",
            )
        elif low > high:
            add(
                (*res_path, "requests", key),
                f"{requests[key]} is more than the limit {limits[key]}",
            )
    for where, values in (("limits", limits), ("requests", requests)):
        for key, value in values.items():
            if _quantity(value) is None:
                add((*res_path, where, key), f"{value!r} is not a Kubernetes quantity")
    pod_cpu = _quantity(limits.get("cpu", requests.get("cpu")))
    pod_gpu = _quantity(limits.get(GPU_KEY)) or 0.0
    if GPU_KEY in requests and GPU_KEY not in limits:
        # Kubernetes wants extended resources in limits, and KubeRay reads only limits.
        add(
            (*res_path, "requests", GPU_KEY),
            f"set {GPU_KEY} under limits (KubeRay derives num-gpus from limits only)",
        )
    cpus = _param(params, "num-cpus", pod_cpu, (*params_path, "num-cpus"), add)
    gpus = _param(params, "num-gpus", pod_gpu, (*params_path, "num-gpus"), add)
    if "num-cpus" in params and pod_cpu is not None and cpus > pod_cpu:
        add(
            (*params_path, "num-cpus"),
            f"{params['num-cpus']} is more than the container's "
            f"CPU limit {limits.get('cpu', requests.get('cpu'))}: Ray would oversubscribe it",
        )
    if "num-gpus" in params and gpus != pod_gpu:
        add(
            (*params_path, "num-gpus"),
            f"{params['num-gpus']} but the container's {GPU_KEY} "
            f"limit is {int(pod_gpu)}: Ray's GPUs must match the pod's",
        )
    if pod_cpu is None and "num-cpus" not in params:
        add(
            (*res_path, "limits", "cpu"),
            "not set: Ray would count the whole Kubernetes "
            "node's CPUs; set a CPU limit (or rayStartParams num-cpus)",
            "warning",
        )
    return float(cpus or 0.0), float(gpus or 0.0)


def _param(
    params: dict[str, Any], key: str, default: float | None, path: FieldPath, add: Add
) -> float:
    if key not in params:
        # KubeRay passes whole CPUs to `ray start`: a 500m limit gives 1 CPU, 2500m gives 3.
        return float(math.ceil(default)) if default else 0.0
    try:
        return float(str(params[key]))
    except ValueError:
        add(path, f"{params[key]!r} is not a number")
        return 0.0


def _quantity(value: Any) -> float | None:
    """A Kubernetes quantity (`8`, `500m`, `64Gi`) as a float, None if it is not one."""
    if value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    match = _QUANTITY.match(str(value).strip())
    if not match:
        return None
    number, suffix = float(match.group(1)), match.group(2) or ""
    scale = {
        "": 1,
        "m": 1e-3,
        "k": 1e3,
        "M": 1e6,
        "G": 1e9,
        "T": 1e12,
        "P": 1e15,
        "E": 1e18,
        "Ki": 2**10,
        "Mi": 2**20,
        "Gi": 2**30,
        "Ti": 2**40,
        "Pi": 2**50,
        "Ei": 2**60,
    }
    return number * scale[suffix]


def _unknown_keys(
    mapping: dict[str, Any], known: tuple[str, ...], path: FieldPath, add: Add
) -> None:
    for key in mapping:
        if key in known:
            continue
        close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.75)
        if close:
            add((*path, key), f"unknown field; did you mean '{close[0]}'?")
        else:
            add((*path, key), "not a field KubeRay 1.5 knows; newer KubeRay may", "warning")
