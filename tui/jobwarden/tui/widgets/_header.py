"""The strip at the top of every screen: counts per status, throughput and the connection state."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from jobwarden.contract import TERMINAL_STATUSES, JobStatus
from jobwarden.tui._feed import LinkState, LinkStatus
from jobwarden.tui._filter import JobFilter
from jobwarden.tui._format import STATUS_CLASS, STATUS_LABEL, format_duration
from rich.cells import cell_len
from textual import events
from textual.app import ComposeResult
from textual.containers import Horizontal, HorizontalGroup
from textual.content import Content
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Sparkline, Static

_SHORT_LABEL = {
    JobStatus.QUEUED: "QUE",
    JobStatus.DELAYED: "DLY",
    JobStatus.WAITING_FOR_LOCK: "LCK",
    JobStatus.RUNNING: "RUN",
    JobStatus.TIMED_OUT: "T/O",
    JobStatus.COMPLETED: "DONE",
    JobStatus.FAILED: "FAIL",
    JobStatus.CANCELLED: "CNCL",
    JobStatus.REJECTED: "REJ",
}
#: below this width the navigation line uses its short form and the rate is hidden (the room goes
#: to the engine's name: the leader, its epoch and the standbys); the sparkline below _SPARK_FROM
NARROW = 110
_SPARK_FROM = 120


class StatusCount(Static):
    """One status and how many jobs have it; a click toggles the status in the filter."""

    class Toggled(Message):
        def __init__(self, status: JobStatus) -> None:
            super().__init__()
            self.status = status

    def __init__(self, status: JobStatus) -> None:
        super().__init__(classes=f"status-count status--{STATUS_CLASS[status]}")
        self.status = status
        self._shown: tuple[int | None, bool, bool] | None = None
        #: short labels, for narrow terminals
        self.compact = False
        self.tooltip = f"Press {int(status)} or click to filter by {STATUS_LABEL[status]}"

    def text(self, count: int | None, compact: bool) -> str:
        number = "-" if count is None else f"{count:,}"
        label = _SHORT_LABEL[self.status] if compact else STATUS_LABEL[self.status]
        return f"{int(self.status)} {label} {number}"

    def show(self, count: int | None, selected: bool) -> None:
        if self._shown == (count, selected, self.compact):
            return
        self._shown = (count, selected, self.compact)
        # Textual caches a widget's auto width by its container's width alone: without this a
        # count that grows a digit keeps its old width and shows cut ("8 CNCL 1" for 16).
        self.clear_cached_dimensions()
        self.update(Content(self.text(count, self.compact)))
        self.set_class(selected, "-selected")
        self.set_class(count == 0, "-zero")

    def on_click(self, event: events.Click) -> None:
        event.stop()
        self.post_message(self.Toggled(self.status))


class LinkIndicator(Static):
    """live / reconnecting / stale, in words and colour."""

    def show(self, status: LinkStatus, frozen_pending: int | None) -> None:
        state = status.state
        if state is LinkState.LIVE:
            text = "● live"
        elif status.loading:
            # Every unfinished job is listed before the view goes live: thousands take seconds.
            text = f"◌ loading jobs · {status.loading:,}"
        elif state is LinkState.CONNECTING:
            text = "◌ connecting…"
        elif state is LinkState.RECONNECTING:
            text = f"◌ reconnecting · {format_duration(status.for_seconds)}"
        else:
            text = f"◐ stale · silent {format_duration(status.for_seconds)}"
        if frozen_pending is not None:
            text = f"❄ frozen · {frozen_pending:,} pending  {text}"
        _update(self, text)
        tip = status.error
        if status.attempts:
            tip = f"{tip} (attempt {status.attempts})" if tip else f"attempt {status.attempts}"
        self.tooltip = tip or None
        for candidate in LinkState:
            self.set_class(candidate is state, f"-{candidate.value}")
        self.set_class(frozen_pending is not None, "-frozen")


class StatusHeader(Widget):
    """Title, connection indicator, counts per status, throughput sparkline and the filter line.

    ``titles`` is the navigation line in full and in its short form for narrow terminals. The
    counts never lose a digit: when the full labels do not fit on one line they are shortened,
    and when even the short ones do not fit the finished statuses go on a second line.
    """

    def __init__(self, titles: tuple[str, str]) -> None:
        super().__init__()
        self._titles = titles
        # Kept rather than queried: a flush may come while the screen is being built or torn down.
        self._title = Static(Content(titles[0]), id="header-title")
        self._engine = Static("", id="header-engine")
        self._link = LinkIndicator("", id="header-link")
        self._counts = [StatusCount(status) for status in JobStatus]
        self._spark = Sparkline([0.0], id="header-spark")
        self._spark.tooltip = "jobs finished per second, over the last minute"
        self._rate = Static("", id="header-rate")
        self._filter = Static("", id="header-filter")
        self._last_counts: Mapping[JobStatus, int] | None = None

    def compose(self) -> ComposeResult:
        with Horizontal(id="header-top"):
            yield self._title
            yield self._spark
            yield self._rate
            yield self._engine
            yield self._link
        with Horizontal(id="header-counts"):
            with HorizontalGroup(id="header-counts-open"):
                yield from (widget for widget in self._counts if widget.status not in TERMINAL_STATUSES)
            with HorizontalGroup(id="header-counts-finished"):
                yield from (widget for widget in self._counts if widget.status in TERMINAL_STATUSES)
        yield self._filter

    @property
    def stacked(self) -> bool:
        """Whether the counts take two lines (the terminal is too narrow for one)."""
        return self.has_class("-stacked")

    def on_resize(self, event: events.Resize) -> None:
        width = event.size.width
        _update(self._title, self._titles[0] if width >= NARROW else self._titles[1])
        self._spark.display = width >= _SPARK_FROM
        self._rate.display = width >= NARROW
        self._fit_counts(self._last_counts)

    def _fit_counts(self, counts: Mapping[JobStatus, int] | None) -> None:
        width = self.size.width
        if not width:
            return

        def cells(compact: bool, widgets: Sequence[StatusCount]) -> int:
            # Each count has a cell of padding either side, and the row one either end.
            total = 2
            for widget in widgets:
                count = None if counts is None else counts.get(widget.status, 0)
                total += len(widget.text(count, compact)) + 2
            return total

        open_counts = [widget for widget in self._counts if widget.status not in TERMINAL_STATUSES]
        finished = [widget for widget in self._counts if widget.status in TERMINAL_STATUSES]
        # Full labels on one line; else short ones; else the finished statuses on a second line.
        for compact, stacked in ((False, False), (True, False), (False, True), (True, True)):
            if stacked:
                needed = max(cells(compact, open_counts), cells(compact, finished))
            else:
                needed = cells(compact, self._counts)
            if needed <= width:
                break
        for widget in self._counts:
            widget.compact = compact
        self.set_class(stacked, "-stacked")

    def show(
        self,
        *,
        engine: str | Sequence[str],
        link: LinkStatus,
        frozen_pending: int | None,
        counts: Mapping[JobStatus, int] | None,
        job_filter: JobFilter,
        throughput: Sequence[int],
        notes: Sequence[str] = (),
        engine_tip: str | None = None,
    ) -> None:
        """Show the latest state; parts that did not change are not redrawn.

        ``engine`` is the engine's name, or its forms from longest to shortest (the cluster's
        leader, epoch and standbys): the longest that fits is shown.
        """
        # The engine's name takes the room the rest leaves; cut, it keeps its end (the port).
        forms = [engine] if isinstance(engine, str) else list(engine) or [""]
        room = self._engine.content_region.width
        text = forms[-1]
        for form in forms:
            if not room or cell_len(form) <= room:
                text = form
                break
        if room and cell_len(text) > room:
            text = "…" + text[-(room - 1) :] if room > 1 else ""
        _update(self._engine, text)
        if self._engine.tooltip != engine_tip:
            self._engine.tooltip = engine_tip
        self._link.show(link, frozen_pending)
        self._last_counts = counts
        self._fit_counts(counts)
        for widget in self._counts:
            count = None if counts is None else counts.get(widget.status, 0)
            widget.show(count, widget.status in job_filter.statuses)
        data = [float(value) for value in throughput] or [0.0]
        if list(self._spark.data or []) != data:
            self._spark.data = data
        _update(self._rate, f"{sum(throughput):,}/min")
        parts = []
        if job_filter.active:
            parts.append(f"filter: {job_filter.describe()}")
        parts.extend(notes)
        _update(self._filter, "  ·  ".join(parts))
        self._filter.display = bool(parts)


def _update(widget: Static, text: str) -> None:
    """Update a Static only when its text changes (an update costs a layout)."""
    if getattr(widget, "_jobwarden_text", None) != text:
        widget._jobwarden_text = text  # type: ignore[attr-defined]
        widget.clear_cached_dimensions()  # see StatusCount.show
        widget.update(Content(text))
