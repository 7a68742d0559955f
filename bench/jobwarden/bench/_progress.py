"""The progress bar a scenario shows while it runs (on stderr, and only on a terminal)."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any, Protocol

__all__ = ["NullProgress", "Progress", "RichProgress", "make_progress"]


class Progress(Protocol):
    def phase(self, description: str, total: float | None = None) -> None:
        """Start a new step (``total`` None: an indefinite one)."""

    def update(self, completed: float) -> None:
        """How far the current step is."""

    def note(self, text: str) -> None:
        """A line worth keeping above the bar (a warning, a skipped part)."""


class NullProgress:
    """No display; notes go to stderr."""

    def phase(self, description: str, total: float | None = None) -> None:
        pass

    def update(self, completed: float) -> None:
        pass

    def note(self, text: str) -> None:
        print(text, file=sys.stderr)


class RichProgress:
    """A ``rich`` progress bar; use it as a context manager."""

    def __init__(self, title: str) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            SpinnerColumn,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
        )
        from rich.progress import Progress as _Progress

        self._console = Console(stderr=True)
        # Four refreshes a second: the bar shares its process with the engine being measured.
        self._progress = _Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.fields[title]}[/] {task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            console=self._console,
            transient=True,
            refresh_per_second=4,
        )
        self._task = self._progress.add_task("starting", total=None, title=title)

    def __enter__(self) -> RichProgress:
        self._progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._progress.stop()

    @property
    def console(self) -> Any:
        """The ``rich`` console the bar draws on: print through it to keep output above the bar."""
        return self._console

    def phase(self, description: str, total: float | None = None) -> None:
        self._progress.reset(self._task, description=description, total=total, completed=0)

    def update(self, completed: float) -> None:
        self._progress.update(self._task, completed=completed)

    def note(self, text: str) -> None:
        self._progress.console.print(text)


def make_progress(title: str, enabled: bool) -> RichProgress | None:
    """A progress bar when ``enabled`` and stderr is a terminal; None otherwise."""
    if not enabled or not sys.stderr.isatty():
        return None
    return RichProgress(title)
