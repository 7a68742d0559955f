"""The jobs table: a Line API widget that draws only the rows on screen.

Textual's ``DataTable`` rebuilds its row index on every removal and re-measures on every update;
at 10,000 rows and a thousand events a second that costs hundreds of milliseconds per refresh
(measured: 250 ``update_cell`` + 25 ``remove_row``/``add_row`` + a sort took ~450 ms of CPU). This
table keeps the order of the matching job ids in a list, renders a line only when it is on screen,
and caches each rendered line by the row's sequence, so a change to a row that is not visible
costs a dictionary write and a changed visible row redraws one line.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from jobwarden.contract import JobStatus, LockMode
from jobwarden.tui._filter import JobFilter, SortOrder
from jobwarden.tui._format import (
    STATUS_CLASS,
    STATUS_LABEL,
    format_duration,
    progress_bar,
    short_id,
    truncate,
)
from jobwarden.tui._model import Clock, JobRow, JobStore
from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding, BindingType
from textual.cache import LRUCache
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

#: rows from the end at which the table asks for older history
_NEAR_END = 5
_BAR_WIDTH = 10


@dataclass(frozen=True, slots=True)
class _Column:
    key: str
    title: str
    #: cells; 0 takes what is left
    width: int
    #: cells in the compact layout of a narrow terminal
    compact: int
    #: in the compact layout, columns with a higher number are dropped first (0: never)
    drop: int = 0
    right: bool = False
    compact_title: str = ""


# Least useful first when a narrow terminal has no room: locks (the Locks screen and the detail
# show them), then the worker, the attempt, the id, and the progress last.
_COLUMNS: tuple[_Column, ...] = (
    _Column("mark", "", 1, 1),
    _Column("status", "Status", 11, 9),
    _Column("id", "Job", 8, 8, drop=2),
    _Column("action", "Action", 14, 12),
    _Column("progress", "Progress", _BAR_WIDTH + 5, 4, drop=1, compact_title="Prog"),
    _Column("message", "Message", 0, 0),
    _Column("attempt", "Att", 3, 3, drop=3, right=True),
    _Column("worker", "Worker", 14, 10, drop=4),
    _Column("age", "Age", 7, 6, right=True),
    _Column("locks", "Locks", 16, 12, drop=5),
)
#: the message cells below which the full layout gives way to the compact one
_COMFORTABLE_MESSAGE = 20
#: the message cells below which the compact layout drops columns
_MIN_MESSAGE = 16


class JobTable(ScrollView, can_focus=True):
    """Jobs matching a filter, in a sort order, with a cursor and marks (see the module docstring)."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "jobtable--header",
        "jobtable--header-sorted",
        "jobtable--cursor",
        "jobtable--marked",
        "jobtable--dim",
        "jobtable--bar",
        "jobtable--bar-done",
        "jobtable--error",
        "jobtable--cancel",
        "jobtable--lock-held",
        "jobtable--lock-wait",
        "jobtable--empty",
        *(f"jobtable--status-{name}" for name in STATUS_CLASS.values()),
    }

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "cursor_up", "Up", show=False, id="table.up"),
        Binding("down", "cursor_down", "Down", show=False, id="table.down"),
        Binding("pageup", "page_up", "Page up", show=False, id="table.page_up"),
        Binding("pagedown", "page_down", "Page down", show=False, id="table.page_down"),
        Binding("home", "first", "First", show=False, id="table.first"),
        Binding("end", "last", "Last", show=False, id="table.last"),
        Binding("enter", "open", "Detail", id="table.open"),
    ]

    cursor: reactive[int] = reactive(0, always_update=True, repaint=False, init=False)

    class Opened(Message):
        """Enter (or a double click) on a job."""

        def __init__(self, job_id: str) -> None:
            super().__init__()
            self.job_id = job_id

    class NearEnd(Message):
        """The cursor came near the last row: time to page in older history."""

    def __init__(
        self,
        store: JobStore,
        *,
        clock: Clock,
        marks: set[str],
        worker_name: Callable[[str], str],
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self.store = store
        self.marks = marks
        self.filter = JobFilter()
        self.sort = SortOrder.NEWEST
        self.empty_text = "Connecting to the engine…"
        self._clock = clock
        self._worker_name = worker_name
        self._order: list[str] = []
        self._index: dict[str, int] = {}
        #: the rows as last applied: while the view is frozen the store moves on, this does not
        self._rows: dict[str, JobRow] = {}
        self._keys: dict[str, Any] = {}
        self._generation = -1
        self._lines: LRUCache[tuple[Any, ...], Strip] = LRUCache(2048)
        self._styles: dict[str, Style] = {}
        self._layouts: dict[int, list[tuple[_Column, int]]] = {}
        #: the age each row showed when last drawn, so the clock tick redraws only what changed
        self._ages: dict[str, str] = {}
        #: the operator put the cursor on a job (not the first row): it stays on that job, and
        #: that job stays where it is on screen, as rows come and go around it
        self.pinned = False

    # -- the view -------------------------------------------------------------------------

    @property
    def row_count(self) -> int:
        return len(self._order)

    @property
    def order(self) -> list[str]:
        """The ids shown, top to bottom (read-only)."""
        return self._order

    def row(self, job_id: str) -> JobRow | None:
        """The job as this table shows it (which, while frozen, may be behind the store)."""
        return self._rows.get(job_id)

    @property
    def cursor_id(self) -> str | None:
        if 0 <= self.cursor < len(self._order):
            return self._order[self.cursor]
        return None

    def set_view(self, job_filter: JobFilter, sort: SortOrder) -> None:
        self.filter = job_filter
        self.sort = sort
        self.rebuild()

    def rebuild(self) -> None:
        """Recompute the rows from the whole store (after a snapshot or a new filter or sort)."""
        keep = self.cursor_id
        key = self.sort.key()
        matches = self.filter.matches
        self._rows = {job_id: row for job_id, row in self.store.jobs.items() if matches(row)}
        self._keys = {job_id: key(row) for job_id, row in self._rows.items()}
        self._generation = self.store.generation
        self._reorder(keep, hold_view=False)

    def apply(self, dirty: Collection[str]) -> None:
        """Bring the view up to date with the rows in ``dirty``, touching only what changed."""
        if self._generation != self.store.generation:
            self.rebuild()
            return
        jobs = self.store.jobs
        keys = self._keys
        rows = self._rows
        key = self.sort.key()
        matches = self.filter.matches
        moved = False
        changed: list[int] = []
        for job_id in dirty:
            row = jobs.get(job_id)
            shown = job_id in keys
            if row is None or not matches(row):
                if shown:
                    del keys[job_id]
                    del rows[job_id]
                    moved = True
                continue
            rows[job_id] = row
            new_key = key(row)
            if not shown or keys[job_id] != new_key:
                keys[job_id] = new_key
                moved = True
            elif not moved:
                changed.append(self._index[job_id])
        if moved:
            self._reorder(self.cursor_id)
            return
        top = int(self.scroll_offset.y)
        bottom = top + self.size.height
        for index in changed:
            if top <= index < bottom:
                self.refresh_lines(index + 1)

    def row_text(self, job_id: str) -> str | None:
        """The text of a job's row as it would be drawn now, or ``None`` when it is not shown."""
        index = self._index.get(job_id)
        row = self._rows.get(job_id)
        if index is None or row is None:
            return None
        width = self.scrollable_content_region.width or 140
        worker = self._worker_name(row.current_worker_id) if row.current_worker_id else ""
        strip = self._row(
            row,
            width,
            self.rich_style,
            cursor=index == self.cursor,
            marked=job_id in self.marks,
            age=_age(row, self._clock()),
            worker=worker,
        )
        return strip.text

    def set_empty_text(self, text: str) -> None:
        """What the table says when no job is shown."""
        if text != self.empty_text:
            self.empty_text = text
            if not self._order:
                self.refresh()

    def refresh_ids(self, ids: Iterable[str]) -> None:
        """Redraw these rows if they are on screen (after marks change)."""
        for job_id in ids:
            index = self._index.get(job_id)
            if index is not None:
                self.refresh_lines(index + 1)

    def tick(self) -> None:
        """Redraw the rows on screen whose age shows a new value."""
        top = int(self.scroll_offset.y)
        jobs = self._rows
        now = self._clock()
        for index in range(top, min(top + self.size.height, len(self._order))):
            job_id = self._order[index]
            row = jobs.get(job_id)
            if row is not None and not row.terminal and self._ages.get(job_id) != _age(row, now):
                self.refresh_lines(index + 1)

    def move_to(self, job_id: str) -> bool:
        index = self._index.get(job_id)
        if index is None:
            return False
        self.cursor = index
        self.pinned = index > 0
        self._scroll_to_cursor()
        return True

    @property
    def _rows_visible(self) -> int:
        return max(1, self.size.height - 1)

    def _reorder(self, keep: str | None, *, hold_view: bool = True) -> None:
        """Sort the shown ids again; the cursor stays on ``keep`` if the operator put it there.

        With ``hold_view`` (rows changed under the operator's eyes) the cursor's job keeps its
        line on screen (or, with the cursor off screen, the top line keeps its job): new jobs
        arriving above it do not push it away. Otherwise the cursor is merely kept in view.
        """
        top = int(self.scroll_offset.y)
        anchor: tuple[str, int] | None = None
        if hold_view:
            index = self._index.get(keep) if keep is not None else None
            if self.pinned and index is not None and top <= index < top + self._rows_visible:
                anchor = (keep or "", index - top)
            elif 0 < top < len(self._order):
                anchor = (self._order[top], 0)
        keys = self._keys
        self._order = sorted(keys, key=keys.__getitem__)
        self._index = {job_id: index for index, job_id in enumerate(self._order)}
        if self.pinned and keep is not None and keep in self._index:
            self.set_reactive(JobTable.cursor, self._index[keep])
        elif not self.pinned:
            # Not placed by the operator: the cursor follows the first row (the newest job).
            self.set_reactive(JobTable.cursor, 0)
        elif self.cursor >= len(self._order):
            self.set_reactive(JobTable.cursor, max(0, len(self._order) - 1))
        self.virtual_size = Size(0, len(self._order) + 1)
        if anchor is not None and anchor[0] in self._index:
            self.scroll_to(y=self._index[anchor[0]] - anchor[1], animate=False, immediate=True)
        elif not hold_view and self.pinned:
            self._scroll_to_cursor()
        self.refresh()

    # -- keys and mouse -------------------------------------------------------------------

    def watch_cursor(self, old: int, new: int) -> None:
        self.refresh_lines(old + 1)
        self.refresh_lines(new + 1)

    def _move(self, delta: int) -> None:
        if not self._order:
            return
        self.cursor = max(0, min(len(self._order) - 1, self.cursor + delta))
        self.pinned = self.cursor > 0
        self._scroll_to_cursor()
        if delta > 0 and self.cursor >= len(self._order) - _NEAR_END:
            self.post_message(self.NearEnd())

    def action_cursor_up(self) -> None:
        self._move(-1)

    def action_cursor_down(self) -> None:
        self._move(1)

    def action_page_up(self) -> None:
        self._move(-max(1, self.size.height - 2))

    def action_page_down(self) -> None:
        self._move(max(1, self.size.height - 2))

    def action_first(self) -> None:
        self._move(-len(self._order))

    def action_last(self) -> None:
        self._move(len(self._order))

    def action_open(self) -> None:
        job_id = self.cursor_id
        if job_id is not None:
            self.post_message(self.Opened(job_id))

    async def _on_click(self, event: events.Click) -> None:
        index = int(self.scroll_offset.y) + event.y - 1
        if event.y == 0 or not 0 <= index < len(self._order):
            return
        self.cursor = index
        self.pinned = index > 0
        if event.chain >= 2:
            self.action_open()

    def _scroll_to_cursor(self) -> None:
        rows_visible = self._rows_visible
        top = int(self.scroll_offset.y)
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False, immediate=True)
        elif self.cursor >= top + rows_visible:
            self.scroll_to(y=self.cursor - rows_visible + 1, animate=False, immediate=True)

    # -- drawing --------------------------------------------------------------------------

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._styles.clear()
        self._lines.clear()

    def _on_resize(self, _: events.Resize) -> None:
        self._lines.clear()

    def _style(self, name: str) -> Style:
        style = self._styles.get(name)
        if style is None:
            style = self._styles[name] = self.get_component_rich_style(name, partial=True)
        return style

    def _layout(self, width: int) -> list[tuple[_Column, int]]:
        layout = self._layouts.get(width)
        if layout is not None:
            return layout
        fixed = sum(column.width + 1 for column in _COLUMNS if column.width)
        if width - fixed >= _COMFORTABLE_MESSAGE:
            layout = [(column, column.width or width - fixed) for column in _COLUMNS]
        else:
            # Narrow: every column shorter, then the least needed ones go until the message has room.
            columns = list(_COLUMNS)
            while True:
                fixed = sum(column.compact + 1 for column in columns if column.compact)
                if width - fixed >= _MIN_MESSAGE or not any(column.drop for column in columns):
                    break
                columns.remove(max(columns, key=lambda column: column.drop))
            flex = max(_MIN_MESSAGE, width - fixed)
            layout = [(column, column.compact or flex) for column in columns]
        self._layouts[width] = layout
        return layout

    @property
    def compact(self) -> bool:
        """Whether the table is in its narrow layout (shorter columns, some left out)."""
        width = self.scrollable_content_region.width or 140
        return any(cells != (column.width or cells) for column, cells in self._layout(width))

    @property
    def columns(self) -> list[str]:
        """The keys of the columns shown at the current width."""
        width = self.scrollable_content_region.width or 140
        return [column.key for column, _ in self._layout(width)]

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        base = self.rich_style
        if y == 0:
            return self._header(width, base)
        index = int(self.scroll_offset.y) + y - 1
        if not self._order:
            if y == 1:
                text = truncate(self.empty_text, width)
                return Strip([Segment(text, base + self._style("jobtable--empty"))]).adjust_cell_length(
                    width, base
                )
            return Strip.blank(width, base)
        if index >= len(self._order):
            return Strip.blank(width, base)
        job_id = self._order[index]
        row = self._rows.get(job_id)
        if row is None:
            return Strip.blank(width, base)
        now = self._clock()
        age = _age(row, now)
        if len(self._ages) > 4096:
            self._ages.clear()
        self._ages[job_id] = age
        worker = self._worker_name(row.current_worker_id) if row.current_worker_id else ""
        cursor = index == self.cursor
        marked = job_id in self.marks
        cache_key = (job_id, row.sequence, width, cursor, marked, age, worker)
        strip = self._lines.get(cache_key)
        if strip is None:
            strip = self._row(row, width, base, cursor=cursor, marked=marked, age=age, worker=worker)
            self._lines[cache_key] = strip
        return strip

    def _header(self, width: int, base: Style) -> Strip:
        header = base + self._style("jobtable--header")
        sorted_style = header + self._style("jobtable--header-sorted")
        segments: list[Segment] = []
        for column, cells in self._layout(width):
            title = column.title
            if cells != (column.width or cells) and column.compact_title:
                title = column.compact_title
            style = header
            if column.key == self.sort.column:
                title = f"{title}▾" if title else title
                style = sorted_style
            segments.append(Segment(_fit(title, cells, column.right), style))
            segments.append(Segment(" ", header))
        return Strip(segments).adjust_cell_length(width, header)

    def _row(
        self,
        row: JobRow,
        width: int,
        base: Style,
        *,
        cursor: bool,
        marked: bool,
        age: str,
        worker: str,
    ) -> Strip:
        style = base
        if marked:
            style += self._style("jobtable--marked")
        if cursor:
            style += self._style("jobtable--cursor")
        dim = style + self._style("jobtable--dim")
        segments: list[Segment] = []
        add = segments.append
        for column, cells in self._layout(width):
            key = column.key
            if key == "mark":
                add(Segment("●" if marked else " ", style))
            elif key == "status":
                chip = style + self._style(f"jobtable--status-{STATUS_CLASS[row.status]}")
                add(Segment(_fit(STATUS_LABEL[row.status], cells, center=True), chip))
            elif key == "id":
                add(Segment(_fit(short_id(row.id), cells), dim))
            elif key == "action":
                add(Segment(_fit(row.action, cells), style))
            elif key == "progress":
                segments.extend(self._progress(row, cells, style))
            elif key == "message":
                segments.extend(self._message(row, cells, style))
            elif key == "attempt":
                add(Segment(_fit(str(row.attempt) if row.attempt else "", cells, right=True), dim))
            elif key == "worker":
                add(Segment(_fit_tail(worker, cells), dim))
            elif key == "age":
                add(Segment(_fit(age, cells, right=True), dim))
            elif key == "locks":
                add(self._locks(row, cells, style))
            add(Segment(" ", style))
        return Strip(segments).adjust_cell_length(width, style)

    def _progress(self, row: JobRow, cells: int, style: Style) -> list[Segment]:
        if not row.shows_progress:
            return [Segment(" " * cells, style)]
        done = row.status is JobStatus.COMPLETED
        bar_style = style + self._style("jobtable--bar-done" if done else "jobtable--bar")
        percent = f"{row.progress:>3d}%"
        if cells < _BAR_WIDTH + 5:
            return [Segment(_fit(percent, cells, right=True), bar_style)]
        return [Segment(progress_bar(row.progress, _BAR_WIDTH), bar_style), Segment(f" {percent}", style)]

    def _message(self, row: JobRow, cells: int, style: Style) -> list[Segment]:
        prefix: list[Segment] = []
        used = 0
        if row.cancel_requested and not row.terminal:
            prefix.append(Segment("cancelling ", style + self._style("jobtable--cancel")))
            used = 11
        text, error = row.current_text()
        text_style = style + self._style("jobtable--error") if error else style
        return [*prefix, Segment(_fit(text, max(0, cells - used)), text_style)]

    def _locks(self, row: JobRow, cells: int, style: Style) -> Segment:
        if not row.locks:
            return Segment(" " * cells, style)
        resource, mode = row.locks[0]
        text = f"{resource} {'X' if mode is LockMode.EXCLUSIVE else 'S'}"
        if len(row.locks) > 1:
            text += f" +{len(row.locks) - 1}"
        if row.terminal:
            lock_style = style + self._style("jobtable--dim")
        elif row.locks_held:
            lock_style = style + self._style("jobtable--lock-held")
        else:
            lock_style = style + self._style("jobtable--lock-wait")
        return Segment(_fit(text, cells), lock_style)


def _age(row: JobRow, now: float) -> str:
    """How long it has waited or run, or, once finished, how long it ran."""
    if row.terminal:
        start = row.started_at or row.created_at
        end = row.finished_at or row.updated_at
        return format_duration(end - start) if end and start else ""
    since = row.started_at if row.status in (JobStatus.RUNNING, JobStatus.TIMED_OUT) else 0.0
    return format_duration(now - (since or row.created_at)) if (since or row.created_at) else ""


def _fit_tail(text: str, cells: int) -> str:
    """Like ``_fit``, but a long text keeps its end ("…worker-2"): names made alike differ there."""
    if cell_len(text) > cells > 1:
        text = "…" + text[-(cells - 1) :]
    return _fit(text, cells)


def _fit(text: str, cells: int, right: bool = False, center: bool = False) -> str:
    text = truncate(text, cells)
    pad = cells - cell_len(text)
    if pad <= 0:
        return text
    if center:
        left = pad // 2
        return " " * left + text + " " * (pad - left)
    return " " * pad + text if right else text + " " * pad
