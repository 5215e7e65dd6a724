"""The watcher on a real loopback cluster: a fake AWS, then a fake GCP metadata server announces
a reclaim of a worker node, and Ray's own view shows that node DRAINING with the announced
deadline.

Each worker node is kept busy by an actor that a driver pins to it: the raylet of a drained node
that runs nothing exits at once (Ray 2.60), before anyone could see it DRAINING."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from resnetctl.preemption.notice import utc
from tests.launch.conftest import RayNodes, two_node_cluster, wait_for
from tests.preemption.metadata_servers import FakeGceMetadata, FakeImds

pytestmark = pytest.mark.slow
LOG_NAME = "resnetctl-preemption.log"

# A driver that pins an actor on the node given and keeps it there until it is killed.
HOLD = """
import sys, time
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)

@ray.remote(num_cpus=1)
class Holder:
    def where(self):
        return ray.get_runtime_context().get_node_id()

pin = NodeAffinitySchedulingStrategy(node_id=sys.argv[2], soft=False)
holder = Holder.options(scheduling_strategy=pin).remote()
print("holding", ray.get(holder.where.remote()), flush=True)
while True:
    time.sleep(60)
"""

# docs/cluster.md: `python -c '...'`, Ray's draining nodes as Ray Train's watcher reads them.
DRAINING_CHECK = "import ray; ray.init(); print(ray._private.state.state.get_draining_nodes())"


class RayView:
    """Ray's own view of the drains, from a GCS client in this process."""

    def __init__(self, gcs: str):
        from ray._raylet import Config, GcsClient

        # Ray reads RAY_AUTH_MODE (set by two_node_cluster) once, when first imported: again.
        Config.initialize("")
        self.client = GcsClient(address=gcs)

    def draining(self) -> dict[str, int]:
        """Draining nodes: hex id -> deadline in ms since the epoch (0: none)."""
        return dict(self.client.get_draining_nodes(timeout=10))


def worker_ids(nodes: RayNodes) -> set[str]:
    return {n["node_id"] for n in nodes.alive_nodes() if not n["is_head_node"]}


def hold(nodes: RayNodes, node_id: str, name: str) -> None:
    """Pin an actor on `node_id` (a driver in a session of its own, killed with the cluster)."""
    script = nodes.logs / "hold.py"
    script.write_text(HOLD)
    nodes.processes.start(name, [sys.executable, str(script), nodes.gcs, node_id], nodes.env)
    log = nodes.logs / f"{name}.log"
    process = nodes.processes.started[-1]

    def holding() -> bool:
        assert process.poll() is None, log.read_text()  # a driver that failed fails the test now
        return f"holding {node_id}" in log.read_text()

    assert wait_for(holding, 120, 0.5), log.read_text()


def watch(
    nodes: RayNodes, name: str, temp_dir: Path, *args: str
) -> tuple[subprocess.Popen[bytes], Path]:
    """Start `resnetctl cluster watch-preemption` for the node started with `temp_dir`, logging
    into the node's Ray session as cluster/*.yaml make it; wait until it watches. Returns its
    process and its log."""
    log = temp_dir / "session_latest" / "logs" / LOG_NAME
    argv = [sys.executable, "-m", "resnetctl", "cluster", "watch-preemption", *args]
    argv += ["--temp-dir", str(temp_dir), "--log-file", str(log)]
    process = nodes.processes.start(name, argv, nodes.env)
    assert wait_for(lambda: log.exists() and "watching" in log.read_text(), 90, 0.5), (
        nodes.logs / f"{name}.log"
    ).read_text()
    return process, log


def imds_notice(imds: FakeImds) -> str:
    return f"EC2 spot interruption notice: {imds.action['action']} at {imds.action['time']}"


def check(nodes: RayNodes, temp_dir: Path, *args: str) -> str:
    """`watch-preemption --check` for the node started with `temp_dir`: its output (exit 0)."""
    argv = [sys.executable, "-m", "resnetctl", "cluster", "watch-preemption", *args]
    argv += ["--temp-dir", str(temp_dir), "--check"]
    env = {**os.environ, **nodes.env}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout


def ray_logs(nodes: RayNodes, node_id: str) -> str:
    """The watcher's log as `ray logs` serves it from the node (docs/cluster.md's command)."""
    argv = [str(Path(sys.executable).parent / "ray"), "logs", LOG_NAME, "--node-id", node_id]
    # A cloud node runs one Ray, which `ray logs` finds by itself; this machine may run others
    # (another test's, a user's), and then `ray logs` refuses to guess: the cluster is named.
    env = {**os.environ, **nodes.env, "RAY_ADDRESS": nodes.gcs}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def drained_within(view: RayView, node_id: str, timeout: float) -> tuple[float, int]:
    """Poll Ray every 50 ms until `node_id` drains: (when, its deadline in ms)."""
    limit = time.time() + timeout
    while time.time() < limit:
        found = view.draining().get(node_id)
        if found is not None:
            return time.time(), found
        time.sleep(0.05)
    raise AssertionError(f"node {node_id} did not drain within {timeout} s")


def test_cloud_notices_drain_the_announced_node_with_the_announced_deadline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with two_node_cluster(tmp_path) as nodes, FakeImds() as imds, FakeGceMetadata() as gce:
        view = RayView(nodes.gcs)
        (aws_node,) = worker_ids(nodes)
        hold(nodes, aws_node, "hold-aws")

        # --- AWS: IMDSv2, a spot interruption notice two minutes ahead ------------------------
        checked = check(nodes, nodes.temp_dirs[1], "--provider", "aws", "--metadata-url", imds.url)
        assert "aws: spot/instance-action: nothing (404)" in checked
        port = nodes.gcs.rsplit(":", 1)[1]  # Ray writes 127.0.0.1 as the machine's address
        assert f"ray: node {aws_node} of the cluster at " in checked
        assert f":{port}: not draining" in checked
        aws_watcher, aws_log = watch(
            nodes, "watch-aws", nodes.temp_dirs[1], "--provider", "aws", "--metadata-url", imds.url
        )
        assert f"for Ray node {aws_node} of the cluster at" in aws_log.read_text()
        time.sleep(3)  # a few rounds of reads: no notice, no drain
        assert view.draining() == {} and len(imds.requests()) >= 3
        announced = imds.interrupt("terminate", in_s=120)
        seen_at, aws_deadline_ms = drained_within(view, aws_node, 30)
        aws_latency = seen_at - imds.announced_at
        # Whole seconds, rounded down: up to 1 s early, never late (but for the RPC's ms).
        assert announced * 1000 - 1500 <= aws_deadline_ms <= announced * 1000 + 200, (
            aws_deadline_ms,
            announced,
        )
        assert aws_watcher.wait(timeout=30) == 0  # its work is done
        text = aws_log.read_text()
        assert f"drained Ray node {aws_node}" in text and "ray drain-node --address" in text
        assert f"drained Ray node {aws_node}" in ray_logs(nodes, aws_node)
        checked = check(nodes, nodes.temp_dirs[1], "--provider", "aws", "--metadata-url", imds.url)
        assert f"aws: spot/instance-action: {imds_notice(imds)}" in checked
        assert f":{port}: DRAINING, deadline {utc(aws_deadline_ms / 1000)}" in checked

        # --- GCP: a new worker node, preempted with 30 seconds' notice -----------------------
        nodes.add_worker("worker2")
        nodes.wait_for_nodes(3)
        (gcp_node,) = worker_ids(nodes) - {aws_node}
        hold(nodes, gcp_node, "hold-gcp")
        gcp_watcher, gcp_log = watch(
            nodes, "watch-gcp", nodes.temp_dirs[2], "--provider", "gcp", "--metadata-url", gce.url
        )
        assert f"for Ray node {gcp_node} of the cluster at" in gcp_log.read_text()
        assert set(view.draining()) == {aws_node}
        preempted_at = gce.preempt()
        seen_at, deadline_ms = drained_within(view, gcp_node, 30)
        gcp_latency = seen_at - preempted_at
        expected_ms = (preempted_at + 30) * 1000
        assert expected_ms - 1500 <= deadline_ms <= expected_ms + 500, (deadline_ms, expected_ms)
        assert gcp_watcher.wait(timeout=30) == 0
        # The AWS node keeps its own deadline.
        assert view.draining() == {aws_node: aws_deadline_ms, gcp_node: deadline_ms}

        # Ray's CLI agrees: both workers are still alive (draining is not dying).
        assert worker_ids(nodes) == {aws_node, gcp_node}
        # The check docs/cluster.md gives, from a driver (RAY_ADDRESS stands for the head's
        # address file, which on this machine may name another Ray).
        env = {**os.environ, **nodes.env, "RAY_ADDRESS": nodes.gcs}
        done = subprocess.run(
            [sys.executable, "-c", DRAINING_CHECK],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert ast.literal_eval(done.stdout.strip().splitlines()[-1]) == view.draining()

    with capsys.disabled():
        print(
            f"\nnotice -> DRAINING in Ray: aws {aws_latency:.2f} s (reads every 2 s), "
            f"gcp {gcp_latency:.2f} s (hanging read)"
        )
