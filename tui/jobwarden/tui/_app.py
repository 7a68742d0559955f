"""The console application: the feed, the flush that draws it, the screens and the operations."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import grpc
from jobwarden.contract import JobStatus, Limits
from jobwarden.sdk import JobClient, JobwardenError
from jobwarden.v1 import cluster_service_pb2, executor_service_pb2, job_service_pb2
from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.screen import ModalScreen, Screen

from ._cluster import cluster_forms, cluster_tip
from ._feed import JobFeed, LinkState, LinkStatus
from ._filter import JobFilter, SortOrder
from ._format import STATUS_LABEL, short_id
from ._model import Clock, JobRow, JobStore, StatusCounts, counts_by_status
from ._operations import Selection, can_cancel, can_retry, describe_rows, run_all
from .screens import (
    ActionsScreen,
    ConfirmScreen,
    ConsoleScreen,
    FilterScreen,
    HelpScreen,
    JobDetailScreen,
    JobsScreen,
    LocksScreen,
    StepPickerScreen,
    WorkersScreen,
    WorkOrdersScreen,
)
from .widgets import StatusHeader

if TYPE_CHECKING:
    from ._context import ConsoleContext

#: actions that change state in the engine: hidden and refused with --read-only
MUTATING_ACTIONS = frozenset({"cancel", "retry", "retry_step", "retry_failed", "pause"})
#: app actions that make no sense while a dialog is open
_SCREEN_ACTIONS = frozenset({"show", "filter", "freeze", "help", "refuse_read_only"})
#: the keys of the mutating actions: read-only, they answer with why nothing happens
_MUTATING_KEYS = ("c", "r", "R", "p", "F")
#: seconds between two safety-net comparisons of the header's counts with the engine's own
RESYNC_EVERY = 30.0
#: a call that takes longer than this is reported as an error rather than hanging a screen
CALL_TIMEOUT = 10.0
# The channel must come back quickly after the engine restarts: gRPC's default reconnect backoff
# grows to two minutes, far longer than an operator should stare at "reconnecting". A page of
# summaries may be larger than a message the SDK otherwise expects to read.
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 4 * Limits.MAX_MESSAGE_BYTES),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
    ("grpc.enable_retries", 0),
]
_HERE = Path(__file__).parent
_NAV = (("j", "Jobs"), ("W", "Orders"), ("w", "Workers"), ("l", "Locks"), ("a", "Actions"))
#: the mode each navigation name switches to
_MODE_OF = {"Jobs": "jobs", "Orders": "orders", "Workers": "workers", "Locks": "locks", "Actions": "actions"}


class ConsoleApp(App[None]):
    """``jobwarden console``: a live view of an engine's jobs, workers, locks and actions.

    ``clock`` gives the wall time for ages and staleness (tests inject a fixed one);
    ``flush_interval`` is how often stream changes reach the screen.
    """

    TITLE = "jobwarden"
    # Absolute, so that a subclass defined elsewhere still finds them.
    CSS_PATH = [_HERE / "console.tcss", _HERE / "widgets" / "widgets.tcss"]
    ENABLE_COMMAND_PALETTE = True

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("j", "show('jobs')", "Jobs", show=False, id="screen.jobs"),
        Binding("W", "show('orders')", "Work orders", show=False, id="screen.orders"),
        Binding("w", "show('workers')", "Workers", show=False, id="screen.workers"),
        Binding("l", "show('locks')", "Locks", show=False, id="screen.locks"),
        Binding("a", "show('actions')", "Actions", show=False, id="screen.actions"),
        Binding("slash", "filter", "Filter", id="app.filter"),
        Binding("f", "freeze", "Freeze", id="app.freeze"),
        Binding("question_mark", "help", "Help", id="app.help"),
        Binding("q", "quit", "Quit", id="app.quit"),
        # Reached only when the screen's own binding of the key is off (read-only): say why.
        *(
            Binding(key, f"refuse_read_only('{key}')", "", show=False, id=f"app.read_only.{key}")
            for key in _MUTATING_KEYS
        ),
    ]

    def __init__(
        self,
        engine: str,
        *,
        read_only: bool = False,
        read_only_reason: str = "--read-only",
        clock: Clock = time.time,
        flush_interval: float = 0.25,
        keep_finished: int = 1000,
        stale_after: float = 10.0,
        stats_interval: float = 1.0,
        engine_label: str | None = None,
    ) -> None:
        super().__init__()
        self.engine = engine
        #: how the header names the engine (its address unless told otherwise)
        self.engine_label = engine_label or engine
        self.read_only = read_only
        #: why the console changes nothing: the flag, or the caller's role
        self.read_only_reason = read_only_reason
        self.clock = clock
        self.flush_interval = flush_interval
        self.stats_interval = stats_interval
        self.stale_after = stale_after
        self.store = JobStore(keep_finished=keep_finished, clock=clock)
        self.job_filter = JobFilter()
        self.sort = SortOrder.NEWEST
        self.frozen = False
        self.marks: set[str] = set()
        #: the header's counts per status: seeded by the feed, moved by each event
        self.counts = StatusCounts()
        #: the last GetStats answer of the safety-net resync
        self.stats: job_service_pb2.GetStatsResponse | None = None
        #: the engines on the database, for the header (None: not known, or an engine without it)
        self.cluster: cluster_service_pb2.ListEnginesResponse | None = None
        self.resyncs = 0
        self.flushes = 0
        #: seconds each of the last flushes took (for the CPU benchmark)
        self.flush_times: deque[float] = deque(maxlen=10_000)
        self._worker_names: dict[str, str] = {}
        self._loading_older = False
        self._client: JobClient | None = None
        self._feed: JobFeed | None = None
        self.jobs_screen = JobsScreen()
        self.workers_screen = WorkersScreen()
        self.locks_screen = LocksScreen()
        self.actions_screen = ActionsScreen()
        self.orders_screen = WorkOrdersScreen()

    # -- life cycle -----------------------------------------------------------------------

    @property
    def client(self) -> JobClient:
        if self._client is None:
            raise RuntimeError("the console is not running")
        return self._client

    @property
    def feed(self) -> JobFeed:
        if self._feed is None:
            raise RuntimeError("the console is not running")
        return self._feed

    def on_mount(self) -> None:
        # The channel belongs to the running loop, so it is made here rather than in __init__.
        self._client = JobClient(self.engine, timeout=CALL_TIMEOUT, channel_options=CHANNEL_OPTIONS)
        self._feed = JobFeed(
            self._client, self.store, clock=self.clock, stale_after=self.stale_after, counts=self.counts
        )
        self.add_mode("jobs", lambda: self.jobs_screen)
        self.add_mode("workers", lambda: self.workers_screen)
        self.add_mode("locks", lambda: self.locks_screen)
        self.add_mode("actions", lambda: self.actions_screen)
        self.add_mode("orders", lambda: self.orders_screen)
        self.switch_mode("jobs")
        self._run_feed()
        self._poll_stats()
        self.set_interval(self.flush_interval, self.flush, name="flush")
        self.set_interval(1.0, self._tick, name="tick")

    async def on_unmount(self) -> None:
        if self._client is not None:
            await self._client.close()

    @work(group="feed", exclusive=True, exit_on_error=False)
    async def _run_feed(self) -> None:
        await self.feed.run()

    @work(group="stats", exclusive=True, exit_on_error=False)
    async def _poll_stats(self) -> None:
        """Worker names every few polls, and the counts' safety net.

        The header's counts follow the event stream (see ``StatusCounts``), seeded by the feed on
        every (re)connection. As a safety net (an older engine's ``GetStats`` could count a change
        still in flight, so a seed taken then stayed one off), every ``RESYNC_EVERY`` seconds they
        are taken from the engine again, at a moment when the stream is at the stats' head.
        """
        polls = 0
        synced_at = self.clock()
        cluster_known = True
        while True:
            try:
                if cluster_known and polls % 2 == 0:
                    try:
                        self.cluster = await self.client.engines()
                    except JobwardenError as error:
                        # An engine from before several engines: the header keeps its address.
                        cluster_known = error.code is not grpc.StatusCode.UNIMPLEMENTED
                        if not cluster_known:
                            self.cluster = None
                if polls % 5 == 0:
                    self.learn_workers(await self.client.workers())
                if self.clock() - synced_at >= RESYNC_EVERY:
                    self.stats = await self.client.stats()
                    if self.counts.resync(counts_by_status(self.stats.statuses), self.stats.head_sequence):
                        synced_at = self.clock()
                        self.resyncs += 1
            except JobwardenError:
                pass
            polls += 1
            await asyncio.sleep(self.stats_interval)

    # -- the flush ------------------------------------------------------------------------

    def flush(self) -> None:
        """Draw what the feed gathered since the last flush, in one batch."""
        started = time.perf_counter()
        if not self.frozen:
            self.store.trim()
            dirty = self.store.take_dirty()
            if dirty or self.jobs_screen.ready:
                self.marks.difference_update(job_id for job_id in dirty if job_id not in self.store.jobs)
                with self.batch_update():
                    if self.jobs_screen.ready:
                        self.jobs_screen.table.apply(dirty)
                    for screen in self.screen_stack:
                        if isinstance(screen, JobDetailScreen) and screen.job_id in dirty:
                            screen.job_changed()
        self.refresh_header()
        self.flushes += 1
        self.flush_times.append(time.perf_counter() - started)

    def _tick(self) -> None:
        if self.jobs_screen.ready and not self.frozen:
            self.jobs_screen.table.tick()

    def refresh_header(self) -> None:
        screen = self._console_screen()
        if screen is None or not screen.is_mounted or self._feed is None:
            return
        counts = self.counts.get()
        notes = []
        if self.marks:
            notes.append(f"{len(self.marks)} marked (space toggles, Esc clears)")
        link = self.feed.status()
        if isinstance(screen, JobsScreen) and screen.ready:
            notes.append(f"sort: {self.sort.title}")
            table = screen.table
            notes.append(f"{table.row_count:,} shown of {len(self.store):,} kept")
            table.set_empty_text(self._empty_text(link))
        if self.read_only:
            notes.append(f"read-only ({self.read_only_reason})")
        for header in screen.query(StatusHeader):
            header.show(
                engine=cluster_forms(self.cluster, self.engine_label),
                engine_tip=cluster_tip(self.cluster),
                link=link,
                frozen_pending=len(self.store.dirty) if self.frozen else None,
                counts=counts,
                job_filter=self.job_filter,
                throughput=self.store.throughput(),
                notes=notes,
            )

    def _empty_text(self, link: LinkStatus) -> str:
        if link.loading:
            return f"Loading the engine's unfinished jobs: {link.loading:,} so far…"
        if link.state is LinkState.CONNECTING:
            return f"Connecting to the engine at {self.engine_label}…"
        if link.state is LinkState.RECONNECTING and not self.store.jobs:
            return f"Cannot reach the engine at {self.engine_label}; retrying…"
        if self.job_filter.active:
            return f"No job matches {self.job_filter.describe()}. / changes the filter, 0 shows every status."
        return "No jobs yet. Submit one with: jobwarden submit ACTION --input '{...}'"

    def _console_screen(self) -> ConsoleScreen | None:
        for screen in reversed(self.screen_stack):
            if isinstance(screen, ConsoleScreen):
                return screen
        return None

    # -- shared state ---------------------------------------------------------------------

    def nav_line(self, current: str) -> tuple[str, str]:
        """The navigation line in full, and short for a narrow terminal (keys as the footer shows them)."""
        parts = [f"[{key}] {name}" if name != current else f"▶ {name}" for key, name in _NAV]
        short = [f"{key} {name}" if name != current else f"▶ {name}" for key, name in _NAV]
        return "jobwarden   " + "  ".join(parts), " ".join(short)

    def worker_name(self, worker_id: str) -> str:
        if not worker_id:
            return ""
        return self._worker_names.get(worker_id) or short_id(worker_id)

    def learn_workers(self, workers: Iterable[executor_service_pb2.Worker]) -> None:
        for worker in workers:
            if worker.name:
                self._worker_names[worker.id] = worker.name

    def allows(self, action: str) -> bool:
        """Whether a key's action is available (``--read-only`` removes every change of state)."""
        return not (self.read_only and action in MUTATING_ACTIONS)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in _SCREEN_ACTIONS and isinstance(self.screen, ModalScreen):
            return False
        if action == "refuse_read_only":
            return self.read_only and self._refused_binding(str(parameters[0])) is not None
        return self.allows(action)

    def _refused_binding(self, key: str) -> Binding | None:
        """The screen's binding of ``key`` that read-only turned off, if it has one."""
        for binding in self.screen._bindings.key_to_bindings.get(key, ()):
            if binding.action in MUTATING_ACTIONS:
                return binding
        return None

    def action_refuse_read_only(self, key: str) -> None:
        binding = self._refused_binding(key)
        what = binding.description if binding is not None else key
        self.notify(
            f"{what}: not available, the console is read-only ({self.read_only_reason}).",
            severity="warning",
            timeout=4,
        )

    def set_filter(self, job_filter: JobFilter) -> None:
        self.job_filter = job_filter
        self._filter_changed()

    def set_sort(self, sort: SortOrder) -> None:
        self.sort = sort
        self._filter_changed()
        self.notify(f"Sorted by {sort.title}", timeout=2)

    def toggle_status(self, status: JobStatus) -> None:
        self.set_filter(self.job_filter.toggled(status))

    def clear_statuses(self) -> None:
        self.set_filter(JobFilter(self.job_filter.text))

    def _filter_changed(self) -> None:
        for screen in self.screen_stack:
            if isinstance(screen, ConsoleScreen) and screen.is_mounted:
                screen.filter_changed()
        if self.jobs_screen.ready:
            self.jobs_screen.filter_changed()
        self.refresh_header()

    # -- keys -----------------------------------------------------------------------------

    def action_show(self, mode: str) -> None:
        self.switch_mode(mode)

    def action_filter(self) -> None:
        self.push_screen(FilterScreen(self.job_filter, self.set_filter), self._filter_chosen)

    def _filter_chosen(self, job_filter: JobFilter | None) -> None:
        if job_filter is not None:
            self.set_filter(job_filter)

    def action_freeze(self) -> None:
        self.frozen = not self.frozen
        if not self.frozen:
            self.flush()
        self.notify("View frozen: updates wait until f" if self.frozen else "View live again", timeout=2)
        self.refresh_header()

    def action_help(self) -> None:
        keys: list[tuple[str, str]] = []
        seen: set[str] = set()
        for active in self.screen.active_bindings.values():
            binding = active.binding
            # Only the console's own keys (they all have ids), not Textual's generic ones.
            if not binding.id or not active.enabled or not binding.description or binding.action in seen:
                continue
            if binding.action.startswith("toggle_status"):
                continue
            seen.add(binding.action)
            keys.append((self.get_key_display(binding), binding.description))
        keys.append(("1-9", "toggle a status in the filter (the numbers in the header)"))
        keys.append(("ctrl+p", "command palette"))
        self.push_screen(HelpScreen(keys))

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for key, name in _NAV:
            yield SystemCommand(f"{name} screen", f"Show the {name.lower()} ({key})", self._switcher(name))
        for status in JobStatus:
            yield SystemCommand(
                f"Filter: toggle {STATUS_LABEL[status]}",
                f"Show or hide {STATUS_LABEL[status]} jobs (key {int(status)})",
                self._toggler(status),
            )
        yield SystemCommand("Filter: clear", "Show every job", lambda: self.set_filter(JobFilter()))
        for order in SortOrder:
            yield SystemCommand(f"Sort by {order.title}", "Order of the jobs table", self._sorter(order))
        yield SystemCommand("Freeze / unfreeze", "Hold the view still (f)", self.action_freeze)
        yield SystemCommand("Load older jobs", "Page older finished jobs from the engine", self.load_older)
        if not self.read_only:
            yield SystemCommand(
                "Retry all failed",
                "Retry every FAILED job matching the filter's words",
                self.retry_all_failed,
            )

    def _switcher(self, name: str) -> Callable[[], None]:
        return lambda: self.action_show(_MODE_OF[name])

    def _toggler(self, status: JobStatus) -> Callable[[], None]:
        return lambda: self.toggle_status(status)

    def _sorter(self, order: SortOrder) -> Callable[[], None]:
        return lambda: self.set_sort(order)

    def open_job(self, job_id: str) -> None:
        self.push_screen(JobDetailScreen(job_id))

    # -- operations -----------------------------------------------------------------------

    @work(group="ops")
    async def cancel_jobs(self, rows: Sequence[JobRow]) -> None:
        await self._change_jobs(
            rows,
            can_cancel,
            "Cancel",
            "cancelled",
            lambda job_id: self.client.cancel(job_id, reason="cancelled from the console"),
        )

    @work(group="ops")
    async def retry_jobs(self, rows: Sequence[JobRow]) -> None:
        await self._change_jobs(
            rows,
            can_retry,
            "Retry",
            "retried",
            lambda job_id: self.client.retry(job_id, reason="retried from the console"),
        )

    async def _change_jobs(
        self,
        rows: Sequence[JobRow],
        allowed: Callable[[JobStatus], bool],
        verb: str,
        done: str,
        change: Callable[[str], Awaitable[object]],
    ) -> None:
        """``change`` each of ``rows`` whose status allows it, once confirmed ("Cancel 3 jobs?"),
        and say how it went; the others are named as skipped."""
        if not self._may_change():
            return
        selection = Selection.of(rows, allowed)
        if not selection.eligible:
            self.notify(selection.skipped_text(done) or "No job selected.", severity="warning")
            return
        count = len(selection.eligible)
        lines = describe_rows(selection.eligible)
        if selection.skipped:
            lines.append(selection.skipped_text(done))
        if not await self.push_screen_wait(
            ConfirmScreen(f"{verb} {_jobs(count)}?", lines, f"{verb} {_jobs(count)}")
        ):
            return
        outcome = await run_all([row.id for row in selection.eligible], change)
        self._report(outcome.summary(done.capitalize()), bool(outcome.refused))
        self._unmark(row.id for row in selection.eligible)

    @work(group="ops")
    async def retry_from_step(self, job_id: str) -> None:
        if not self._may_change():
            return
        try:
            job = await self.client.get(job_id)
        except JobwardenError as error:
            self._report(f"Could not read {short_id(job_id)}: {error}", True)
            return
        row = JobRow.from_proto(job)
        if not can_retry(row.status):
            self.notify(
                f"{short_id(job_id)} is {STATUS_LABEL[row.status]}: it cannot be retried.", severity="warning"
            )
            return
        steps = [step.name for step in job.checkpoint.completed_steps]
        if not steps:
            self.notify(
                f"{short_id(job_id)} finished no step; r retries it from the start.", severity="warning"
            )
            return
        label = f"{short_id(job_id)} ({job.action})"
        step = await self.push_screen_wait(StepPickerScreen(label, steps))
        if step is None:
            return
        later = steps[steps.index(step) :]
        title = f"Retry {label} from step “{step}”?"
        lines = [f"These steps run again: {', '.join(later)}"]
        if not await self.push_screen_wait(ConfirmScreen(title, lines, f"Retry from {step}")):
            return
        try:
            await self.client.retry(job_id, reason=f"retried from step {step} in the console", from_step=step)
        except JobwardenError as error:
            self._report(f"Retry of {short_id(job_id)} refused: {error}", True)
            return
        self._report(f"Retried {short_id(job_id)} from step {step}", False)

    @work(group="ops")
    async def retry_all_failed(self) -> None:
        if not self._may_change():
            return
        text = self.job_filter.text
        try:
            ids = [
                job.id
                async for job in self.client.iter_jobs(
                    statuses={JobStatus.FAILED}, text=text, page_size=Limits.MAX_PAGE_SIZE, summary=True
                )
            ]
        except JobwardenError as error:
            self._report(f"Could not list failed jobs: {error}", True)
            return
        scope = f" matching “{text}”" if text else ""
        if not ids:
            self.notify(f"No failed jobs{scope}.", severity="information")
            return
        title = f"Retry all {len(ids):,} failed jobs{scope}?"
        lines = [f"{len(ids):,} jobs are FAILED{scope}; each gets a new attempt."]
        if not await self.push_screen_wait(ConfirmScreen(title, lines, f"Retry {len(ids):,} jobs")):
            return
        outcome = await run_all(
            ids, lambda job_id: self.client.retry(job_id, reason="retry all failed (console)")
        )
        self._report(outcome.summary("Retried"), bool(outcome.refused))

    @work(group="ops")
    async def toggle_pause(self, action: str, after: Callable[[], object] | None = None) -> None:
        if not self._may_change():
            return
        paused = False
        try:
            listing = await self.client.list_actions()
        except JobwardenError as error:
            self._report(f"Could not read the state of {action}: {error}", True)
            return
        paused = any(config.action == action and config.paused for config in listing.configs)
        if not await self.push_screen_wait(_pause_question(action, paused, listing)):
            return
        try:
            if paused:
                await self.client.resume_action(action)
            else:
                await self.client.pause_action(action)
        except JobwardenError as error:
            self._report(f"{'Resume' if paused else 'Pause'} of {action} refused: {error}", True)
            return
        if paused:
            self._report(f"Resumed dispatch of {action}", False)
        else:
            self._report(f"Paused dispatch of {action} (its jobs keep queueing; p resumes)", False)
        if after is not None:
            after()

    @work(group="older", exclusive=True)
    async def load_older(self, quiet: bool = False) -> None:
        if self._loading_older or self._feed is None:
            return
        if not self.feed.has_older(self.job_filter.statuses, self.job_filter.text):
            if not quiet:
                self.notify("No older jobs to load.", timeout=2)
            return
        self._loading_older = True
        try:
            added = await self.feed.load_older(self.job_filter.statuses, self.job_filter.text)
        except JobwardenError as error:
            if not quiet:
                self._report(f"Could not load older jobs: {error}", True)
            return
        finally:
            self._loading_older = False
        if not quiet:
            self.notify(f"Loaded {added} older job{'s' if added != 1 else ''}", timeout=2)

    def _may_change(self) -> bool:
        if self.read_only:
            self.notify("The console is read-only.", severity="warning")
            return False
        return True

    def _report(self, text: str, problem: bool) -> None:
        self.notify(text, severity="error" if problem else "information", timeout=6 if problem else 3)

    def _unmark(self, ids: Iterable[str]) -> None:
        ids = [job_id for job_id in ids if job_id in self.marks]
        if ids:
            self.marks.difference_update(ids)
            if self.jobs_screen.ready:
                self.jobs_screen.table.refresh_ids(ids)


def _jobs(count: int) -> str:
    return f"{count} job" if count == 1 else f"{count} jobs"


def _pause_question(action: str, paused: bool, listing: job_service_pb2.ListActionsResponse) -> ConfirmScreen:
    stats = next((entry for entry in listing.stats if entry.action == action), None)
    waiting = running = 0
    if stats is not None:
        waiting = stats.queued + stats.delayed + stats.waiting_for_lock
        running = stats.running + stats.timed_out
    if paused:
        return ConfirmScreen(
            f"Resume dispatch of {action}?",
            [f"Now: {_jobs(waiting)} waiting; they start as workers have room."],
            f"Resume {action}",
        )
    return ConfirmScreen(
        f"Pause dispatch of {action}?",
        [
            f"No new job of {action} starts until you resume it (p); submits still queue, and the "
            "running jobs carry on.",
            f"Now: {_jobs(waiting)} waiting, {_jobs(running)} running.",
        ],
        f"Pause {action}",
    )


if TYPE_CHECKING:

    def _gives_the_screens_what_they_use(app: ConsoleApp) -> ConsoleContext:
        # mypy fails here if the app lacks something the screens' protocol promises them.
        return app


__all__ = ["MUTATING_ACTIONS", "ConsoleApp"]
