"""Can this node reach the run's storage? Checked by every worker before its first step.

Ray Train itself notices a storage path that other nodes cannot reach only when a worker on
another node reports its first checkpoint: after a whole epoch. The driver writes the run
record into the run's storage before the workers start; each worker reads it back first thing,
and a worker that cannot stops the job at once with one message that says what to change.
"""

from __future__ import annotations

import socket

from resnetctl.storage.location import StorageError, StoragePath, is_uri

#: What a multi-node job needs instead of a path on one machine.
FIX = (
    "use a bucket URI every node can reach (--storage s3://BUCKET/runs or "
    "RESNETCTL_STORAGE=s3://..., with the AWS_* variables on every node) or a path that every "
    "node mounts at the same place (NFS)"
)


class StorageUnreachableError(RuntimeError):
    """A worker cannot read what the driver wrote to the run's storage."""


def describe_node() -> str:
    """This node as `IP (node id)`, or its host name outside Ray."""
    try:
        import ray

        ip = ray.util.get_node_ip_address()
        if ray.is_initialized():
            return f"{ip} (node {ray.get_runtime_context().get_node_id()[:12]})"
        return ip
    except Exception:  # noqa: BLE001 - only for the message; never hide the real error
        return socket.gethostname()


def check_worker_access(marker: str, *, node: str | None = None) -> None:
    """Read `marker` (a file the driver wrote into the run's storage, local path or URI);
    raise `StorageUnreachableError` naming the storage, this node and the fix when it cannot."""
    location = StoragePath.of(marker)
    try:
        location.read_bytes()
        return
    except (FileNotFoundError, StorageError, OSError) as exc:
        reason = str(exc) or type(exc).__name__
    storage = location.parent.parent  # <storage>/<run>/<file>
    kind = "bucket" if is_uri(marker) else "local path"
    raise StorageUnreachableError(
        f"run storage {storage} is not reachable from node {node or describe_node()}: "
        f"it cannot read {marker} that the driver wrote ({reason}). The storage is a {kind}; "
        f"every worker writes its checkpoints there: {FIX}."
    )


def multi_node_storage_warning(job: str, hosts: int, storage: str) -> str | None:
    """The warning for a job whose workers span `hosts` nodes with a local storage path (it
    would fail at the first checkpoint from another node), else None."""
    if hosts < 2 or is_uri(storage):
        return None
    return (
        f"job {job} places its workers on {hosts} nodes but its run storage {storage} is a "
        f"local path: the job fails unless every node mounts it; {FIX}"
    )
