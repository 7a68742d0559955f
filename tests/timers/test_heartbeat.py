"""The two heartbeat deadlines (JEF): no update for heartbeat_timeout -> TIMED_OUT; an update before the
takeover deadline brings it back; past it, another worker that supports resume takes it over (RESUME with
the checkpoint, a new attempt number that fences the old worker off), or the job FAILED(LOST)."""

from __future__ import annotations

import contextlib
import time

import grpc
import pytest
from jobwarden.contract import ErrorKind, ExecutionMode, JobStatus
from jobwarden.v1 import executor_service_pb2 as pb
from jobwarden.v1 import job_pb2
from jobwarden.v1 import job_service_pb2 as js

from tests.conftest import EngineHandle, Stubs
from tests.support import RawWorker, wait_for, wait_for_async
from tests.timers.helpers import (
    dur,
    get,
    lock,
    retry_policy,
    seconds,
    status_path,
    struct,
    submit,
    timeouts,
    wait_path,
    wait_status,
)

S = JobStatus


def kept_alive(
    worker: RawWorker, *assignments: pb.Assignment, every: float = 0.01
) -> contextlib.AbstractAsyncContextManager[None]:
    """Heartbeat ``assignments`` until the block ends (then the worker goes silent)."""
    return worker.beating(*assignments, every=every)


@pytest.mark.parametrize("how", ["update", "heartbeat"])
async def test_timed_out_job_resumes_on_the_same_worker(engine: EngineHandle, stubs: Stubs, how: str) -> None:
    worker = await RawWorker(engine.address, ["encode"]).connect()
    job = await submit(stubs, "encode", timeouts=timeouts(heartbeat=0.05, takeover=30))
    assignment = await worker.next_assignment()
    timed_out = await wait_status(stubs, job.id, S.TIMED_OUT)
    assert timed_out.status_reason == "no update for 0.05s"
    assert seconds(timed_out.deadlines.takeover) > time.time()
    assert engine.core.timers.due("takeover", job.id) is not None

    if how == "update":
        await worker.update(assignment, progress=40, message="still here")
    else:
        await worker.heartbeat(assignment)
    await wait_path(stubs, job.id, S.QUEUED, S.RUNNING, S.TIMED_OUT, S.RUNNING)
    # The first deadline is armed again: silent once more, it times out once more.
    again = await wait_status(stubs, job.id, S.TIMED_OUT)
    assert again.attempt == 1
    assert again.worker_id == worker.worker_id
    # A result before the second deadline finishes it (back to RUNNING first).
    await worker.complete(assignment, {"done": True})
    assert (await worker.next_ack()).accepted
    done = await get(stubs, job.id)
    assert done.status == S.COMPLETED
    assert [a.number for a in done.attempts] == [1]
    assert await status_path(stubs, job.id) == [
        S.QUEUED,
        S.RUNNING,
        S.TIMED_OUT,
        S.RUNNING,
        S.TIMED_OUT,
        S.RUNNING,
        S.COMPLETED,
    ]
    await worker.close()


async def test_heartbeats_keep_a_job_running(engine: EngineHandle, stubs: Stubs) -> None:
    worker = await RawWorker(engine.address, ["encode"]).connect()
    job = await submit(stubs, "encode", timeouts=timeouts(heartbeat=0.25))
    assignment = await worker.next_assignment()
    until = time.time() + 1.0
    async with kept_alive(worker, assignment, every=0.02):
        await wait_for(lambda: time.time() > until, message="four heartbeat timeouts to pass")
    assert await status_path(stubs, job.id) == [S.QUEUED, S.RUNNING]
    await worker.complete(assignment)
    assert (await worker.next_ack()).accepted
    await worker.close()


async def test_a_heartbeat_may_extend_the_execution_deadline(engine: EngineHandle, stubs: Stubs) -> None:
    worker = await RawWorker(engine.address, ["encode"]).connect()
    job = await submit(stubs, "encode", timeouts=timeouts(execution=0.3))
    assignment = await worker.next_assignment()
    first = seconds(assignment.deadlines.execution)
    await worker.send(
        pb.ConnectRequest(
            heartbeat=pb.Heartbeat(
                jobs=[pb.JobHeartbeat(job_id=job.id, attempt=assignment.attempt, extend_execution=dur(30))]
            )
        )
    )

    async def moved() -> bool:
        return seconds((await get(stubs, job.id)).deadlines.execution) > first + 20

    await wait_for_async(moved, message="the execution deadline to move")
    async with kept_alive(worker, assignment, every=0.05):
        await wait_for(lambda: time.time() > first + 0.1, message="the first execution deadline to pass")
    assert (await get(stubs, job.id)).status == S.RUNNING
    await worker.complete(assignment)
    assert (await worker.next_ack()).accepted
    await worker.close()


async def test_takeover_resumes_on_another_worker_with_the_checkpoint(
    any_engine: EngineHandle, any_stubs: Stubs
) -> None:
    engine, stubs = any_engine, any_stubs  # on SQLite and on PostgreSQL
    old = await RawWorker(engine.address, [("ingest", True, 0)], name="old").connect()
    job = await submit(
        stubs,
        "ingest",
        {"asset": 7},
        locks=[lock("asset:7")],
        # The new attempt has the same heartbeat timeout: long enough for its worker's heartbeats to
        # keep it RUNNING on a loaded machine while the old worker's late messages are checked.
        timeouts=timeouts(heartbeat=0.5, takeover=0.05),
    )
    first = await old.next_assignment()
    assert first.mode == ExecutionMode.EXECUTE
    async with kept_alive(old, first):
        await old.update(
            first,
            progress=50,
            completed_step=job_pb2.CompletedStep(name="download", data=struct({"path": "/tmp/a7"})),
        )

        async def checkpointed() -> bool:
            return (await get(stubs, job.id)).checkpoint.step == "download"

        await wait_for_async(checkpointed, message="the checkpoint")
        new = await RawWorker(engine.address, [("ingest", True, 0)], name="new").connect()
    # The old worker is silent from here: TIMED_OUT, then taken over by the new one.
    second = await new.next_assignment()
    async with kept_alive(new, second, every=0.05):
        assert second.job_id == job.id
        assert second.attempt == 2, "a takeover is a new attempt: its number fences the old worker off"
        assert second.mode == ExecutionMode.RESUME
        assert second.checkpoint.step == "download"
        assert second.checkpoint.data["path"] == "/tmp/a7"
        assert second.job.input["asset"] == 7
        assert engine.core.locks.holds(job.id), "the job kept its locks through the timeout and the takeover"

        cancel = await old.next_cancel()
        assert (cancel.job_id, cancel.attempt) == (job.id, 1)
        assert "taken over" in cancel.reason

        # The old worker's late messages are refused and change nothing.
        await old.update(first, progress=99, message="late")
        refusal = await old.next_refusal()
        assert refusal.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
        assert refusal.job_id == job.id
        await old.complete(first, {"from": "old"})
        ack = await old.next_ack()
        assert not ack.accepted
        running = await get(stubs, job.id)
        assert running.status == S.RUNNING
        assert running.worker_id == new.worker_id
        # The new attempt's own report (none yet); the old attempt's stays with it.
        assert running.progress == 0
        assert running.message != "late"
        assert running.attempts[0].progress == 50

        await new.complete(second, {"from": "new"})
        assert (await new.next_ack()).accepted
    done = await get(stubs, job.id)
    assert done.status == S.COMPLETED
    assert done.result["from"] == "new"
    assert [(a.number, S(a.status), a.worker_id, ExecutionMode(a.mode)) for a in done.attempts] == [
        (1, S.TIMED_OUT, old.worker_id, ExecutionMode.EXECUTE),
        (2, S.COMPLETED, new.worker_id, ExecutionMode.RESUME),
    ]
    assert await status_path(stubs, job.id) == [S.QUEUED, S.RUNNING, S.TIMED_OUT, S.RUNNING, S.COMPLETED]
    assert not engine.core.locks.holds(job.id)
    # The old worker coming back and claiming the job is told to drop it.
    await old.drop()
    claimant = await RawWorker(
        engine.address,
        [("ingest", True, 0)],
        name="old",
        worker_id=old.worker_id,
        running_jobs=[(job.id, 1)],
        session_token=old.session_token,
    ).connect()
    assert claimant.registered is not None
    assert [(j.job_id, j.attempt) for j in claimant.registered.rejected_jobs] == [(job.id, 1)]
    await claimant.close()
    await new.close()
    # Stop here, while the database is still there: the fixtures drop the PostgreSQL schema before they
    # stop the engine, and the worker rows written at stop would be retried until the commit timeout.
    await any_engine.server.stop(grace=0)


@pytest.mark.parametrize("other", ["none", "no-resume", "busy"])
async def test_lost_when_nobody_can_take_it_over(engine: EngineHandle, stubs: Stubs, other: str) -> None:
    worker = await RawWorker(engine.address, [("ingest", True, 0)], name="silent").connect()
    job = await submit(stubs, "ingest", timeouts=timeouts(heartbeat=0.05, takeover=0.05))
    async with kept_alive(worker):
        assignment = await worker.next_assignment()
        helpers: list[RawWorker] = []
        if other == "no-resume":
            helpers.append(await RawWorker(engine.address, [("ingest", False, 0)], name="plain").connect())
        elif other == "busy":
            busy = await RawWorker(engine.address, [("ingest", True, 0)], name="busy").connect()
            helpers.append(busy)
            filler = await submit(stubs, "ingest")
            assert (await busy.next_assignment()).job_id == filler.id
        await worker.heartbeat(assignment)  # the deadline counts from here
    failed = await wait_status(stubs, job.id, S.FAILED)
    assert failed.error.kind == ErrorKind.LOST
    assert "nobody took it over within 0.05s" in failed.error.message
    path = await status_path(stubs, job.id)
    # On a loaded machine the 0.05 s deadline can pass while the helpers connect, before the heartbeat
    # above: the job then times out, comes back with that heartbeat and times out again. Either way
    # nobody takes it over and it is lost after its last TIMED_OUT.
    assert path[:2] == [S.QUEUED, S.RUNNING]
    assert path[2:-2] == [S.TIMED_OUT, S.RUNNING] * ((len(path) - 4) // 2)
    assert path[-2:] == [S.TIMED_OUT, S.FAILED]
    cancel = await worker.next_cancel()
    assert cancel.job_id == job.id
    await worker.update(assignment, progress=10)
    assert (await worker.next_refusal()).job_id == job.id
    for helper in helpers:
        assert helper.assignments.empty()
        await helper.close()
    await worker.close()


async def test_lost_goes_through_the_retry_policy(engine: EngineHandle, stubs: Stubs) -> None:
    worker = await RawWorker(engine.address, ["flaky"], capacity=2).connect()
    job = await submit(
        stubs,
        "flaky",
        timeouts=timeouts(heartbeat=0.05, takeover=0.05),
        retry_policy=retry_policy(2, 0.02),
    )
    async with kept_alive(worker):
        first = await worker.next_assignment()
    second = await worker.next_assignment()
    assert (second.job_id, second.attempt, second.mode) == (job.id, 2, ExecutionMode.RETRY)
    await worker.complete(second)
    assert (await worker.next_ack()).accepted
    done = await get(stubs, job.id)
    assert done.status == S.COMPLETED
    assert done.attempts[0].error.kind == ErrorKind.LOST
    assert first.attempt == 1
    await worker.close()


async def test_a_dropped_worker_reconnects_and_resumes_its_job(engine: EngineHandle, stubs: Stubs) -> None:
    worker = await RawWorker(engine.address, ["encode"], name="w").connect()
    job = await submit(stubs, "encode", timeouts=timeouts(takeover=30))
    assignment = await worker.next_assignment()
    await worker.drop()
    await wait_status(stubs, job.id, S.TIMED_OUT)
    again = await RawWorker(
        engine.address, ["encode"], name="w", worker_id=worker.worker_id, running_jobs=[(job.id, 1)]
    ).connect()
    assert again.registered is not None
    assert [(j.job_id, j.attempt) for j in again.registered.resumed_jobs] == [(job.id, 1)]
    assert (await get(stubs, job.id)).status == S.RUNNING
    await again.complete(assignment)
    assert (await again.next_ack()).accepted
    assert (await get(stubs, job.id)).attempt == 1
    await again.close()


async def test_cancel_while_timed_out_ends_cancelled_at_the_second_deadline(
    engine: EngineHandle, stubs: Stubs
) -> None:
    worker = await RawWorker(engine.address, [("ingest", True, 0)]).connect()
    # The takeover deadline is long enough for the cancel to come while the job is TIMED_OUT.
    job = await submit(stubs, "ingest", timeouts=timeouts(heartbeat=0.05, takeover=1.0))
    await worker.next_assignment()
    await wait_status(stubs, job.id, S.TIMED_OUT)
    await stubs.jobs.CancelJob(js.CancelJobRequest(job_id=job.id, reason="operator"))
    helper = await RawWorker(engine.address, [("ingest", True, 0)], name="helper").connect()
    cancelled = await wait_status(stubs, job.id, S.CANCELLED)
    assert cancelled.attempt == 1, "a job whose cancel was asked is not taken over"
    assert helper.assignments.empty()
    await helper.close()
    await worker.close()


async def test_a_result_while_timed_out_completes_the_job(engine: EngineHandle, stubs: Stubs) -> None:
    """A result is an update: before the second deadline it brings the job back and finishes it. (It used
    to raise InvalidTransition TIMED_OUT -> COMPLETED, breaking the worker's stream with the job stuck.)"""
    worker = await RawWorker(engine.address, ["encode"]).connect()
    job = await submit(
        stubs, "encode", locks=[lock("asset:9")], timeouts=timeouts(heartbeat=0.05, takeover=30)
    )
    assignment = await worker.next_assignment()
    await wait_status(stubs, job.id, S.TIMED_OUT)
    assert engine.core.locks.holds(job.id), "locks stay held while TIMED_OUT"
    await worker.complete(assignment, {"late": "but in time"})
    ack = await worker.next_ack()
    assert ack.accepted
    done = await get(stubs, job.id)
    assert done.status == S.COMPLETED
    assert done.result["late"] == "but in time"
    assert await status_path(stubs, job.id) == [S.QUEUED, S.RUNNING, S.TIMED_OUT, S.RUNNING, S.COMPLETED]
    assert not engine.core.locks.holds(job.id)
    assert engine.core.timers.due("takeover", job.id) is None
    assert engine.core.timers.due("heartbeat", job.id) is None
    # The stream is still up: the worker takes the next job.
    follow = await submit(stubs, "encode")
    assert (await worker.next_assignment()).job_id == follow.id
    assert worker.error is None
    await worker.close()
