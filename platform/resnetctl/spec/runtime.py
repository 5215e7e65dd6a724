"""`resources`, `checkpoint` and `failure`: how a run is placed and kept alive."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, model_validator

from resnetctl.spec.base import StrictModel
from resnetctl.spec.metrics import RankedMetric, default_mode

ElasticPolicy = Literal["keep_global_batch", "scale_lr"]


class WorkerRange(StrictModel):
    """An elastic worker count: the run starts once `min` workers fit, grows to `max` when
    room appears and goes on with the workers left (at least `min`) when a node is lost."""

    min: int = Field(ge=1, le=4096, description="Fewest workers the run trains with.")
    max: int = Field(ge=1, le=4096, description="Most workers; the plan is made for these.")

    @model_validator(mode="after")
    def _ordered(self) -> WorkerRange:
        if self.min >= self.max:
            raise ValueError(
                f"resources.workers.min {self.min} is not below max {self.max}: write "
                f"`workers: {self.max}` for a fixed count"
            )
        return self


def _workers_form(value: Any) -> str:
    # One form per input shape, so a bad value gets that form's error alone, not one per form.
    return "range" if isinstance(value, dict | WorkerRange) else "count"


Workers = Annotated[
    Annotated[Annotated[int, Field(ge=1, le=4096)], Tag("count")]
    | Annotated[WorkerRange, Tag("range")],
    Discriminator(_workers_form),
]


class ResourcesSpec(StrictModel):
    """Workers and what each one holds. One DDP process per worker."""

    workers: Workers = Field(
        1,
        description="Number of DDP workers (processes), or an elastic range `{min: M, max: N}`: "
        "the run starts with at least M, grows to N when room appears and loses workers "
        "(down to M) with a lost node instead of waiting; each resize restarts the group from "
        "the latest checkpoint. The plan (global batch, lr, schedule) is the one at N; "
        "`elastic_policy` says what changes at fewer workers.",
    )
    elastic_policy: ElasticPolicy = Field(
        "keep_global_batch",
        description="With a worker range, what a resize keeps. `keep_global_batch`: the global "
        "batch, lr and schedule of the plan at `max`, at every count: the per-worker batch "
        "and train.accumulation_steps change so that per-worker batch x workers x accumulation "
        "is the global batch (counts with no whole split are refused). `scale_lr`: the "
        "per-worker batch and accumulation stay, the global batch and peak lr scale with the "
        "workers (Goyal et al.'s linear rule), the lr ramped over `resize_warmup_steps` after "
        "a resize.",
    )
    resize_warmup_steps: int = Field(
        100,
        ge=0,
        le=100_000,
        description="`scale_lr` only: optimiser steps over which the lr moves linearly from the "
        "old worker count's rate to the new one's after a resize (0: at once).",
    )
    resize_check_s: float = Field(
        60.0,
        gt=0.0,
        le=3600.0,
        description="With a worker range: seconds between Ray Train's checks for room to grow "
        "the group (`elastic_resize_monitor_interval_s`).",
    )
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
        if self.use_gpu and self.max_workers > 1 and self.gpus_per_worker < 1:
            # Ray packs fractional GPU bundles onto one device, and NCCL refuses two ranks
            # on the same GPU ("Duplicate GPU detected").
            raise ValueError(
                f"resources.gpus_per_worker {self.gpus_per_worker:g} puts several of the "
                f"{self.max_workers} workers on one GPU, which NCCL refuses; use 1 GPU per worker"
            )
        return self

    @property
    def elastic(self) -> bool:
        """Whether the worker count is a range."""
        return isinstance(self.workers, WorkerRange)

    @property
    def min_workers(self) -> int:
        """The fewest workers the run trains with (the count itself when it is fixed)."""
        return self.workers.min if isinstance(self.workers, WorkerRange) else self.workers

    @property
    def max_workers(self) -> int:
        """The most workers, for which the plan is made (the count itself when fixed)."""
        return self.workers.max if isinstance(self.workers, WorkerRange) else self.workers

    @property
    def ray_num_workers(self) -> int | tuple[int, int]:
        """`ScalingConfig.num_workers`: a count, or Ray Train's elastic `(min, max)`."""
        return (self.min_workers, self.max_workers) if self.elastic else self.max_workers

    @property
    def device(self) -> Literal["gpu", "cpu"]:
        """The workers' device kind."""
        return "gpu" if self.use_gpu else "cpu"


class CheckpointSpec(StrictModel):
    """When checkpoints are written, how many are kept and how they are ranked.

    Besides the epoch ends, a checkpoint can be written between optimiser steps (never inside a
    gradient accumulation): every N steps, every M minutes, and always on a notice (a node of the
    run being drained or preempted, Ctrl-C, SIGTERM, `resnetctl stop`). Such a checkpoint holds
    everything that makes the rest of the run the same (the input pipelines' positions and
    random states, the RNGs, the epoch's running meters), so a run resumed from it trains the
    same samples with the same augmentation to the same weights."""

    every_n_epochs: int = Field(1, ge=1, description="Write a checkpoint every N epochs.")
    every_n_steps: int | None = Field(
        None,
        ge=1,
        description="Also write one every N optimiser steps (global step count), in the middle "
        "of epochs; null: none. A restart then redoes fewer than N steps. Pick N so a "
        "checkpoint comes every few minutes (ImageNet ResNet-50, 8 GPUs: 500-2000).",
    )
    every_minutes: float | None = Field(
        None,
        gt=0,
        le=1440,
        description="Also write one whenever this many minutes passed since the last one "
        "(the ranks agree on it at the next step); null: none.",
    )
    upload: Literal["async", "sync"] = Field(
        "async",
        description="`async`: training goes on while a checkpoint uploads (its files are "
        "written to the worker's local disk first); `sync`: training waits for the upload.",
    )
    keep: int | None = Field(
        2,
        ge=1,
        description="Checkpoints kept: the best `keep` by `metric`, and always the latest "
        "complete one (which a restart needs, even from the middle of an epoch); null keeps "
        "all.",
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
    max_preemptions: int = Field(
        -1,
        ge=-1,
        description="Restarts after a node of the run was preempted (drained with a notice), "
        "counted apart from `max_failures`: a spot run is reclaimed again and again; -1 "
        "retries forever.",
    )
    notice_margin_s: float = Field(
        10.0,
        ge=0.0,
        le=600.0,
        description="On a preemption notice with a deadline, the last checkpoint is started "
        "this many seconds plus the last checkpoint's write-and-upload time before the "
        "deadline; training then stops stepping until the node is gone.",
    )
    exclude_node_after: int = Field(
        2,
        ge=0,
        le=100,
        description="A node on which the run's worker processes died (or stopped answering "
        "Ray's health checks) in this many worker groups is not used again by the run; 0 never "
        "excludes (docs/cluster.md, 'Bad nodes'). Errors the training code raises do not count.",
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
