"""Run storage: where run records, checkpoints and sweep records live, on local disk or in an
object store (`s3://bucket/prefix`), read and written through one path-like type.

    from resnetctl.storage import storage_root, RunRecord, latest_checkpoint
    root = storage_root()                      # --storage / $RESNETCTL_STORAGE / .resnetctl/runs
    record = RunRecord.load(root, "quickstart-20261202-090000")
    with latest_checkpoint(root / record.run_name).local() as directory: ...
"""

from resnetctl.storage.access import (
    StorageUnreachableError,
    check_worker_access,
    multi_node_storage_warning,
)
from resnetctl.storage.checkpoints import META as CHECKPOINT_META
from resnetctl.storage.checkpoints import STATE as CHECKPOINT_STATE
from resnetctl.storage.location import (
    CLUSTER_DEFAULT_STORAGE,
    DEFAULT_STORAGE,
    StorageError,
    StoragePath,
    check_scheme,
    is_uri,
    storage_root,
)
from resnetctl.storage.runs import (
    LATEST,
    RECORD,
    RunRecord,
    best_checkpoint,
    checkpoints,
    is_checkpoint,
    latest_checkpoint,
    latest_run,
    list_runs,
    load_checkpoint,
    new_run_name,
    resolve_resume,
)

__all__ = [
    "CLUSTER_DEFAULT_STORAGE",
    "StorageUnreachableError",
    "check_worker_access",
    "multi_node_storage_warning",
    "CHECKPOINT_META",
    "CHECKPOINT_STATE",
    "DEFAULT_STORAGE",
    "LATEST",
    "RECORD",
    "RunRecord",
    "StorageError",
    "StoragePath",
    "best_checkpoint",
    "check_scheme",
    "checkpoints",
    "is_checkpoint",
    "is_uri",
    "latest_checkpoint",
    "latest_run",
    "list_runs",
    "load_checkpoint",
    "new_run_name",
    "resolve_resume",
    "storage_root",
]
