"""``/``: the filter dialog (words and any number of statuses), applied as you type."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from jobwarden.contract import JobStatus
from jobwarden.tui._filter import FilterError, JobFilter
from jobwarden.tui._format import STATUS_LABEL
from rich.segment import Segment
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.strip import Strip
from textual.widgets import Input, SelectionList, Static

_HINT = (
    "Words match id, action, message, worker, error, step, labels (key=value) and locks. "
    "“status:failed,running” ticks statuses. Enter applies, Escape restores the previous filter."
)


class StatusChecklist(SelectionList[int]):
    """The statuses to show: a tick on the chosen ones, nothing on the others.

    ``SelectionList`` marks every line with an X and tells them apart by colour alone, which
    reads as "all ticked" in many terminals (and in any text capture).
    """

    def render_line(self, y: int) -> Strip:
        line = super().render_line(y)
        segments = list(line)
        if len(segments) < 4:
            return line
        index = int(self.scroll_offset.y) + y
        try:
            value = self.get_option_at_index(index).value
        except Exception:
            return line
        button = segments[1]
        segments[1] = Segment("✓" if value in self.selected else " ", button.style, button.control)
        return Strip(segments, line.cell_length)


class FilterScreen(ModalScreen[JobFilter | None]):
    """Edits a ``JobFilter``; the result is the new filter, or ``None`` to keep the old one."""

    CSS_PATH = "dialogs.tcss"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "restore", "Back", id="filter.back"),
        Binding("ctrl+u", "clear", "Clear", id="filter.clear"),
    ]

    def __init__(self, current: JobFilter, preview: Callable[[JobFilter], None]) -> None:
        super().__init__()
        self._current = current
        self._preview = preview

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static("Filter jobs", id="dialog-title")
            yield Input(self._current.text, placeholder="words…  status:failed,running", id="filter-text")
            yield Static(Content(""), id="filter-error")
            yield StatusChecklist(
                *(
                    (f"{int(status)}  {STATUS_LABEL[status]}", int(status), status in self._current.statuses)
                    for status in JobStatus
                ),
                id="filter-statuses",
            )
            yield Static(Content(_HINT), id="dialog-body")

    def on_mount(self) -> None:
        field = self.query_one(Input)
        # Headless (tests, benchmarks) a blinking cursor only makes pictures differ.
        field.cursor_blink = not self.app.is_headless
        field.focus()

    def _read(self) -> JobFilter | None:
        text = self.query_one(Input).value
        checklist = self.query_one(StatusChecklist)
        ticked = frozenset(JobStatus(value) for value in checklist.selected)
        error = self.query_one("#filter-error", Static)
        try:
            job_filter = JobFilter.parse(text, ticked)
        except FilterError as problem:
            error.update(Content(str(problem)))
            return None
        error.update(Content(""))
        # Statuses typed as "status:failed" are ticked too: the list shows what the filter is.
        for status in job_filter.statuses - ticked:
            checklist.select(int(status))
        return job_filter

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self._show()

    def on_selection_list_selected_changed(self, event: SelectionList.SelectedChanged[int]) -> None:
        event.stop()
        self._show()

    def _show(self) -> None:
        job_filter = self._read()
        if job_filter is not None:
            self._preview(job_filter)

    def action_restore(self) -> None:
        self._preview(self._current)
        self.dismiss(None)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        job_filter = self._read()
        if job_filter is not None:
            self.dismiss(job_filter)

    def action_clear(self) -> None:
        self.query_one(Input).value = ""
        self.query_one(StatusChecklist).deselect_all()
