"""WatchJobs: every event, in order, gap-free; replay then live with no gap and no duplicate."""

from __future__ import annotations

import asyncio

import pytest
from jobwarden.contract import JobEventType, JobStatus
from jobwarden.server.core import Overflowed
from jobwarden.v1 import job_service_pb2 as js

from tests.conftest import EngineHandle, Stubs
from tests.engine.helpers import Watcher, request, submit
from tests.support import RawWorker, wait_for


async def run_jobs(engine: EngineHandle, stubs: Stubs, count: int, action: str = "work") -> list[str]:
    await stubs.jobs.SubmitJobs(js.SubmitJobsRequest(jobs=[request(action, {"i": i}) for i in range(count)]))
    worker = await RawWorker(engine.address, [action], capacity=8).connect()
    ids = []
    for _ in range(count):
        a = await worker.next_assignment()
        await worker.update(a, progress=50)
        await worker.complete(a)
        ids.append(a.job_id)
    for _ in range(count):
        await worker.next_ack()
    await worker.close()
    return ids


async def test_watch_sees_every_event_in_order_without_gaps(
    any_engine: EngineHandle, any_stubs: Stubs
) -> None:
    watcher = Watcher(any_stubs)
    await asyncio.sleep(0.1)
    await run_jobs(any_engine, any_stubs, 20)
    # Each job: SUBMITTED, RUNNING, UPDATED, COMPLETED.
    await wait_for(lambda: len(watcher.events) >= 80, message="80 events")
    sequences = watcher.sequences()
    assert sequences == list(range(sequences[0], sequences[0] + len(sequences)))
    per_job: dict[str, list[int]] = {}
    for ev in watcher.events:
        per_job.setdefault(ev.job_id, []).append(ev.job.status)
    assert all(
        s == [JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.RUNNING, JobStatus.COMPLETED]
        for s in per_job.values()
    )
    assert not watcher.events[0].job.HasField("input"), "events carry the job without its input"
    watcher.cancel()


async def test_reconnect_with_after_sequence_misses_nothing_and_repeats_nothing(
    any_engine: EngineHandle, any_stubs: Stubs
) -> None:
    first = Watcher(any_stubs)
    await asyncio.sleep(0.1)
    await run_jobs(any_engine, any_stubs, 5)
    await wait_for(lambda: len(first.events) >= 20)
    first.cancel()
    last_seen = first.events[9].sequence  # as if the connection dropped half way
    # Changes happen while nobody watches.
    await run_jobs(any_engine, any_stubs, 5)
    second = Watcher(any_stubs, after_sequence=last_seen)
    await wait_for(lambda: second.events and second.events[-1].sequence >= 40 + first.events[0].sequence - 1)
    # ... and go on live.
    await run_jobs(any_engine, any_stubs, 3)
    head = (await any_stubs.jobs.GetStats(js.GetStatsRequest())).head_sequence
    await wait_for(lambda: second.events and second.events[-1].sequence == head)
    assert second.sequences() == list(range(last_seen + 1, head + 1))
    second.cancel()


async def test_replay_and_live_hand_over_without_a_gap_under_load(engine: EngineHandle, stubs: Stubs) -> None:
    """Events keep being made while a watcher replays history: it still sees each exactly once."""
    await run_jobs(engine, stubs, 30)
    producing = asyncio.get_running_loop().create_task(run_jobs(engine, stubs, 40, "other"))
    watcher = Watcher(stubs, after_sequence=0)
    await producing
    head = (await stubs.jobs.GetStats(js.GetStatsRequest())).head_sequence
    await wait_for(lambda: watcher.events and watcher.events[-1].sequence == head, timeout=30)
    assert watcher.sequences() == list(range(1, head + 1))
    watcher.cancel()


async def test_filters_by_status_action_and_job(engine: EngineHandle, stubs: Stubs) -> None:
    by_status = Watcher(stubs, statuses=[JobStatus.COMPLETED])
    by_action = Watcher(stubs, actions=["other"])
    await asyncio.sleep(0.1)
    target = await submit(stubs, "other")
    by_job = Watcher(stubs, job_ids=[target.id], after_sequence=0)
    await run_jobs(engine, stubs, 3)
    await wait_for(lambda: len(by_status.events) == 3)
    assert {e.job.status for e in by_status.events} == {JobStatus.COMPLETED}
    await stubs.jobs.CancelJob(js.CancelJobRequest(job_id=target.id))
    await wait_for(lambda: len(by_job.events) == 2)
    assert [e.type for e in by_job.events] == [JobEventType.SUBMITTED, JobEventType.STATUS_CHANGED]
    await wait_for(lambda: len(by_action.events) == 2)
    assert {e.job.action for e in by_action.events} == {"other"}
    for w in (by_status, by_action, by_job):
        w.cancel()


async def test_keepalives_arrive_while_nothing_happens(engine: EngineHandle, stubs: Stubs) -> None:
    watcher = Watcher(stubs)
    await wait_for(lambda: watcher.keepalives >= 2, message="two keep-alive batches")
    watcher.cancel()


async def test_a_slow_watcher_is_cut_and_the_others_keep_up(engine: EngineHandle, stubs: Stubs) -> None:
    fast = engine.core.bus.subscribe(max_pending=10_000)
    slow = engine.core.bus.subscribe(max_pending=50)
    seen: list[int] = []

    async def read_fast() -> None:
        while True:
            seen.extend(e.sequence for e in await fast.next_batch())

    reader = asyncio.get_running_loop().create_task(read_fast())
    for _ in range(4):
        await stubs.jobs.SubmitJobs(js.SubmitJobsRequest(jobs=[request("work") for _ in range(50)]))
    await wait_for(lambda: len(seen) == 200)
    assert seen == list(range(1, 201))
    assert slow.overflowed
    with pytest.raises(Overflowed, match="reconnect with after_sequence"):
        await slow.next_batch()
    reader.cancel()
    # A watcher that reconnects from its last sequence catches up on everything.
    call = stubs.jobs.WatchJobs(js.WatchJobsRequest(after_sequence=0))
    got: list[int] = []
    async for response in call:
        got.extend(e.sequence for e in response.events)
        if len(got) >= 200:
            break
    assert got[:200] == list(range(1, 201))
    call.cancel()


async def test_watch_from_a_job_read_sequence_before_its_commit(engine: EngineHandle, stubs: Stubs) -> None:
    """A job read from memory may carry a sequence not yet committed: watching from it is allowed, and
    events up to it are not sent again."""
    job = await submit(stubs)
    worker = await RawWorker(engine.address, ["work"]).connect()
    a = await worker.next_assignment()
    got = await stubs.jobs.GetJob(js.GetJobRequest(job_id=job.id))
    watcher = Watcher(stubs, after_sequence=got.job.sequence, job_ids=[job.id])
    await worker.complete(a)
    await wait_for(lambda: watcher.events)
    assert watcher.events[0].sequence > got.job.sequence
    assert watcher.events[-1].job.status == JobStatus.COMPLETED
    assert watcher.error is None
    watcher.cancel()
    await worker.close()
