"""Cluster configs (Ray cluster launcher, KubeRay) and job placement on them.

- `check_config(path, jobs)` / `load_config(path)`: Ray's schema and `validate_config`, KubeRay
  checks, and ours, as `ConfigIssue`s naming file, line and field.
- `plan_placement(spec, config)` / `format_placement(plan)`: which node types and how many
  nodes a job needs, whether the config can supply them, and why not.
- `launcher`: `ray up/down/status` (or `kubectl`) as argument lists, with a clear error for a
  missing cloud SDK, CLI or credential.

Modules by stage, each importing only those before it: `config` (the shared types), `parse`
(YAML with lines, then `launcher_config` or `kuberay`, `bucket` and `placeholders`), `place`
(placement), `check` (a file and its jobs); `launcher` runs the commands.
"""

from resnetctl.cluster.check import check_config
from resnetctl.cluster.config import (
    ClusterConfig,
    ClusterConfigError,
    ConfigIssue,
    ConfigReport,
    NodeType,
)
from resnetctl.cluster.parse import load_config
from resnetctl.cluster.place import (
    Allocation,
    PlacementPlan,
    format_placement,
    plan_placement,
)

__all__ = [
    "Allocation",
    "ClusterConfig",
    "ClusterConfigError",
    "ConfigIssue",
    "ConfigReport",
    "NodeType",
    "PlacementPlan",
    "check_config",
    "format_placement",
    "load_config",
    "plan_placement",
]
