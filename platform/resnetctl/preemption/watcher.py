"""The watch loop: read a provider's notices and drain this Ray node when one comes.

The loop never gives up on a metadata service that does not answer (a network error is logged
and retried with a backoff of up to 30 s), never lets an unexpected error end it, and stops on
its own once this node's raylet no longer runs here (after `ray stop`, a crash, or the drain of
an idle node, whose raylet exits by itself). A final notice (the node goes away) is drained
once, with retries until its deadline; then the watcher's work is done and it returns, or, as a
Kubernetes preStop hook, holds until the deadline first. Advisory notices (AWS's rebalance
recommendation) are logged, and drained without a deadline only when asked.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from resnetctl.preemption.backoff import Backoff
from resnetctl.preemption.base import Provider
from resnetctl.preemption.metadata import MetadataError
from resnetctl.preemption.notice import Notice, utc
from resnetctl.preemption.ray_node import DrainFailed, DrainRequest

LOGGER_NAME = "resnetctl.preemption"
#: Drain attempts for a notice without a deadline before the watcher gives up on it.
ADVISORY_ATTEMPTS = 5


class Node(Protocol):
    """What the watcher needs of this Ray node (`ray_node.RayNode`)."""

    address: str
    node_id: str

    def running_here(self) -> bool: ...

    def drain(self, request: DrainRequest) -> None: ...


class Watcher:
    """Drains `node` on `provider`'s notices; `run()` returns the exit status."""

    def __init__(
        self,
        provider: Provider,
        node: Node,
        *,
        wait_s: float | None = None,
        drain_advisories: bool = False,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        log: logging.Logger | None = None,
    ) -> None:
        self.provider = provider
        self.node = node
        self.wait_s = provider.default_wait_s if wait_s is None else wait_s
        self.drain_advisories = drain_advisories
        self.clock = clock
        self.sleep = sleep
        self.log = log or logging.getLogger(LOGGER_NAME)

    def run(self) -> int:
        """Watch until a final notice has been handled (0 when drained, 1 when every attempt
        failed until its deadline) or this node's raylet has gone (0)."""
        self.log.info(
            "watching %s notices (%s) for Ray node %s of the cluster at %s",
            self.provider.name,
            self.provider.cadence.format(wait=self.wait_s),
            self.node.node_id,
            self.node.address,
        )
        backoff = Backoff()
        while True:
            try:
                if not self.node.running_here():
                    self.log.info("Ray node %s no longer runs here: stopping", self.node.node_id)
                    return 0
                notice = self.provider.next_notice(self.wait_s)
            except MetadataError as exc:
                self._pause(backoff, str(exc))
                continue
            except Exception as exc:  # a bug must not end the watch: log it and go on
                self.log.exception("unexpected error: %s", exc)
                self._pause(backoff, "unexpected error")
                continue
            backoff.reset()
            if notice is None:
                continue
            self.log.warning("notice: %s", notice.describe(self.clock()))
            if not notice.final and not self.drain_advisories:
                self.log.info(
                    "no drain for this advisory notice (--drain-on-rebalance would drain now, "
                    "without a deadline); still watching for the interruption notice"
                )
                continue
            drained = self.drain(notice)
            if not notice.final:
                continue
            if drained and self.provider.holds_until_deadline:
                self.hold(notice)
            return 0 if drained else 1

    def drain(self, notice: Notice) -> bool:
        """Drain this node for `notice`, retrying until its deadline (a few times without
        one); True once the GCS took the request."""
        backoff = Backoff(first=0.5, cap=5.0)
        attempts = 0
        while True:
            attempts += 1
            request = DrainRequest(
                self.node.address,
                self.node.node_id,
                f"{notice.source}: {notice.message}",
                notice.remaining_seconds(self.clock()),
            )
            try:
                self.node.drain(request)
            except DrainFailed as exc:
                failure = str(exc)
            except Exception as exc:  # never let one attempt end the watcher
                failure = f"{type(exc).__name__}: {exc}"
            else:
                deadline = "no deadline" if notice.deadline is None else utc(notice.deadline)
                self.log.warning(
                    "drained Ray node %s (deadline %s): %s",
                    self.node.node_id,
                    deadline,
                    request.command_line(),
                )
                return True
            past = notice.deadline is not None and self.clock() >= notice.deadline
            if past or (notice.deadline is None and attempts >= ADVISORY_ATTEMPTS):
                self.log.error("giving up the drain after %d attempt(s): %s", attempts, failure)
                return False
            if not self.node.running_here():
                self.log.error("Ray node %s stopped before it could be drained", self.node.node_id)
                return False
            delay = backoff.delay()
            self.log.warning(
                "drain attempt %d failed (%s); retrying in %g s", attempts, failure, delay
            )
            self.sleep(delay)

    def hold(self, notice: Notice) -> None:
        """Return at `notice`'s deadline, or earlier once this node's raylet has gone."""
        assert notice.deadline is not None
        self.log.info("holding until the deadline %s", utc(notice.deadline))
        while (left := notice.deadline - self.clock()) > 0:
            if not self.node.running_here():
                self.log.info("Ray node %s has stopped before the deadline", self.node.node_id)
                return
            self.sleep(min(1.0, left))
        self.log.info("deadline reached")

    def _pause(self, backoff: Backoff, why: str) -> None:
        delay = backoff.delay()
        self.log.warning("%s; retrying in %g s", why, delay)
        self.sleep(delay)


def setup_log(path: Path | None) -> logging.Logger:
    """The watcher's logger, writing UTC-stamped lines to `path` (appended) or to stderr."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    handler: logging.Handler
    if path is None:
        handler = logging.StreamHandler(sys.stderr)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path, encoding="utf-8")
    formatter = logging.Formatter(
        "%(asctime)s.%(msecs)03dZ %(levelname)s %(message)s", datefmt="%Y-%m-%dT%H:%M:%S"
    )
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    logger.handlers[:] = [handler]
    return logger
