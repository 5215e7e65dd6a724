"""System metrics of each node, logged by the first worker of the node into the run."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from mlflow import MlflowClient

from resnetctl.tracking.system_metrics import (
    first_on_node,
    node_label,
    node_monitor,
    worker_config,
)
from tests.analysis.conftest import copy_store


def test_one_worker_of_each_node_logs_its_system_metrics_under_the_node(
    tmp_path: Path, mlflow_template: Path
) -> None:
    uri = copy_store(mlflow_template, tmp_path)
    client = MlflowClient(uri)
    run_id = client.create_run(client.create_experiment("e")).info.run_id
    config = worker_config(uri, run_id, 0.2)
    node = "0123456789abcdef" * 3
    with node_monitor({**config, "system_metrics_interval_s": 0}, node) as off:
        assert off is None  # 0 turns the monitor off
    with node_monitor(config, node) as monitor:
        assert monitor is not None
        # One monitor per node: a second worker of the run on the node does not start one;
        # a worker on another node (here: another raylet on the same machine) does.
        with node_monitor(config, node) as second, node_monitor(config, "f" * 48) as other:
            assert second is None and other is not None
        time.sleep(1.5)
    logged = client.get_run(run_id).data.metrics
    prefix = f"system/{node_label(node)}/"
    assert node_label(node) == "node-01234567"
    assert f"{prefix}cpu_utilization_percentage" in logged
    assert f"{prefix}system_memory_usage_megabytes" in logged
    assert not any("gpu" in key for key in logged)  # no CUDA here: no GPU monitor
    steps = [
        m.step for m in client.get_metric_history(run_id, f"{prefix}cpu_utilization_percentage")
    ]
    assert len(steps) >= 2 and steps == sorted(set(steps))
    # Nothing of the run is left in the temp folder, and a restarted worker monitors again.
    assert not list(Path(tempfile.gettempdir()).glob(f"resnetctl-system-metrics-{run_id}-*"))
    with node_monitor({**config, "system_metrics_interval_s": 60}, node) as again:
        assert again is not None


def test_an_error_in_the_second_workers_block_carries_no_lock_error_as_context() -> None:
    # The tracebacks of the run's log (a hang's diagnosis quotes them) start at the error.
    node, run = "ab" * 24, f"context-{time.monotonic_ns()}"
    with first_on_node(node, run) as first:
        assert first
        try:
            with first_on_node(node, run) as second:
                assert not second
                raise RuntimeError("a collective timed out")
        except RuntimeError as error:
            assert error.__context__ is None
    assert not list(Path(tempfile.gettempdir()).glob(f"resnetctl-system-metrics-{run}-*"))


def test_the_node_lock_goes_with_a_killed_worker_and_leaves_no_file(tmp_path: Path) -> None:
    """Ray ends a run's workers with a signal, not a return: no `finally` runs. The lock must
    still be free for the restarted worker group, and nothing may stay in the temp folder."""
    import os
    import signal
    import subprocess
    import sys

    from resnetctl.tracking.system_metrics import first_on_node

    node, run_id = "ab" * 24, "feedc0de" * 4
    ready = tmp_path / "ready"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from resnetctl.tracking.system_metrics import first_on_node\n"
            f"with first_on_node({node!r}, {run_id!r}) as held:\n"
            f"    open({str(ready)!r}, 'w').write(str(held))\n"
            "    time.sleep(120)\n",
        ],
        env={**os.environ},
    )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() or not ready.read_text():
            assert time.monotonic() < deadline and holder.poll() is None
            time.sleep(0.1)
        assert ready.read_text() == "True"
        with first_on_node(node, run_id) as second:
            assert not second  # held by the other process
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        with first_on_node(node, run_id) as after:
            assert after  # free again: the kernel released it with the process
        assert not list(Path(tempfile.gettempdir()).glob(f"resnetctl-system-metrics-{run_id}-*"))
    finally:
        holder.kill()
        holder.wait(timeout=30)
