"""What every provider of notices offers the watcher, and the settings they are built from."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

from resnetctl.preemption.notice import Notice


@dataclass(frozen=True)
class Settings:
    """What a provider may need; each takes its own and ignores the rest.

    `metadata_url` replaces the metadata service's base URL (tests point it at a fake);
    `grace_period_s` is the pod's termination grace period (Kubernetes); `started_at` is when
    the watcher's process started (the preStop hook's moment); `clock` and `sleep` are
    replaceable for tests.
    """

    metadata_url: str | None = None
    grace_period_s: float | None = None
    started_at: float | None = None
    clock: Callable[[], float] = field(default=time.time)
    sleep: Callable[[float], None] = field(default=time.sleep)


class Provider(Protocol):
    """A source of notices that this node is going away."""

    #: The name `--provider` takes.
    name: ClassVar[str]
    #: Seconds `next_notice` waits when the watcher gives no interval of its own.
    default_wait_s: ClassVar[float]
    #: How it reads, for the log: a format string of `wait` (the seconds).
    cadence: ClassVar[str]
    #: Whether the watcher must not return before the deadline once it drained (a preStop
    #: hook: the container's SIGTERM follows as soon as the hook returns).
    holds_until_deadline: ClassVar[bool]
    #: The provider-specific settings it reads (`metadata_url`, `grace_period_s`, ...); the
    #: command refuses the others' options.
    takes: ClassVar[frozenset[str]]

    def next_notice(self, wait_s: float) -> Notice | None:
        """Block for about `wait_s` seconds at most; return a notice not returned before, or
        None. Raises `MetadataError` when the source cannot be read (the watcher retries)."""
        ...

    def check(self) -> list[str]:
        """Read the source once and describe what it says, one line per item, without
        waiting for a change; raises `MetadataError` when it cannot be read."""
        ...
