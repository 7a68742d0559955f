"""The durable store: SQLModel tables, batched writes and the reads the engine needs.

``SqlStore`` implements ``store_api.JobStore``; ``Store`` is the same class under the name callers
have always used (``Store(url)``). SQLModel defines the tables (``tables.py``); the hot path writes
whole batches through the driver's ``executemany``, one transaction per batch. Every method here is
synchronous and runs in a thread of the engine's (see ``writer.py``); writes come from one thread only.

SQLite runs in WAL mode with ``synchronous=FULL``: a committed batch survives ``kill -9`` and power
loss. PostgreSQL (``postgresql+psycopg://...``) runs the same statements. ``create_schema`` checks
the database's schema version and migrates an older one (``migrations.py``).
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import orjson
from jobwarden.contract import TERMINAL_STATUSES, JobEventType, JobStatus, WorkflowRunStatus
from sqlalchemy import (
    ColumnElement,
    Table,
    and_,
    create_engine,
    event,
    func,
    or_,
    select,
    update,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine
from sqlalchemy.pool import ConnectionPoolEntry

from . import migrations
from .errors import Fenced
from .leadership import with_options
from .model import ActionConfig, Event, Job, LogLine
from .store_api import JobQuery, LockRow, WorkOrderQuery, WriteSet
from .tables import (
    configs_t,
    events_t,
    jobs_t,
    locks_t,
    logs_t,
    meta_t,
    work_orders_t,
    workers_t,
    workflow_definitions_t,
    workflow_events_t,
    workflow_runs_t,
)
from .workflows import rows as workflow_rows
from .workflows.definitions import WorkflowDef
from .workflows.runs import WorkflowEvent, WorkflowRun, WorkOrder

if TYPE_CHECKING:
    from .store_api import JobStore

__all__ = [
    "JobQuery",
    "LockRow",
    "SqlStore",
    "Store",
    "WriteSet",
    "configs_t",
    "dumps",
    "event_from_row",
    "event_row",
    "events_t",
    "job_from_row",
    "job_row",
    "jobs_t",
    "loads",
    "lock_from_row",
    "locks_t",
    "log_line_from_row",
    "logs_t",
    "meta_t",
    "workers_t",
]


def dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def loads(text: str | bytes) -> Any:
    return orjson.loads(text)


#: the columns a changed job writes (the others never change once it is inserted)
CHANGING_JOB_COLUMNS = (
    "status",
    "priority",
    "updated_at",
    "correlation_id",
    "labels",
    "search",
    "doc",
    "result",
)


def job_row(job: Job, *, with_input: bool) -> dict[str, Any]:
    """A job as a row of the jobs table (input only when inserting: it never changes)."""
    error_message = job.error.message if job.error else ""
    row: dict[str, Any] = {
        "id": job.id,
        "action": job.action,
        "status": int(job.status),
        "priority": job.priority,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "idempotency_key": job.idempotency_key or None,
        "correlation_id": job.correlation_id,
        "labels": encode_labels(job.labels),
        "search": " ".join((job.id, job.action, job.message, job.correlation_id, error_message)).lower(),
        "doc": job.snapshot_json() or dumps(job.to_dict(payloads=False)),
        "result": dumps(job.result) if job.result is not None else None,
    }
    if with_input:
        row["input"] = dumps(job.input)
    return row


def event_row(ev: Event) -> dict[str, Any]:
    if ev.snapshot_json is None:
        ev.snapshot_json = dumps(ev.snapshot)
    return {
        "sequence": ev.sequence,
        "job_id": ev.job_id,
        "type": int(ev.type),
        "time": ev.time,
        "previous_status": int(ev.previous_status) if ev.previous_status is not None else None,
        "actor": ev.actor,
        "reason": ev.reason,
        "snapshot": ev.snapshot_json,
    }


def encode_labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    return "\n" + "\n".join(f"{k}={v}" for k, v in sorted(labels.items())) + "\n"


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def event_from_row(row: Mapping[str, Any]) -> Event:
    """The event an ``event_row`` holds."""
    previous = row["previous_status"]
    return Event(
        sequence=row["sequence"],
        job_id=row["job_id"],
        type=JobEventType(row["type"]),
        time=row["time"],
        snapshot=loads(row["snapshot"]),
        previous_status=JobStatus(previous) if previous is not None else None,
        actor=row["actor"],
        reason=row["reason"],
    )


def job_from_row(row: Mapping[str, Any], *, payloads: bool = True) -> Job:
    """The job a ``job_row`` holds (without input and result unless ``payloads``)."""
    doc = loads(row["doc"])
    if payloads:
        doc["input"] = loads(row["input"]) if row["input"] else {}
        doc["result"] = loads(row["result"]) if row["result"] else None
    return Job.from_dict(doc)


def log_line_from_row(row: Mapping[Any, Any]) -> LogLine:
    """The log line a row of the job_logs table holds."""
    return LogLine(
        job_id=row["job_id"],
        index=row["idx"],
        attempt=row["attempt"],
        time=row["time"],
        level=row["level"],
        message=row["message"],
    )


def lock_from_row(row: Mapping[Any, Any]) -> LockRow:
    """The held lock a row of the locks table holds."""
    return LockRow(
        resource=row["resource"],
        holder=row["holder"],
        mode=row["mode"],
        job_id=row["job_id"],
        since=row["since"],
        expires_at=row["expires_at"],
    )


def _job_from_row(row: Any, *, payloads: bool = True) -> Job:
    return job_from_row(row._mapping, payloads=payloads)


def _event_from_row(row: Any) -> Event:
    return event_from_row(row._mapping)


class SqlStore:
    """The database behind the engine. Thread-safe for one writer thread and any reader threads."""

    unavailable_errors: tuple[type[BaseException], ...] = (sa_exc.OperationalError, sa_exc.InterfaceError)

    def __init__(self, url: str, *, idle_in_transaction_timeout: float | None = None) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        #: set while this engine leads several on one PostgreSQL: every write checks it first, in
        #: its own transaction (leadership.py); None: the one engine on its store, no check
        self.fence_epoch: int | None = None
        if self.is_sqlite:
            self.engine: Engine = create_engine(
                url,
                connect_args={"check_same_thread": False, "timeout": 30},
                pool_size=8,
                max_overflow=8,
            )
            event.listen(self.engine, "connect", _sqlite_pragmas)
        else:
            connect_args: dict[str, Any] = {}
            if idle_in_transaction_timeout is not None:
                # A leader stopped mid-transaction (SIGSTOP, a hung host) must not hold its FOR SHARE
                # on the lease row, and so block the next leader's takeover, for ever.
                ms = max(int(idle_in_transaction_timeout * 1000), 500)
                connect_args["options"] = with_options(url, f"-c idle_in_transaction_session_timeout={ms}")
            self.engine = create_engine(
                url, pool_size=8, max_overflow=8, pool_pre_ping=True, connect_args=connect_args
            )
        self._hot = _HotStatements(self.engine.dialect.paramstyle)
        #: SQLite: many rows per statement (UPDATE ... FROM needs SQLite 3.33)
        self._many_rows = self.is_sqlite and sqlite3.sqlite_version_info >= (3, 33, 0)

    def create_schema(self) -> None:
        """Create the tables of an empty database, or check the version of an existing one and
        migrate it (``migrations.SchemaVersionError`` for one a newer jobwarden wrote: untouched)."""
        migrations.upgrade(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    # -- writes -----------------------------------------------------------------------------------

    def write(self, ws: WriteSet) -> None:
        """Write one batch in one transaction: all of it, or (on an exception) none of it.

        Each table's rows go to the driver's ``executemany`` on a connection from the pool:
        SQLAlchemy's transaction objects and per-row parameter processing would hold the GIL against
        the event loop, commit after commit."""
        hot = self._hot
        fence = self.fence_epoch
        connection = self.engine.raw_connection()
        try:
            cursor = connection.cursor()
            if fence is not None:
                # In this transaction: a takeover's UPDATE of the row waits for it, and once the
                # epoch moved on, no write of this engine's can commit (leadership.py).
                cursor.execute(
                    "SELECT epoch FROM engine_leader WHERE id = 1 AND epoch = %s FOR SHARE", (fence,)
                )
                if cursor.fetchone() is None:
                    raise Fenced(f"the lease's epoch is no longer {fence}: a newer leader took over")
            if self._many_rows:
                # One statement per table, not one step per row: the sqlite3 module lets go of the GIL
                # around every step, and taking it back from a busy event loop can cost a switch
                # interval (5 ms) each time (a 30-row commit beside a busy thread: 13-20 ms row by
                # row, 9 ms in one statement).
                for table, columns, rows in (
                    ("jobs", hot.insert_job_columns, ws.new_jobs),
                    ("events", hot.event_columns, ws.events),
                    ("job_logs", hot.log_columns, ws.logs),
                ):
                    for sql, values in _sqlite_inserts(table, columns, rows):
                        cursor.execute(sql, values)
                for sql, values in _sqlite_updates(hot.update_job_columns, ws.changed_jobs):
                    cursor.execute(sql, values)
            else:
                for sql, columns, rows in (
                    (hot.insert_job, hot.insert_job_columns, ws.new_jobs),
                    (hot.update_job, hot.update_job_columns, ws.changed_jobs),
                    (hot.insert_event, hot.event_columns, ws.events),
                    (hot.insert_log, hot.log_columns, ws.logs),
                ):
                    if rows:
                        cursor.executemany(sql, hot.rows(rows, columns))
            if ws.locks_removed:
                cursor.executemany(hot.delete_lock, ws.locks_removed)
            if ws.locks_added:
                cursor.executemany(hot.insert_lock, hot.rows(ws.locks_added, hot.lock_columns))
            if ws.action_configs:
                # One row per key, the last state: a batch may hold several changes of one action (or
                # a worker that connected and left), and the deletes all run before the inserts.
                configs = list({c["action"]: c for c in ws.action_configs}.values())
                cursor.executemany(hot.delete_config, [(c["action"],) for c in configs])
                cursor.executemany(hot.insert_config, hot.rows(configs, hot.config_columns))
            if ws.workers:
                workers = list({w["id"]: w for w in ws.workers}.values())
                cursor.executemany(hot.delete_worker, [(w["id"],) for w in workers])
                cursor.executemany(hot.insert_worker, hot.rows(workers, hot.worker_columns))
            if ws.workflow_definitions:
                cursor.executemany(
                    hot.insert_definition, hot.rows(ws.workflow_definitions, hot.definition_columns)
                )
            if ws.work_orders:
                orders = list({o["id"]: o for o in ws.work_orders}.values())
                cursor.executemany(hot.upsert_order, hot.rows(orders, hot.order_columns))
            if ws.workflow_runs:
                runs = list({r["id"]: r for r in ws.workflow_runs}.values())
                cursor.executemany(hot.upsert_run, hot.rows(runs, hot.run_columns))
            if ws.workflow_events:
                cursor.executemany(
                    hot.insert_workflow_event, hot.rows(ws.workflow_events, hot.workflow_event_columns)
                )
            if fence is not None and (ws.events or ws.workflow_events):
                # Delivered at commit: standbys tailing the event tables read at once.
                newest = max(ev["sequence"] for ev in [*ws.events, *ws.workflow_events])
                cursor.execute("SELECT pg_notify('jobwarden_events', %s)", (str(newest),))
            cursor.close()
            connection.commit()
        except BaseException:
            # Roll back, and let the pool replace the connection: after a failed write it may be broken.
            with contextlib.suppress(Exception):
                connection.rollback()
            with contextlib.suppress(Exception):
                connection.invalidate()
            raise
        finally:
            connection.close()

    # -- reads ------------------------------------------------------------------------------------

    def max_sequence(self) -> int:
        with self.engine.connect() as conn:
            value = conn.execute(select(func.max(events_t.c.sequence))).scalar()
            workflow = conn.execute(select(func.max(workflow_events_t.c.sequence))).scalar()
        return max(int(value or 0), int(workflow or 0))

    def load_unfinished_jobs(self) -> list[Job]:
        """Every job not in a terminal status, oldest first."""
        return [job for page in self.unfinished_job_pages(10_000) for job in page]

    def unfinished_job_pages(self, size: int) -> Iterator[list[Job]]:
        # One query streamed (a server-side cursor on PostgreSQL): paging by id instead ran one
        # sort of the whole table per page where the planner had no statistics yet (a fresh
        # backlog), 20 sorts for 200,000 jobs.
        terminal = [int(s) for s in TERMINAL_STATUSES]
        query = (
            select(jobs_t.c.doc, jobs_t.c.input, jobs_t.c.result)
            .where(jobs_t.c.status.not_in(terminal))
            .order_by(jobs_t.c.id)
        )
        with self.engine.connect() as conn:
            for rows in conn.execution_options(yield_per=size).execute(query).partitions():
                yield [_job_from_row(r) for r in rows]

    def status_counts(self) -> list[tuple[str, int, int]]:
        """(action, status, count) for every pair present."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(jobs_t.c.action, jobs_t.c.status, func.count()).group_by(
                    jobs_t.c.action, jobs_t.c.status
                )
            ).all()
        return [(r[0], int(r[1]), int(r[2])) for r in rows]

    def get_job(self, job_id: str) -> Job | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(jobs_t.c.doc, jobs_t.c.input, jobs_t.c.result).where(jobs_t.c.id == job_id)
            ).first()
        return _job_from_row(row) if row is not None else None

    def job_ids_abbreviated(self, part: str, limit: int) -> list[str]:
        """Ids that start or end with ``part`` (hex digits and dashes only), at most ``limit``."""
        return self._ids_abbreviated(jobs_t, part, limit)

    def _ids_abbreviated(self, table: Table, part: str, limit: int) -> list[str]:
        """The ids in ``table`` that start or end with ``part``, newest first, at most ``limit``."""
        ids = table.c.id
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(ids)
                .where(or_(ids.startswith(part), ids.endswith(part)))
                .order_by(ids.desc())
                .limit(limit)
            ).all()
        return [r.id for r in rows]

    def jobs_by_idempotency_key(self, keys: Iterable[str]) -> dict[str, Job]:
        keys = list(keys)
        if not keys:
            return {}
        found: dict[str, Job] = {}
        with self.engine.connect() as conn:
            for chunk_start in range(0, len(keys), 500):
                chunk = keys[chunk_start : chunk_start + 500]
                rows = conn.execute(
                    select(jobs_t.c.idempotency_key, jobs_t.c.doc, jobs_t.c.input, jobs_t.c.result).where(
                        jobs_t.c.idempotency_key.in_(chunk)
                    )
                ).all()
                for row in rows:
                    found[row.idempotency_key] = _job_from_row(row)
        return found

    def list_jobs(self, query: JobQuery) -> list[Job]:
        """Newest first; at most ``query.page_size`` jobs (the caller asks for one more to know if
        there is a next page)."""
        columns = [jobs_t.c.doc]
        if not query.summary:
            columns += [jobs_t.c.input, jobs_t.c.result]
        stmt = select(*columns)
        conditions = []
        if query.statuses:
            conditions.append(jobs_t.c.status.in_([int(s) for s in query.statuses]))
        if query.action:
            conditions.append(jobs_t.c.action == query.action)
        if query.label:
            if "=" in query.label:
                pattern = f"%\n{_like_escape(query.label)}\n%"
            else:
                pattern = f"%\n{_like_escape(query.label)}=%"
            conditions.append(jobs_t.c.labels.like(pattern, escape="\\"))
        if query.text:
            conditions.append(jobs_t.c.search.like(f"%{_like_escape(query.text.lower())}%", escape="\\"))
        if query.before_id:
            conditions.append(jobs_t.c.id < query.before_id)
        if conditions:
            stmt = stmt.where(and_(*conditions))
        stmt = stmt.order_by(jobs_t.c.id.desc()).limit(query.page_size)
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        return [_job_from_row(r, payloads=not query.summary) for r in rows]

    def job_events(self, job_id: str) -> list[Event]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(events_t).where(events_t.c.job_id == job_id).order_by(events_t.c.sequence)
            ).all()
        return [_event_from_row(r) for r in rows]

    def events_between(self, after: int, up_to: int, limit: int, job_ids: Sequence[str] = ()) -> list[Event]:
        """Events with ``after < sequence <= up_to``, in order, at most ``limit``."""
        stmt = select(events_t).where(events_t.c.sequence > after, events_t.c.sequence <= up_to)
        if job_ids:
            stmt = stmt.where(events_t.c.job_id.in_(list(job_ids)))
        stmt = stmt.order_by(events_t.c.sequence).limit(limit)
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        return [_event_from_row(r) for r in rows]

    def job_logs(self, job_id: str, after_index: int, limit: int) -> list[LogLine]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(logs_t)
                .where(logs_t.c.job_id == job_id, logs_t.c.idx > after_index)
                .order_by(logs_t.c.idx)
                .limit(limit)
            ).all()
        return [log_line_from_row(r._mapping) for r in rows]

    def max_log_index(self, job_id: str) -> int:
        with self.engine.connect() as conn:
            value = conn.execute(select(func.max(logs_t.c.idx)).where(logs_t.c.job_id == job_id)).scalar()
        return int(value or 0)

    def load_locks(self) -> list[LockRow]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(locks_t).order_by(locks_t.c.since)).all()
        return [lock_from_row(r._mapping) for r in rows]

    def load_action_configs(self) -> list[ActionConfig]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(configs_t.c.doc)).all()
        return [ActionConfig.from_dict(loads(r.doc)) for r in rows]

    def mark_all_workers_disconnected(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(workers_t).values(connected=False))

    def count_jobs(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(jobs_t)).scalar() or 0)

    def workers(self) -> list[dict[str, Any]]:
        """The stored worker rows (the engine never reads them back; tests do)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(workers_t).order_by(workers_t.c.id)).all()
        return [{**r._mapping, "connected": bool(r.connected)} for r in rows]

    # -- workflows --------------------------------------------------------------------------------

    def load_workflow_definitions(self) -> list[WorkflowDef]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(workflow_definitions_t.c.doc).order_by(
                    workflow_definitions_t.c.name, workflow_definitions_t.c.version
                )
            ).all()
        return [workflow_rows.definition_from_row(r._mapping) for r in rows]

    def unfinished_run_pages(self, size: int) -> Iterator[list[WorkflowRun]]:
        query = (
            select(workflow_runs_t.c.doc)
            .where(workflow_runs_t.c.status.in_(_UNFINISHED_RUN_STATUSES))
            .order_by(workflow_runs_t.c.id)
        )
        with self.engine.connect() as conn:
            for rows in conn.execution_options(yield_per=size).execute(query).partitions():
                yield [workflow_rows.run_from_row(r._mapping) for r in rows]

    def get_workflow_run(self, run_id: str) -> WorkflowRun | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(workflow_runs_t.c.doc).where(workflow_runs_t.c.id == run_id)).first()
        return workflow_rows.run_from_row(row._mapping) if row is not None else None

    def workflow_runs_of_order(self, work_order_id: str) -> list[WorkflowRun]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(workflow_runs_t.c.doc)
                .where(workflow_runs_t.c.work_order_id == work_order_id)
                .order_by(workflow_runs_t.c.id)
            ).all()
        return [workflow_rows.run_from_row(r._mapping) for r in rows]

    def get_work_order(self, work_order_id: str) -> WorkOrder | None:
        return self._work_order_where(work_orders_t.c.id == work_order_id)

    def work_order_by_idempotency_key(self, key: str) -> WorkOrder | None:
        return self._work_order_where(work_orders_t.c.idempotency_key == key)

    def _work_order_where(self, condition: ColumnElement[bool]) -> WorkOrder | None:
        """The one work order that meets ``condition`` (a unique key's), with its input; None if none."""
        with self.engine.connect() as conn:
            row = conn.execute(select(work_orders_t.c.doc, work_orders_t.c.input).where(condition)).first()
        return workflow_rows.order_from_row(row._mapping) if row is not None else None

    def list_work_orders(self, query: WorkOrderQuery) -> list[WorkOrder]:
        stmt = select(work_orders_t.c.doc)
        conditions = []
        if query.workflow:
            conditions.append(work_orders_t.c.workflow == query.workflow)
        if query.statuses:
            conditions.append(work_orders_t.c.status.in_([int(s) for s in query.statuses]))
        if query.correlation_id:
            conditions.append(work_orders_t.c.correlation_id == query.correlation_id)
        if query.before_id:
            conditions.append(work_orders_t.c.id < query.before_id)
        if conditions:
            stmt = stmt.where(and_(*conditions))
        stmt = stmt.order_by(work_orders_t.c.id.desc()).limit(query.limit)
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        return [workflow_rows.order_from_row(r._mapping, payloads=False) for r in rows]

    def workflow_ids_abbreviated(self, table: str, part: str, limit: int) -> list[str]:
        t = {"work_orders": work_orders_t, "workflow_runs": workflow_runs_t}[table]
        return self._ids_abbreviated(t, part, limit)

    def workflow_events_between(
        self,
        after: int,
        up_to: int,
        limit: int,
        run_ids: Sequence[str] = (),
        work_order_ids: Sequence[str] = (),
    ) -> list[WorkflowEvent]:
        t = workflow_events_t
        stmt = select(t.c.doc).where(t.c.sequence > after, t.c.sequence <= up_to)
        if run_ids or work_order_ids:
            stmt = stmt.where(or_(t.c.run_id.in_(list(run_ids)), t.c.work_order_id.in_(list(work_order_ids))))
        stmt = stmt.order_by(t.c.sequence).limit(limit)
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        return [workflow_rows.event_from_row(r._mapping) for r in rows]


_UNFINISHED_RUN_STATUSES = [int(WorkflowRunStatus.RUNNING), int(WorkflowRunStatus.DELAYED)]


#: the name every caller has used for the SQL store
Store = SqlStore

if TYPE_CHECKING:
    # mypy checks here that the SQL store is a JobStore.
    _sql_store_is_a_job_store: type[JobStore] = SqlStore


class _HotStatements:
    """The statements of the hot path in the driver's own parameter style, with their column order."""

    def __init__(self, paramstyle: str) -> None:
        mark = {"qmark": "?", "format": "%s", "pyformat": "%s"}.get(paramstyle)
        if mark is None:
            raise ValueError(f"unsupported DB-API paramstyle {paramstyle!r}")
        self.insert_job_columns = tuple(c.name for c in jobs_t.columns)
        self.insert_job = _insert_sql("jobs", self.insert_job_columns, mark)
        changing = CHANGING_JOB_COLUMNS
        self.update_job_columns = (*changing, "id")
        self.update_job = f"UPDATE jobs SET {', '.join(f'{c} = {mark}' for c in changing)} WHERE id = {mark}"
        self.event_columns = tuple(c.name for c in events_t.columns)
        self.insert_event = _insert_sql("events", self.event_columns, mark)
        self.log_columns = tuple(c.name for c in logs_t.columns)
        self.insert_log = _insert_sql("job_logs", self.log_columns, mark)
        self.lock_columns = tuple(c.name for c in locks_t.columns)
        self.insert_lock = _insert_sql("locks", self.lock_columns, mark)
        self.delete_lock = f"DELETE FROM locks WHERE resource = {mark} AND holder = {mark}"
        self.config_columns = tuple(c.name for c in configs_t.columns)
        self.insert_config = _insert_sql("action_configs", self.config_columns, mark)
        self.delete_config = f"DELETE FROM action_configs WHERE action = {mark}"
        self.worker_columns = tuple(c.name for c in workers_t.columns)
        self.insert_worker = _insert_sql("workers", self.worker_columns, mark)
        self.delete_worker = f"DELETE FROM workers WHERE id = {mark}"
        self.definition_columns = tuple(c.name for c in workflow_definitions_t.columns)
        self.insert_definition = _insert_sql("workflow_definitions", self.definition_columns, mark)
        self.order_columns = tuple(c.name for c in work_orders_t.columns)
        # Upserts: a run's row changes with nearly every step, and updating it in place touches
        # fewer of the table's indexes than a delete and an insert would.
        self.upsert_order = _upsert_sql("work_orders", self.order_columns, mark)
        self.run_columns = tuple(c.name for c in workflow_runs_t.columns)
        self.upsert_run = _upsert_sql("workflow_runs", self.run_columns, mark)
        self.workflow_event_columns = tuple(c.name for c in workflow_events_t.columns)
        self.insert_workflow_event = _insert_sql("workflow_events", self.workflow_event_columns, mark)

    @staticmethod
    def rows(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> list[tuple[Any, ...]]:
        return [tuple([row[c] for c in columns]) for row in rows]


#: rows per multi-row statement: well under SQLite's 32,766 bound parameters for the widest table
_ROWS_PER_STATEMENT = 500


def _sqlite_inserts(
    table: str, columns: tuple[str, ...], rows: list[dict[str, Any]]
) -> Iterator[tuple[str, list[Any]]]:
    """``INSERT INTO table (...) VALUES (...), (...), ...`` for ``rows``, at most
    ``_ROWS_PER_STATEMENT`` a statement, with their parameters flattened."""
    one = "(" + ", ".join(["?"] * len(columns)) + ")"
    head = f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
    for start in range(0, len(rows), _ROWS_PER_STATEMENT):
        chunk = rows[start : start + _ROWS_PER_STATEMENT]
        yield head + ", ".join([one] * len(chunk)), [row[c] for row in chunk for c in columns]


def _sqlite_updates(columns: tuple[str, ...], rows: list[dict[str, Any]]) -> Iterator[tuple[str, list[Any]]]:
    """``UPDATE jobs ... FROM (VALUES ...)`` for ``rows`` (``columns`` ends with ``id``; each job once)."""
    changing = columns[:-1]
    one = "(" + ", ".join(["?"] * len(columns)) + ")"
    assignments = ", ".join(f"{c} = v.column{i}" for i, c in enumerate(changing, 1))
    for start in range(0, len(rows), _ROWS_PER_STATEMENT):
        chunk = rows[start : start + _ROWS_PER_STATEMENT]
        values = ", ".join([one] * len(chunk))
        where = f"jobs.id = v.column{len(columns)}"
        yield (
            f"UPDATE jobs SET {assignments} FROM (VALUES {values}) AS v WHERE {where}",
            [row[c] for row in chunk for c in columns],
        )


def _insert_sql(table: str, columns: tuple[str, ...], mark: str) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join([mark] * len(columns))})"


def _upsert_sql(table: str, columns: tuple[str, ...], mark: str) -> str:
    """An insert that updates every other column of the row with the same ``id`` (SQLite 3.24+ and
    PostgreSQL spell it alike)."""
    changed = ", ".join(f"{c} = excluded.{c}" for c in columns if c != "id")
    return f"{_insert_sql(table, columns, mark)} ON CONFLICT (id) DO UPDATE SET {changed}"


def _sqlite_pragmas(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=30000")
    _switch_to_wal(cursor)
    # FULL: a committed transaction survives power loss, not only a process crash.
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=OFF")
    cursor.close()


def _switch_to_wal(cursor: Any, patience: float = 30.0) -> None:
    """``PRAGMA journal_mode=WAL``, waiting for other connections: SQLite answers "database is locked"
    at once, without its busy handler, while another connection converts a new file to WAL (several
    engines or tools opening one new database together)."""
    deadline = time.monotonic() + patience
    pause = 0.005
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.2)
