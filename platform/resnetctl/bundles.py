"""How many of a worker's resource bundles one node holds: the one rule that the placement plan
(`cluster plan`, from a config's node types) and the wait for capacity (from a live cluster's
nodes) share, so that the plan never promises what the cluster then refuses."""

from __future__ import annotations

import math
from collections.abc import Mapping

#: Ray keeps resources in fixed point; 0.3 CPU / 0.1 CPU must give 3, not float division's 2.
_TOLERANCE = 1e-9


def copies_per_node(bundle: Mapping[str, float], node: Mapping[str, float]) -> int:
    """How many copies of `bundle` (resource name -> amount) fit on `node` (name -> total);
    0 when the bundle asks for nothing or for a resource the node lacks."""
    counts = [
        math.floor(node.get(name, 0.0) / amount + _TOLERANCE)
        for name, amount in bundle.items()
        if amount > 0
    ]
    return max(0, min(counts)) if counts else 0
