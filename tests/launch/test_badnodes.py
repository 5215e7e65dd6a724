"""Which failures count against a node, when it is excluded, and the selector that keeps the
next worker group off it: `launch.badnodes` with Ray Train's own error types, no cluster."""

from __future__ import annotations

from types import SimpleNamespace

from ray.train.v2._internal.exceptions import (
    WorkerHealthCheckFailedError,
    WorkerHealthCheckTimeoutError,
)
from ray.train.v2._internal.execution.worker_group.poll import (
    WorkerGroupPollStatus,
    WorkerStatus,
)

from resnetctl.launch.badnodes import (
    NODE_ID_LABEL,
    BadNodeCallback,
    NodeFailures,
    failed_nodes,
    process_failed,
)

A, B = "a" * 56, "b" * 56


def died() -> WorkerHealthCheckFailedError:
    return WorkerHealthCheckFailedError("worker died", failure=RuntimeError("actor died"))


def group(*nodes: str) -> SimpleNamespace:
    """A started worker group whose rank i runs on nodes[i]."""
    workers = [
        SimpleNamespace(metadata=SimpleNamespace(node_id=node, node_ip="127.0.0.1"))
        for node in nodes
    ]
    return SimpleNamespace(get_workers=lambda: workers)


def poll(*errors: BaseException | None) -> WorkerGroupPollStatus:
    return WorkerGroupPollStatus(
        worker_statuses={
            rank: WorkerStatus(running=error is None, error=error)
            for rank, error in enumerate(errors)
        }
    )


def test_only_a_dead_or_silent_process_counts_not_an_error_the_code_raised() -> None:
    assert process_failed(died())
    assert process_failed(WorkerHealthCheckTimeoutError("no answer for 60 s"))
    assert not process_failed(RuntimeError("loss is nan"))
    assert not process_failed(None)
    assert failed_nodes({0: RuntimeError("gloo timeout"), 1: died()}, {0: A, 1: B}) == [B]


def test_a_node_is_excluded_at_the_limit_once_and_the_selector_names_every_excluded_node() -> None:
    failures = NodeFailures(limit=2)
    assert failures.selector() is None
    assert failures.group_failed([A, A]) == []  # two ranks on A, one group failure
    assert failures.counts == {A: 1}
    assert failures.group_failed([A, B]) == [A]
    assert failures.group_failed([A]) == []  # already excluded
    assert failures.group_failed([B]) == [B]
    assert failures.selector() == {NODE_ID_LABEL: f"!in({A},{B})"}


def test_limit_zero_never_excludes() -> None:
    failures = NodeFailures(limit=0)
    for _ in range(5):
        assert failures.group_failed([A]) == []
    assert failures.selector() is None


def test_the_callback_counts_each_failed_group_once_and_steers_the_next_group(capsys) -> None:
    callback = BadNodeCallback(2)
    kwargs = {"scaling_config": None, "num_workers": 2}
    callback.after_worker_group_poll_status(poll(died()))  # before any group: nothing to count
    callback.after_worker_group_start(group(A, B))
    callback.after_worker_group_poll_status(poll(None, None))
    callback.after_worker_group_poll_status(poll(None, died()))
    callback.after_worker_group_poll_status(poll(None, died()))  # the same failure, polled again
    assert callback.failures.counts == {B: 1}
    assert callback.on_controller_start_worker_group(**kwargs) is None
    callback.after_worker_group_start(group(B, A))
    callback.after_worker_group_poll_status(poll(RuntimeError("raised by the loop"), None))
    assert callback.failures.counts == {B: 1}  # the code's own error: not the node's fault
    callback.after_worker_group_poll_status(poll(died(), died()))
    assert callback.failures.counts == {B: 2, A: 1}
    assert callback.on_controller_start_worker_group(**kwargs) == {NODE_ID_LABEL: f"!in({B})"}
    said = capsys.readouterr().err
    assert f"node {B[:8]} (127.0.0.1) excluded from this run" in said
    assert "in 2 worker groups (failure.exclude_node_after 2)" in said
    assert A[:8] not in said
