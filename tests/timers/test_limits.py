"""Per-action limits: the concurrency cap (max_running, across all workers, never exceeded), the
admission limit (max_queued: REJECTED with the reason, never runs), pause/resume, and run_at."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time

from jobwarden.contract import ACTIVE_STATUSES, JobStatus
from jobwarden.v1 import executor_service_pb2 as pb
from jobwarden.v1 import job_pb2
from jobwarden.v1 import job_service_pb2 as js

from tests.conftest import EngineHandle, Stubs
from tests.support import RawWorker, wait_for_async
from tests.timers.helpers import (
    Completer,
    events,
    get,
    max_concurrent,
    seconds,
    stamp,
    status_path,
    submit,
    submit_request,
    timeouts,
    wait_status,
)

S = JobStatus


async def configure(stubs: Stubs, **fields: object) -> job_pb2.ActionConfig:
    response = await stubs.jobs.SetActionConfig(
        js.SetActionConfigRequest(config=job_pb2.ActionConfig(**fields))  # type: ignore[arg-type]
    )
    return response.config


async def test_concurrency_cap_holds_under_a_burst(engine: EngineHandle, stubs: Stubs) -> None:
    cap = 3
    await configure(stubs, action="capped", max_running=cap)
    rng = random.Random(7)
    completers = [
        Completer(
            await RawWorker(engine.address, ["capped"], capacity=4, name=f"w{i}").connect(),
            hold=lambda: rng.uniform(0.0, 0.01),
        ).start()
        for i in range(3)
    ]
    samples: list[tuple[int, int]] = []

    async def sample() -> None:
        while True:
            workers = await stubs.executors.ListWorkers(pb.ListWorkersRequest())
            in_hand = sum(len(w.jobs) for w in workers.workers)
            samples.append((engine.core.registry.active("capped"), in_hand))
            await asyncio.sleep(0.001)

    sampler = asyncio.get_running_loop().create_task(sample())
    burst = await stubs.jobs.SubmitJobs(
        js.SubmitJobsRequest(jobs=[submit_request("capped", {"i": i}) for i in range(60)])
    )
    ids = [r.job.id for r in burst.jobs]

    async def all_done() -> bool:
        if sum(len(c.done) for c in completers) < len(ids):
            return False
        return all([(await get(stubs, i)).status == S.COMPLETED for i in ids])

    await wait_for_async(all_done, timeout=60, message="the burst to finish")
    sampler.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sampler
    for completer in completers:
        await completer.stop()

    assert len(samples) > 10
    assert max(active for active, _ in samples) <= cap
    assert max(in_hand for _, in_hand in samples) <= cap
    assert max(active for active, _ in samples) == cap, "the cap was reached (the burst was big enough)"
    # Exact: replaying every event in sequence order, never more than the cap RUNNING at once.
    assert await max_concurrent(stubs, ids, ACTIVE_STATUSES) == cap
    for job_id in ids:
        assert (await get(stubs, job_id)).status == S.COMPLETED


async def test_timed_out_jobs_count_against_the_cap(engine: EngineHandle, stubs: Stubs) -> None:
    await configure(stubs, action="one-at-a-time", max_running=1)
    worker = await RawWorker(engine.address, ["one-at-a-time"], capacity=5).connect()
    first = await submit(stubs, "one-at-a-time", timeouts=timeouts(heartbeat=0.05, takeover=30))
    second = await submit(stubs, "one-at-a-time")
    assignment = await worker.next_assignment()
    assert assignment.job_id == first.id
    await wait_status(stubs, first.id, S.TIMED_OUT)
    engine.core.dispatcher.dispatch()  # a dispatch pass now must not start the second job
    assert (await get(stubs, second.id)).status == S.QUEUED
    assert worker.assignments.empty()
    await worker.complete(assignment)
    assert (await worker.next_ack()).accepted
    assert (await worker.next_assignment()).job_id == second.id
    await worker.close()


async def test_max_queued_rejects_with_the_reason_and_never_runs(engine: EngineHandle, stubs: Stubs) -> None:
    await configure(stubs, action="limited", max_queued=2)
    kept = [await submit(stubs, "limited", {"i": i}) for i in range(2)]
    assert [j.status for j in kept] == [S.QUEUED, S.QUEUED]
    rejected = await submit(stubs, "limited", {"i": 2})
    assert rejected.status == S.REJECTED
    assert "the run limit was reached" in rejected.status_reason
    assert "max_queued" in rejected.status_reason
    stored = await get(stubs, rejected.id)
    assert stored.status == S.REJECTED
    assert stored.status_reason == rejected.status_reason
    # A DELAYED job is waiting too.
    delayed_rejected = await submit(stubs, "limited", run_at=stamp(time.time() + 60))
    assert delayed_rejected.status == S.REJECTED

    worker = await RawWorker(engine.address, ["limited"], capacity=10).connect()
    got = {(await worker.next_assignment()).job_id for _ in kept}
    assert got == {j.id for j in kept}
    engine.core.dispatcher.dispatch()
    assert worker.assignments.empty()
    assert await status_path(stubs, rejected.id) == [S.REJECTED]
    assert (await get(stubs, rejected.id)).attempt == 0
    # Room again once the queue drains: the next submit is accepted and runs.
    accepted = await submit(stubs, "limited", {"i": 3})
    assert accepted.status == S.QUEUED
    assert (await worker.next_assignment()).job_id == accepted.id
    stats = await stubs.jobs.GetStats(js.GetStatsRequest())
    [limited] = [a for a in stats.actions if a.action == "limited"]
    assert limited.rejected == 2
    # Within one batch the limit counts the batch's own jobs.
    await worker.close()
    batch = await stubs.jobs.SubmitJobs(
        js.SubmitJobsRequest(jobs=[submit_request("limited", {"b": i}) for i in range(4)])
    )
    assert [r.job.status for r in batch.jobs] == [S.QUEUED, S.QUEUED, S.REJECTED, S.REJECTED]


async def test_pause_and_resume_dispatch(engine: EngineHandle, stubs: Stubs) -> None:
    worker = await RawWorker(engine.address, ["pausable"], capacity=5).connect()
    running = await submit(stubs, "pausable")
    first = await worker.next_assignment()
    paused = (await stubs.jobs.PauseAction(js.PauseActionRequest(action="pausable"))).config
    assert paused.paused
    waiting = [await submit(stubs, "pausable", {"i": i}) for i in range(3)]
    assert all(j.status == S.QUEUED for j in waiting), "a paused action keeps queueing"
    engine.core.dispatcher.dispatch()
    assert worker.assignments.empty()
    # The running job is not touched by the pause.
    await worker.complete(first)
    assert (await worker.next_ack()).accepted
    assert (await get(stubs, running.id)).status == S.COMPLETED
    engine.core.dispatcher.dispatch()
    assert worker.assignments.empty()
    stats = await stubs.jobs.GetStats(js.GetStatsRequest())
    assert [a.paused for a in stats.actions if a.action == "pausable"] == [True]
    config = (await stubs.jobs.GetActionConfig(js.GetActionConfigRequest(action="pausable"))).config
    assert config.paused

    resumed = (await stubs.jobs.ResumeAction(js.ResumeActionRequest(action="pausable"))).config
    assert not resumed.paused
    got = {(await worker.next_assignment()).job_id for _ in waiting}
    assert got == {j.id for j in waiting}
    await worker.close()


async def test_run_at_goes_through_delayed(engine: EngineHandle, stubs: Stubs) -> None:
    worker = await RawWorker(engine.address, ["later"]).connect()
    run_at = time.time() + 0.1
    job = await submit(stubs, "later", run_at=stamp(run_at))
    assert job.status == S.DELAYED
    assert job.status_reason == "run_at is in the future"
    assert engine.core.timers.due("wake", job.id) is not None
    assignment = await worker.next_assignment()
    assert assignment.job_id == job.id
    history = await events(stubs, job.id)
    assert [S(e.job.status) for e in history[:3]] == [S.DELAYED, S.QUEUED, S.RUNNING]
    assert seconds(history[1].time) >= run_at - 0.002, "not before its time"
    await worker.complete(assignment)
    await worker.next_ack()
    # run_at in the past: QUEUED at once.
    past = await submit(stubs, "later", run_at=stamp(time.time() - 5))
    assert past.status == S.QUEUED
    await worker.close()


async def test_cancel_a_delayed_job_disarms_its_timer(engine: EngineHandle, stubs: Stubs) -> None:
    job = await submit(stubs, "later", run_at=stamp(time.time() + 30))
    await stubs.jobs.CancelJob(js.CancelJobRequest(job_id=job.id))
    assert (await get(stubs, job.id)).status == S.CANCELLED
    assert engine.core.timers.due("wake", job.id) is None
