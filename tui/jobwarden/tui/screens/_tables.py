"""Screens that are one table (workers, locks, actions, work orders) kept in step by diff, Dolphie-style."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from jobwarden.sdk import JobwardenError
from rich.text import Text
from textual import events, work
from textual.app import ComposeResult
from textual.css.query import NoMatches
from textual.widgets import DataTable, Static

from ._base import ConsoleScreen

Cell = str | Text


def sync_table(
    table: DataTable[Any], rows: Mapping[str, Sequence[Cell]], *, sort_by: tuple[str, ...]
) -> None:
    """Make ``table`` show ``rows`` (key -> cells): drop stale rows, add new ones, ``update_cell``
    only where a value changed, and sort (by the ``sort_by`` columns) only if the order may have moved."""
    columns = [str(column.key.value) for column in table.ordered_columns]
    present = {str(key.value) for key in table.rows}
    moved = False
    for key in present - rows.keys():
        table.remove_row(key)
    for key, cells in rows.items():
        if key not in present:
            table.add_row(*cells, key=key)
            moved = True
            continue
        for column, value in zip(columns, cells, strict=False):
            if table.get_cell(key, column) != value:
                table.update_cell(key, column, value, update_width=True)
                moved = moved or column in sort_by
    if moved:
        table.sort(*sort_by, key=_sort_key)


def _sort_key(values: Any) -> Any:
    if isinstance(values, tuple):
        return tuple(str(value).lower() for value in values)
    return str(values).lower()


class TableScreen(ConsoleScreen):
    """A screen that is one table under a summary line.

    Its ``COLUMNS`` (key, title) are laid out on the table by ``set_columns``, or its
    ``NARROW_COLUMNS`` while the terminal is narrower than ``NARROW_BELOW`` (``self.narrow`` says
    which, for its cells)."""

    COLUMNS: ClassVar[Sequence[tuple[str, str]]] = ()
    NARROW_COLUMNS: ClassVar[Sequence[tuple[str, str]]] = ()
    NARROW_BELOW: ClassVar[int] = 0

    def __init__(self) -> None:
        super().__init__()
        self.narrow = False

    def table_layout(self, name: str) -> ComposeResult:
        """The header, the summary line ``#NAME-summary`` and the table ``#NAME``; the screen's
        ``compose`` adds its footer."""
        yield self.header()
        yield Static("", id=f"{name}-summary", classes="summary")
        yield DataTable(id=name, cursor_type="row", zebra_stripes=True)

    def set_columns(self, narrow: bool) -> None:
        """Lay out ``table`` with its wide or its narrow columns."""
        self.narrow = narrow
        table = self.query_one(DataTable)
        table.clear(columns=True)
        for key, title in self.NARROW_COLUMNS if narrow else self.COLUMNS:
            table.add_column(title, key=key)


class PolledScreen(TableScreen):
    """A table screen that asks the engine for its rows every ``POLL_EVERY`` seconds while it is shown."""

    POLL_EVERY = 1.0

    def __init__(self) -> None:
        super().__init__()
        self.error = ""
        self.polls = 0

    def on_mount(self) -> None:
        if self.COLUMNS:
            self.set_columns(self.app.size.width < self.NARROW_BELOW)

    def on_resize(self, event: events.Resize) -> None:
        narrow = event.size.width < self.NARROW_BELOW
        if self.COLUMNS and narrow != self.narrow:
            self.set_columns(narrow)
            self._show()

    def on_screen_resume(self) -> None:
        # Textual calls the base class's handler too (it walks the MRO): no super() here.
        self._poll()

    def on_screen_suspend(self) -> None:
        self.workers.cancel_group(self, "poll")

    @work(group="poll", exclusive=True, exit_on_error=False)
    async def _poll(self) -> None:
        while True:
            try:
                await self.load()
                self.error = ""
            except JobwardenError as error:
                self.error = str(error)
            self.polls += 1
            self._show()
            await asyncio.sleep(self.POLL_EVERY)

    async def load(self) -> None:
        """Fetch from the engine (may raise ``JobwardenError``)."""

    def show(self) -> None:
        """Draw what ``load`` fetched, through the app's filter."""

    def filter_changed(self) -> None:
        self._show()

    def _show(self) -> None:
        # Not composed yet (or going away): the next poll draws it.
        with contextlib.suppress(NoMatches):
            self.show()
