"""A progress bar of images for the commands that read many (`eval`, `analyze`, `predict`):
images done of the total, images per second, elapsed time and time left; one bar per protocol
or run. Drawn by rich on stderr, and only on a terminal: piped or captured output (CI, `--json`
into a program) gets no bar and no control codes."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class _Rate(ProgressColumn):
    """Images per second since the bar started (a windowed speed jumps with every batch)."""

    def render(self, task: Any) -> Text:
        elapsed = task.elapsed or 0.0
        rate = task.completed / elapsed if elapsed > 0 else 0.0
        return Text(f"{rate:,.1f} img/s")


class ImageBars:
    """`with ImageBars(console) as bars: bars.update("center", done, total)`."""

    def __init__(self, console: Console, *, enabled: bool = True) -> None:
        self.live = enabled and console.is_terminal
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            _Rate(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,  # the results table replaces the bars
            disable=not self.live,
        )
        self._tasks: dict[str, Any] = {}
        self._status: Any = None

    def __enter__(self) -> ImageBars:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def status(self, text: str) -> None:
        """A line saying what happens before the first image (a pulsing bar, no count); the
        first bar of images replaces it."""
        if self._status is None:
            self._status = self.progress.add_task(text, total=None)
        else:
            self.progress.update(self._status, description=text)

    def update(self, name: str, done: int, total: int | None = None) -> None:
        """Bar `name` (created on first use) at `done` images of `total`."""
        if self._status is not None:
            self.progress.remove_task(self._status)
            self._status = None
        if name not in self._tasks:
            self._tasks[name] = self.progress.add_task(name, total=total)
        self.progress.update(self._tasks[name], completed=done, total=total)

    def counter(self, name: str, total: int | None) -> Any:  # Callable[[int], None]
        """A function that adds n images to bar `name`, for code that reports per batch."""
        done = 0
        self.update(name, 0, total)

        def advance(n: int) -> None:
            nonlocal done
            done += n
            self.update(name, done, total)

        return advance
