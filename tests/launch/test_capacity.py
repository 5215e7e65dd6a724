"""Room for a job's workers: counted per node, waited for with a deadline, never hung on."""

from __future__ import annotations

import pytest

from resnetctl.launch.capacity import CapacityError, bundles_that_fit, wait_for_capacity
from resnetctl.spec.loader import load_spec_text

SPEC = """\
name: cap
model: {name: cifar_resnet20}
data: {source: {kind: synthetic}}
train: {epochs: 1, batch_size_per_worker: 4}
resources: {workers: 2, cpus_per_worker: 2, use_gpu: true, gpus_per_worker: 1,
            placement_timeout_s: 30}
"""


def test_bundles_fit_per_node_not_in_the_sum() -> None:
    bundle = {"CPU": 2, "GPU": 1}
    assert bundles_that_fit(bundle, [{"CPU": 3, "GPU": 1}, {"CPU": 1, "GPU": 1}]) == 1
    assert bundles_that_fit(bundle, [{"CPU": 16, "GPU": 8}]) == 8
    assert bundles_that_fit(bundle, [{"CPU": 64}]) == 0  # no GPU anywhere


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_waits_for_the_autoscaler_and_keeps_the_request() -> None:
    spec = load_spec_text(SPEC)
    clock = FakeClock()
    requests: list[list[dict[str, float]]] = []

    # A node with room for one worker, then the autoscaler adds a second after 10 s.
    def nodes() -> list[dict[str, float]]:
        grown = [{"CPU": 2, "GPU": 1}] if clock.now >= 10 else []
        return [{"CPU": 2, "GPU": 1}, *grown]

    wait_for_capacity(spec, nodes=nodes, request=requests.append, sleep=clock.sleep, clock=clock)
    assert requests == [[{"CPU": 2.0, "GPU": 1.0}] * 2]
    assert 10 <= clock.now < 30


def test_gives_up_at_the_deadline_naming_what_is_missing() -> None:
    spec = load_spec_text(SPEC)
    clock = FakeClock()
    with pytest.raises(CapacityError) as exc:
        wait_for_capacity(
            spec,
            nodes=lambda: [{"CPU": 8}],
            request=lambda b: None,
            sleep=clock.sleep,
            clock=clock,
        )
    assert "cannot place 2 workers" in str(exc.value) and "within 30 s" in str(exc.value)
    assert "{CPU: 8}" in str(exc.value)
    assert 30 <= clock.now <= 32


def test_embedded_ray_fails_at_once() -> None:
    spec = load_spec_text(SPEC)
    clock = FakeClock()
    with pytest.raises(CapacityError):
        wait_for_capacity(
            spec, timeout=0, nodes=lambda: [{"CPU": 2}], sleep=clock.sleep, clock=clock
        )
    assert clock.now == 0


def test_fractional_bundles_count_as_ray_counts_them() -> None:
    # 0.3 // 0.1 is 2.0 in floating point; Ray holds three 0.1-CPU bundles on 0.3 CPUs.
    assert bundles_that_fit({"CPU": 0.1}, [{"CPU": 0.3}]) == 3
    assert bundles_that_fit({"CPU": 0.0, "GPU": 0.0}, [{"CPU": 4}]) == 0
