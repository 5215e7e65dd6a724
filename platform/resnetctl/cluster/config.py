"""Cluster configs: read a Ray cluster-launcher YAML or a KubeRay `RayCluster`, check it, and
reduce it to what placement needs: node types with their CPUs, GPUs and worker limits.

Launcher configs are checked with Ray's own JSON schema and `validate_config` (the checks
`ray up` makes), then with ours; KubeRay manifests with ours alone (see `kuberay.py`). Every
problem is a `ConfigIssue` naming the file, the line and the dotted field.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import json
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml

from resnetctl.cluster.instances import machine

if TYPE_CHECKING:
    from resnetctl.spec import JobSpec

FieldPath = tuple[str | int, ...]
Severity = Literal["error", "warning"]
Kind = Literal["launcher", "kuberay"]
PLACEHOLDER = "REPLACE"


def dotted(path: FieldPath) -> str:
    """`("a", "b", 0, "c")` as `a.b[0].c`."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "<top level>"


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a cluster config: where it is and what is wrong."""

    file: str
    field: str
    message: str
    severity: Severity = "error"
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.field}: {self.message}"

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready dict."""
        return {
            "file": self.file,
            "line": self.line,
            "field": self.field,
            "message": self.message,
            "severity": self.severity,
        }


class ClusterConfigError(ValueError):
    """A config that cannot be used; `issues` says why, one field each."""

    def __init__(self, issues: Sequence[ConfigIssue]) -> None:
        self.issues = list(issues)
        super().__init__("\n".join(str(i) for i in self.issues))


@dataclass(frozen=True)
class NodeType:
    """A kind of node the cluster can have: what one node offers Ray and how many may run."""

    name: str
    cpus: float
    gpus: float
    min_workers: int
    max_workers: int
    head: bool = False
    path: FieldPath = ()
    machine: str | None = None
    accelerator: str | None = None

    def describe(self) -> str:
        """`p4d.24xlarge, 96 CPU, 8 GPU (A100)`-style summary."""
        parts = [self.machine] if self.machine else []
        parts.append(f"{fmt_number(self.cpus)} CPU")
        if self.gpus:
            parts.append(
                f"{fmt_number(self.gpus)} GPU"
                + (f" ({self.accelerator})" if self.accelerator else "")
            )
        return ", ".join(parts)


@dataclass(frozen=True)
class ClusterConfig:
    """A checked cluster config, reduced to what placement needs."""

    path: Path
    kind: Kind
    name: str
    provider: str
    node_types: tuple[NodeType, ...]
    max_workers: int | None
    idle_timeout_s: float | None
    raw: dict[str, Any] = field(repr=False, compare=False)
    lines: dict[FieldPath, int] = field(default_factory=dict, repr=False, compare=False)

    @property
    def head(self) -> NodeType | None:
        """The head node type (None if the config names none)."""
        return next((t for t in self.node_types if t.head), None)

    @property
    def workers(self) -> tuple[NodeType, ...]:
        """The worker node types, in config order."""
        return tuple(t for t in self.node_types if not t.head)

    @property
    def node_types_path(self) -> FieldPath:
        """Where node types are declared, for messages."""
        return ("spec", "workerGroupSpecs") if self.kind == "kuberay" else ("available_node_types",)

    @property
    def max_workers_path(self) -> FieldPath:
        """The field of a type's node limit, relative to the type."""
        return ("maxReplicas",) if self.kind == "kuberay" else ("max_workers",)

    def issue(self, path: FieldPath, message: str, severity: Severity = "error") -> ConfigIssue:
        """A `ConfigIssue` at `path` of this file, with the nearest known line."""
        return issue_at(str(self.path), self.lines, path, message, severity)


@dataclass
class ConfigReport:
    """The outcome of checking one file: the config (None if unusable) and every issue."""

    path: Path
    config: ClusterConfig | None
    issues: list[ConfigIssue]

    @property
    def errors(self) -> list[ConfigIssue]:
        """Issues that make the config unusable for the jobs checked."""
        return [i for i in self.issues if i.severity == "error"]

    @property
    def warnings(self) -> list[ConfigIssue]:
        """Issues worth a look that do not stop the config from working."""
        return [i for i in self.issues if i.severity == "warning"]

    @property
    def ok(self) -> bool:
        """True when there is no error."""
        return not self.errors


def check_config(path: str | os.PathLike[str], jobs: Iterable[JobSpec] = ()) -> ConfigReport:
    """Check a cluster config, and that it can supply every job in `jobs`.

    Never raises for a bad config: the report lists every problem found.
    """
    file = Path(path)
    try:
        raw, lines = read_yaml(file)
    except ClusterConfigError as exc:
        return ConfigReport(file, None, exc.issues)
    if is_kuberay(raw):
        from resnetctl.cluster.kuberay import parse_raycluster

        config, issues = parse_raycluster(file, raw, lines)
    else:
        config, issues = parse_launcher(file, raw, lines)
    marked = placeholders(raw)
    if marked:
        others = f" (and {', '.join(dotted(p) for p in marked[1:])})" if len(marked) > 1 else ""
        issues.append(
            issue_at(
                str(file),
                lines,
                marked[0],
                f"still a placeholder{others}: fill in before `resnetctl cluster up`",
                "warning",
            )
        )
    if config is not None and not any(i.severity == "error" for i in issues):
        from resnetctl.cluster.capacity import plan_placement

        for job in jobs:
            issues.extend(plan_placement(job, config).problems)
    return ConfigReport(file, config, issues)


def load_config(path: str | os.PathLike[str]) -> ClusterConfig:
    """Load and check a cluster config; raises `ClusterConfigError` if it has errors."""
    report = check_config(path)
    if report.config is None or report.errors:
        raise ClusterConfigError(report.errors)
    return report.config


def read_yaml(file: Path) -> tuple[dict[str, Any], dict[FieldPath, int]]:
    """The YAML mapping in `file` and the line of every key in it."""
    if not file.is_file():
        what = "is a directory, not a file" if file.is_dir() else "no such file"
        raise ClusterConfigError([ConfigIssue(str(file), "<file>", what)])
    text = file.read_text(encoding="utf-8")
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        line = mark.line + 1 if mark else None
        raise ClusterConfigError(
            [ConfigIssue(str(file), "<file>", f"YAML syntax error: {problem}", line=line)]
        ) from None
    if not isinstance(data, dict):
        raise ClusterConfigError(
            [ConfigIssue(str(file), "<top level>", "a cluster config must be a mapping", line=1)]
        )
    from resnetctl.spec.yaml_lines import duplicate_keys

    twice = [
        ConfigIssue(
            str(file),
            dotted(d.path),
            f"given twice, first at line {d.first_line}; "
            "YAML would silently keep only the last: remove one",
            line=d.line,
        )
        for d in duplicate_keys(node)
    ]
    if twice:
        raise ClusterConfigError(twice)
    lines: dict[FieldPath, int] = {}
    if node is not None:
        _record_lines(node, (), lines)
    return data, lines


def placeholders(value: Any, path: FieldPath = ()) -> list[FieldPath]:
    """Fields whose value still says REPLACE (the shipped configs mark per-site values so)."""
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in placeholders(v, (*path, k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in placeholders(v, (*path, i))]
    return [path] if isinstance(value, str) and PLACEHOLDER in value else []


def is_kuberay(raw: dict[str, Any]) -> bool:
    """Whether `raw` is a Kubernetes manifest (KubeRay) rather than a launcher config."""
    return "apiVersion" in raw or "kind" in raw


# ---------------------------------------------------------------------------------------------
# Ray cluster-launcher configs


def parse_launcher(
    file: Path, raw: dict[str, Any], lines: dict[FieldPath, int]
) -> tuple[ClusterConfig | None, list[ConfigIssue]]:
    """Check a cluster-launcher config with Ray's schema and ours; reduce it to node types."""
    name = str(file)
    issues = ray_schema_issues(name, raw, lines)
    if issues:
        # Past a schema error the structure cannot be trusted for anything else.
        return None, issues
    prepared, ray_issues = _ray_validate(name, raw, lines)
    issues.extend(ray_issues)
    if prepared is None:
        return None, issues
    provider = str(prepared["provider"]["type"])
    head_name = prepared.get("head_node_type")
    global_max = prepared.get("max_workers")
    if "available_node_types" not in raw:
        issues.append(
            issue_at(
                name,
                lines,
                ("available_node_types",),
                "not set: Ray falls back to its "
                f"{provider} defaults (small CPU machines, no GPUs); list the node types",
                "warning",
            )
        )
    types = []
    for type_name, node in (prepared.get("available_node_types") or {}).items():
        node_type, type_issues = _launcher_node_type(
            name, lines, provider, type_name, node, type_name == head_name, global_max
        )
        types.append(node_type)
        issues.extend(type_issues)
    issues.extend(_launcher_policy_issues(name, raw, lines, head_name, types))
    idle = prepared.get("idle_timeout_minutes")
    config = ClusterConfig(
        path=file,
        kind="launcher",
        name=str(prepared.get("cluster_name", file.stem)),
        provider=provider,
        node_types=tuple(types),
        max_workers=int(global_max) if global_max is not None else None,
        idle_timeout_s=float(idle) * 60 if idle is not None else None,
        raw=raw,
        lines=lines,
    )
    return config, issues


def ray_schema_issues(
    name: str, raw: dict[str, Any], lines: dict[FieldPath, int]
) -> list[ConfigIssue]:
    """Every violation of Ray's cluster-config JSON schema (`ray/autoscaler/ray-schema.json`),
    with a did-you-mean for misspelt keys."""
    import jsonschema
    import ray.autoscaler

    schema_path = Path(ray.autoscaler.__file__).with_name("ray-schema.json")
    schema = json.loads(schema_path.read_text())
    validator_cls = jsonschema.validators.validator_for(schema)
    validator = validator_cls(schema)
    issues = []
    for error in sorted(validator.iter_errors(raw), key=lambda e: list(map(str, e.path))):
        path: FieldPath = tuple(error.absolute_path)
        message = error.message
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            allowed = _allowed_keys(error.schema)
            extra = [
                k for k in error.instance if k not in allowed and not _pattern_ok(error.schema, k)
            ]
            for key in extra or [None]:
                key_path = (*path, key) if key is not None else path
                hint = _did_you_mean(str(key), allowed) if key is not None else ""
                text = f"unknown key (Ray's schema allows no such field){hint}"
                issues.append(issue_at(name, lines, key_path, text if key is not None else message))
            continue
        if error.validator == "required":
            missing = message.split("'")[1] if "'" in message else ""
            issues.append(issue_at(name, lines, (*path, missing) if missing else path, message))
            continue
        issues.append(issue_at(name, lines, path, f"{message} (Ray's schema)"))
    return issues


def _ray_validate(
    name: str, raw: dict[str, Any], lines: dict[FieldPath, int]
) -> tuple[dict[str, Any] | None, list[ConfigIssue]]:
    """Fill Ray's provider defaults as `ray up` does, then run Ray's `validate_config`."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    try:
        # Ray logs each default it fills at INFO; that is noise in a validator's output.
        with _quiet("ray.autoscaler._private.util"):
            prepared = prepare_config(copy.deepcopy(raw))
    except FileNotFoundError:
        # Providers without a defaults file in the wheel (fake_multinode): the config must be
        # complete; fill only what `validate_config` and placement read.
        prepared = copy.deepcopy(raw)
        prepared.setdefault("cluster_synced_files", [])
        prepared.setdefault("max_workers", 2)
        for node_type, node in (prepared.get("available_node_types") or {}).items():
            node.setdefault("min_workers", 0)
            head = node_type == prepared.get("head_node_type")
            node.setdefault("max_workers", 0 if head else prepared["max_workers"])
    except (ValueError, KeyError, TypeError, AssertionError, NotImplementedError) as exc:
        return None, [issue_at(name, lines, _field_in(str(exc)), f"Ray: {exc}")]
    try:
        validate_config(prepared)
    except Exception as exc:  # Ray raises ValueError, RuntimeError and jsonschema errors
        message = getattr(exc, "message", None) or str(exc)
        return None, [
            issue_at(name, lines, _field_in(message), f"Ray's validate_config: {message}")
        ]
    return prepared, []


def _launcher_node_type(
    name: str,
    lines: dict[FieldPath, int],
    provider: str,
    type_name: str,
    node: dict[str, Any],
    head: bool,
    global_max: int | None,
) -> tuple[NodeType, list[ConfigIssue]]:
    path: FieldPath = ("available_node_types", type_name)
    issues: list[ConfigIssue] = []
    resources = dict(node.get("resources") or {})
    known = machine(provider, node.get("node_config") or {})
    label = _machine_label(provider, node.get("node_config") or {})
    if known is not None:
        cpus = resources.get("CPU")
        if cpus is not None and cpus > known.cpus:
            issues.append(
                issue_at(
                    name,
                    lines,
                    (*path, "resources", "CPU"),
                    f"{cpus} declared but {label} has {known.cpus} vCPUs",
                )
            )
        gpus = resources.get("GPU")
        if gpus is not None and gpus != known.gpus:
            issues.append(
                issue_at(
                    name,
                    lines,
                    (*path, "resources", "GPU"),
                    f"{gpus} declared but {label} has {known.gpus} GPUs",
                )
            )
        if gpus is None and known.gpus and provider != "aws":
            # AWS fills undeclared resources from the instance type at `ray up`; GCP does not,
            # so the autoscaler would never start this type for GPU work.
            issues.append(
                issue_at(
                    name,
                    lines,
                    (*path, "resources"),
                    f"declares no GPU but {label} has {known.gpus}: add GPU: "
                    f"{known.gpus} (Ray does not detect GCP GPUs for the autoscaler)",
                )
            )
        if provider == "aws":
            resources.setdefault("CPU", known.cpus)
            resources.setdefault("GPU", known.gpus)
    elif provider in ("aws", "gcp") and "CPU" not in resources:
        issues.append(
            issue_at(
                name,
                lines,
                (*path, "resources"),
                f"no CPU declared and {label or 'this machine type'} is not in "
                "resnetctl's table: declare CPU (and GPU) so placement can be "
                "planned",
                "warning",
            )
        )
    min_workers = int(node.get("min_workers", 0))
    max_workers = int(node.get("max_workers", 0 if head else (global_max or 0)))
    if min_workers > max_workers:
        issues.append(
            issue_at(
                name,
                lines,
                (*path, "min_workers"),
                f"{min_workers} is more than max_workers {max_workers}",
            )
        )
    if not head and global_max is not None and max_workers > global_max:
        issues.append(
            issue_at(
                name,
                lines,
                (*path, "max_workers"),
                f"{max_workers} is more than the cluster-wide max_workers "
                f"{global_max}, which caps it",
                "warning",
            )
        )
    gpus = float(resources.get("GPU", 0))
    if not head and gpus and min_workers > 0:
        issues.append(
            issue_at(
                name,
                lines,
                (*path, "min_workers"),
                f"{min_workers} GPU nodes run (and bill) even when idle; 0 lets "
                "the autoscaler remove them",
                "warning",
            )
        )
    node_type = NodeType(
        name=type_name,
        cpus=float(resources.get("CPU", 0)),
        gpus=gpus,
        min_workers=min_workers,
        max_workers=max_workers,
        head=head,
        path=path,
        machine=label or None,
        accelerator=known.accelerator if known else None,
    )
    return node_type, issues


def _launcher_policy_issues(
    name: str,
    raw: dict[str, Any],
    lines: dict[FieldPath, int],
    head_name: str | None,
    types: list[NodeType],
) -> list[ConfigIssue]:
    issues = []
    commands = raw.get("head_start_ray_commands") or []
    for index, command in enumerate(commands):
        if isinstance(command, str) and (
            "--dashboard-host=0.0.0.0" in command or "--dashboard-host 0.0.0.0" in command
        ):
            issues.append(
                issue_at(
                    name,
                    lines,
                    ("head_start_ray_commands", index),
                    "the dashboard (and Jobs API) listens on every interface; bind "
                    "127.0.0.1 and reach it with `ray dashboard FILE` (SSH tunnel)",
                    "warning",
                )
            )
    head = next((t for t in types if t.head), None)
    if head is not None and head.cpus == 0 and commands:
        joined = " ".join(c for c in commands if isinstance(c, str))
        if "--num-cpus=0" not in joined and "--num-cpus 0" not in joined:
            issues.append(
                issue_at(
                    name,
                    lines,
                    ("head_start_ray_commands",),
                    f"{head_name} declares CPU: 0 but `ray start --head` has no "
                    "--num-cpus=0, so Ray will still schedule work on the head",
                    "warning",
                )
            )
    rules = ((raw.get("provider") or {}).get("security_group") or {}).get("IpPermissions") or []
    for index, rule in enumerate(rules):
        if not isinstance(rule, dict):
            continue
        low, high = rule.get("FromPort", 0), rule.get("ToPort", 0)
        public = any(r.get("CidrIp") == "0.0.0.0/0" for r in rule.get("IpRanges") or [])
        if public and isinstance(low, int) and isinstance(high, int) and low <= 8265 <= high:
            issues.append(
                issue_at(
                    name,
                    lines,
                    ("provider", "security_group", "IpPermissions", index),
                    "opens the dashboard port 8265 to the internet: anyone could "
                    "submit jobs; use an SSH tunnel instead",
                    "warning",
                )
            )
    return issues


# ---------------------------------------------------------------------------------------------
# helpers


def issue_at(
    name: str,
    lines: dict[FieldPath, int],
    path: FieldPath,
    message: str,
    severity: Severity = "error",
) -> ConfigIssue:
    """A `ConfigIssue` at `path` in file `name`, with the line of its nearest known prefix."""
    line = None
    for end in range(len(path), -1, -1):
        if path[:end] in lines:
            line = lines[path[:end]]
            break
    return ConfigIssue(name, dotted(path), message, severity, line)


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _record_lines(node: yaml.Node, path: FieldPath, lines: dict[FieldPath, int]) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            child = (*path, key)
            lines[child] = key_node.start_mark.line + 1
            _record_lines(value_node, child, lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            child = (*path, index)
            lines[child] = item.start_mark.line + 1
            _record_lines(item, child, lines)


def _allowed_keys(schema: dict[str, Any]) -> list[str]:
    return list((schema.get("properties") or {}).keys())


def _pattern_ok(schema: dict[str, Any], key: str) -> bool:
    import re

    return any(re.search(p, key) for p in (schema.get("patternProperties") or {}))


def _did_you_mean(key: str, allowed: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, list(allowed), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def _field_in(message: str) -> FieldPath:
    # Ray's validate_config messages quote the field they are about; the longest match wins.
    for candidate in (
        "head_node_type",
        "available_node_types",
        "max_workers",
        "min_workers",
        "cluster_synced_files",
        "docker",
        "provider",
        "auth",
    ):
        if candidate in message:
            return (candidate,)
    return ()


def _machine_label(provider: str, node_config: dict[str, Any]) -> str:
    if provider == "aws":
        return str(node_config.get("InstanceType", ""))
    if provider == "gcp":
        return str(node_config.get("machineType", "")).rsplit("/", 1)[-1]
    return ""


def fmt_number(value: float) -> str:
    """`8.0` as `8`, `0.5` as `0.5`."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"
