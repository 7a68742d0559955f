"""The store contract: one suite of behaviours every JobStore keeps, run against SQLite (a temp file),
PostgreSQL (skipped, with the reason, when it is not there) and the in-memory store."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from jobwarden.contract import JobEventType, JobStatus, LockMode
from jobwarden.server.core import ActionConfig, Event, Job, JobQuery, JobStore, LogLine, WriteSet
from jobwarden.server.core.memory_store import MemoryStore, MemoryStoreConflict
from jobwarden.server.core.store import SqlStore, dumps, event_row, job_row

T0 = 1_700_000_000.0
#: what each store raises for a batch that breaks a key: its driver's error, or the memory store's
KEY_BROKEN = (sqlite3.IntegrityError, psycopg.IntegrityError, MemoryStoreConflict)


def job_id(n: int, tail: str = "") -> str:
    """Ids that sort as ``n`` does (as new_job_id's do), with a chosen end."""
    end = (tail or f"{n:012x}").rjust(12, "0")
    return f"0190{n:04x}-0000-7000-8000-{end}"


def make_job(
    n: int,
    *,
    action: str = "build",
    status: JobStatus = JobStatus.QUEUED,
    key: str = "",
    labels: dict[str, str] | None = None,
    message: str = "",
    tail: str = "",
) -> Job:
    return Job(
        id=job_id(n, tail),
        action=action,
        status=status,
        input={"n": n, "text": "héllo"},
        created_at=T0 + n,
        updated_at=T0 + n,
        idempotency_key=key,
        labels=labels or {},
        message=message,
        correlation_id=f"corr-{n}",
    )


def make_event(sequence: int, job: Job, *, previous: JobStatus | None = None) -> Event:
    return Event(
        sequence=sequence,
        job_id=job.id,
        type=JobEventType.STATUS_CHANGED if previous is not None else JobEventType.SUBMITTED,
        time=T0 + sequence,
        snapshot=job.to_dict(payloads=False),
        previous_status=previous,
        actor="engine",
        reason=f"event {sequence}",
    )


def log_row(job: Job, index: int) -> dict[str, Any]:
    return {
        "job_id": job.id,
        "idx": index,
        "attempt": 1,
        "time": T0 + index,
        "level": "INFO",
        "message": f"line {index}",
    }


def lock_row(resource: str, holder: str, since: float, job: Job | None = None) -> dict[str, Any]:
    return {
        "resource": resource,
        "holder": holder,
        "mode": int(LockMode.EXCLUSIVE),
        "job_id": job.id if job else None,
        "since": since,
        "expires_at": since + 60 if job is None else None,
    }


def worker_row(worker_id: str, *, connected: bool = True) -> dict[str, Any]:
    return {
        "id": worker_id,
        "name": f"name of {worker_id}",
        "doc": "{}",
        "connected_at": T0,
        "last_seen_at": T0 + 1,
        "connected": connected,
    }


def config_row(config: ActionConfig) -> dict[str, Any]:
    return {"action": config.action, "doc": dumps(config.to_dict())}


def new_jobs(*jobs: Job) -> WriteSet:
    return WriteSet(new_jobs=[job_row(j, with_input=True) for j in jobs])


@pytest.fixture(params=["sqlite", "postgres", "memory"])
def store(request: pytest.FixtureRequest) -> Iterator[JobStore]:
    made: JobStore
    if request.param == "memory":
        made = MemoryStore()
    else:
        made = SqlStore(request.getfixturevalue(f"{request.param}_url"))
    made.create_schema()
    yield made
    made.close()


def stored_workers(store: JobStore) -> list[dict[str, Any]]:
    assert isinstance(store, SqlStore | MemoryStore)
    return sorted(store.workers(), key=lambda w: str(w["id"]))


def same(job: Job | None, expected: Job) -> bool:
    return job is not None and job.to_dict() == expected.to_dict()


def test_an_empty_store_answers_with_nothing(store: JobStore) -> None:
    assert store.max_sequence() == 0
    assert store.load_unfinished_jobs() == []
    assert store.status_counts() == []
    assert store.get_job(job_id(1)) is None
    assert store.job_ids_abbreviated("0001", 5) == []
    assert store.jobs_by_idempotency_key(["k"]) == {}
    assert store.jobs_by_idempotency_key([]) == {}
    assert store.list_jobs(JobQuery()) == []
    assert store.job_events(job_id(1)) == []
    assert store.events_between(0, 100, 10) == []
    assert store.job_logs(job_id(1), 0, 10) == []
    assert store.max_log_index(job_id(1)) == 0
    assert store.load_locks() == []
    assert store.load_action_configs() == []
    assert store.count_jobs() == 0


def test_a_batch_of_every_kind_reads_back_through_every_method(store: JobStore) -> None:
    queued = make_job(1, key="key-1", labels={"env": "prod"})
    running = make_job(2, status=JobStatus.RUNNING)
    done = make_job(3, status=JobStatus.COMPLETED, action="deploy")
    done.result = {"ok": True}
    config = ActionConfig(action="build", max_running=3, paused=True)
    store.write(
        WriteSet(
            new_jobs=[job_row(j, with_input=True) for j in (queued, running, done)],
            events=[event_row(make_event(s, j)) for s, j in ((1, queued), (2, running), (3, done))],
            logs=[log_row(running, 1), log_row(running, 2)],
            locks_added=[lock_row("asset:1", "job:2", T0 + 2, running), lock_row("asset:0", "ext", T0 + 1)],
            action_configs=[config_row(config)],
            workers=[worker_row("w-1"), worker_row("w-2", connected=False)],
        )
    )

    assert same(store.get_job(queued.id), queued)
    assert same(store.get_job(done.id), done)
    assert store.count_jobs() == 3
    assert store.max_sequence() == 3
    assert [j.id for j in store.load_unfinished_jobs()] == [queued.id, running.id]
    assert same(store.load_unfinished_jobs()[0], queued)
    assert sorted(store.status_counts()) == [
        ("build", int(JobStatus.QUEUED), 1),
        ("build", int(JobStatus.RUNNING), 1),
        ("deploy", int(JobStatus.COMPLETED), 1),
    ]
    found = store.jobs_by_idempotency_key(["key-1", "no-such-key"])
    assert list(found) == ["key-1"]
    assert same(found["key-1"], queued)
    [event] = store.job_events(running.id)
    assert (event.sequence, event.type, event.reason, event.snapshot) == (
        2,
        JobEventType.SUBMITTED,
        "event 2",
        running.to_dict(payloads=False),
    )
    assert store.job_logs(running.id, 0, 10) == [
        LogLine(running.id, 1, 1, T0 + 1, "INFO", "line 1"),
        LogLine(running.id, 2, 1, T0 + 2, "INFO", "line 2"),
    ]
    assert store.job_logs(running.id, 1, 10) == [LogLine(running.id, 2, 1, T0 + 2, "INFO", "line 2")]
    assert store.job_logs(running.id, 0, 1) == [LogLine(running.id, 1, 1, T0 + 1, "INFO", "line 1")]
    assert store.max_log_index(running.id) == 2
    assert store.max_log_index(queued.id) == 0
    locks = store.load_locks()
    assert [(lock.resource, lock.holder, lock.job_id, lock.expires_at) for lock in locks] == [
        ("asset:0", "ext", None, T0 + 61),
        ("asset:1", "job:2", running.id, None),
    ]
    assert [c.to_dict() for c in store.load_action_configs()] == [config.to_dict()]
    assert [(w["id"], bool(w["connected"])) for w in stored_workers(store)] == [("w-1", True), ("w-2", False)]


def test_unfinished_jobs_come_a_page_at_a_time_in_id_order(store: JobStore) -> None:
    """A new leader reads its backlog in pages (core/flow.py ``read_pages``), each a sign of progress."""
    statuses = [JobStatus.QUEUED, JobStatus.COMPLETED, JobStatus.RUNNING, JobStatus.FAILED, JobStatus.DELAYED]
    jobs = [make_job(n, status=statuses[n % len(statuses)]) for n in range(1, 13)]
    store.write(new_jobs(*reversed(jobs)))
    unfinished = [j for j in jobs if j.status not in (JobStatus.COMPLETED, JobStatus.FAILED)]

    pages = list(store.unfinished_job_pages(3))
    assert [len(page) for page in pages] == [3, 3, 1]
    assert [j.id for page in pages for j in page] == [j.id for j in unfinished]
    assert [j.id for j in store.load_unfinished_jobs()] == [j.id for j in unfinished]
    assert all(same(got, want) for got, want in zip((j for p in pages for j in p), unfinished, strict=True))
    assert [[j.id for j in page] for page in store.unfinished_job_pages(100)] == [[j.id for j in unfinished]]


def test_a_changed_job_shows_its_new_state_and_keeps_its_input(store: JobStore) -> None:
    job = make_job(1)
    store.write(new_jobs(job))
    job.status = JobStatus.COMPLETED
    job.result = {"answer": 42}
    job.message = "done"
    job.updated_at = T0 + 10
    store.write(
        WriteSet(changed_jobs=[job_row(job, with_input=False)], events=[event_row(make_event(1, job))])
    )

    assert same(store.get_job(job.id), job)
    assert store.get_job(job.id).input == {"n": 1, "text": "héllo"}  # type: ignore[union-attr]
    assert store.load_unfinished_jobs() == []
    assert store.status_counts() == [("build", int(JobStatus.COMPLETED), 1)]
    assert [j.id for j in store.list_jobs(JobQuery(text="DONE"))] == [job.id]


def test_a_job_may_be_inserted_and_changed_in_one_batch(store: JobStore) -> None:
    job = make_job(1)
    inserted = job_row(job, with_input=True)
    job.status = JobStatus.RUNNING
    store.write(WriteSet(new_jobs=[inserted], changed_jobs=[job_row(job, with_input=False)]))
    assert store.get_job(job.id).status is JobStatus.RUNNING  # type: ignore[union-attr]


def test_events_between_is_in_order_bounded_and_filtered(store: JobStore) -> None:
    a, b = make_job(1), make_job(2)
    store.write(new_jobs(a, b))
    for first in (1, 4):  # two batches, so order is the store's, not one insert's
        store.write(
            WriteSet(events=[event_row(make_event(s, a if s % 2 else b)) for s in range(first, first + 3)])
        )

    def sequences(*args: Any) -> list[int]:
        return [e.sequence for e in store.events_between(*args)]

    assert sequences(0, 6, 100) == [1, 2, 3, 4, 5, 6]
    assert sequences(2, 5, 100) == [3, 4, 5]
    assert sequences(0, 6, 2) == [1, 2]
    assert sequences(4, 6, 100) == [5, 6]
    assert sequences(6, 100, 100) == []
    assert sequences(0, 6, 100, [a.id]) == [1, 3, 5]
    assert sequences(1, 6, 2, [b.id]) == [2, 4]
    assert sequences(0, 6, 100, [job_id(9)]) == []
    assert [e.sequence for e in store.job_events(b.id)] == [2, 4, 6]
    assert store.max_sequence() == 6


def test_idempotency_keys_find_their_jobs_only(store: JobStore) -> None:
    jobs = [make_job(n, key=f"key-{n}" if n % 2 else "") for n in range(1, 7)]
    store.write(new_jobs(*jobs))
    found = store.jobs_by_idempotency_key(f"key-{n}" for n in range(0, 8))
    assert sorted(found) == ["key-1", "key-3", "key-5"]
    assert all(found[f"key-{n}"].id == job_id(n) for n in (1, 3, 5))
    assert store.jobs_by_idempotency_key([""]) == {}


def test_list_jobs_filters_and_pages_newest_first(store: JobStore) -> None:
    store.write(
        new_jobs(
            make_job(1, labels={"env": "prod", "team": "a"}, message="Deploying 100% now"),
            make_job(2, action="deploy", labels={"env": "dev"}),
            make_job(3, status=JobStatus.FAILED, labels={"envx": "prod"}),
            make_job(4, status=JobStatus.COMPLETED, message="under_score"),
            make_job(5, action="deploy", status=JobStatus.RUNNING, labels={"env": "prod"}),
        )
    )

    def ids(**query: Any) -> list[int]:
        return [int(j.id[4:8], 16) for j in store.list_jobs(JobQuery(**query))]

    assert ids() == [5, 4, 3, 2, 1]
    assert ids(statuses=[JobStatus.QUEUED]) == [2, 1]
    assert ids(statuses=[JobStatus.FAILED, JobStatus.RUNNING]) == [5, 3]
    assert ids(action="deploy") == [5, 2]
    assert ids(action="nothing") == []
    assert ids(label="env") == [5, 2, 1]
    assert ids(label="env=prod") == [5, 1]
    assert ids(label="env=pro") == []
    assert ids(text="100%") == [1]
    assert ids(text="deploying") == [1]
    assert ids(text="%") == [1]
    assert ids(text="_") == [4]
    assert ids(text="corr-3") == [3]
    assert ids(action="deploy", label="env=prod") == [5]
    # Paging: the caller passes the last id of the previous page.
    assert ids(page_size=2) == [5, 4]
    assert ids(page_size=2, before_id=job_id(4)) == [3, 2]
    assert ids(page_size=2, before_id=job_id(2)) == [1]
    assert ids(page_size=2, before_id=job_id(1)) == []
    assert ids(page_size=1, before_id=job_id(5), statuses=[JobStatus.QUEUED]) == [2]

    [full] = store.list_jobs(JobQuery(page_size=1))
    [summary] = store.list_jobs(JobQuery(page_size=1, summary=True))
    assert full.input == {"n": 5, "text": "héllo"}
    assert summary.input == {}
    assert summary.to_dict(payloads=False) == full.to_dict(payloads=False)


def test_job_ids_abbreviated_match_either_end_newest_first(store: JobStore) -> None:
    store.write(
        new_jobs(
            make_job(1, tail="aaaa1111"),
            make_job(2, tail="bbbb1111"),
            make_job(3, tail="cccc2222"),
        )
    )
    assert store.job_ids_abbreviated("bbbb1111", 5) == [job_id(2, "bbbb1111")]
    assert store.job_ids_abbreviated("1111", 5) == [job_id(2, "bbbb1111"), job_id(1, "aaaa1111")]
    assert store.job_ids_abbreviated("1111", 1) == [job_id(2, "bbbb1111")]
    assert store.job_ids_abbreviated("01900003", 5) == [job_id(3, "cccc2222")]
    assert store.job_ids_abbreviated("0190", 5) == [
        job_id(n, t) for n, t in ((3, "cccc2222"), (2, "bbbb1111"), (1, "aaaa1111"))
    ]
    assert store.job_ids_abbreviated("dddd", 5) == []


def test_locks_removed_and_added_in_one_batch(store: JobStore) -> None:
    store.write(WriteSet(locks_added=[lock_row("r", "a", T0), lock_row("r", "b", T0 + 1)]))
    # The same holder takes the same resource again, in the batch that releases it.
    store.write(WriteSet(locks_removed=[("r", "a")], locks_added=[lock_row("r", "a", T0 + 5)]))
    store.write(WriteSet(locks_removed=[("r", "b"), ("r", "nobody")]))
    assert [(lock.resource, lock.holder, lock.since) for lock in store.load_locks()] == [("r", "a", T0 + 5)]


def test_the_last_state_of_a_worker_or_an_action_config_in_a_batch_wins(store: JobStore) -> None:
    store.write(
        WriteSet(
            workers=[worker_row("w-1"), worker_row("w-1", connected=False), worker_row("w-2")],
            action_configs=[
                config_row(ActionConfig(action="a")),
                config_row(ActionConfig(action="a", paused=True)),
            ],
        )
    )
    store.write(WriteSet(workers=[worker_row("w-1")], action_configs=[config_row(ActionConfig(action="b"))]))
    assert [(w["id"], bool(w["connected"])) for w in stored_workers(store)] == [("w-1", True), ("w-2", True)]
    assert sorted((c.action, c.paused) for c in store.load_action_configs()) == [("a", True), ("b", False)]

    store.mark_all_workers_disconnected()
    assert [(w["id"], bool(w["connected"])) for w in stored_workers(store)] == [
        ("w-1", False),
        ("w-2", False),
    ]


@pytest.mark.parametrize(
    "broken",
    [
        pytest.param(lambda kept: new_jobs(make_job(1)), id="a job id twice"),
        pytest.param(lambda kept: new_jobs(make_job(7, key="key-1")), id="an idempotency key twice"),
        pytest.param(lambda kept: WriteSet(events=[event_row(make_event(1, kept))]), id="an event twice"),
        pytest.param(lambda kept: WriteSet(logs=[log_row(kept, 1)]), id="a log line twice"),
        pytest.param(lambda kept: WriteSet(locks_added=[lock_row("r", "a", T0)]), id="a lock twice"),
        pytest.param(lambda kept: new_jobs(make_job(8), make_job(8)), id="a job twice in one batch"),
    ],
)
def test_a_batch_that_breaks_a_key_is_refused_and_writes_nothing(store: JobStore, broken: Any) -> None:
    kept = make_job(1, key="key-1")
    store.write(
        WriteSet(
            new_jobs=[job_row(kept, with_input=True)],
            events=[event_row(make_event(1, kept))],
            logs=[log_row(kept, 1)],
            locks_added=[lock_row("r", "a", T0)],
        )
    )
    batch: WriteSet = broken(kept)
    # Everything else in the batch must vanish with it.
    batch.new_jobs.append(job_row(make_job(9), with_input=True))
    batch.events.append(event_row(make_event(9, kept)))
    batch.logs.append(log_row(kept, 9))
    batch.workers.append(worker_row("w-9"))
    with pytest.raises(KEY_BROKEN):
        store.write(batch)

    assert store.count_jobs() == 1
    assert store.get_job(job_id(9)) is None
    assert store.max_sequence() == 1
    assert store.max_log_index(kept.id) == 1
    assert [(lock.resource, lock.holder) for lock in store.load_locks()] == [("r", "a")]
    assert stored_workers(store) == []
    # And the store still takes a good batch.
    store.write(new_jobs(make_job(10)))
    assert store.count_jobs() == 2
