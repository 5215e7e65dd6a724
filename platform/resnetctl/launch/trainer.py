"""Build Ray Train's `TorchTrainer` from a `JobSpec`: one function, no side effects."""

from __future__ import annotations

import os
from typing import Any

from resnetctl.spec import JobSpec
from resnetctl.storage import StoragePath


def build_trainer(
    spec: JobSpec,
    *,
    run_name: str,
    storage_path: StoragePath | str | os.PathLike[str],
    loop_config: dict[str, Any],
    callbacks: list[Any] = (),  # type: ignore[assignment]
) -> Any:
    """A `TorchTrainer` for `spec`: NCCL on GPUs, gloo on CPUs; checkpoints kept and ranked as
    the spec says; `failure.max_failures` worker-group restarts. `storage_path` is a local
    path or a bucket URI: every worker uploads its checkpoints there itself. Collectives time
    out after `failure.collective_timeout_s`, on NCCL too (`launch.collectives`)."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from resnetctl.launch.collectives import worker_env
    from resnetctl.train.loop import train_loop_per_worker

    res = spec.resources
    ckpt = spec.checkpoint
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config=loop_config,
        torch_config=TorchConfig(
            backend="nccl" if res.use_gpu else "gloo",
            timeout_s=spec.failure.collective_timeout_s,
        ),
        scaling_config=ScalingConfig(
            # A range is Ray Train's elastic `(min, max)`: it starts once `min` workers fit,
            # restarts with the workers left when a node is lost, and every
            # `resize_check_s` grows the group (a restart from the latest checkpoint) when
            # room for more appeared.
            num_workers=res.ray_num_workers,
            use_gpu=res.use_gpu,
            resources_per_worker=res.worker_bundle(),
            **({"elastic_resize_monitor_interval_s": res.resize_check_s} if res.elastic else {}),
        ),
        run_config=RunConfig(
            name=run_name,
            **StoragePath.of(storage_path).ray_storage(),
            checkpoint_config=CheckpointConfig(
                num_to_keep=ckpt.keep,
                checkpoint_score_attribute=ckpt.metric,
                checkpoint_score_order=ckpt.mode,
            ),
            failure_config=FailureConfig(
                max_failures=spec.failure.max_failures,
                max_preemption_failures=spec.failure.max_preemptions,
            ),
            callbacks=list(callbacks),
            worker_runtime_env={"env_vars": worker_env(spec)},
        ),
    )
