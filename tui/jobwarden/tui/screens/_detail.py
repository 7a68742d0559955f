"""Enter on a job: everything about it, kept current, with its log followed as it grows."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import ClassVar

from jobwarden.contract import ExecutionMode, JobEventType, JobStatus
from jobwarden.sdk import JobwardenError
from jobwarden.tui._format import (
    STATUS_CLASS,
    STATUS_LABEL,
    error_kind_label,
    format_duration,
    format_time,
    lock_mode_label,
    progress_bar,
    status_label,
    status_of,
    struct_to_text,
)
from jobwarden.tui._model import JobRow
from jobwarden.tui.widgets import ConsoleFooter
from jobwarden.v1 import job_pb2, lock_service_pb2
from jobwarden.wire import timestamp_seconds as seconds
from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.content import Content
from textual.widgets import DataTable, Log, Static, TabbedContent, TabPane

from ._base import ConsoleScreen

#: seconds between two reloads of the job while its events stream in
_RELOAD_EVERY = 0.5
#: seconds between two polls of the log
_LOG_POLL = 1.0

_TABS = ("overview", "attempts", "timeline", "error", "locks", "logs")
#: below this width the id and action go on the status line, out of the summary's grid
_NARROW = 110


def _clock_time(value: float) -> str:
    if not value:
        return "—"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))


class JobDetailScreen(ConsoleScreen):
    """One job: summary, input and result, variables, attempts, timeline, error, locks and log."""

    NAV = "Jobs"
    CSS_PATH = "screens.tcss"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,backspace", "back", "Back", id="detail.back"),
        Binding("c", "cancel", "Cancel", id="detail.cancel"),
        Binding("r", "retry", "Retry", id="detail.retry"),
        Binding("R", "retry_step", "Retry from step", id="detail.retry_step"),
        Binding("right_square_bracket", "tab(1)", "Next tab", id="detail.next_tab"),
        Binding("left_square_bracket", "tab(-1)", "Previous tab", show=False, id="detail.previous_tab"),
        Binding("L", "show_tab('logs')", "Log", show=False, id="detail.logs"),
        Binding("E", "show_tab('error')", "Error", show=False, id="detail.error"),
    ]

    def __init__(self, job_id: str) -> None:
        super().__init__()
        self.job_id = job_id
        self.job: job_pb2.Job | None = None
        self.log_index = 0
        self._stale = True
        self._loaded = asyncio.Event()
        self._attempt_rows: list[tuple[str, ...]] = []
        self._last_event = 0

    def compose(self) -> ComposeResult:
        yield self.header()
        with Horizontal(id="detail-status-line"):
            yield Static("", id="detail-status")
            yield Static("", id="detail-status-id")
            yield Static("", id="detail-status-note")
        yield Static("Loading…", id="detail-summary")
        with TabbedContent(id="detail-tabs"):
            with TabPane("Overview", id="overview"), VerticalScroll():
                yield Static("", id="detail-overview")
            with TabPane("Attempts", id="attempts"):
                yield DataTable(id="detail-attempts", cursor_type="row", zebra_stripes=True)
            with TabPane("Timeline", id="timeline"):
                yield DataTable(id="detail-timeline", cursor_type="row", zebra_stripes=True)
            with TabPane("Error", id="error"), VerticalScroll():
                yield Static("", id="detail-error")
            with TabPane("Locks", id="locks"), VerticalScroll():
                yield Static("", id="detail-locks")
            with TabPane("Log", id="logs"):
                yield Log(id="detail-log", max_lines=20_000)
        yield ConsoleFooter()

    def on_mount(self) -> None:
        attempts = self.query_one("#detail-attempts", DataTable)
        attempts.add_columns("#", "Status", "Mode", "Worker", "Started", "Finished", "Ran", "Error")
        timeline = self.query_one("#detail-timeline", DataTable)
        timeline.add_columns("Seq", "Time", "Event", "Status", "Actor", "Detail")
        self._reload_loop()
        self._follow_log()
        # "12s ago" and "ran 3m07s" move with the clock, not only when the job changes.
        self.set_interval(1.0, self._tick, name="detail-tick")

    def _tick(self) -> None:
        if self.job is not None:
            self._show_summary(self.job)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return self.console.allows(action)

    # -- keeping current -------------------------------------------------------------------

    def job_changed(self) -> None:
        """The feed saw a change of this job: reload it soon."""
        self._stale = True

    @work(group="detail-reload", exclusive=True, exit_on_error=False)
    async def _reload_loop(self) -> None:
        while True:
            if self._stale:
                self._stale = False
                await self._reload()
            await asyncio.sleep(_RELOAD_EVERY)

    async def _reload(self) -> None:
        client = self.console.client
        try:
            job = await client.get(self.job_id)
            events = await client.events(self.job_id)
            locks = await client.locks()
        except JobwardenError as error:
            self.query_one("#detail-summary", Static).update(Text(f"Could not load {self.job_id}: {error}"))
            self._stale = True
            return
        self.job = job
        with self.app.batch_update():
            self._show_summary(job)
            self._show_overview(job)
            self._show_attempts(job)
            self._show_timeline(events)
            self._show_error(job)
            self._show_locks(job, locks)
        self._loaded.set()

    @work(group="detail-log", exclusive=True, exit_on_error=False)
    async def _follow_log(self) -> None:
        log = self.query_one("#detail-log", Log)
        while True:
            try:
                lines = await self.console.client.logs(self.job_id, after_index=self.log_index)
            except JobwardenError:
                lines = []
            if lines:
                log.write_lines(_log_line(line) for line in lines)
                self.log_index = lines[-1].index
            await asyncio.sleep(_LOG_POLL)

    # -- drawing --------------------------------------------------------------------------

    def _show_summary(self, job: job_pb2.Job) -> None:
        now = self.console.clock()
        chip = self.query_one("#detail-status", Static)
        status = status_of(job.status)
        chip.update(Content(f" {STATUS_LABEL[status]} " if status else " ? "))
        for candidate in JobStatus:
            chip.set_class(candidate is status, f"status--{STATUS_CLASS[candidate]}")
        note = ""
        if job.cancel_requested and status is not None and not status.terminal:
            note = "cancel requested"
        self.query_one("#detail-status-note", Static).update(Content(note))
        # Narrow, the whole id would not fit the summary's grid: it goes beside the status.
        narrow = self.size.width < _NARROW
        self.query_one("#detail-status-id", Static).update(
            Content(f"{job.id}  {job.action}" if narrow else "")
        )
        # A job keeps its last worker after the attempt ends: name it only while it holds the job.
        worker = self.console.worker_name(JobRow.from_proto(job).current_worker_id) or "—"
        created = f"{_clock_time(seconds(job.created_at))} ({format_time(seconds(job.created_at), now)})"
        finished = _clock_time(seconds(job.finished_at))
        if job.started_at.seconds:
            end = seconds(job.finished_at) or now
            finished += f" (ran {format_duration(end - seconds(job.started_at))})"
        labels = ", ".join(f"{key}={value}" for key, value in sorted(job.labels.items()))
        progress = f"{progress_bar(job.progress, 20)} {job.progress}%"
        if narrow:
            grid = _narrow_summary(job, progress, worker, created, finished, labels)
        else:
            grid = Table.grid(padding=(0, 2))
            grid.add_column(style="bold")
            grid.add_column()
            grid.add_column(style="bold")
            grid.add_column()
            grid.add_row("Job", job.id, "Action", job.action)
            grid.add_row("Progress", Text(progress), "Status reason", Text(job.status_reason or "—"))
            grid.add_row("Attempt", str(job.attempt), "Worker", worker)
            grid.add_row("Step", job.step or "—", "Message", Text(job.message or "—"))
            grid.add_row("Created", created, "Started", _clock_time(seconds(job.started_at)))
            grid.add_row("Finished", finished, "Priority", str(job.priority))
            if job.correlation_id or job.labels:
                grid.add_row("Correlation", job.correlation_id or "—", "Labels", Text(labels or "—"))
        self.query_one("#detail-summary", Static).update(grid)

    def _show_overview(self, job: job_pb2.Job) -> None:
        text = Text()

        def section(title: str, body: str) -> None:
            text.append(title, style="bold underline")
            text.append(f"\n{body}\n\n")

        section("Input", struct_to_text(job.input, present=job.HasField("input")))
        section("Result", struct_to_text(job.result, present=job.HasField("result")))
        section("Job variables", _mapping(job.job_variables))
        section("Workflow variables", _mapping(job.workflow_variables))
        steps = [
            f"{step.name}  ({_clock_time(seconds(step.finished_at))})"
            for step in job.checkpoint.completed_steps
        ]
        section("Finished steps", "\n".join(steps) if steps else "(none)")
        if job.HasField("retry_policy") and job.retry_policy.max_attempts:
            policy = job.retry_policy
            section(
                "Retry policy",
                f"max attempts {policy.max_attempts}, first interval "
                f"{policy.initial_interval.ToTimedelta().total_seconds():g}s, "
                f"backoff coefficient {policy.backoff_coefficient:g}",
            )
        deadlines = [
            f"{name}: {_clock_time(seconds(getattr(job.deadlines, name)))}"
            for name in ("start", "heartbeat", "takeover", "execution")
            if getattr(job.deadlines, name).seconds
        ]
        if deadlines:
            section("Deadlines", "\n".join(deadlines))
        text.rstrip()
        self.query_one("#detail-overview", Static).update(text)

    def _show_attempts(self, job: job_pb2.Job) -> None:
        rows: list[tuple[str, ...]] = []
        for attempt in job.attempts:
            started = seconds(attempt.started_at)
            finished = seconds(attempt.finished_at)
            error = ""
            if attempt.error.kind:
                error = f"{error_kind_label(attempt.error.kind)}: {attempt.error.message}"
            rows.append(
                (
                    str(attempt.number),
                    status_label(attempt.status),
                    _mode(attempt.mode),
                    self.console.worker_name(attempt.worker_id) or "—",
                    _clock_time(started),
                    _clock_time(finished),
                    format_duration(finished - started) if started and finished else "",
                    error,
                )
            )
        if rows != self._attempt_rows:
            self._attempt_rows = rows
            table = self.query_one("#detail-attempts", DataTable)
            table.clear()
            for row in rows:
                table.add_row(*row[:-1], Text(row[-1]))

    def _show_timeline(self, events: Sequence[job_pb2.JobEvent]) -> None:
        table = self.query_one("#detail-timeline", DataTable)
        follow = table.row_count == 0 or table.cursor_row >= table.row_count - 1
        for event in events:
            if event.sequence <= self._last_event:
                continue
            self._last_event = event.sequence
            change = status_label(event.job.status)
            if event.previous_status and event.previous_status != event.job.status:
                change = f"{status_label(event.previous_status)} → {change}"
            detail = event.reason or event.job.message
            if event.job.progress and not event.reason:
                detail = f"{event.job.progress}% {detail}"
            table.add_row(
                str(event.sequence),
                _clock_time(seconds(event.time)),
                _event_type(event.type),
                change,
                event.actor,
                Text(detail),
            )
        if follow and table.row_count:
            table.move_cursor(row=table.row_count - 1)

    def _show_error(self, job: job_pb2.Job) -> None:
        text = Text()
        if job.error.kind or job.error.message:
            _error_text(text, f"Attempt {job.attempt}", job.error)
        earlier = [
            attempt for attempt in job.attempts if attempt.error.kind and attempt.number != job.attempt
        ]
        for attempt in reversed(earlier):
            _error_text(text, f"Attempt {attempt.number}", attempt.error)
        if not text:
            text.append("No error.")
        self.query_one("#detail-error", Static).update(text)

    def _show_locks(self, job: job_pb2.Job, resources: Sequence[lock_service_pb2.ResourceLocks]) -> None:
        text = Text()
        if not job.locks:
            text.append("This job takes no locks.")
        by_resource = {resource.resource: resource for resource in resources}
        for lock in job.locks:
            resource = by_resource.get(lock.resource)
            holds = resource is not None and any(holder.job_id == job.id for holder in resource.holders)
            waits = resource is not None and any(waiter.job_id == job.id for waiter in resource.waiters)
            state = "held" if holds else "awaited" if waits else ("held" if job.locks_held else "not held")
            style = "green" if state == "held" else "yellow" if state == "awaited" else "dim"
            text.append(f"{lock.resource}", style="bold")
            text.append(f"  {lock_mode_label(lock.mode)}  ")
            text.append(state, style=style)
            text.append("\n")
            if resource is None:
                continue
            for holder in resource.holders:
                text.append(
                    f"    holder  {lock_mode_label(holder.mode):<9} {holder.job_id or holder.holder}\n"
                )
            for position, waiter in enumerate(resource.waiters, 1):
                who = waiter.job_id or waiter.holder
                text.append(f"    waiter {position} {lock_mode_label(waiter.mode):<9} {who}\n")
        self.query_one("#detail-locks", Static).update(text)

    # -- keys -----------------------------------------------------------------------------

    def _row(self) -> JobRow | None:
        row = self.console.store.jobs.get(self.job_id)
        if row is None and self.job is not None:
            row = JobRow.from_proto(self.job)
        return row

    def action_back(self) -> None:
        self.dismiss()

    def action_cancel(self) -> None:
        row = self._row()
        if row is not None:
            self.console.cancel_jobs([row])

    def action_retry(self) -> None:
        row = self._row()
        if row is not None:
            self.console.retry_jobs([row])

    def action_retry_step(self) -> None:
        self.console.retry_from_step(self.job_id)

    def action_tab(self, delta: int) -> None:
        tabs = self.query_one(TabbedContent)
        current = tabs.active or _TABS[0]
        tabs.active = _TABS[(_TABS.index(current) + delta) % len(_TABS)]

    def action_show_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab


def _narrow_summary(
    job: job_pb2.Job, progress: str, worker: str, created: str, finished: str, labels: str
) -> Table:
    """The summary on a narrow terminal: one line per row, the long values cut (the timeline and
    the tabs have them whole), the times never."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(no_wrap=True, overflow="ellipsis")
    grid.add_row("Progress", f"{progress}  attempt {job.attempt}  worker {worker}")
    grid.add_row("Reason", Text(job.status_reason or "—"))
    grid.add_row("Step", Text(f"{job.step or '—'}  message: {job.message or '—'}"))
    grid.add_row("Created", f"{created}  priority {job.priority}")
    grid.add_row("Started", _clock_time(seconds(job.started_at)))
    grid.add_row("Finished", finished)
    if job.correlation_id or job.labels:
        grid.add_row("Labels", Text(f"{labels or '—'}  correlation {job.correlation_id or '—'}"))
    return grid


def _log_line(line: job_pb2.LogLine) -> str:
    return f"{_clock_time(seconds(line.time))} {line.level or 'INFO':<7} #{line.attempt} {line.message}"


def _mapping(values: Mapping[str, str]) -> str:
    return "\n".join(f"{key} = {value}" for key, value in sorted(values.items())) or "(none)"


def _mode(value: int) -> str:
    try:
        return ExecutionMode(value).name.lower()
    except ValueError:
        return ""


def _event_type(value: int) -> str:
    try:
        return JobEventType(value).name.lower().replace("_", " ")
    except ValueError:
        return str(value)


def _error_text(text: Text, title: str, error: job_pb2.JobError) -> None:
    text.append(f"{title}: ", style="bold")
    text.append(error_kind_label(error.kind) or "error", style="bold red")
    if error.step:
        text.append(f"  in step {error.step}")
    text.append("  (retryable)" if error.retryable else "  (not retryable)", style="dim")
    text.append("\n")
    if error.message:
        text.append(error.message + "\n")
    if error.stack_trace:
        text.append("\n" + error.stack_trace.rstrip("\n") + "\n", style="dim")
    text.append("\n")
