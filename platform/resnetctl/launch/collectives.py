"""`failure.collective_timeout_s`, told to everything in a run that waits for every rank.

Three things wait for all ranks, and each learns the limit its own way:

* torch's process group (gloo or NCCL), from `TorchConfig(timeout_s=...)`, which Ray Train
  passes to `init_process_group`. gloo raises in the waiting rank when it is exceeded.
* NCCL enforces it from a watchdog thread, and only with async error handling on: otherwise a
  collective that never completes blocks the CUDA stream, and the process, for good. Ray Train
  turns it on (`TORCH_NCCL_ASYNC_ERROR_HANDLING=1`) only when neither it nor
  `TORCH_NCCL_BLOCKING_WAIT` is already set on the node, so a node's `=0` would win. The workers
  get `NCCL_ENV` in their runtime environment instead: the watchdog aborts the communicator and
  takes the process down (mode 1, the mode Ray Train chooses), Ray Train sees the worker gone
  and restarts the group. Blocking wait stays off: it makes every `wait()` block the CPU.
* Ray Train's own barriers (every `ray.train.report` starts with one) wait forever unless
  `RAY_TRAIN_COLLECTIVE_TIMEOUT_S` is set where Ray Train's controller starts; `fit()` passes
  it to the controller from the driver's environment (`ray_barrier_timeout`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from resnetctl.spec import JobSpec

#: What NCCL workers run with (see the module's docstring).
NCCL_ENV: dict[str, str] = {
    "TORCH_NCCL_ASYNC_ERROR_HANDLING": "1",
    "TORCH_NCCL_BLOCKING_WAIT": "0",
}

#: Ray Train's timeout of its own barriers, read by its controller (ray.train.v2 constants).
RAY_BARRIER_TIMEOUT_ENV = "RAY_TRAIN_COLLECTIVE_TIMEOUT_S"


def worker_env(spec: JobSpec) -> dict[str, str]:
    """The environment variables every training worker of `spec` needs for its collectives to
    time out (`RunConfig.worker_runtime_env`)."""
    return dict(NCCL_ENV) if spec.resources.use_gpu else {}


@contextmanager
def ray_barrier_timeout(spec: JobSpec) -> Iterator[None]:
    """Within the block, the trainers this process fits time out their barriers after
    `failure.collective_timeout_s`, as torch's collectives do; the environment is put back
    afterwards."""
    before = os.environ.get(RAY_BARRIER_TIMEOUT_ENV)
    os.environ[RAY_BARRIER_TIMEOUT_ENV] = str(float(spec.failure.collective_timeout_s))
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(RAY_BARRIER_TIMEOUT_ENV, None)
        else:
            os.environ[RAY_BARRIER_TIMEOUT_ENV] = before
