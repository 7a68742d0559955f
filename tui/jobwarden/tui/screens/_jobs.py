"""The home screen: every job, live."""

from __future__ import annotations

from typing import ClassVar

from jobwarden.tui._model import JobRow
from jobwarden.tui.widgets import ConsoleFooter, JobTable
from textual.app import ComposeResult
from textual.binding import Binding, BindingType

from ._base import ConsoleScreen


class JobsScreen(ConsoleScreen):
    """The jobs table under the status header; the app feeds it from the store on every flush."""

    NAV = "Jobs"
    CSS_PATH = "screens.tcss"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "sort", "Sort", id="jobs.sort"),
        Binding("space", "mark", "Mark", id="jobs.mark"),
        Binding("escape", "unmark", "Unmark all", show=False, id="jobs.unmark"),
        Binding("c", "cancel", "Cancel", id="jobs.cancel"),
        Binding("r", "retry", "Retry", id="jobs.retry"),
        Binding("R", "retry_step", "Retry from step", show=False, id="jobs.retry_step"),
        Binding("F", "retry_failed", "Retry all failed", show=False, id="jobs.retry_failed"),
        Binding("p", "pause", "Pause action", id="jobs.pause"),
        Binding("o", "older", "Load older", show=False, id="jobs.older"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._table: JobTable | None = None

    def compose(self) -> ComposeResult:
        console = self.console
        yield self.header()
        self._table = JobTable(
            console.store,
            clock=console.clock,
            marks=console.marks,
            worker_name=console.worker_name,
            id="jobs",
        )
        yield self._table
        yield ConsoleFooter()

    @property
    def table(self) -> JobTable:
        if self._table is None:
            raise RuntimeError("the jobs screen is not composed yet")
        return self._table

    @property
    def ready(self) -> bool:
        """Whether the table is on screen and can take updates."""
        return self._table is not None and self._table.is_mounted

    def on_mount(self) -> None:
        self.table.set_view(self.console.job_filter, self.console.sort)
        self.table.focus()

    def filter_changed(self) -> None:
        if self._table is None:
            return
        table = self._table
        console = self.console
        if table.filter != console.job_filter or table.sort != console.sort:
            table.set_view(console.job_filter, console.sort)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return self.console.allows(action)

    def _current(self) -> JobRow | None:
        job_id = self.table.cursor_id
        return self.table.row(job_id) if job_id else None

    def _chosen(self) -> list[JobRow]:
        """The marked jobs, or else the one under the cursor, as the operator sees them.

        The engine judges each request against the job as it is; a view that is behind (frozen)
        gets the engine's refusal, which the console shows.
        """
        marks = self.console.marks
        if marks:
            table = self.table
            rows = [row for job_id in table.order if job_id in marks and (row := table.row(job_id))]
            # Marked jobs filtered out of view still count: the operator marked them.
            shown = {row.id for row in rows}
            store = self.console.store
            rows.extend(
                store.jobs[job_id] for job_id in sorted(marks) if job_id not in shown and job_id in store.jobs
            )
            return rows
        current = self._current()
        return [current] if current else []

    def on_job_table_opened(self, message: JobTable.Opened) -> None:
        message.stop()
        self.console.open_job(message.job_id)

    def on_job_table_near_end(self, message: JobTable.NearEnd) -> None:
        message.stop()
        self.console.load_older(quiet=True)

    def action_sort(self) -> None:
        self.console.set_sort(self.console.sort.next())

    def action_mark(self) -> None:
        job_id = self.table.cursor_id
        if job_id is None:
            return
        marks = self.console.marks
        marks.symmetric_difference_update({job_id})
        self.table.refresh_ids([job_id])
        self.table.action_cursor_down()
        self.console.refresh_header()

    def action_unmark(self) -> None:
        marks = self.console.marks
        if marks:
            ids = list(marks)
            marks.clear()
            self.table.refresh_ids(ids)
            self.console.refresh_header()

    def action_cancel(self) -> None:
        self.console.cancel_jobs(self._chosen())

    def action_retry(self) -> None:
        self.console.retry_jobs(self._chosen())

    def action_retry_step(self) -> None:
        current = self._current()
        if current is not None:
            self.console.retry_from_step(current.id)

    def action_retry_failed(self) -> None:
        self.console.retry_all_failed()

    def action_pause(self) -> None:
        current = self._current()
        if current is None:
            self.notify("No job selected: pick a job of the action to pause.", severity="warning")
            return
        self.console.toggle_pause(current.action)

    def action_older(self) -> None:
        self.console.load_older(quiet=False)
