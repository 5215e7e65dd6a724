"""Ray cluster-launcher configs (`ray up` YAML): checked with Ray's own JSON schema and
`validate_config` (the checks `ray up` makes), then with resnetctl's (declared resources against
the machine type, worker limits, a private dashboard), and reduced to node types.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import json
import logging
import re
from collections.abc import Callable, Iterator, Sequence
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
from resnetctl.cluster.instances import Machine, machine


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
    # Ray takes seconds to import; only launcher configs need it (not KubeRay, not placement).
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

    def add(where: FieldPath, message: str, severity: Severity = "error") -> None:
        issues.append(issue_at(name, lines, (*path, *where), message, severity))

    resources = dict(node.get("resources") or {})
    node_config = node.get("node_config") or {}
    known = machine(provider, node_config)
    label = _machine_label(provider, node_config)
    _check_machine(add, provider, resources, known, label)
    if known is not None and provider == "aws":
        # AWS fills undeclared resources from the instance type at `ray up`.
        resources.setdefault("CPU", known.cpus)
        resources.setdefault("GPU", known.gpus)
    min_workers = int(node.get("min_workers", 0))
    max_workers = int(node.get("max_workers", 0 if head else (global_max or 0)))
    gpus = float(resources.get("GPU", 0))
    _check_limits(add, head, gpus, min_workers, max_workers, global_max)
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


# Adds one issue at a field below the node type: its path there, the message, the severity.
Add = Callable[..., None]


def _check_machine(
    add: Add, provider: str, resources: dict[str, Any], known: Machine | None, label: str
) -> None:
    """The declared CPUs and GPUs of a node type against what its machine type has."""
    if known is None:
        if provider in ("aws", "gcp") and "CPU" not in resources:
            add(
                ("resources",),
                f"no CPU declared and {label or 'this machine type'} is not in "
                "resnetctl's table: declare CPU (and GPU) so placement can be "
                "planned",
                "warning",
            )
        return
    cpus = resources.get("CPU")
    if cpus is not None and cpus > known.cpus:
        add(("resources", "CPU"), f"{cpus} declared but {label} has {known.cpus} vCPUs")
    gpus = resources.get("GPU")
    if gpus is not None and gpus != known.gpus:
        add(("resources", "GPU"), f"{gpus} declared but {label} has {known.gpus} GPUs")
    if gpus is None and known.gpus and provider != "aws":
        # GCP does not fill GPUs from the machine type, so the autoscaler would never start
        # this type for GPU work.
        add(
            ("resources",),
            f"declares no GPU but {label} has {known.gpus}: add GPU: "
            f"{known.gpus} (Ray does not detect GCP GPUs for the autoscaler)",
        )


def _check_limits(
    add: Add, head: bool, gpus: float, low: int, high: int, global_max: int | None
) -> None:
    """A node type's min/max workers against each other, the cluster cap and idle billing."""
    if low > high:
        add(("min_workers",), f"{low} is more than max_workers {high}")
    if not head and global_max is not None and high > global_max:
        add(
            ("max_workers",),
            f"{high} is more than the cluster-wide max_workers {global_max}, which caps it",
            "warning",
        )
    if not head and gpus and low > 0:
        add(
            ("min_workers",),
            f"{low} GPU nodes run (and bill) even when idle; 0 lets the autoscaler remove them",
            "warning",
        )


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


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _allowed_keys(schema: dict[str, Any]) -> list[str]:
    return list((schema.get("properties") or {}).keys())


def _pattern_ok(schema: dict[str, Any], key: str) -> bool:
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
