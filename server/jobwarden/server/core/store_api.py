"""The seam between the engine and its database: what a store must do, and the values that cross it.

The engine, its writer and its recovery depend on ``JobStore`` only. ``store.SqlStore`` (SQLite and
PostgreSQL) is the durable one; ``memory_store.MemoryStore`` keeps everything in the process, for unit
tests of the flow and benchmark baselines. Both pass ``tests/engine/test_store_contract.py``.

Every method is synchronous: the engine calls them in threads of its own, writes from one thread only,
reads from several at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from jobwarden.contract import JobStatus

from .model import ActionConfig, Event, Job, LogLine
from .workflows.definitions import WorkflowDef
from .workflows.runs import WorkflowEvent, WorkflowRun, WorkOrder

__all__ = ["JobQuery", "JobStore", "LockRow", "WorkOrderQuery", "WriteSet"]


@dataclass(slots=True, frozen=True)
class LockRow:
    resource: str
    holder: str
    mode: int
    job_id: str | None
    since: float
    expires_at: float | None


@dataclass(slots=True)
class WriteSet:
    """Everything one group commit writes, already turned into rows (made in the event loop; see
    ``store.job_row`` and ``store.event_row`` for the row of a job and of an event)."""

    new_jobs: list[dict[str, Any]] = field(default_factory=list)
    changed_jobs: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    logs: list[dict[str, Any]] = field(default_factory=list)
    locks_added: list[dict[str, Any]] = field(default_factory=list)
    #: (resource, holder) pairs
    locks_removed: list[tuple[str, str]] = field(default_factory=list)
    action_configs: list[dict[str, Any]] = field(default_factory=list)
    workers: list[dict[str, Any]] = field(default_factory=list)
    #: rows of ``workflows.rows``: definitions are only inserted; work orders and runs are written
    #: whole (the last row of each id wins); workflow events are inserted
    workflow_definitions: list[dict[str, Any]] = field(default_factory=list)
    work_orders: list[dict[str, Any]] = field(default_factory=list)
    workflow_runs: list[dict[str, Any]] = field(default_factory=list)
    workflow_events: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return (
            len(self.new_jobs)
            + len(self.changed_jobs)
            + len(self.events)
            + len(self.logs)
            + len(self.locks_added)
            + len(self.locks_removed)
            + len(self.action_configs)
            + len(self.workers)
            + len(self.workflow_definitions)
            + len(self.work_orders)
            + len(self.workflow_runs)
            + len(self.workflow_events)
        )


@dataclass(slots=True)
class WorkOrderQuery:
    workflow: str = ""
    statuses: Sequence[int] = ()
    correlation_id: str = ""
    #: work orders with a smaller id than this (the previous page's last id)
    before_id: str = ""
    limit: int = 100


@dataclass(slots=True)
class JobQuery:
    statuses: Sequence[JobStatus] = ()
    action: str = ""
    label: str = ""
    text: str = ""
    page_size: int = 50
    #: list jobs with a smaller id than this (the previous page's last id)
    before_id: str = ""
    summary: bool = False


class JobStore(Protocol):
    """What the engine needs of its database."""

    #: the errors a read raises while the database cannot be reached (the engine answers them as
    #: UNAVAILABLE, so clients wait or fail over, instead of an unexplained UNKNOWN)
    unavailable_errors: tuple[type[BaseException], ...]

    def create_schema(self) -> None:
        """Make the store ready: create it, or check its schema version and migrate it.
        Raises ``migrations.SchemaVersionError`` for a store written by a newer jobwarden."""

    def close(self) -> None: ...

    def write(self, ws: WriteSet) -> None:
        """Write one batch: all of it, or (on an exception) none of it. A batch may change one worker
        or one action config several times: the last row of each wins."""

    def max_sequence(self) -> int:
        """The newest event's sequence, job or workflow event (0 without events)."""

    def load_unfinished_jobs(self) -> list[Job]:
        """Every job not in a terminal status, oldest (smallest id) first."""

    def unfinished_job_pages(self, size: int) -> Iterator[list[Job]]:
        """The same jobs in lists of at most ``size``, from one query (a page's jobs are decoded as
        the page is taken)."""

    def status_counts(self) -> list[tuple[str, int, int]]:
        """(action, status, count) for every pair present."""

    def get_job(self, job_id: str) -> Job | None: ...

    def job_ids_abbreviated(self, part: str, limit: int) -> list[str]:
        """Ids that start or end with ``part`` (hex digits and dashes only), newest first, at most
        ``limit``."""

    def jobs_by_idempotency_key(self, keys: Iterable[str]) -> dict[str, Job]: ...

    def list_jobs(self, query: JobQuery) -> list[Job]:
        """Newest (largest id) first; at most ``query.page_size``; without input and result when
        ``query.summary``."""

    def job_events(self, job_id: str) -> list[Event]:
        """The job's events in sequence order."""

    def events_between(self, after: int, up_to: int, limit: int, job_ids: Sequence[str] = ()) -> list[Event]:
        """Events with ``after < sequence <= up_to`` (of ``job_ids`` only, when given), in order, at
        most ``limit``."""

    def job_logs(self, job_id: str, after_index: int, limit: int) -> list[LogLine]:
        """The job's log lines with an index above ``after_index``, in order, at most ``limit``."""

    def max_log_index(self, job_id: str) -> int:
        """The job's last log index (0 without logs)."""

    def load_locks(self) -> list[LockRow]:
        """Every held lock, oldest (``since``) first."""

    def load_action_configs(self) -> list[ActionConfig]: ...

    def mark_all_workers_disconnected(self) -> None: ...

    def count_jobs(self) -> int: ...

    # -- workflows --------------------------------------------------------------------------------

    def load_workflow_definitions(self) -> list[WorkflowDef]:
        """Every version of every definition, by name then version."""

    def unfinished_run_pages(self, size: int) -> Iterator[list[WorkflowRun]]:
        """Every run not in a finished status, oldest first, in lists of at most ``size``, from one
        query."""

    def get_workflow_run(self, run_id: str) -> WorkflowRun | None: ...

    def workflow_runs_of_order(self, work_order_id: str) -> list[WorkflowRun]:
        """The work order's runs, oldest first."""

    def get_work_order(self, work_order_id: str) -> WorkOrder | None: ...

    def work_order_by_idempotency_key(self, key: str) -> WorkOrder | None: ...

    def list_work_orders(self, query: WorkOrderQuery) -> list[WorkOrder]:
        """Newest first, without input, at most ``query.limit``."""

    def workflow_ids_abbreviated(self, table: str, part: str, limit: int) -> list[str]:
        """Ids of ``table`` ("work_orders" or "workflow_runs") that start or end with ``part``,
        newest first, at most ``limit``."""

    def workflow_events_between(
        self,
        after: int,
        up_to: int,
        limit: int,
        run_ids: Sequence[str] = (),
        work_order_ids: Sequence[str] = (),
    ) -> list[WorkflowEvent]:
        """Workflow events with ``after < sequence <= up_to`` (of those runs or work orders, when
        given), in order, at most ``limit``."""
