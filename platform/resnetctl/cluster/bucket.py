"""Can every node reach the bucket a config names in its nodes' `RESNETCTL_STORAGE`? Each
platform grants it its own way: an instance profile (AWS), a service account with a storage
scope (GCP), a Secret's keys or a workload-identity service account (KubeRay). A node type
without it starts, trains an epoch, and fails at its first checkpoint; `validate` says so first.
"""

from __future__ import annotations

from typing import Any

from resnetctl.cluster.config import ConfigIssue, FieldPath, issue_at, line_at

STORAGE_VAR = "RESNETCTL_STORAGE"
# Scopes that let a GCP VM write objects; the default (devstorage.read_only) does not.
GCP_WRITE_SCOPES = {
    "https://www.googleapis.com/auth/devstorage.read_write",
    "https://www.googleapis.com/auth/devstorage.full_control",
    "https://www.googleapis.com/auth/cloud-platform",
}
_FIX = "docs/cluster.md, 'A bucket for runs and data'"


def bucket_access_issues(
    name: str, raw: dict[str, Any], lines: dict[FieldPath, int], provider: str
) -> list[ConfigIssue]:
    """A warning for each node type that has no access to the bucket in `RESNETCTL_STORAGE`
    (none when the config names no bucket there)."""
    if provider == "kuberay":
        found = _kuberay_storage(raw)
        missing = _kuberay_without_access(raw) if found else []
        how = "no envFrom Secret with the bucket's keys and no serviceAccountName"
    else:
        found = _launcher_storage(raw)
        missing = _launcher_without_access(raw, provider) if found else []
        how = {
            "aws": "no IamInstanceProfile",
            "gcp": "no service account with a storage write scope (devstorage.read_write)",
        }.get(provider, "")
    if found is None or not _is_bucket(found[1]):
        return []
    where, storage = found
    line = line_at(lines, where)
    named = f"{storage} ({STORAGE_VAR}{f', line {line}' if line else ''})"
    return [
        issue_at(
            name,
            lines,
            path,
            f"{how}: nodes of this type cannot write the bucket {named}, so a job's first "
            f"checkpoint there fails ({_FIX})",
            "warning",
        )
        for path in missing
    ]


def nodes_storage(raw: dict[str, Any], provider: str) -> str | None:
    """The run storage a config's nodes name in their `RESNETCTL_STORAGE`, if any: where a job
    submitted without `--storage` keeps its runs (launch/remote.py)."""
    found = _kuberay_storage(raw) if provider == "kuberay" else _launcher_storage(raw)
    return found[1] if found else None


def _is_bucket(storage: str) -> bool:
    return storage.split("://", 1)[0] in ("s3", "gs") and "://" in storage


def _launcher_storage(raw: dict[str, Any]) -> tuple[FieldPath, str] | None:
    docker = raw.get("docker") or {}
    for key in ("run_options", "head_run_options", "worker_run_options"):
        for index, option in enumerate(docker.get(key) or []):
            text = str(option)
            if f"{STORAGE_VAR}=" in text:
                return ("docker", key, index), text.split(f"{STORAGE_VAR}=", 1)[1].split()[0]
    return None


def _launcher_without_access(raw: dict[str, Any], provider: str) -> list[FieldPath]:
    missing = []
    for type_name, node in (raw.get("available_node_types") or {}).items():
        node_config = (node or {}).get("node_config") or {}
        path: FieldPath = ("available_node_types", type_name, "node_config")
        if provider == "aws" and not node_config.get("IamInstanceProfile"):
            missing.append(path)
        elif provider == "gcp" and not _gcp_can_write(node_config):
            missing.append(path)
    return missing


def _gcp_can_write(node_config: dict[str, Any]) -> bool:
    accounts = node_config.get("serviceAccounts") or []
    return any(
        isinstance(a, dict) and a.get("email") and GCP_WRITE_SCOPES & set(a.get("scopes") or [])
        for a in accounts
    )


def _kuberay_groups(raw: dict[str, Any]) -> list[tuple[FieldPath, dict[str, Any]]]:
    spec = raw.get("spec") or {}
    groups = [(("spec", "headGroupSpec"), spec.get("headGroupSpec"))]
    groups += [
        (("spec", "workerGroupSpecs", i), g)
        for i, g in enumerate(spec.get("workerGroupSpecs") or [])
    ]
    return [(path, g) for path, g in groups if isinstance(g, dict)]


def _kuberay_storage(raw: dict[str, Any]) -> tuple[FieldPath, str] | None:
    for path, group in _kuberay_groups(raw):
        pod = (group.get("template") or {}).get("spec") or {}
        for c_index, container in enumerate(pod.get("containers") or []):
            for e_index, item in enumerate((container or {}).get("env") or []):
                if isinstance(item, dict) and item.get("name") == STORAGE_VAR:
                    where = (*path, "template", "spec", "containers", c_index, "env", e_index)
                    return (*where, "value"), str(item.get("value", ""))
    return None


def _kuberay_without_access(raw: dict[str, Any]) -> list[FieldPath]:
    missing = []
    for path, group in _kuberay_groups(raw):
        pod = (group.get("template") or {}).get("spec") or {}
        containers = pod.get("containers") or []
        ray = containers[0] if containers and isinstance(containers[0], dict) else {}
        keys = any(isinstance(s, dict) and s.get("secretRef") for s in ray.get("envFrom") or [])
        keys = keys or any(
            isinstance(e, dict) and e.get("name") == "AWS_ACCESS_KEY_ID"
            for e in ray.get("env") or []
        )
        if not keys and not pod.get("serviceAccountName"):
            missing.append((*path, "template", "spec", "containers", 0))
    return missing
