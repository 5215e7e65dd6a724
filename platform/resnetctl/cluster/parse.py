"""Read a cluster config file: the YAML with the line of every key (the reader job specs use,
`resnetctl.spec.yaml_lines`), then the checks and reduction of its kind, a Ray cluster-launcher
config (`launcher_config`) or a KubeRay `RayCluster` (`kuberay`), the nodes' access to the
bucket it names (`bucket`), and its unfilled placeholders.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from resnetctl.cluster.bucket import bucket_access_issues
from resnetctl.cluster.config import (
    ClusterConfig,
    ClusterConfigError,
    ConfigIssue,
    ConfigReport,
    FieldPath,
    dotted,
)
from resnetctl.cluster.kuberay import parse_raycluster
from resnetctl.cluster.launcher_config import parse_launcher
from resnetctl.cluster.placeholders import placeholder_issues
from resnetctl.spec.yaml_lines import UnreadableFile, YamlSyntaxError, read_document, read_text


def parse_config(path: str | os.PathLike[str]) -> ConfigReport:
    """Read and check one cluster config file on its own (no jobs).

    Never raises for a bad config: the report lists every problem found.
    """
    file = Path(path)
    try:
        raw, lines = read_yaml(file)
    except ClusterConfigError as exc:
        return ConfigReport(file, None, exc.issues)
    if is_kuberay(raw):
        config, issues = parse_raycluster(file, raw, lines)
    else:
        config, issues = parse_launcher(file, raw, lines)
    if config is not None:
        issues.extend(bucket_access_issues(str(file), raw, lines, config.provider))
    issues.extend(placeholder_issues(str(file), raw, lines))
    return ConfigReport(file, config, issues)


def load_config(path: str | os.PathLike[str]) -> ClusterConfig:
    """Load and check a cluster config; raises `ClusterConfigError` if it has errors."""
    report = parse_config(path)
    if report.config is None or report.errors:
        raise ClusterConfigError(report.errors)
    return report.config


def read_yaml(file: Path) -> tuple[dict[str, Any], dict[FieldPath, int]]:
    """The YAML mapping in `file` and the line of every key in it."""
    try:
        document = read_document(read_text(file))
    except UnreadableFile as exc:
        raise ClusterConfigError([ConfigIssue(str(file), "<file>", str(exc))]) from None
    except YamlSyntaxError as exc:
        raise ClusterConfigError(
            [ConfigIssue(str(file), "<file>", f"YAML syntax error: {exc.problem}", line=exc.line)]
        ) from None
    if not isinstance(document.data, dict):
        raise ClusterConfigError(
            [ConfigIssue(str(file), "<top level>", "a cluster config must be a mapping", line=1)]
        )
    twice = [
        ConfigIssue(
            str(file),
            dotted(d.path),
            f"given twice, first at line {d.first_line}; "
            "YAML would silently keep only the last: remove one",
            line=d.line,
        )
        for d in document.duplicates
    ]
    if twice:
        raise ClusterConfigError(twice)
    return document.data, document.lines


def is_kuberay(raw: dict[str, Any]) -> bool:
    """Whether `raw` is a Kubernetes manifest (KubeRay) rather than a launcher config."""
    return "apiVersion" in raw or "kind" in raw
