"""Fill a store with finished jobs fast, for the ``depth`` scenario: batched Core inserts straight
into the tables (one COMPLETED job row and its last event per job), never through the API."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable

from jobwarden.contract import ExecutionMode, JobEventType, JobStatus
from jobwarden.server.core import Attempt, Job, Store

# The rows in the store's own format, into its own tables: the one place the bench knows the schema
# (an import-linter exception in pyproject.toml), as the API would take an hour for a million jobs.
from jobwarden.server.core.store import dumps, events_t, job_row, jobs_t
from sqlalchemy import insert

__all__ = ["seed_finished_jobs", "stored_jobs"]

_TEMPLATE_ID = "00000000-0000-7000-8000-000000000000"


def _old_id(ms: int, counter: int) -> str:
    rand_b = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms << 80) | (0x7 << 76) | (counter << 64) | (0b10 << 62) | rand_b
    return str(uuid.UUID(int=value))


def stored_jobs(db_url: str) -> int:
    store = Store(db_url)
    try:
        store.create_schema()
        return store.count_jobs()
    finally:
        store.close()


def seed_finished_jobs(
    db_url: str,
    count: int,
    *,
    action: str = "bench-history",
    batch: int = 20_000,
    on_progress: Callable[[int], None] | None = None,
) -> float:
    """Add ``count`` COMPLETED jobs (an hour old, each with its final event) to the store at
    ``db_url``; returns the seconds it took. Sequences continue after the store's newest event."""
    started = time.perf_counter()
    store = Store(db_url)
    try:
        store.create_schema()
        now = time.time() - 3600.0
        template = Job(
            id=_TEMPLATE_ID,
            action=action,
            status=JobStatus.COMPLETED,
            input={"n": 0},
            created_at=now,
            updated_at=now + 0.01,
            result={},
            progress=100,
            attempt=1,
            attempts=[Attempt(1, JobStatus.COMPLETED, "seed", ExecutionMode.EXECUTE, now, now + 0.01)],
            worker_id="seed",
            started_at=now + 0.005,
            finished_at=now + 0.01,
        )
        row = job_row(template, with_input=True)
        doc = row["doc"]
        search = row["search"]
        snapshot = dumps(template.to_dict(payloads=False))
        sequence = store.max_sequence()
        base_ms = int(now * 1000)
        done = 0
        while done < count:
            size = min(batch, count - done)
            job_rows = []
            event_rows = []
            for i in range(done, done + size):
                # 4096 ids per millisecond, as new_job_id orders them.
                job_id = _old_id(base_ms + i // 4096, i % 4096)
                job_rows.append(
                    {**row, "id": job_id, "doc": doc.replace(_TEMPLATE_ID, job_id),
                     "search": search.replace(_TEMPLATE_ID, job_id)}
                )  # fmt: skip
                sequence += 1
                event_rows.append(
                    {
                        "sequence": sequence,
                        "job_id": job_id,
                        "type": int(JobEventType.STATUS_CHANGED),
                        "time": now + 0.01,
                        "previous_status": int(JobStatus.RUNNING),
                        "actor": "worker:seed",
                        "reason": "",
                        "snapshot": snapshot.replace(_TEMPLATE_ID, job_id),
                    }
                )
            with store.engine.begin() as conn:
                conn.execute(insert(jobs_t), job_rows)
                conn.execute(insert(events_t), event_rows)
            done += size
            if on_progress is not None:
                on_progress(done)
        if store.is_sqlite:
            # Fold the bulk load into the database file now, not during the measure that follows.
            with store.engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        store.close()
    return time.perf_counter() - started
