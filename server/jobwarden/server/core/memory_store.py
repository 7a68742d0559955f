"""A ``JobStore`` that keeps everything in the process: for unit tests of the flow, and a baseline
for benchmarks (what the engine costs without a database).

It keeps the rows the writer hands over (the same ``WriteSet`` the SQL store writes) and reads them
back with the SQL store's own decoders, so both answer alike; the contract tests
(``tests/engine/test_store_contract.py``) hold it to that. It refuses what the tables' keys refuse
(a job id, idempotency key, event sequence, log index or lock held twice), and a refused batch writes
nothing. Nothing survives the process; ``close`` keeps the data, so an engine may start again on the
same instance.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable, Iterator, Sequence
from itertools import chain, islice
from typing import TYPE_CHECKING, Any, TypeVar

from jobwarden.contract import TERMINAL_STATUSES, WorkflowRunStatus

from .model import ActionConfig, Event, Job, LogLine
from .store import CHANGING_JOB_COLUMNS, event_from_row, job_from_row, loads, lock_from_row, log_line_from_row
from .store_api import JobQuery, LockRow, WorkOrderQuery, WriteSet
from .workflows import rows as workflow_rows
from .workflows.definitions import WorkflowDef
from .workflows.runs import WorkflowEvent, WorkflowRun, WorkOrder

if TYPE_CHECKING:
    from .store_api import JobStore

__all__ = ["MemoryStore", "MemoryStoreConflict"]

Row = dict[str, Any]
_TERMINAL = frozenset(int(s) for s in TERMINAL_STATUSES)
T = TypeVar("T")


def _pages(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class MemoryStoreConflict(Exception):
    """A batch broke a key the SQL tables hold (the SQL store raises its driver's IntegrityError)."""


class MemoryStore:
    """Every table as dicts, behind one lock (one writer thread and any reader threads)."""

    url = "memory:"
    unavailable_errors: tuple[type[BaseException], ...] = ()

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[str, Row] = {}
        #: every job id, ascending (ids grow with time, so this is mostly an append)
        self._ids: list[str] = []
        self._by_key: dict[str, str] = {}
        self._events: list[Row] = []
        self._sequences: list[int] = []
        self._events_by_job: dict[str, list[Row]] = {}
        self._logs: dict[str, dict[int, Row]] = {}
        self._locks: dict[tuple[str, str], Row] = {}
        self._configs: dict[str, str] = {}
        self._workers: dict[str, Row] = {}
        self._definitions: dict[tuple[str, int], Row] = {}
        self._orders: dict[str, Row] = {}
        self._orders_by_key: dict[str, str] = {}
        self._runs: dict[str, Row] = {}
        self._workflow_events: list[Row] = []

    def create_schema(self) -> None:
        """Nothing to create, and no version to check: the data lives as long as this object."""

    def close(self) -> None:
        """Nothing to release: the data stays, for an engine started again on this store."""

    # -- writes -----------------------------------------------------------------------------------

    def write(self, ws: WriteSet) -> None:
        with self._lock:
            self._check(ws)
            self._apply(ws)

    def _check(self, ws: WriteSet) -> None:
        """Refuse the batch before anything of it is applied: all of it, or none of it."""
        ids: set[str] = set()
        keys: set[str] = set()
        for row in ws.new_jobs:
            job_id, key = row["id"], row["idempotency_key"]
            if job_id in self._jobs or job_id in ids:
                raise MemoryStoreConflict(f"job {job_id} is already stored")
            if key is not None and (key in self._by_key or key in keys):
                raise MemoryStoreConflict(f"idempotency key {key!r} is already stored")
            ids.add(job_id)
            if key is not None:
                keys.add(key)
        sequences: set[int] = set()
        # Job and workflow events share the sequence: no number may be used twice across both.
        for row in chain(ws.events, ws.workflow_events):
            sequence = row["sequence"]
            if sequence in sequences or self._has_sequence(sequence):
                raise MemoryStoreConflict(f"event {sequence} is already stored")
            sequences.add(sequence)
        log_keys: set[tuple[str, int]] = set()
        for row in ws.logs:
            log_key = (row["job_id"], row["idx"])
            if log_key in log_keys or log_key[1] in self._logs.get(log_key[0], {}):
                raise MemoryStoreConflict(f"log line {log_key[1]} of job {log_key[0]} is already stored")
            log_keys.add(log_key)
        remaining = set(self._locks).difference(ws.locks_removed)
        for row in ws.locks_added:
            lock_key = (row["resource"], row["holder"])
            if lock_key in remaining:
                raise MemoryStoreConflict(f"{lock_key[1]} already holds {lock_key[0]}")
            remaining.add(lock_key)
        for row in ws.workflow_definitions:
            if (row["name"], row["version"]) in self._definitions:
                raise MemoryStoreConflict(
                    f"workflow {row['name']} version {row['version']} is already stored"
                )
        for row in ws.work_orders:
            key = row["idempotency_key"]
            if key is not None and self._orders_by_key.get(key, row["id"]) != row["id"]:
                raise MemoryStoreConflict(f"idempotency key {key!r} is already stored")

    def _has_sequence(self, sequence: int) -> bool:
        at = bisect.bisect_left(self._sequences, sequence)
        return at < len(self._sequences) and self._sequences[at] == sequence

    def _apply(self, ws: WriteSet) -> None:
        for row in ws.new_jobs:
            job_id = row["id"]
            self._jobs[job_id] = dict(row)
            bisect.insort(self._ids, job_id)
            if row["idempotency_key"] is not None:
                self._by_key[row["idempotency_key"]] = job_id
        for row in ws.changed_jobs:
            stored = self._jobs.get(row["id"])
            if stored is not None:  # as an UPDATE of no row: nothing
                stored.update({column: row[column] for column in CHANGING_JOB_COLUMNS})
        for row in ws.events:
            event = dict(row)
            at = bisect.bisect(self._sequences, event["sequence"])
            self._sequences.insert(at, event["sequence"])
            self._events.insert(at, event)
            per_job = self._events_by_job.setdefault(event["job_id"], [])
            if per_job and per_job[-1]["sequence"] > event["sequence"]:
                per_job.append(event)
                per_job.sort(key=lambda e: e["sequence"])
            else:
                per_job.append(event)
        for row in ws.logs:
            self._logs.setdefault(row["job_id"], {})[row["idx"]] = dict(row)
        for lock_key in ws.locks_removed:
            self._locks.pop(lock_key, None)
        for row in ws.locks_added:
            self._locks[(row["resource"], row["holder"])] = dict(row)
        for row in ws.action_configs:
            self._configs[row["action"]] = row["doc"]
        for row in ws.workers:
            self._workers[row["id"]] = dict(row)
        for row in ws.workflow_definitions:
            self._definitions[(row["name"], row["version"])] = dict(row)
        for row in ws.work_orders:
            self._orders[row["id"]] = dict(row)
            if row["idempotency_key"] is not None:
                self._orders_by_key[row["idempotency_key"]] = row["id"]
        for row in ws.workflow_runs:
            self._runs[row["id"]] = dict(row)
        for row in ws.workflow_events:
            # Job and workflow events share the sequence: both are kept in it.
            at = bisect.bisect(self._sequences, row["sequence"])
            self._sequences.insert(at, row["sequence"])
            self._events.insert(at, {"workflow": True, **row})

    # -- reads ------------------------------------------------------------------------------------

    def max_sequence(self) -> int:
        with self._lock:
            return self._sequences[-1] if self._sequences else 0

    def load_unfinished_jobs(self) -> list[Job]:
        with self._lock:
            rows = [self._jobs[i] for i in self._ids if self._jobs[i]["status"] not in _TERMINAL]
        return [job_from_row(r) for r in rows]

    def unfinished_job_pages(self, size: int) -> Iterator[list[Job]]:
        return _pages(self.load_unfinished_jobs(), size)

    def status_counts(self) -> list[tuple[str, int, int]]:
        counts: dict[tuple[str, int], int] = {}
        with self._lock:
            for row in self._jobs.values():
                pair = (row["action"], row["status"])
                counts[pair] = counts.get(pair, 0) + 1
        return [(action, status, count) for (action, status), count in counts.items()]

    def get_job(self, job_id: str) -> Job | None:
        with self._lock:
            row = self._jobs.get(job_id)
        return job_from_row(row) if row is not None else None

    def job_ids_abbreviated(self, part: str, limit: int) -> list[str]:
        with self._lock:
            return _ids_abbreviated(reversed(self._ids), part, limit)

    def jobs_by_idempotency_key(self, keys: Iterable[str]) -> dict[str, Job]:
        with self._lock:
            rows = {key: self._jobs[self._by_key[key]] for key in keys if key in self._by_key}
        return {key: job_from_row(row) for key, row in rows.items()}

    def list_jobs(self, query: JobQuery) -> list[Job]:
        statuses = {int(s) for s in query.statuses}
        label = f"\n{query.label}\n" if "=" in query.label else f"\n{query.label}="
        text = query.text.lower()
        rows: list[Row] = []
        with self._lock:
            end = bisect.bisect_left(self._ids, query.before_id) if query.before_id else len(self._ids)
            for at in range(end - 1, -1, -1):
                if len(rows) >= query.page_size:
                    break
                row = self._jobs[self._ids[at]]
                if statuses and row["status"] not in statuses:
                    continue
                if query.action and row["action"] != query.action:
                    continue
                if query.label and label not in row["labels"]:
                    continue
                if text and text not in row["search"]:
                    continue
                rows.append(row)
        return [job_from_row(r, payloads=not query.summary) for r in rows]

    def job_events(self, job_id: str) -> list[Event]:
        with self._lock:
            rows = list(self._events_by_job.get(job_id, ()))
        return [event_from_row(r) for r in rows]

    def events_between(self, after: int, up_to: int, limit: int, job_ids: Sequence[str] = ()) -> list[Event]:
        wanted = set(job_ids)
        rows: list[Row] = []
        with self._lock:
            for row in self._event_rows_between(after, up_to):
                if len(rows) >= limit:
                    break
                if "workflow" in row:
                    continue
                if not wanted or row["job_id"] in wanted:
                    rows.append(row)
        return [event_from_row(r) for r in rows]

    def _event_rows_between(self, after: int, up_to: int) -> list[Row]:
        """The job and workflow event rows with ``after < sequence <= up_to``, in order (call it holding
        the lock)."""
        start = bisect.bisect_right(self._sequences, after)
        end = bisect.bisect_right(self._sequences, up_to)
        return self._events[start:end]

    def job_logs(self, job_id: str, after_index: int, limit: int) -> list[LogLine]:
        with self._lock:
            lines = self._logs.get(job_id, {})
            rows = [lines[i] for i in sorted(lines) if i > after_index][:limit]
        return [log_line_from_row(r) for r in rows]

    def max_log_index(self, job_id: str) -> int:
        with self._lock:
            lines = self._logs.get(job_id)
            return max(lines) if lines else 0

    def load_locks(self) -> list[LockRow]:
        with self._lock:
            rows = sorted(self._locks.values(), key=lambda r: r["since"])
        return [lock_from_row(r) for r in rows]

    def load_action_configs(self) -> list[ActionConfig]:
        with self._lock:
            docs = list(self._configs.values())
        return [ActionConfig.from_dict(loads(doc)) for doc in docs]

    def mark_all_workers_disconnected(self) -> None:
        with self._lock:
            for row in self._workers.values():
                row["connected"] = False

    def count_jobs(self) -> int:
        with self._lock:
            return len(self._jobs)

    def workers(self) -> list[dict[str, Any]]:
        """The stored worker rows (the engine never reads them back; tests do)."""
        with self._lock:
            return [dict(r) for r in self._workers.values()]

    # -- workflows --------------------------------------------------------------------------------

    def load_workflow_definitions(self) -> list[WorkflowDef]:
        with self._lock:
            rows = [self._definitions[k] for k in sorted(self._definitions)]
        return [workflow_rows.definition_from_row(r) for r in rows]

    def unfinished_run_pages(self, size: int) -> Iterator[list[WorkflowRun]]:
        unfinished = {int(WorkflowRunStatus.RUNNING), int(WorkflowRunStatus.DELAYED)}
        with self._lock:
            rows = [self._runs[i] for i in sorted(self._runs) if self._runs[i]["status"] in unfinished]
        return _pages([workflow_rows.run_from_row(r) for r in rows], size)

    def get_workflow_run(self, run_id: str) -> WorkflowRun | None:
        with self._lock:
            row = self._runs.get(run_id)
        return workflow_rows.run_from_row(row) if row is not None else None

    def workflow_runs_of_order(self, work_order_id: str) -> list[WorkflowRun]:
        with self._lock:
            rows = [
                self._runs[i] for i in sorted(self._runs) if self._runs[i]["work_order_id"] == work_order_id
            ]
        return [workflow_rows.run_from_row(r) for r in rows]

    def get_work_order(self, work_order_id: str) -> WorkOrder | None:
        with self._lock:
            row = self._orders.get(work_order_id)
        return workflow_rows.order_from_row(row) if row is not None else None

    def work_order_by_idempotency_key(self, key: str) -> WorkOrder | None:
        with self._lock:
            order_id = self._orders_by_key.get(key)
            row = self._orders.get(order_id) if order_id else None
        return workflow_rows.order_from_row(row) if row is not None else None

    def list_work_orders(self, query: WorkOrderQuery) -> list[WorkOrder]:
        statuses = {int(s) for s in query.statuses}
        found: list[Row] = []
        with self._lock:
            for order_id in sorted(self._orders, reverse=True):
                if len(found) >= query.limit:
                    break
                row = self._orders[order_id]
                if query.before_id and order_id >= query.before_id:
                    continue
                if query.workflow and row["workflow"] != query.workflow:
                    continue
                if statuses and row["status"] not in statuses:
                    continue
                if query.correlation_id and row["correlation_id"] != query.correlation_id:
                    continue
                found.append(row)
        return [workflow_rows.order_from_row(r, payloads=False) for r in found]

    def workflow_ids_abbreviated(self, table: str, part: str, limit: int) -> list[str]:
        ids = self._orders if table == "work_orders" else self._runs
        with self._lock:
            return _ids_abbreviated(sorted(ids, reverse=True), part, limit)

    def workflow_events_between(
        self,
        after: int,
        up_to: int,
        limit: int,
        run_ids: Sequence[str] = (),
        work_order_ids: Sequence[str] = (),
    ) -> list[WorkflowEvent]:
        runs, orders = set(run_ids), set(work_order_ids)
        rows: list[Row] = []
        with self._lock:
            for row in self._event_rows_between(after, up_to):
                if len(rows) >= limit:
                    break
                if "workflow" not in row:
                    continue
                if (runs or orders) and row["run_id"] not in runs and row["work_order_id"] not in orders:
                    continue
                rows.append(row)
        return [workflow_rows.event_from_row(r) for r in rows]


def _ids_abbreviated(newest_first: Iterable[str], part: str, limit: int) -> list[str]:
    """The ids that start or end with ``part``, newest first, at most ``limit``."""
    return list(islice((i for i in newest_first if i.startswith(part) or i.endswith(part)), limit))


if TYPE_CHECKING:
    # mypy checks here that the memory store is a JobStore.
    _memory_store_is_a_job_store: type[JobStore] = MemoryStore
