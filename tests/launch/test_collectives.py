"""`failure.collective_timeout_s` reaches what waits: torch's process group, NCCL's watchdog and
Ray Train's barriers (`launch.collectives`). No GPU here: the NCCL path is checked by running
Ray Train's own process-group setup in the environment an NCCL worker gets, with
`init_process_group` replaced by a recorder. No Ray is started."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
import torch.distributed as dist
from ray.train.torch.config import _setup_torch_process_group
from ray.train.v2._internal.constants import COLLECTIVE_TIMEOUT_S_ENV_VAR, get_env_vars_to_propagate
from ray.train.v2._internal.execution.worker_group.worker_group import WorkerGroup

from resnetctl.launch.collectives import NCCL_ENV, ray_barrier_timeout
from resnetctl.launch.trainer import build_trainer
from resnetctl.spec import load_spec
from tests.conftest import JOBS


def _nccl_worker_setup(spec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """What `init_process_group` would see on an NCCL worker of `spec` whose node runs with
    NCCL's async error handling off and blocking wait on."""
    trainer = build_trainer(spec, run_name="r", storage_path=tmp_path, loop_config={})
    # The runtime environment Ray Train gives each worker actor.
    env = WorkerGroup._get_worker_runtime_env(trainer.run_config.worker_runtime_env)["env_vars"]
    monkeypatch.setenv("TORCH_NCCL_ASYNC_ERROR_HANDLING", "0")
    monkeypatch.setenv("TORCH_NCCL_BLOCKING_WAIT", "1")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    seen: dict = {}

    def init_process_group(**kwargs) -> None:
        seen.update(kwargs)
        seen["env"] = {name: os.environ.get(name) for name in NCCL_ENV}

    monkeypatch.setattr(dist, "init_process_group", init_process_group)
    config = trainer.backend_config
    _setup_torch_process_group(config.backend, 1, 2, "env://", config.timeout_s)
    return seen


def test_nccl_workers_get_async_error_handling_and_the_specs_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = load_spec(
        JOBS / "r50.yaml", ["failure.collective_timeout_s=900", "data.source.root=/data/imagenet"]
    )
    assert spec.resources.use_gpu
    seen = _nccl_worker_setup(spec, tmp_path, monkeypatch)
    assert seen["backend"] == "nccl" and seen["world_size"] == 2 and seen["rank"] == 1
    assert seen["timeout"] == timedelta(seconds=900)
    # The watchdog enforces the timeout and aborts; no CPU-blocking wait.
    assert seen["env"] == {"TORCH_NCCL_ASYNC_ERROR_HANDLING": "1", "TORCH_NCCL_BLOCKING_WAIT": "0"}


def test_cpu_workers_get_no_nccl_settings_and_gloo_the_specs_timeout(tmp_path: Path) -> None:
    spec = load_spec(JOBS / "quickstart.yaml", ["failure.collective_timeout_s=45"])
    trainer = build_trainer(spec, run_name="r", storage_path=tmp_path, loop_config={})
    assert trainer.backend_config.backend == "gloo" and trainer.backend_config.timeout_s == 45
    assert trainer.run_config.worker_runtime_env == {"env_vars": {}}


def test_ray_trains_barriers_time_out_with_the_spec_while_the_trainer_fits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ray._private.ray_constants import env_float

    monkeypatch.delenv(COLLECTIVE_TIMEOUT_S_ENV_VAR, raising=False)
    spec = load_spec(JOBS / "quickstart.yaml", ["failure.collective_timeout_s=45"])
    with ray_barrier_timeout(spec):
        # What `fit()` hands Ray Train's controller, which gives it to its barriers.
        assert get_env_vars_to_propagate()[COLLECTIVE_TIMEOUT_S_ENV_VAR] == "45.0"
        assert env_float(COLLECTIVE_TIMEOUT_S_ENV_VAR, None) == 45.0
    assert COLLECTIVE_TIMEOUT_S_ENV_VAR not in os.environ
    monkeypatch.setenv(COLLECTIVE_TIMEOUT_S_ENV_VAR, "7")
    with ray_barrier_timeout(spec):
        assert os.environ[COLLECTIVE_TIMEOUT_S_ENV_VAR] == "45.0"  # the spec is the one source
    assert os.environ[COLLECTIVE_TIMEOUT_S_ENV_VAR] == "7"
