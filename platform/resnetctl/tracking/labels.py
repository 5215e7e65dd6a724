"""What a run shows in MLflow besides its metrics: the tags of the runs table and run page
(who ran which spec from which commit, and what it trains), and the parameters (the resolved
spec, flattened, as it ran)."""

from __future__ import annotations

import getpass
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from resnetctl.spec import JobSpec
from resnetctl.tracking.datasets import data_name

#: Tags short enough to be columns of the runs table, in this order.
VISIBLE_TAGS = ("model", "depth", "shortcut", "data", "workers", "device")
#: The parameter the data set fills when the spec leaves the class count to it.
NUM_CLASSES_PARAM = "model.num_classes"
#: Derived parameters: the learning rate after scaling to the global batch, and that batch.
EFFECTIVE_LR_PARAM = "train.effective_lr"
GLOBAL_BATCH_PARAM = "train.global_batch"


def visible_tags(spec: JobSpec) -> dict[str, str]:
    """`model`, `depth`, `shortcut` (`plain` for a net without), `data`, `workers`, `device`."""
    model = spec.model
    shortcut = "plain" if model.variant == "plain" else model.shortcut
    tags = {
        "model": model.name,
        "depth": model.depth,
        "shortcut": shortcut,
        "data": data_name(spec.data.source),
        "workers": _workers_tag(spec.resources),
        "device": spec.resources.device,
    }
    return {key: str(tags[key]) for key in VISIBLE_TAGS if tags[key] is not None}


#: Provenance tag -> the variable that carries it into a job submitted to a cluster, where the
#: driver runs on the head node: the submitter's spec file, commit and user, not the head's.
SUBMITTER_ENV = {
    "mlflow.source.name": "RESNETCTL_SOURCE_NAME",
    "mlflow.source.git.commit": "RESNETCTL_SOURCE_COMMIT",
    "mlflow.user": "RESNETCTL_USER",
}


def submitter_provenance(spec_file: str | None) -> dict[str, str]:
    """The spec file (absolute), the git commit of its folder and the user, on this machine."""
    found: dict[str, str | None] = {"mlflow.source.name": spec_file, "mlflow.user": None}
    try:
        folder = None
        if spec_file:
            path = Path(spec_file).expanduser().absolute()
            found["mlflow.source.name"], folder = str(path), path.parent
        found["mlflow.source.git.commit"] = git_commit(folder)
    except OSError:  # the working directory is gone (a Ray job's, as it ends)
        pass
    try:
        found["mlflow.user"] = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (some containers)
        pass
    return {key: value for key, value in found.items() if value}


def submitter_env(spec_file: str | None) -> dict[str, str]:
    """`submitter_provenance` as the environment variables of a cluster job."""
    return {SUBMITTER_ENV[key]: value for key, value in submitter_provenance(spec_file).items()}


def provenance_tags(
    spec: JobSpec, spec_file: str | None = None, environ: Mapping[str, str] = os.environ
) -> dict[str, str]:
    """What MLflow's run page shows as Description, Source and Created by: the spec's
    description, the spec file and the git commit of the folder holding it, the user. In a job
    submitted to a cluster, the submitter's (`submitter_env`) take precedence."""
    submitted = {key: environ[var] for key, var in SUBMITTER_ENV.items() if environ.get(var)}
    # In a cluster job this machine (the head node) knows nothing of the spec's origin.
    tags = {"mlflow.source.type": "LOCAL", **(submitted or submitter_provenance(spec_file))}
    if spec.description:
        tags["mlflow.note.content"] = spec.description
    return tags


def git_commit(folder: Path | None = None) -> str | None:
    """The commit checked out in the git work tree holding `folder` (default: the working
    directory), or None outside one."""
    command = ["git", *(["-C", str(folder)] if folder and folder.is_dir() else [])]
    try:
        done = subprocess.run(
            [*command, "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (done.stdout.strip() or None) if done.returncode == 0 else None


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"train": {"epochs": 3}}` -> `{"train.epochs": 3}`; lists stay whole."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{path}."))
        else:
            flat[path] = value
    return flat


def _unset(value: Any) -> bool:
    return value is None or (isinstance(value, str | list | tuple | dict) and not value)


def run_params(spec: JobSpec) -> dict[str, str]:
    """The spec as run, flattened, without unset values (a class count the data decides is
    logged once it is known), without GPU settings on a CPU run, plus the effective learning
    rate and global batch."""
    flat = flatten(spec.model_dump(mode="json"))
    if not spec.resources.use_gpu:
        flat.pop("resources.gpus_per_worker", None)
    params = {key: str(value) for key, value in flat.items() if not _unset(value)}
    plan = spec.split()  # at resources.max_workers; an elastic run logs its resizes apart
    params[EFFECTIVE_LR_PARAM] = f"{plan.peak_lr:.6g}"
    params[GLOBAL_BATCH_PARAM] = str(plan.global_batch)
    return params


def _workers_tag(resources: Any) -> str:
    """`4`, or `2-4` for an elastic range."""
    if resources.elastic:
        return f"{resources.min_workers}-{resources.max_workers}"
    return str(resources.max_workers)
