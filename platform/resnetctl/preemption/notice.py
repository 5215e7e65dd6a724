"""A cloud's notice that this node is about to go, and the arithmetic of its deadline.

Clouds state deadlines in wall-clock time (AWS: an ISO 8601 UTC time; GCP and Kubernetes: a
fixed period from the moment of the notice), while `ray drain-node` takes whole seconds from the
moment it runs. The seconds are rounded down, so that the deadline Ray passes on to the
training loop is never later than the cloud's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone


@dataclass(frozen=True)
class Notice:
    """What a provider announced.

    `source` names the signal (``aws spot/instance-action``), `message` is what the cloud said,
    passed on as the drain's reason message. `deadline` is when the node goes away (seconds
    since the epoch), None when the signal carries none. `final` notices announce the end of
    the node; advisory ones (AWS's rebalance recommendation) only a raised risk.
    """

    source: str
    message: str
    deadline: float | None
    final: bool = True

    def remaining_seconds(self, now: float) -> int | None:
        """Whole seconds from `now` to the deadline, rounded down and never negative; None
        without a deadline."""
        if self.deadline is None:
            return None
        return max(0, math.floor(self.deadline - now))

    def describe(self, now: float) -> str:
        """One line for the log: the source, the message and the time left."""
        left = self.remaining_seconds(now)
        when = "no deadline" if left is None else f"deadline in {left} s ({utc(self.deadline)})"
        return f"{self.source}: {self.message} ({when})"


def parse_utc(text: str) -> float:
    """Seconds since the epoch of an ISO 8601 time such as ``2026-12-06T08:22:00Z``; a time
    without a zone is taken as UTC, as the clouds' metadata services write it. Raises
    ValueError for anything else."""
    value = text.strip()
    if value.endswith(("Z", "z")):  # fromisoformat reads a "Z" only from Python 3.11 on
        value = value[:-1] + "+00:00"
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


def utc(seconds: float | None) -> str:
    """An epoch time as ``2026-12-06T08:22:00.250Z`` (milliseconds), for logs."""
    if seconds is None:
        return "none"
    moment = datetime.fromtimestamp(seconds, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
