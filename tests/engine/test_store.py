"""The store's batched write: what one group commit may hold."""

from __future__ import annotations

import pytest
from jobwarden.contract import JobEventType, JobStatus
from jobwarden.server.core.ids import new_job_id
from jobwarden.server.core.model import Event, Job
from jobwarden.server.core.store import Store, WriteSet, configs_t, event_row, job_row, workers_t
from sqlalchemy import select


def worker_row(worker_id: str, *, connected: bool) -> dict[str, object]:
    return {
        "id": worker_id,
        "name": "w",
        "doc": "{}",
        "connected_at": 1.0,
        "last_seen_at": 2.0,
        "connected": connected,
    }


@pytest.mark.parametrize("url_fixture", ["sqlite_url", "postgres_url"])
def test_one_batch_may_change_a_worker_or_an_action_twice_and_the_last_state_wins(
    url_fixture: str, request: pytest.FixtureRequest
) -> None:
    store = Store(request.getfixturevalue(url_fixture))
    store.create_schema()
    # A worker that connected and left within one group commit; an action configured twice.
    ws = WriteSet(
        workers=[worker_row("w-1", connected=True), worker_row("w-1", connected=False)],
        action_configs=[
            {"action": "a", "doc": '{"action": "a"}'},
            {"action": "a", "doc": '{"action": "a", "paused": true}'},
        ],
    )
    store.write(ws)
    store.write(WriteSet(workers=[worker_row("w-1", connected=True)]))
    with store.engine.connect() as conn:
        workers = conn.execute(select(workers_t.c.id, workers_t.c.connected)).all()
        configs = conn.execute(select(configs_t.c.doc)).all()
    store.close()
    assert [(w.id, bool(w.connected)) for w in workers] == [("w-1", True)]
    assert [c.doc for c in configs] == ['{"action": "a", "paused": true}']


@pytest.mark.parametrize("url_fixture", ["sqlite_url", "postgres_url"])
def test_a_batch_larger_than_one_statement_writes_every_row(
    url_fixture: str, request: pytest.FixtureRequest
) -> None:
    # SQLite writes many rows per statement (at most 500): a batch of 1,201 jobs spans three, and a
    # second batch changes them all (UPDATE ... FROM VALUES) without touching their input.
    store = Store(request.getfixturevalue(url_fixture))
    store.create_schema()
    jobs = [
        Job(
            id=new_job_id(),
            action="a",
            status=JobStatus.QUEUED,
            input={"n": n},
            created_at=1.0,
            updated_at=1.0,
        )
        for n in range(1201)
    ]
    events = [
        Event(
            sequence=n + 1,
            job_id=job.id,
            type=JobEventType.SUBMITTED,
            time=1.0,
            snapshot=job.to_dict(payloads=False),
        )
        for n, job in enumerate(jobs)
    ]
    store.write(
        WriteSet(
            new_jobs=[job_row(job, with_input=True) for job in jobs], events=[event_row(ev) for ev in events]
        )
    )
    for job in jobs:
        job.status = JobStatus.RUNNING
        job.updated_at = 2.0
    store.write(WriteSet(changed_jobs=[job_row(job, with_input=False) for job in jobs]))
    try:
        loaded = {job.id: job for job in store.load_unfinished_jobs()}
        replayed = store.events_between(0, 2000, 2000)
    finally:
        store.close()
    assert len(loaded) == 1201
    assert {job.status for job in loaded.values()} == {JobStatus.RUNNING}
    assert all(loaded[job.id].input == job.input for job in jobs)
    assert [ev.sequence for ev in replayed] == list(range(1, 1202))
