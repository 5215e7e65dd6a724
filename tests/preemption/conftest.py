"""Fixtures of the watcher's tests: fake metadata services on 127.0.0.1 and a Ray node that
records the drains asked of it (the loopback-cluster test drains a real one)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from resnetctl.preemption.ray_node import DrainFailed, DrainRequest
from tests.preemption.metadata_servers import FakeGceMetadata, FakeImds


@pytest.fixture
def imds() -> Iterator[FakeImds]:
    """EC2's IMDSv2, fake, on a free loopback port; stopped after the test."""
    with FakeImds() as server:
        yield server


@pytest.fixture
def gce() -> Iterator[FakeGceMetadata]:
    """Compute Engine's metadata server, fake, on a free loopback port; stopped after the test."""
    with FakeGceMetadata() as server:
        yield server


@dataclass
class RecordingNode:
    """A Ray node for the watch loop: records each drain with its time; the first `failures`
    drains raise `DrainFailed`; `alive` is what `running_here` says."""

    address: str = "10.0.0.7:6379"
    node_id: str = "ab" * 28
    alive: bool = True
    failures: int = 0
    drains: list[tuple[float, DrainRequest]] = field(default_factory=list)
    attempts: int = 0

    def running_here(self) -> bool:
        return self.alive

    def drain(self, request: DrainRequest) -> None:
        import time

        self.attempts += 1
        if self.failures > 0:
            self.failures -= 1
            raise DrainFailed("RpcError: failed to connect to the GCS")
        self.drains.append((time.time(), request))


@pytest.fixture
def node() -> RecordingNode:
    return RecordingNode()


@pytest.fixture
def watch_log(caplog: pytest.LogCaptureFixture) -> logging.Logger:
    """A logger whose records `caplog` sees."""
    caplog.set_level(logging.INFO, logger="tests.preemption.watch")
    return logging.getLogger("tests.preemption.watch")
