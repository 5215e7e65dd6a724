"""The types every stage of a cluster config shares: the reduced config (`ClusterConfig`,
`NodeType`), the problems found in it (`ConfigIssue`, `ConfigReport`, `ClusterConfigError`) and
how a field's path and line are named in messages.

Reading a file is `parse`, checking a launcher config `launcher_config`, a KubeRay manifest
`kuberay`, placing jobs `place`; all of them import this module and nothing imports them here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from resnetctl.spec.yaml_lines import FieldPath

Severity = Literal["error", "warning"]
Kind = Literal["launcher", "kuberay"]


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


def issue_at(
    name: str,
    lines: dict[FieldPath, int],
    path: FieldPath,
    message: str,
    severity: Severity = "error",
) -> ConfigIssue:
    """A `ConfigIssue` at `path` in file `name`, with the line of its nearest known prefix."""
    return ConfigIssue(name, dotted(path), message, severity, line_at(lines, path))


def line_at(lines: dict[FieldPath, int], path: FieldPath) -> int | None:
    """The line of `path`, or of its nearest prefix whose line is known."""
    for end in range(len(path), -1, -1):
        if path[:end] in lines:
            return lines[path[:end]]
    return None


def fmt_number(value: float) -> str:
    """`8.0` as `8`, `0.5` as `0.5`."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"
