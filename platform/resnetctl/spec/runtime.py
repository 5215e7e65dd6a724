"""`resources`, `checkpoint` and `failure`: how a run is placed and kept alive."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from resnetctl.spec.base import StrictModel
from resnetctl.spec.metrics import RankedMetric, default_mode


class ResourcesSpec(StrictModel):
    """Workers and what each one holds. One DDP process per worker."""

    workers: int = Field(1, ge=1, le=4096, description="Number of DDP workers (processes).")
    use_gpu: bool = Field(
        False, description="Give each worker GPUs and use NCCL; else gloo on CPU."
    )
    cpus_per_worker: float = Field(1.0, gt=0.0, le=256, description="CPUs reserved per worker.")
    gpus_per_worker: float = Field(
        1.0, ge=0.0, le=16, description="GPUs per worker when use_gpu (one DDP rank per GPU)."
    )
    placement_timeout_s: int = Field(
        300,
        ge=1,
        le=86_400,
        description="On a cluster: seconds to wait (asking the autoscaler) for room for every "
        "worker before the job fails with a clear error instead of hanging.",
    )

    def worker_bundle(self) -> dict[str, float]:
        """The Ray resources of one worker."""
        bundle = {"CPU": self.cpus_per_worker}
        if self.use_gpu:
            bundle["GPU"] = self.gpus_per_worker
        return bundle

    @model_validator(mode="after")
    def _gpu_consistency(self) -> ResourcesSpec:
        if self.use_gpu and self.gpus_per_worker <= 0:
            raise ValueError("gpus_per_worker must be > 0 when use_gpu is true")
        if self.use_gpu and self.workers > 1 and self.gpus_per_worker < 1:
            # Ray packs fractional GPU bundles onto one device, and NCCL refuses two ranks
            # on the same GPU ("Duplicate GPU detected").
            raise ValueError(
                f"resources.gpus_per_worker {self.gpus_per_worker:g} puts several of the "
                f"{self.workers} workers on one GPU, which NCCL refuses; use 1 GPU per worker"
            )
        return self

    @property
    def device(self) -> Literal["gpu", "cpu"]:
        """The workers' device kind."""
        return "gpu" if self.use_gpu else "cpu"


class CheckpointSpec(StrictModel):
    """When checkpoints are written, how many are kept and how they are ranked."""

    every_n_epochs: int = Field(1, ge=1, description="Write a checkpoint every N epochs.")
    keep: int | None = Field(
        2, ge=1, description="Checkpoints kept (best by `metric`); null keeps all."
    )
    metric: RankedMetric = Field(
        "val_top1_error_pct",
        validate_default=True,
        description="Metric that ranks checkpoints, by its MLflow name (`val_top1_error_pct`).",
    )
    mode: Literal["min", "max"] | None = Field(
        None, description="Whether lower or higher `metric` is better; default: the metric's own."
    )
    resume_from: str | None = Field(
        None,
        description="A checkpoint directory, or a run name under storage, to resume from. With "
        "another number of workers, an epoch run continues at the same epoch of the new world's "
        "schedule; a resume that cannot be exact (the global batch changes while the length or a "
        "milestone ahead is in iterations) is refused.",
    )

    @model_validator(mode="before")
    @classmethod
    def _mode(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("mode") is not None:
            return data
        metric = data.get("metric", cls.model_fields["metric"].default)
        if not isinstance(metric, str):  # `metric` itself reports the error
            return data
        return {**data, "mode": default_mode(metric)}


class FailureSpec(StrictModel):
    """How many worker-group failures a run survives (Ray Train restarts the group)."""

    max_failures: int = Field(
        0, ge=-1, description="Worker-group restarts allowed; -1 retries forever."
    )
    collective_timeout_s: int = Field(
        600,
        ge=10,
        le=7200,
        description="Seconds a collective (gloo or NCCL, and Ray Train's own barriers) may wait "
        "for a peer before the group is failed and restarted from the last checkpoint, naming the "
        "rank that hung (docs/cluster.md, 'Hung ranks'). It must exceed the longest time one rank "
        "works alone between two collectives: a checkpoint upload, the first step's compile.",
    )
