"""Group commit: every change made in the event loop joins the open batch; one thread writes the
batches one after another, each in one transaction.

A caller that must not answer before its change is durable awaits ``flush()``. Events are handed to
the event bus, and messages to workers are sent, only after their batch committed (``after_commit``),
so nobody ever sees a change that a crash could take back.

When the database refuses a write, the batch is retried until it succeeds (the engine's memory stays
the truth of what will be written, and sequences stay gap-free); callers waiting on it get
``StoreUnavailable`` after ``caller_timeout`` and nothing is acknowledged to them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from .errors import StoreUnavailable
from .model import Event, Job, LogLine
from .store import WriteSet, event_row, job_row
from .store_api import JobStore
from .workflows import rows as workflow_rows
from .workflows.definitions import WorkflowDef
from .workflows.runs import WorkflowEvent, WorkflowRun, WorkOrder

__all__ = ["CommitReport", "CommitStats", "Writer"]

log = logging.getLogger("jobwarden.store")


@dataclass(slots=True)
class CommitStats:
    commits: int = 0
    rows: int = 0
    failures: int = 0
    last_commit_seconds: float = 0.0
    total_commit_seconds: float = 0.0


@dataclass(slots=True, frozen=True)
class CommitReport:
    """One attempt to write a batch, for whoever watches the store (metrics, logs)."""

    #: the events the batch committed ([] when it failed: it will be tried again)
    events: list[Event]
    rows: int
    seconds: float
    ok: bool
    error: str = ""


@dataclass(slots=True)
class _Batch:
    new_jobs: dict[str, Job] = field(default_factory=dict)
    changed_jobs: dict[str, Job] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    logs: list[LogLine] = field(default_factory=list)
    other: WriteSet = field(default_factory=WriteSet)
    callbacks: list[Callable[[], None]] = field(default_factory=list)
    future: asyncio.Future[None] | None = None
    #: each changed work order and run once, written as it is when the batch is cut
    orders: dict[str, WorkOrder] = field(default_factory=dict)
    runs: dict[str, WorkflowRun] = field(default_factory=dict)
    workflow_events: list[WorkflowEvent] = field(default_factory=list)

    def is_empty(self) -> bool:
        return not (
            self.new_jobs
            or self.changed_jobs
            or self.events
            or self.logs
            or len(self.other)
            or self.callbacks
            or self.orders
            or self.runs
            or self.workflow_events
        )

    def rows(self) -> WriteSet:
        ws = self.other
        # Events first: a job row reuses the JSON of its last event's snapshot when it is current.
        ws.events = [event_row(ev) for ev in self.events]
        ws.new_jobs = [job_row(job, with_input=True) for job in self.new_jobs.values()]
        ws.changed_jobs = [
            job_row(job, with_input=False)
            for job_id, job in self.changed_jobs.items()
            if job_id not in self.new_jobs
        ]
        ws.logs = [
            {
                "job_id": line.job_id,
                "idx": line.index,
                "attempt": line.attempt,
                "time": line.time,
                "level": line.level,
                "message": line.message,
            }
            for line in self.logs
        ]
        ws.work_orders = [workflow_rows.order_row(order) for order in self.orders.values()]
        ws.workflow_runs = [workflow_rows.run_row(run) for run in self.runs.values()]
        ws.workflow_events = [workflow_rows.event_row(ev) for ev in self.workflow_events]
        return ws


class Writer:
    def __init__(
        self,
        store: JobStore,
        publish: Callable[[list[Event], list[WorkflowEvent]], None],
        *,
        caller_timeout: float = 10.0,
        retry_delay: float = 0.05,
    ) -> None:
        self.store = store
        self._publish = publish
        self.caller_timeout = caller_timeout
        self.retry_delay = retry_delay
        self.stats = CommitStats()
        self.healthy = True
        self.last_error: str = ""
        self._open = _Batch()
        #: the batch being written, until its events are published
        self._committing: _Batch | None = None
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jobwarden-writer")
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._observers: list[Callable[[CommitReport], None]] = []

    def observe(self, observer: Callable[[CommitReport], None]) -> None:
        """Call ``observer`` in the event loop after each write attempt, committed or failed."""
        self._observers.append(observer)

    def _report(self, report: CommitReport) -> None:
        for observer in self._observers:
            try:
                observer(report)
            except Exception:
                log.exception("commit observer failed")

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="jobwarden-writer")

    # -- recording changes (event loop only) -----------------------------------------------------

    def job_added(self, job: Job) -> None:
        self._open.new_jobs[job.id] = job
        self._wake.set()

    def job_changed(self, job: Job) -> None:
        self._open.changed_jobs[job.id] = job
        self._wake.set()

    def event(self, ev: Event) -> None:
        self._open.events.append(ev)
        self._wake.set()

    def log_lines(self, lines: list[LogLine]) -> None:
        self._open.logs.extend(lines)
        self._wake.set()

    def lock_added(self, row: dict[str, Any]) -> None:
        self._open.other.locks_added.append(row)
        self._wake.set()

    def lock_removed(self, resource: str, holder: str) -> None:
        added = self._open.other.locks_added
        for index, row in enumerate(added):
            # Taken and given back within one batch: neither needs writing.
            if row["resource"] == resource and row["holder"] == holder:
                del added[index]
                break
        else:
            self._open.other.locks_removed.append((resource, holder))
        self._wake.set()

    def action_config(self, row: dict[str, Any]) -> None:
        self._open.other.action_configs.append(row)
        self._wake.set()

    def worker(self, row: dict[str, Any]) -> None:
        self._open.other.workers.append(row)
        self._wake.set()

    def workflow_definition(self, definition: WorkflowDef) -> None:
        self._open.other.workflow_definitions.append(workflow_rows.definition_row(definition))
        self._wake.set()

    def work_order(self, order: WorkOrder) -> None:
        self._open.orders[order.id] = order
        self._wake.set()

    def workflow_run(self, run: WorkflowRun) -> None:
        self._open.runs[run.id] = run
        self._wake.set()

    def workflow_event(self, ev: WorkflowEvent) -> None:
        self._open.workflow_events.append(ev)
        self._wake.set()

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` in the event loop once everything recorded so far is committed."""
        self._open.callbacks.append(callback)
        self._wake.set()

    def uncommitted_events(self) -> list[Event]:
        """Events recorded but not yet published (being written, or waiting for the next batch)."""
        writing = self._committing.events if self._committing is not None else []
        return [*writing, *self._open.events]

    async def flush(self) -> None:
        """Wait until everything recorded so far is committed (StoreUnavailable after caller_timeout)."""
        batch = self._open
        if batch.future is None:
            batch.future = asyncio.get_running_loop().create_future()
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(batch.future), self.caller_timeout)
        except TimeoutError:
            raise StoreUnavailable(
                f"the store did not commit within {self.caller_timeout:g}s ({self.last_error or 'busy'}); "
                "nothing was acknowledged"
            ) from None

    # -- the commit loop --------------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            # One turn of the loop first: work scheduled by the change that woke us (a dispatch after a
            # submit, say) joins this batch instead of waiting for the next commit.
            await asyncio.sleep(0)
            self._wake.clear()
            batch = self._open
            if batch.is_empty():
                if batch.future is not None and not batch.future.done():
                    batch.future.set_result(None)
                    batch.future = None
                if self._closing:
                    return
                continue
            self._open = _Batch()
            self._committing = batch
            rows = batch.rows()
            size = len(rows)
            while True:
                started = time.perf_counter()
                try:
                    if size:
                        await loop.run_in_executor(self._executor, self.store.write, rows)
                except Exception as error:
                    self.stats.failures += 1
                    self.healthy = False
                    self.last_error = f"{type(error).__name__}: {error}"
                    self._report(
                        CommitReport([], size, time.perf_counter() - started, False, self.last_error)
                    )
                    log.error("store write of %d rows failed, retrying: %s", size, self.last_error)
                    await asyncio.sleep(self.retry_delay)
                    self.retry_delay = min(self.retry_delay * 2, 2.0)
                    continue
                break
            if not self.healthy:
                log.warning("store writes succeed again")
                self.healthy = True
                self.retry_delay = 0.05
            elapsed = time.perf_counter() - started
            self.stats.commits += 1
            self.stats.rows += size
            self.stats.last_commit_seconds = elapsed
            self.stats.total_commit_seconds += elapsed
            if batch.events or batch.workflow_events:
                self._publish(batch.events, batch.workflow_events)
            self._committing = None
            self._report(CommitReport(batch.events, size, elapsed, True))
            for callback in batch.callbacks:
                try:
                    callback()
                except Exception:
                    log.exception("after-commit callback failed")
            if batch.future is not None and not batch.future.done():
                batch.future.set_result(None)
            if self._closing:
                self._wake.set()

    async def close(self) -> None:
        """Write what is pending, then stop."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, self.caller_timeout)
            except TimeoutError:
                self._task.cancel()
        self._executor.shutdown(wait=True)
