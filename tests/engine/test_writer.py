"""The group commit's hand-offs: the flushes of one batch share one future and one timer, give up with
StoreUnavailable (and nothing published) while the store refuses writes, and go on once it writes again."""

from __future__ import annotations

import asyncio
import threading

import pytest
from jobwarden.contract import JobEventType, JobStatus
from jobwarden.server.core import MemoryStore, StoreUnavailable, Writer
from jobwarden.server.core.ids import new_job_id
from jobwarden.server.core.model import Event, Job
from jobwarden.server.core.store_api import WriteSet


class RefusingStore(MemoryStore):
    """A store that refuses every write while ``down`` is set (as a database outage would)."""

    def __init__(self) -> None:
        super().__init__()
        self.down = threading.Event()

    def write(self, ws: WriteSet) -> None:
        if self.down.is_set():
            raise OSError("the database is down")
        super().write(ws)


def job_and_event(sequence: int) -> tuple[Job, Event]:
    job = Job(id=new_job_id(), action="a", status=JobStatus.QUEUED, input={}, created_at=1.0, updated_at=1.0)
    job.sequence = sequence
    event = Event(
        sequence=sequence,
        job_id=job.id,
        type=JobEventType.SUBMITTED,
        time=1.0,
        snapshot=job.to_dict(payloads=False),
    )
    return job, event


async def test_many_flushes_of_one_batch_return_after_its_one_commit() -> None:
    published: list[list[int]] = []
    writer = Writer(
        MemoryStore(), lambda events, _workflow_events: published.append([ev.sequence for ev in events])
    )
    writer.start()
    try:
        for sequence in (1, 2, 3):
            job, event = job_and_event(sequence)
            writer.job_added(job)
            writer.event(event)
        await asyncio.gather(*(writer.flush() for _ in range(50)))
        assert published == [[1, 2, 3]]
        assert writer.stats.commits == 1
        # A flush with nothing pending returns too.
        await writer.flush()
    finally:
        await writer.close()


async def test_a_flush_gives_up_while_the_store_refuses_and_nothing_is_published() -> None:
    store = RefusingStore()
    published: list[int] = []
    writer = Writer(
        store,
        lambda events, workflow_events: published.extend(ev.sequence for ev in events),
        caller_timeout=0.3,
        retry_delay=0.01,
    )
    writer.start()
    try:
        store.down.set()
        job, event = job_and_event(1)
        writer.job_added(job)
        writer.event(event)
        with pytest.raises(StoreUnavailable, match=r"did not commit within 0.3s .*nothing was acknowledged"):
            await writer.flush()
        assert published == []
        # A later change waits a caller_timeout of its own (it does not inherit the expired one); a
        # long one here, as the writer's retries back off while the store is down.
        writer.caller_timeout = 30.0
        later, later_event = job_and_event(2)
        writer.job_added(later)
        writer.event(later_event)
        waiting = asyncio.ensure_future(writer.flush())
        await asyncio.sleep(0.1)
        assert not waiting.done()
        # A cancelled flush leaves the others waiting.
        cancelled = asyncio.ensure_future(writer.flush())
        await asyncio.sleep(0)
        cancelled.cancel()
        store.down.clear()
        await asyncio.wait_for(waiting, 30)
        assert published == [1, 2]
        assert writer.healthy
    finally:
        store.down.clear()
        await writer.close()
