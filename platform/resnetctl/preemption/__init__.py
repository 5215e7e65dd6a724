"""Cloud notices that a node is going away, turned into Ray drains of that node.

Clouds warn before they take a node back (AWS: an interruption notice two minutes ahead, GCP:
a preemption 30 seconds ahead, Kubernetes: the pod's deletion and its grace period). Ray does not
read these notices on every provider by itself. `resnetctl cluster watch-preemption` runs on
each worker node, reads its provider's notice and drains its own Ray node with the announced
deadline (`ray drain-node ... --reason DRAIN_NODE_REASON_PREEMPTION
--deadline-remaining-seconds N`), which Ray Train passes on to the training loop
(`ray.train.get_preemption_info()`).

Modules: `notice` (a notice and its deadline), `metadata` (one HTTP request), one module per
provider (`aws`, `gcp`, `kubernetes`) behind the `base.Provider` protocol, `registry` (the
providers by name), `ray_node` (this node's Ray: address, id, drain), `watcher` (the loop).
"""

from resnetctl.preemption.base import Provider, Settings
from resnetctl.preemption.metadata import MetadataError
from resnetctl.preemption.notice import Notice
from resnetctl.preemption.ray_node import DrainRequest, NodeNotFound, RayNode
from resnetctl.preemption.registry import PROVIDERS, make_provider, provider_names
from resnetctl.preemption.watcher import Watcher, setup_log

__all__ = [
    "PROVIDERS",
    "DrainRequest",
    "MetadataError",
    "NodeNotFound",
    "Notice",
    "Provider",
    "RayNode",
    "Settings",
    "Watcher",
    "make_provider",
    "provider_names",
    "setup_log",
]
