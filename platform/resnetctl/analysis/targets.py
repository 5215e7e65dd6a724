"""Find a trained model from what the user names: an MLflow run id, a run (or sweep trial) name
under the storage root, or a checkpoint directory; rebuild the network and load its weights.

The spec a run was trained with is read from its MLflow run (`spec/resolved.yaml`) whenever the
run is known, because the checkpoint alone does not say everything (a bottleneck's stride
placement changes no tensor shape). A bare checkpoint with no run falls back to the model name in
its `meta.json` and the shortcut option whose parameters match the state dict exactly.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from resnetctl.analysis.responses import AnalysisError
from resnetctl.spec import JobSpec
from resnetctl.storage import StoragePath, is_checkpoint, is_uri
from resnetctl.tracking.tags import SWEEP_TAG, TRIAL_TAG, find_child_run

RUN_RECORD = "resnetctl-run.json"
SWEEP_RECORD = "resnetctl-sweep.json"
SPEC_ARTIFACT = "spec/resolved.yaml"
CHECKPOINT_ARTIFACT = "checkpoints/best"
RUN_NAME_TAG = "resnetctl.run_name"


@dataclass
class TrainedModel:
    """A network with its trained weights, and where it came from."""

    label: str
    model: nn.Module
    checkpoint: Path | StoragePath
    spec: JobSpec | None
    run_id: str | None
    tracking_uri: str | None
    epoch: int | None


def default_tracking_uri() -> str:
    """`$MLFLOW_TRACKING_URI`, else `sqlite:///<cwd>/mlflow.db` (what `submit` and `tune` use)."""
    from resnetctl.tracking.store import default_store_uri

    return os.environ.get("MLFLOW_TRACKING_URI") or default_store_uri()


def model_label(spec: JobSpec | None, fallback: str) -> str:
    """`plain-20`, `ResNet-56 (A)`: the paper's names for its nets."""
    if spec is None or spec.model.depth is None:
        return fallback
    if spec.model.variant == "plain":
        return f"plain-{spec.model.depth}"
    shortcut = f" ({spec.model.shortcut})" if spec.model.shortcut else ""
    return f"ResNet-{spec.model.depth}{shortcut}"


# -------------------------------------------------------------------------------------------
# Locating the checkpoint and the run


@dataclass
class _Found:
    checkpoint: StoragePath | None
    run_id: str | None
    folder: StoragePath | None = None  # a run directory: checkpoints ranked once the spec is read


def _read_json(path: StoragePath) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def _run_of_folder(folder: StoragePath, storage: StoragePath, uri: str) -> str | None:
    """The MLflow run id of a run directory (submit) or of a sweep trial's directory (tune)."""
    parent = folder
    while True:
        record = _read_json(parent / RUN_RECORD)
        if record is not None:
            return str(record.get("mlflow_run_id") or "")
        sweep = _read_json(parent / SWEEP_RECORD)
        if sweep is not None:
            return _trial_run(sweep, folder, parent, uri)
        if parent == storage or parent.parent == parent:
            return None
        parent = parent.parent


def _trial_run(
    record: dict[str, Any], folder: StoragePath, sweep_dir: StoragePath, uri: str
) -> str | None:
    """The child run of the trial whose Ray Train directory holds `folder`."""
    from mlflow import MlflowClient

    relative = folder.relative_parts(sweep_dir)
    if len(relative) < 2:
        return None
    trial_id = relative[1]  # <sweep>/train/<trial id>/...
    client = MlflowClient(record.get("tracking_uri") or uri)
    run = find_child_run(
        client, record.get("experiment", ""), record.get("parent_run_id", ""), trial_id
    )
    return run.info.run_id if run else None


def _locate(target: str, storage: StoragePath, uri: str) -> _Found:
    """Where `target`'s checkpoint is (or the folder to pick it from), and its MLflow run."""
    candidates = []
    if is_uri(target) or Path(target).expanduser().exists():
        candidates.append(StoragePath.of(target))
    if not is_uri(target):
        candidates += [storage / target, *storage.glob(f"*/train/{target}")]
    for candidate in candidates:
        if not candidate.is_dir():
            continue
        run_id = _run_of_folder(candidate, storage, uri) or None
        if is_checkpoint(candidate):
            return _Found(candidate, run_id)
        return _Found(None, run_id, folder=candidate)
    return _Found(None, target)  # not a path: an MLflow run id


def _download(uri: str, run_id: str, artifact: str, scratch: Path) -> Path | None:
    """Download an artifact of the run, or None when the run has no such artifact."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    parent = artifact.rsplit("/", 1)[0] if "/" in artifact else ""
    names = {item.path for item in client.list_artifacts(run_id, parent)}
    if artifact not in names:
        return None
    return Path(client.download_artifacts(run_id, artifact, str(scratch)))


def _run_storage_folder(run: Any, storage: StoragePath) -> StoragePath | None:
    """The local Ray Train directory of an MLflow run (submit or sweep trial), if still there."""
    tags = run.data.tags
    trial, sweep = tags.get(TRIAL_TAG), tags.get(SWEEP_TAG)
    if trial and sweep and (storage / sweep / "train" / trial).is_dir():
        return storage / sweep / "train" / trial
    name = tags.get(RUN_NAME_TAG)
    if name and (storage / name).is_dir():
        return storage / name
    return None


def _pick_checkpoint(folder: StoragePath, spec: JobSpec | None) -> StoragePath | None:
    """The best checkpoint of a run directory by its spec's ranking metric, else the latest."""
    from resnetctl.storage import best_checkpoint, latest_checkpoint

    metric = spec.checkpoint.metric if spec is not None else "val_top1_error"
    mode = (spec.checkpoint.mode if spec is not None else None) or "min"
    return best_checkpoint(folder, metric, mode) or latest_checkpoint(folder)


def _load_spec(uri: str, run_id: str, scratch: Path) -> JobSpec | None:
    from resnetctl.spec.loader import load_spec_text

    path = _download(uri, run_id, SPEC_ARTIFACT, scratch / "spec")
    if path is None:
        return None
    return load_spec_text(path.read_text(encoding="utf-8"), f"run {run_id}: {SPEC_ARTIFACT}")


# -------------------------------------------------------------------------------------------
# Building the network


def build_from_spec(spec: JobSpec, weights: dict[str, Any]) -> nn.Module:
    """The spec's network, sized by the weights (classes, input channels), with them loaded."""
    from resnetctl.models import create_model

    name = spec.model.name
    if name is None:
        raise AnalysisError("the run's spec names no model")
    options = spec.model.create_options(_num_classes(weights))
    if "conv1.weight" in weights:
        options["in_channels"] = int(weights["conv1.weight"].shape[1])
    model = create_model(name, **options)
    model.load_state_dict(weights)
    return model


def build_from_weights(name: str, weights: dict[str, Any]) -> nn.Module:
    """Without a spec: the registered net `name` under the first shortcut option whose
    parameters and buffers match `weights` exactly."""
    from resnetctl.models import create_model, get_model_info

    info = get_model_info(name)
    options: dict[str, Any] = {"num_classes": _num_classes(weights)}
    if "conv1.weight" in weights:
        options["in_channels"] = int(weights["conv1.weight"].shape[1])
    shortcuts: list[str | None] = [None] if info.plain else [info.shortcut, "A", "B", "C"]
    errors = []
    for shortcut in dict.fromkeys(shortcuts):
        extra = {} if shortcut is None else {"shortcut": shortcut}
        try:
            model = create_model(name, **options, **extra)
            model.load_state_dict(weights)
        except (RuntimeError, ValueError, TypeError) as exc:
            errors.append(f"{shortcut}: {str(exc).splitlines()[0]}")
            continue
        return model
    raise AnalysisError(f"the checkpoint's weights fit no variant of {name}: {'; '.join(errors)}")


def _num_classes(weights: dict[str, Any]) -> int:
    fc = weights.get("fc.weight")
    if fc is None:
        raise AnalysisError("the checkpoint has no fc.weight: not a resnetctl classifier")
    return int(fc.shape[0])


def load_trained(
    target: str,
    *,
    tracking_uri: str | None = None,
    storage: StoragePath | str | Path | None = None,
    spec: JobSpec | None = None,
) -> TrainedModel:
    """Resolve `target` (MLflow run id, run or trial name under the storage root, run or
    checkpoint directory) to its trained network.

    `spec` is used when the run's own spec cannot be found (a bare checkpoint directory).
    Raises `AnalysisError` saying what is missing.
    """
    from resnetctl.storage import load_checkpoint, storage_root

    uri = tracking_uri or default_tracking_uri()
    storage = StoragePath.of(storage) if storage is not None else storage_root()
    found = _locate(target, storage, uri)
    run_spec: JobSpec | None = None
    with tempfile.TemporaryDirectory(prefix="resnetctl-analyze-") as tmp:
        scratch = Path(tmp)
        run = None
        if found.run_id:
            run = _get_run(
                uri, found.run_id, must_exist=found.checkpoint is None and found.folder is None
            )
        if run is not None:
            run_spec = _load_spec(uri, run.info.run_id, scratch)
        checkpoint: Path | StoragePath | None = found.checkpoint
        source: Path | None = None
        if checkpoint is None and found.folder is not None:
            checkpoint = _pick_checkpoint(found.folder, run_spec or spec)
        if checkpoint is None and run is not None:
            downloaded = _download(uri, run.info.run_id, CHECKPOINT_ARTIFACT, scratch / "ckpt")
            if downloaded is not None:
                checkpoint = downloaded
                source = Path(f"mlflow:{run.info.run_id}/{CHECKPOINT_ARTIFACT}")
            else:
                folder = _run_storage_folder(run, storage)
                checkpoint = _pick_checkpoint(folder, run_spec) if folder else None
        if checkpoint is None:
            raise AnalysisError(
                f"{target}: no checkpoint found (no {CHECKPOINT_ARTIFACT}/state.pt artifact in "
                f"its MLflow run, and no checkpoint under {storage})"
            )
        state, meta = load_checkpoint(checkpoint)
    weights = state.get("model") if isinstance(state, dict) else None
    if not isinstance(weights, dict):
        raise AnalysisError(f"{checkpoint}: the checkpoint holds no model state")
    use_spec = run_spec or spec
    if use_spec is not None:
        model = build_from_spec(use_spec, weights)
    elif meta.get("model"):
        model = build_from_weights(str(meta["model"]), weights)
    else:
        raise AnalysisError(
            f"{target}: no MLflow run and no model name in the checkpoint; pass --spec FILE"
        )
    run_id = run.info.run_id if run is not None else None
    fallback = (run.info.run_name if run is not None else None) or str(meta.get("model") or target)
    return TrainedModel(
        label=model_label(use_spec, fallback),
        model=model,
        checkpoint=source or checkpoint,
        spec=use_spec,
        run_id=run_id,
        tracking_uri=uri if run_id else None,
        epoch=meta.get("epoch"),
    )


def _get_run(uri: str, run_id: str, *, must_exist: bool) -> Any:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        return MlflowClient(uri).get_run(run_id)
    except MlflowException:
        if must_exist:
            raise AnalysisError(
                f"{run_id!r} is neither a checkpoint or run directory, nor a run name under the "
                f"storage root, nor a run id in the tracking store {uri}"
            ) from None
        return None
