"""This node's Ray: the cluster it joined, its own node id, and the drain of it.

**The GCS address** is the one given (`--address`), else the one this node's `ray start`
wrote to its address file (`ray_current_cluster` in Ray's temp dir): the cluster that this
node's raylet joined, whatever `RAY_ADDRESS` says (often the dashboard's URL).

**The node id** is found the way `ray.init` finds the raylet to join on a machine, without
joining as a driver: the raylets running here (Ray's `find_node_ids`, which reads their
`--node_id` flag from the process table), kept when the cluster's GCS lists them alive, and,
with `--temp-dir`, only the one started with that temp dir. A cloud node runs one raylet, so
one is left; several (more than one `ray start` on a machine) must be told apart by
`--temp-dir` or `--node-id`.

**The drain** is the call that `ray drain-node --address A --node-id ID --reason
DRAIN_NODE_REASON_PREEMPTION --reason-message M --deadline-remaining-seconds N` makes (Ray's
`ray/scripts/scripts.py`): the GCS client's `drain_node` with the deadline as `now + N` seconds
in milliseconds. It is made from this process, which imported Ray when it started, rather than by
running the `ray` command: the command's start-up (a few seconds of imports) would be added to
the deadline, and its RPC has no timeout. `DrainRequest.argv()` is that command, for the log and
for running it by hand.
"""

from __future__ import annotations

import os
import shlex
import time
from dataclasses import dataclass
from typing import Any

REASON = "DRAIN_NODE_REASON_PREEMPTION"
#: Bound on every call to the GCS: a hung head must not hang the watcher.
RPC_TIMEOUT_S = 10.0


class NodeNotFound(RuntimeError):
    """This machine's Ray node cannot be identified (yet)."""


class DrainFailed(RuntimeError):
    """The GCS did not take the drain request."""


@dataclass(frozen=True)
class DrainRequest:
    """One drain of one node, as `ray drain-node` takes it."""

    address: str
    node_id: str
    message: str
    deadline_remaining_s: int | None

    def argv(self) -> list[str]:
        """The `ray drain-node` command line that makes the same request."""
        argv = ["ray", "drain-node", "--address", self.address, "--node-id", self.node_id]
        argv += ["--reason", REASON, "--reason-message", self.message]
        if self.deadline_remaining_s is not None:
            argv += ["--deadline-remaining-seconds", str(self.deadline_remaining_s)]
        return argv

    def command_line(self) -> str:
        """`argv()` quoted for a shell."""
        return shlex.join(self.argv())

    def deadline_ms(self, now: float) -> int:
        """The deadline Ray records, as `ray drain-node` computes it: milliseconds since the
        epoch at `now` plus the whole seconds; 0 (Ray's "no deadline") without them."""
        if self.deadline_remaining_s is None:
            return 0
        return int(now * 1000) + self.deadline_remaining_s * 1000


def gcs_address(address: str | None, temp_dir: str | None) -> str:
    """`address`, else the address this node's `ray start` wrote in `temp_dir` (Ray's default
    temp dir when None), as `host:port` with a host name resolved."""
    from ray._private.services import canonicalize_bootstrap_address
    from ray._private.utils import read_ray_address

    found = address or read_ray_address(temp_dir)
    if not found:
        from ray._common.utils import get_ray_address_file

        raise NodeNotFound(
            f"no Ray cluster address: `ray start` has not run on this node (no "
            f"{get_ray_address_file(temp_dir)}); start Ray first, or pass --address HOST:PORT"
        )
    try:
        canonical = canonicalize_bootstrap_address(found)
    except ValueError as exc:
        raise NodeNotFound(f"bad Ray cluster address {found!r}: {exc}") from None
    if canonical is None:
        raise NodeNotFound(f"bad Ray cluster address {found!r}: expected HOST:PORT")
    return canonical


class RayNode:
    """This machine's node of the Ray cluster whose GCS is at `address`."""

    def __init__(self, address: str, node_id: str) -> None:
        self.address = address
        self.node_id = node_id
        self._client: Any = None

    @classmethod
    def find(
        cls, address: str | None, temp_dir: str | None = None, node_id: str | None = None
    ) -> RayNode:
        """This node: `node_id` if given (checked to be alive in the cluster), else the one
        alive raylet of the cluster that runs on this machine (with `temp_dir`, the one started
        with it). Raises `NodeNotFound` saying why not."""
        node = cls(gcs_address(address, temp_dir), node_id or "")
        alive = node._alive_nodes()
        if node_id:
            if node_id not in alive:
                raise NodeNotFound(f"node {node_id} is not an alive node of {node.address}")
            return node
        from ray._private.services import find_node_ids

        local = find_node_ids()
        mine = {i: alive[i] for i in sorted(local) if i in alive}
        if temp_dir is not None:
            wanted = os.path.realpath(temp_dir)
            mine = {i: d for i, d in mine.items() if os.path.realpath(d) == wanted}
        if len(mine) == 1:
            node.node_id = next(iter(mine))
            return node
        where = f" with temp dir {temp_dir}" if temp_dir is not None else ""
        if not mine:
            raise NodeNotFound(
                f"no raylet of the cluster at {node.address}{where} runs on this machine "
                f"({len(local)} raylet(s) here, {len(alive)} alive node(s) in the cluster)"
            )
        listed = ", ".join(f"{i} (temp dir {d})" for i, d in mine.items())
        raise NodeNotFound(
            f"several nodes of the cluster at {node.address} run on this machine: {listed}; "
            "pass --temp-dir (the one given to its `ray start`) or --node-id"
        )

    def running_here(self) -> bool:
        """Whether this node's raylet still runs on this machine (a local process-table read,
        no network): false once `ray stop` or a crash ended it."""
        from ray._private.services import find_node_ids

        return self.node_id in find_node_ids()

    def drain(self, request: DrainRequest) -> None:
        """Make the drain request; raise `DrainFailed` when the GCS refuses or cannot be
        reached (within `RPC_TIMEOUT_S`)."""
        from ray.core.generated import autoscaler_pb2

        reason = autoscaler_pb2.DrainNodeReason.Value(REASON)
        try:
            accepted, why = self._gcs().drain_node(
                request.node_id,
                reason,
                request.message,
                request.deadline_ms(time.time()),
                timeout=RPC_TIMEOUT_S,
            )
        except Exception as exc:  # the GCS client raises RpcError, ConnectionError, ...
            self._client = None  # a new client at the next try
            raise DrainFailed(f"{type(exc).__name__}: {exc}") from None
        if not accepted:
            raise DrainFailed(f"the drain request was not accepted: {why}")

    def draining_deadline_ms(self) -> int | None:
        """Ray's drain deadline of this node (0: none), None when it is not draining."""
        return self._gcs().get_draining_nodes(timeout=RPC_TIMEOUT_S).get(self.node_id)

    def _alive_nodes(self) -> dict[str, str]:
        """The cluster's alive nodes: hex id -> temp dir."""
        from ray.core.generated.gcs_pb2 import GcsNodeInfo

        try:
            infos = self._gcs().get_all_node_info(
                timeout=RPC_TIMEOUT_S, state_filter=GcsNodeInfo.GcsNodeState.ALIVE
            )
        except Exception as exc:
            self._client = None
            raise NodeNotFound(
                f"the Ray cluster at {self.address} did not answer: {type(exc).__name__}: {exc}"
            ) from None
        return {node_id.hex(): info.temp_dir for node_id, info in infos.items()}

    def _gcs(self) -> Any:
        if self._client is None:
            from ray._raylet import GcsClient

            self._client = GcsClient(address=self.address)
        return self._client
