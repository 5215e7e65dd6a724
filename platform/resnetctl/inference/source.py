"""MODEL -> (network, spec, class names, where it came from).

MODEL is a run name under the storage root (its best checkpoint by the spec's ranking metric,
else its latest), a run or checkpoint directory, or an MLflow model URI (`models:/NAME@alias`,
`models:/m-...`, `runs:/ID/model`).

Where each piece is found, first hit wins:
- the spec: the checkpoint's `meta.json` (written since the `spec` key exists), else the run's
  MLflow artifact `spec/resolved.yaml` (the run named by the run record), else nothing: the
  network is rebuilt from the model name in `meta.json` and the shape of the weights;
- the class names: `meta.json`'s `classes`, else the class folders of the spec's data source
  (cheap: the scan is cached), else None (labels are printed as indices).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from resnetctl.spec import JobSpec
from resnetctl.spec.loader import checkpoint_spec
from resnetctl.storage import CHECKPOINT_META, StoragePath, is_checkpoint, is_uri

# Finding a checkpoint in run storage is run storage's part; MODEL's other forms are here.
from resnetctl.storage.model_source import (
    ModelSourceError,
    locate_checkpoint,
    pick_checkpoint,
    storage_root_here,
)

SPEC_ARTIFACT = "spec/resolved.yaml"
RUN_NAME_TAG = "resnetctl.run_name"


@dataclass
class LoadedModel:
    """A trained network in eval mode, with what is known about it."""

    model: nn.Module
    spec: JobSpec | None
    classes: tuple[str, ...] | None
    origin: str
    run_id: str | None = None
    tracking_uri: str | None = None
    checkpoint: Path | StoragePath | None = None
    epoch: int | None = None

    def class_name(self, index: int) -> str:
        """The folder name of class `index` (or the index as text when names are unknown)."""
        if self.classes is not None and 0 <= index < len(self.classes):
            return self.classes[index]
        return str(index)


def default_tracking_uri() -> str:
    """`$MLFLOW_TRACKING_URI`, else `sqlite:///<cwd>/mlflow.db` (what `submit` uses)."""
    from resnetctl.tracking.store import default_store_uri

    return os.environ.get("MLFLOW_TRACKING_URI") or default_store_uri()


def _spec_of_run(uri: str, run_id: str) -> JobSpec | None:
    """The spec logged with an MLflow run, or None when the run or artifact is missing."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from resnetctl.spec.loader import load_spec_text

    client = MlflowClient(uri)
    try:
        names = {item.path for item in client.list_artifacts(run_id, "spec")}
        if SPEC_ARTIFACT not in names:
            return None
        with tempfile.TemporaryDirectory(prefix="resnetctl-spec-") as tmp:
            path = Path(client.download_artifacts(run_id, SPEC_ARTIFACT, tmp))
            text = path.read_text(encoding="utf-8")
    except (MlflowException, OSError):
        return None
    return load_spec_text(text, f"run {run_id}: {SPEC_ARTIFACT}")


def data_classes(spec: JobSpec | None) -> tuple[str, ...] | None:
    """The class folder names of the spec's data source (None if it cannot be prepared)."""
    if spec is None:
        return None
    from resnetctl.data import DataError, prepare_dataset

    try:
        return tuple(prepare_dataset(spec.data).classes)
    except (DataError, OSError):
        return None


def build_network(
    spec: JobSpec | None, model_name: str | None, weights: dict[str, Any]
) -> nn.Module:
    """The spec's network (else the registered `model_name` whose variant fits the weights),
    sized by the weights (classes, input channels), with the weights loaded."""
    if spec is None:
        if not model_name:
            raise ModelSourceError("the checkpoint names no model and no spec was found")
        from resnetctl.analysis.responses import AnalysisError
        from resnetctl.analysis.targets import build_from_weights

        try:
            return build_from_weights(model_name, weights)
        except AnalysisError as exc:
            raise ModelSourceError(str(exc)) from None
    from resnetctl.models import create_model

    assert spec.model.name is not None
    if "fc.weight" not in weights:
        raise ModelSourceError("the checkpoint has no fc.weight: not a resnetctl classifier")
    options = spec.model.create_options(int(weights["fc.weight"].shape[0]))
    if "conv1.weight" in weights:
        options["in_channels"] = int(weights["conv1.weight"].shape[1])
    model = create_model(spec.model.name, **options)
    model.load_state_dict(weights)
    return model


def load_model(
    target: str,
    *,
    tracking_uri: str | None = None,
    storage: Path | StoragePath | None = None,
    allow_pickle: bool = False,
) -> LoadedModel:
    """Resolve MODEL (see the module docstring) to its network in eval mode. An MLflow model
    in pickle format (or a pt2 archive holding pickled records) is refused unless
    `allow_pickle`: unpickling runs whatever code the file names.

    Raises ModelSourceError naming what is missing.
    """
    if target.startswith(("models:/", "runs:/")):
        return _from_mlflow_model(target, tracking_uri or default_tracking_uri(), allow_pickle)
    checkpoint, record = locate_checkpoint(target, storage)
    uri = (record.mlflow_uri if record is not None else None) or tracking_uri
    run_id = record.mlflow_run_id if record is not None else None
    spec = checkpoint_spec(_read_meta(checkpoint))
    if spec is None and uri and run_id:
        spec = _spec_of_run(uri, run_id)
    if spec is not None and not is_checkpoint(
        target if is_uri(target) else Path(target).expanduser()
    ):
        # Ranked again now that the run's own metric is known.
        checkpoint, _ = locate_checkpoint(target, storage, spec)
    return _from_checkpoint(checkpoint, spec, run_id, uri if run_id else None)


def _read_meta(checkpoint: Path | StoragePath) -> dict[str, Any]:
    meta_file = StoragePath.of(checkpoint) / CHECKPOINT_META
    return json.loads(meta_file.read_text(encoding="utf-8")) if meta_file.is_file() else {}


def _from_checkpoint(
    checkpoint: Path | StoragePath, spec: JobSpec | None, run_id: str | None, uri: str | None
) -> LoadedModel:
    from resnetctl.storage import load_checkpoint
    from resnetctl.train.checkpoint import ranked_weights

    state, meta = load_checkpoint(checkpoint)
    spec = spec or checkpoint_spec(meta)
    if spec is None and uri and run_id:
        spec = _spec_of_run(uri, run_id)
    weights = None
    if isinstance(state, dict) and "model" in state:
        weights = ranked_weights(state, spec.checkpoint.metric) if spec else state["model"]
    if not isinstance(weights, dict):
        raise ModelSourceError(f"{checkpoint}: the checkpoint holds no model state")
    model = build_network(spec, meta.get("model"), weights).eval()
    classes = meta.get("classes")
    return LoadedModel(
        model=model,
        spec=spec,
        classes=tuple(classes) if classes else data_classes(spec),
        origin=str(checkpoint),
        run_id=run_id,
        tracking_uri=uri,
        checkpoint=checkpoint,
        epoch=meta.get("epoch"),
    )


def as_module(loaded: Any) -> nn.Module:
    """What `mlflow.pytorch.load_model` returns as an nn.Module: the module itself (pickle
    format), or the module of a `torch.export` program (pt2 format)."""
    if isinstance(loaded, nn.Module):
        return loaded
    module = getattr(loaded, "module", None)
    if callable(module):
        return module()
    raise ModelSourceError(f"the logged model is a {type(loaded).__name__}, not a torch module")


#: MLflow's own switch: false refuses pickle-format models and checks that a pt2 archive holds
#: no pickled record before `torch.export.load` reads it (MLflow's default is true).
ALLOW_PICKLE_VARIABLE = "MLFLOW_ALLOW_PICKLE_DESERIALIZATION"


def _from_mlflow_model(target: str, uri: str, allow_pickle: bool = False) -> LoadedModel:
    import mlflow
    import mlflow.artifacts
    import mlflow.pytorch
    from mlflow.exceptions import MlflowException
    from mlflow.models import Model

    previous = os.environ.get("MLFLOW_TRACKING_URI")
    previous_pickle = os.environ.get(ALLOW_PICKLE_VARIABLE)
    mlflow.set_tracking_uri(uri)
    os.environ[ALLOW_PICKLE_VARIABLE] = "true" if allow_pickle else "false"
    try:
        # Into a folder of our own: MLflow otherwise downloads a copy of the model (and of its
        # MLmodel file again for the run id) into temp folders it never removes.
        with tempfile.TemporaryDirectory(prefix="resnetctl-model-") as tmp:
            try:
                local = mlflow.artifacts.download_artifacts(artifact_uri=target, dst_path=tmp)
                loaded = mlflow.pytorch.load_model(local, map_location="cpu")
                run_id = Model.load(local).run_id
            except (MlflowException, OSError) as exc:
                first = str(exc).splitlines()[0]
                if not allow_pickle and "pickle" in first.lower():
                    raise ModelSourceError(_pickle_refusal(target, first)) from None
                raise ModelSourceError(f"{target}: {first}") from None
    finally:
        mlflow.set_tracking_uri(previous)
        if previous_pickle is None:
            os.environ.pop(ALLOW_PICKLE_VARIABLE, None)
        else:
            os.environ[ALLOW_PICKLE_VARIABLE] = previous_pickle
    module = as_module(loaded)
    spec = _spec_of_run(uri, run_id) if run_id else None
    classes = None
    if run_id:
        classes = _classes_of_run_checkpoints(uri, run_id)
    if hasattr(module, "eval"):
        try:
            module.eval()
        except (NotImplementedError, RuntimeError):
            # An exported program's module cannot switch modes: it is frozen as exported.
            pass
    return LoadedModel(
        model=module,
        spec=spec,
        classes=classes or data_classes(spec),
        origin=target,
        run_id=run_id,
        tracking_uri=uri if run_id else None,
    )


def _pickle_refusal(target: str, mlflow_message: str) -> str:
    """Why `target` was not loaded, from MLflow's refusal to unpickle it."""
    record = re.search(r"record '([^']+)'", mlflow_message)
    what = (
        f"its pt2 archive holds a pickled record ({record[1]})"
        if record
        else "the model is stored with Python's pickle"
    )
    return (
        f"{target}: refused: {what}, and unpickling runs whatever code the file names. "
        "resnetctl logs its models as pt2 archives without pickle; load this one only if you "
        "trust its source, with --allow-pickle"
    )


def _classes_of_run_checkpoints(uri: str, run_id: str) -> tuple[str, ...] | None:
    """Class names from the checkpoints still under the storage root for the run."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        name = MlflowClient(uri).get_run(run_id).data.tags.get(RUN_NAME_TAG)
    except MlflowException:
        return None
    folder = storage_root_here() / name if name else None
    if folder is None or not folder.is_dir():
        return None
    checkpoint = pick_checkpoint(folder, None)
    classes = _read_meta(checkpoint).get("classes") if checkpoint else None
    return tuple(classes) if classes else None
