"""The strip at the top of every screen: counts per status, throughput and the connection state."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from jobwarden.contract import JobStatus
from jobwarden.tui._feed import LinkState, LinkStatus
from jobwarden.tui._filter import JobFilter
from jobwarden.tui._format import STATUS_CLASS, STATUS_LABEL, format_duration
from textual import events
from textual.app import ComposeResult
from textual.containers import Horizontal
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

    def show(self, count: int | None, selected: bool) -> None:
        if self._shown == (count, selected, self.compact):
            return
        self._shown = (count, selected, self.compact)
        number = "-" if count is None else f"{count:,}"
        label = _SHORT_LABEL[self.status] if self.compact else STATUS_LABEL[self.status]
        self.update(Content(f"{int(self.status)} {label} {number}"))
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
    """Title, connection indicator, counts per status, throughput sparkline and the filter line."""

    def __init__(self, title: str) -> None:
        super().__init__()
        self._title = title
        # Kept rather than queried: a flush may come while the screen is being built or torn down.
        self._engine = Static("", id="header-engine")
        self._link = LinkIndicator("", id="header-link")
        self._counts = [StatusCount(status) for status in JobStatus]
        self._spark = Sparkline([0.0], id="header-spark")
        self._spark.tooltip = "jobs finished per second, over the last minute"
        self._rate = Static("", id="header-rate")
        self._filter = Static("", id="header-filter")

    def compose(self) -> ComposeResult:
        with Horizontal(id="header-top"):
            yield Static(Content(self._title), id="header-title")
            yield self._spark
            yield self._rate
            yield self._engine
            yield self._link
        with Horizontal(id="header-counts"):
            yield from self._counts
        yield self._filter

    def on_resize(self, event: events.Resize) -> None:
        # Full labels need about 130 columns; below, short ones, and no sparkline under 120.
        compact = event.size.width < 135
        for widget in self._counts:
            widget.compact = compact
        self._spark.display = event.size.width >= 120

    def show(
        self,
        *,
        engine: str,
        link: LinkStatus,
        frozen_pending: int | None,
        counts: Mapping[JobStatus, int] | None,
        job_filter: JobFilter,
        throughput: Sequence[int],
        notes: Sequence[str] = (),
    ) -> None:
        """Show the latest state; parts that did not change are not redrawn."""
        _update(self._engine, engine)
        self._link.show(link, frozen_pending)
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
        widget.update(Content(text))
