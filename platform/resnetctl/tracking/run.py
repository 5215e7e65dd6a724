"""The MLflow run of a job: created and closed by the launcher, fed per epoch by the Ray Train
controller. Exactly one process writes at a time, so concurrent writers never race."""

from __future__ import annotations

import functools
import platform
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from resnetctl.host import usable_cpus
from resnetctl.spec import JobSpec
from resnetctl.tracking.experiment import ensure_experiment
from resnetctl.tracking.labels import git_commit, provenance_tags, run_params, visible_tags
from resnetctl.tracking.names import history

MAX_PARAMS_PER_BATCH = 100  # MLflow's limit per log_batch call


def environment_tags() -> dict[str, str]:
    """Versions, hardware and git commit, as run tags."""
    return dict(_environment_tags())


@functools.cache
def _environment_tags() -> dict[str, str]:
    # Cached: collecting them imports torch, Ray, MLflow and DALI (seconds), which `prepare_store`
    # does ahead of time while Ray starts.
    import mlflow
    import ray
    import torch

    import resnetctl

    tags = {
        "resnetctl.version": resnetctl.__version__,
        "torch.version": torch.__version__,
        "ray.version": ray.__version__,
        "mlflow.version": mlflow.__version__,
        "python.version": platform.python_version(),
        "host.platform": platform.platform(),
        "host.cpus": str(usable_cpus()),
        "host.gpus": ", ".join(
            torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())
        )
        or "none",
    }
    try:
        from nvidia.dali import __version__ as dali_version

        tags["dali.version"] = dali_version
    except ImportError:
        pass
    commit = git_commit()
    if commit:  # of the working directory; the spec's own folder's wins (`provenance_tags`)
        tags["mlflow.source.git.commit"] = commit
    return tags


def prepare_store(uri: str) -> None:
    """Import what a run needs, collect the environment tags, and open the store (a new sqlite
    database gets its tables here): several seconds that need nothing from Ray, so the launcher
    runs this while Ray starts. Errors are left to the real `JobRun.start` to report."""
    from mlflow import MlflowClient

    environment_tags()
    MlflowClient(uri).search_experiments(max_results=1)


class JobRun:
    """Driver-side handle on the MLflow run of one job."""

    def __init__(self, uri: str, run_id: str):
        from mlflow import MlflowClient

        self.uri = uri
        self.run_id = run_id
        self.client = MlflowClient(uri)

    @classmethod
    def start(
        cls,
        spec: JobSpec,
        uri: str,
        *,
        resolved_yaml: str,
        artifact_root: str | None,
        extra_tags: Mapping[str, str] = (),  # type: ignore[assignment]
    ) -> JobRun:
        """Create the experiment if needed and the run; log params, tags and the spec.

        The run is named `tracking.run_name` (a sweep's trial), else the resnetctl run name
        (`extra_tags["resnetctl.run_name"]`, what `--resume`, `list` and `status` print), else
        the job name; `extra_tags["resnetctl.spec_file"]` is the Source it shows."""
        from mlflow import MlflowClient
        from mlflow.entities import Param

        client = MlflowClient(uri)
        experiment_id = ensure_experiment(
            client, spec.tracking.experiment, artifact_location=artifact_root
        )
        extra = dict(extra_tags)
        tags = {
            **environment_tags(),
            **provenance_tags(spec, extra.get("resnetctl.spec_file")),
            **visible_tags(spec),
            **extra,
            **spec.tracking.tags,
            "resnetctl.job": spec.name,
        }
        name = spec.tracking.run_name or tags.get("resnetctl.run_name") or spec.name
        run = client.create_run(experiment_id, run_name=name, tags=tags)
        run_id = run.info.run_id
        params = [Param(k, v[:6000]) for k, v in run_params(spec).items()]
        for start in range(0, len(params), MAX_PARAMS_PER_BATCH):
            client.log_batch(run_id, params=params[start : start + MAX_PARAMS_PER_BATCH])
        job_run = cls(uri, run_id)
        job_run.log_text(resolved_yaml, "spec/resolved.yaml")
        return job_run

    @property
    def url(self) -> str:
        """Where the run is seen in the MLflow UI (for a server URI), else the store."""
        run = self.client.get_run(self.run_id)
        if self.uri.startswith(("http://", "https://")):
            return (
                f"{self.uri.rstrip('/')}/#/experiments/{run.info.experiment_id}/runs/{self.run_id}"
            )
        return f"{self.uri} (run {self.run_id}; view with `resnetctl ui`)"

    def log_text(self, text: str, artifact_file: str) -> None:
        """Store `text` as the artifact `artifact_file`."""
        self.client.log_text(self.run_id, text, artifact_file)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        """Add tags to the run."""
        for key, value in tags.items():
            self.client.set_tag(self.run_id, key, value)

    def logged_epochs(self) -> set[int]:
        """Epochs that already have metrics (so a resumed job does not log them twice)."""
        return {m.step for m in history(self.client, self.run_id, "val_top1_error")}

    def log_checkpoint(self, directory: str | Path, name: str = "best") -> None:
        """Copy a checkpoint directory into the run's artifacts under checkpoints/<name>."""
        self.client.log_artifacts(self.run_id, str(directory), f"checkpoints/{name}")

    def log_file(self, path: str | Path, folder: str) -> None:
        """Copy one file into the run's artifacts under `folder`."""
        self.client.log_artifact(self.run_id, str(path), folder)

    def log_model(self, model: Any, input_size: int, step: int = 0) -> str:
        """Log the module as a `torch.export` program (see `tracking.model.log_pytorch_model`)
        at `step` and return the model URI; `mlflow.pytorch.load_model(uri)` gives a module with
        the same logits."""
        from resnetctl.tracking.model import log_pytorch_model

        return log_pytorch_model(self.uri, self.run_id, model, input_size, step=step).uri

    def log_curves(self, title: str) -> None:
        """Plot the run's top-1 error (log scale) and loss against epoch, titled `title`, and
        log it as plots/error_curves.png."""
        from resnetctl.tracking.plots import CURVE_METRICS, curves_figure, save_figure

        curves = {
            key: [(m.step, m.value) for m in history(self.client, self.run_id, key)]
            for key in CURVE_METRICS
        }
        with tempfile.TemporaryDirectory() as tmp:
            path = save_figure(curves_figure(curves, title), Path(tmp) / "error_curves.png")
            self.client.log_artifact(self.run_id, str(path), "plots")

    def end(self, status: str) -> None:
        """Close the run as FINISHED, FAILED or KILLED."""
        self.client.set_terminated(self.run_id, status, end_time=int(time.time() * 1000))
