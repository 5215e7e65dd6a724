"""The driver's live view of training: a rich progress bar per epoch on stderr, fed by rank 0
through a Ray queue (never blocking the worker)."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class ProgressView:
    """One bar per epoch: steps done, images/s, loss, ETA."""

    def __init__(self, length: tuple[int, str], console: Console | None = None):
        self.length = length
        self.progress = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[ips]:>7.1f} img/s  loss {task.fields[loss]:.4f}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console or Console(stderr=True),
            transient=False,
        )
        self.tasks: dict[int, Any] = {}
        self.first_event_at: float | None = None  # time.monotonic() of the first step

    def __enter__(self) -> ProgressView:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def update(self, event: dict[str, Any]) -> None:
        """Apply one progress event from rank 0."""
        if self.first_event_at is None:
            self.first_event_at = time.monotonic()
        epoch = int(event.get("epoch", 0))
        if epoch not in self.tasks:
            self.tasks[epoch] = self.progress.add_task(
                "train", total=event.get("steps"), epoch=epoch, ips=0.0, loss=float("nan")
            )
        self.progress.update(
            self.tasks[epoch],
            completed=event.get("step_in_epoch", event.get("step", 0)),
            total=event.get("steps"),
            ips=float(event.get("images_per_second", 0.0)),
            loss=float(event.get("loss", float("nan"))),
        )

    def drain(self, queue: Any) -> None:
        """Apply every event waiting in the queue."""
        while True:
            try:
                events = queue.get_nowait_batch(max(1, queue.qsize()))
            except Exception:  # empty queue, or its actor ended with the job
                return
            if not events:
                return
            for event in events:
                self.update(event)
