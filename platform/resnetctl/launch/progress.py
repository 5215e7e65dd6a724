"""The driver's live view of training on stderr, fed through a Ray queue (never blocking the
worker): step events from rank 0 move a progress bar of the epoch in flight, drawn on a terminal
only; the Ray Train controller's events (`tracking.callback`, `launch.hang`) print one line per
finished epoch, one when workers fail and one naming a rank that hung, terminal or not, so a log
file or CI gets the same plain lines."""

from __future__ import annotations

import math
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

from resnetctl.tracking.events import EPOCH_EVENT, NOTE_EVENT, WORKER_ERROR_EVENT


def progress_queue(maxsize: int = 256) -> Any:
    """The `ray.util.queue.Queue` the workers and the controller send progress through, its
    actor kept on this driver's node. Left to Ray, the actor needs a CPU to be placed and may
    land on a worker node (always, under a head with no CPUs); losing that node (a reclaimed
    spot instance) would silence the bar and the epoch lines for the rest of the run, which
    itself goes on. Ray Train pins its controller to the driver's node the same way."""
    import ray
    from ray.util.queue import Queue
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    return Queue(maxsize=maxsize, actor_options={"num_cpus": 0, "scheduling_strategy": here})


def clock(seconds: float) -> str:
    """`42s`, `3m05s`, `1h02m`."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class ProgressView:
    """A bar for the epoch in flight (steps, images/s, loss, ETA) on a terminal, and a line
    per finished epoch: train and validation error, images/s, its time and the time left."""

    def __init__(
        self, length: tuple[int, str], console: Console | None = None, *, live: bool = True
    ):
        self.length = length
        self.console = console or Console(stderr=True)
        # Without a terminal a bar is control codes or, at the end, a copy of every bar.
        self.live = live and self.console.is_terminal
        self.progress = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[ips]:>7.1f} img/s  loss {task.fields[loss]:.4f}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,  # a finished epoch leaves its line, not its bar
            # What the process prints belongs to the job's log (launch.joblog), not above the bar.
            redirect_stdout=False,
            redirect_stderr=False,
            disable=not self.live,
        )
        self.tasks: dict[int, Any] = {}
        self.first_event_at: float | None = None  # time.monotonic() of the first step
        self.steps_per_epoch = 0
        self.epoch_seconds: list[float] = []
        self._epoch_began: float | None = None
        self._last_error: str | None = None

    def __enter__(self) -> ProgressView:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def update(self, event: dict[str, Any]) -> None:
        """Apply one event: a step of rank 0, or an epoch the controller saw every rank finish."""
        if event.get("kind") == EPOCH_EVENT:
            self._epoch_done(event)
            return
        if event.get("kind") == WORKER_ERROR_EVENT:
            line = self.worker_error_line(event)
            if line != self._last_error:  # one failure, however often the controller polls it
                self._say(line)
            self._last_error = line
            return
        if event.get("kind") == NOTE_EVENT:
            self._say(str(event.get("line", "")))
            return
        now = time.monotonic()
        if self.first_event_at is None:
            self.first_event_at = now
        if self._epoch_began is None:
            self._epoch_began = now
        self.steps_per_epoch = max(self.steps_per_epoch, int(event.get("steps") or 0))
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

    def total_epochs(self) -> int | None:
        """The run's number of epochs; in iterations, once a step told the epoch's length."""
        length, unit = self.length
        if unit == "epoch":
            return int(length)
        return math.ceil(length / self.steps_per_epoch) if self.steps_per_epoch else None

    def epoch_line(self, event: dict[str, Any], seconds: float) -> str:
        """`epoch 3/8  train error 21.88%  val error 12.50%  623 img/s  9.1s  45s left`."""
        epoch = int(event["epoch"])
        total = self.total_epochs()
        mean = sum(self.epoch_seconds) / len(self.epoch_seconds) if self.epoch_seconds else 0.0
        left = clock(mean * (total - epoch)) if total else "?"
        nan = float("nan")
        return (
            f"epoch {epoch}/{total or '?'}"
            f"  train error {float(event.get('train_top1_error', nan)):.2f}%"
            f"  val error {float(event.get('val_top1_error', nan)):.2f}%"
            f"  {float(event.get('images_per_second', nan)):.0f} img/s"
            f"  {clock(seconds)}  {left} left"
        )

    @staticmethod
    def worker_error_line(event: dict[str, Any]) -> str:
        """`worker failed (rank 1): ActorDiedError: …`; the traceback is in the job's log."""
        ranks = ", ".join(str(rank) for rank in event.get("ranks", ()))
        who = "workers failed (ranks" if "," in ranks else "worker failed (rank"
        return f"{who} {ranks}): {event.get('error', '')}"

    def _say(self, line: str) -> None:
        # A line above the live bar, or a plain line without a terminal.
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def _epoch_done(self, event: dict[str, Any]) -> None:
        now = time.monotonic()
        self._last_error = None
        # From the previous epoch's end (or this job's first step): validation and the
        # checkpoint count, as they do for the time left.
        seconds = now - (self._epoch_began if self._epoch_began is not None else now)
        self._epoch_began = now
        self.epoch_seconds.append(seconds)
        task = self.tasks.pop(int(event["epoch"]), None)
        if task is not None:
            self.progress.remove_task(task)
        self._say(self.epoch_line(event, seconds))

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
