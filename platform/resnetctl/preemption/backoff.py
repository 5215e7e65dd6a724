"""Waiting between attempts at something that failed: doubling delays up to a cap."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delays of `first`, 2 x `first`, 4 x `first`, ... seconds, at most `cap`; `reset()`
    after a success starts again from `first`."""

    first: float = 1.0
    cap: float = 30.0
    _next: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        if not 0 < self.first <= self.cap:
            raise ValueError(f"backoff needs 0 < first <= cap, got {self.first} and {self.cap}")
        self._next = self.first

    def delay(self) -> float:
        """The delay before the next attempt; each call doubles the following one."""
        current = self._next
        self._next = min(self.cap, self._next * 2)
        return current

    def reset(self) -> None:
        """Start again from the first delay."""
        self._next = self.first
