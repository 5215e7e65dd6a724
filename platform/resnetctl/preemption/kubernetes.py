"""Kubernetes: the pod is being deleted. Run as the Ray container's preStop hook, the watcher's
start is the notice: the kubelet runs the hook when the pod's deletion begins (a scale-down, an
eviction, a node drained for a spot interruption) and sends the container SIGTERM when the hook
returns, SIGKILL when the pod's termination grace period has run out.

The drain's deadline is therefore the hook's start plus the grace period, less the seconds Ray
needs to stop after SIGTERM (`RAY_STOP_S`), and the watcher holds the hook until then: the
training loop keeps its Ray node until the deadline it was told. Kubernetes does not show the
grace period inside the pod; the manifest passes the same number to both (`cluster/kuberay.yaml`).
A kubelet that shortens it (a node's graceful shutdown) makes the real deadline earlier.
"""

from __future__ import annotations

import os
from typing import ClassVar

from resnetctl.preemption.base import Settings
from resnetctl.preemption.notice import Notice

#: Kubernetes' default terminationGracePeriodSeconds.
DEFAULT_GRACE_S = 30.0
#: Left between the deadline and the end of the grace period for Ray to stop after SIGTERM.
RAY_STOP_S = 5.0


class PodTermination:
    """The pod's deletion, noticed by its preStop hook (final)."""

    name: ClassVar[str] = "kubernetes"
    default_wait_s: ClassVar[float] = 1.0
    cadence: ClassVar[str] = "the preStop hook: now"
    holds_until_deadline: ClassVar[bool] = True
    takes: ClassVar[frozenset[str]] = frozenset({"grace_period_s"})

    def __init__(self, settings: Settings) -> None:
        self.grace_s = settings.grace_period_s or DEFAULT_GRACE_S
        self.clock = settings.clock
        self.sleep = settings.sleep
        self.started_at = settings.started_at if settings.started_at is not None else self.clock()
        self._reported = False

    @classmethod
    def from_settings(cls, settings: Settings) -> PodTermination:
        """The provider for `settings` (`grace_period_s`, `started_at`, `clock`, `sleep`)."""
        return cls(settings)

    def next_notice(self, wait_s: float) -> Notice | None:
        """The notice the first time; nothing more after it."""
        if self._reported:
            self.sleep(wait_s)
            return None
        self._reported = True
        pod = os.environ.get("HOSTNAME", "this pod")
        return Notice(
            "kubernetes preStop",
            f"Kubernetes is deleting pod {pod}: SIGTERM at the end of the preStop hook, "
            f"SIGKILL {self.grace_s:g} s after it began",
            self.started_at + max(0.0, self.grace_s - RAY_STOP_S),
        )

    def check(self) -> list[str]:
        """What a deletion would announce."""
        return [
            f"a pod deletion drains this node with a deadline of {self.grace_s:g} s less "
            f"{RAY_STOP_S:g} s for Ray to stop, holding the preStop hook until then"
        ]
