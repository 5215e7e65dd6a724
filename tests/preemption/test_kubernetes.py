"""The Kubernetes provider: the preStop hook's start is the notice."""

from __future__ import annotations

from resnetctl.preemption.base import Settings
from resnetctl.preemption.kubernetes import DEFAULT_GRACE_S, RAY_STOP_S, PodTermination


def test_the_deadline_is_the_hooks_start_plus_the_grace_period_less_rays_stop(
    monkeypatch,
) -> None:
    monkeypatch.setenv("HOSTNAME", "resnetctl-gpu-8x-worker-abcde")
    slept: list[float] = []
    provider = PodTermination(
        Settings(grace_period_s=120, started_at=1000.0, clock=lambda: 1003.0, sleep=slept.append)
    )
    notice = provider.next_notice(1)
    assert notice.final and notice.deadline == 1000.0 + 120 - RAY_STOP_S
    assert "resnetctl-gpu-8x-worker-abcde" in notice.message
    assert provider.next_notice(1) is None and slept == [1]


def test_without_a_grace_period_kubernetes_default_applies() -> None:
    provider = PodTermination(Settings(started_at=50.0))
    assert provider.next_notice(0).deadline == 50.0 + DEFAULT_GRACE_S - RAY_STOP_S
