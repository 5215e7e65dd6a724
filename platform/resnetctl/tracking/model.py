"""The model a finished run hands over: the network of its best checkpoint by the spec's
ranking metric, logged as an MLflow model linked to that epoch's metrics, with a signature,
an input example and pinned requirements, then registered (see `tracking.registry`)."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from resnetctl.spec import JobSpec

log = logging.getLogger(__name__)

#: The packages a model needs to load, pinned to what trained it.
PINNED = ("resnetctl", "torch", "torchvision")


def requirements() -> list[str]:
    """`name==version` of resnetctl, torch and torchvision as installed (the version pip
    recorded, which for an editable resnetctl is its pyproject version). A local label such as
    `+cpu` is dropped: `torch==2.9.1` is satisfied by 2.9.1+cpu and by the CUDA builds, which
    the package index serves under the plain version."""
    pins = []
    for name in PINNED:
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        pins.append(f"{name}=={version.split('+')[0]}")
    return pins


@contextlib.contextmanager
def _working_directory(path: str) -> Iterator[None]:
    try:
        previous: str | None = os.getcwd()
    except FileNotFoundError:
        previous = None
    os.chdir(path)
    try:
        yield
    finally:
        if previous is not None and os.path.isdir(previous):
            os.chdir(previous)


@dataclass(frozen=True)
class BestModel:
    """The network of a run's best checkpoint and where it ranked."""

    network: Any
    epoch: int
    metric: str
    value: float


def best_model(spec: JobSpec, checkpoint: Path) -> BestModel:
    """The network of the checkpoint directory `checkpoint`, in eval mode, with its epoch and
    its score by `spec.checkpoint.metric` (read from its meta.json)."""
    from resnetctl.models import create_model
    from resnetctl.spec.metrics import ranked_weights
    from resnetctl.storage.checkpoints import load_state

    state, meta = load_state(checkpoint)
    metric = spec.checkpoint.metric
    weights = ranked_weights(state, metric)
    options = spec.model.create_options(int(weights["fc.weight"].shape[0]))
    network = create_model(spec.model.name, **options)
    network.load_state_dict(weights)
    value = float(meta.get("metrics", {}).get(metric, float("nan")))
    return BestModel(network.eval(), int(meta["epoch"]), metric, value)


@dataclass(frozen=True)
class LoggedModel:
    """An MLflow logged model: `models:/<model_id>`."""

    uri: str
    model_id: str


def log_pytorch_model(
    uri: str, run_id: str, network: Any, crop: int, *, step: int = 0
) -> LoggedModel:
    """Log `network` in the run as a `torch.export` program (MLflow's `pt2` format) at `step`:
    MLflow links the run's metrics of that step (the epoch) to the model.

    Not `pickle`: unpickling a module runs whatever code the file names; the `pt2` archive
    holds the graph and raw tensors. The input example is a float32 NCHW batch of two at the
    crop size, not one: torch.export specialises a dimension of size 1 to a constant, and the
    model would then refuse any other batch size.

    The signature says -1 for the batch, the height and the width (`image_signature`), and
    MLflow exports every -1 of it as a dynamic `torch.export` dimension (`Dim.AUTO`): the
    program takes any batch and any image size the network does, which `eval -p multi_scale`
    (whole images at five sizes) needs. A ResNet ends in global average pooling, so that is
    every H and W of at least `min_image_side` (BatchNorm in inference mode is per pixel).
    """
    import mlflow
    import mlflow.pytorch
    import numpy as np
    import torch

    # Zeros: the example is stored with the model as JSON, where they take the least room.
    example = np.zeros((2, 3, crop, crop), dtype=np.float32)
    network = network.eval()
    with torch.no_grad():
        logits = network(torch.from_numpy(example)).numpy()
    signature = image_signature(example.shape[1], logits.shape[1])
    # The fluent API needs the global tracking URI, and `set_tracking_uri` also exports it as
    # $MLFLOW_TRACKING_URI, where the next job started in this process would take it as its
    # store: put both back afterwards.
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        # MLflow inspects the working directory (project detection); inside a Ray job that
        # directory may already be gone once the workers exit, so log from a fresh one.
        with tempfile.TemporaryDirectory() as scratch, _working_directory(scratch):
            with mlflow.start_run(run_id=run_id):
                info = mlflow.pytorch.log_model(
                    network,
                    name="model",
                    serialization_format="pt2",
                    signature=signature,
                    input_example=example,
                    pip_requirements=requirements(),
                    # Shown on the model's page (MLmodel): the least H and W it takes.
                    metadata={"min_image_side": min_image_side(network)},
                    step=step,
                )
    finally:
        mlflow.set_tracking_uri(previous)  # None clears the global and the variable
    return LoggedModel(info.model_uri, info.model_id)


def image_signature(channels: int, classes: int) -> Any:
    """float32 N x `channels` x H x W images -> float32 N x `classes` logits, with N, H and W
    variable (-1)."""
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, channels, -1, -1))]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, classes))]),
    )


def min_image_side(network: Any, probe: int = 256) -> int:
    """The smallest height and width the logged program of `network` takes: one more than the
    network's total stride (32 for the ImageNet ResNets, 4 for the CIFAR ones), so that its last
    stage's feature map is at least 2 x 2. A map of 1 would be a size torch.export specialises
    (its 0/1 rule), so the exported graph refuses inputs that small."""
    import torch

    sides: list[int] = []
    pool = getattr(network, "avgpool", None)
    if pool is None:
        raise ValueError("the network has no avgpool layer to measure its stride at")
    handle = pool.register_forward_pre_hook(lambda _m, args: sides.append(args[0].shape[-1]))
    try:
        with torch.no_grad():
            network.eval()(torch.zeros(1, 3, probe, probe))
    finally:
        handle.remove()
    return probe // sides[0] + 1


# A logged model's files lie under `<experiment's artifact root>/models/<model id>/artifacts`.
_LOGGED_MODEL_SOURCE = re.compile(r"/models/(m-[0-9a-f]+)/artifacts/?$")


def _logged_model_id(version: Any) -> str | None:
    """The id of the logged model a registered version was made from (the sqlite registry of
    MLflow 3.17 does not keep the version's `model_id`: read it from the version's source)."""
    found = getattr(version, "model_id", None)
    if found:
        return str(found)
    match = _LOGGED_MODEL_SOURCE.search(str(version.source or ""))
    return match[1] if match else None


@dataclass(frozen=True)
class HandedOver:
    """What `log_best_model` logged and registered."""

    model_uri: str
    epoch: int
    registered: str | None  # `models:/NAME@best`, `models:/NAME/N` when not promoted, or None
    version: str | None
    decision: str | None = None  # what the registry did about the alias `best`, and why


def log_best_model(
    spec: JobSpec, uri: str, run_id: str, checkpoint: Path, run_name: str | None = None
) -> HandedOver:
    """Log the network of `checkpoint` (the run's best) linked to its epoch, and register it
    under `tracking.registered_model` (default: the job name) as the run's one version, moving
    alias `best` to it when it beats the aliased version on the same validation data and
    metric (`tracking.registry`). A run whose version already holds this checkpoint (resumed
    with nothing better) logs nothing new. A store without a Model Registry logs the model
    only."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from resnetctl.tracking.registry import kept_version, register_best, run_version

    best = best_model(spec, checkpoint)
    name = spec.tracking.registered_model or spec.name
    # Without registry_uri the client registers in the process's default store
    # ($MLFLOW_REGISTRY_URI, else ./mlflow.db), not the run's.
    client = MlflowClient(uri, registry_uri=uri)
    try:
        kept = run_version(client, name, run_id)
    except MlflowException:
        kept = None
    if kept is not None and kept_version(kept, best.metric, best.value, best.epoch):
        model_id = _logged_model_id(kept)
        model_uri = f"models:/{model_id}" if model_id else kept.source
    else:
        crop = spec.pipeline.crop
        logged = log_pytorch_model(uri, run_id, best.network, crop, step=best.epoch)
        model_uri, model_id = logged.uri, logged.model_id
    try:
        registration = register_best(
            client,
            name,
            model_uri,
            model_id=model_id,
            run_id=run_id,
            metric=best.metric,
            mode=spec.checkpoint.mode or "min",
            value=best.value,
            epoch=best.epoch,
            run_name=run_name,
        )
    except MlflowException as exc:
        log.warning("model not registered as %s: %s", name, str(exc).splitlines()[0])
        return HandedOver(model_uri, best.epoch, None, None)
    return HandedOver(
        model_uri,
        best.epoch,
        registration.uri,
        registration.version,
        f"{name} version {registration.version}: {registration.decision}",
    )
