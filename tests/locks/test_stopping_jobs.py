"""A job whose worker was told to stop it (execution timeout, or an operator's cancel) keeps its locks and
its worker slot until the worker confirms that the executor stopped, or its session is declared dead;
only then does it end as decided then, and does its lock pass on. Driven message by message with a raw
worker that ignores the stop for as long as the test likes."""

from __future__ import annotations

import grpc
import pytest
from jobwarden.contract import ErrorKind, JobEventType, JobStatus, LockMode
from jobwarden.v1 import executor_service_pb2 as pb
from jobwarden.v1 import job_service_pb2 as js
from jobwarden.v1 import lock_service_pb2 as ls

from tests.conftest import EngineFactory, EngineHandle, Stubs
from tests.support import RawWorker, wait_for, wait_for_async
from tests.timers.helpers import events, get, lock, retry_policy, status_path, submit, timeouts, wait_status

S = JobStatus
X = LockMode.EXCLUSIVE
KILL_NOTE = "held by a KILLED job whose executor has not stopped"
CANCEL_NOTE = "held by a CANCELLED job whose executor has not stopped"


async def holders_of(stubs: Stubs, resource: str) -> list[tuple[str, str]]:
    """(holder, holder_note) of each holder of ``resource``, through ListLocks."""
    response = await stubs.locks.ListLocks(ls.ListLocksRequest(prefix=resource))
    return [
        (h.holder, h.holder_note) for r in response.resources if r.resource == resource for h in r.holders
    ]


async def ack_cancel(worker: RawWorker, assignment: pb.Assignment) -> None:
    await worker.send(
        pb.ConnectRequest(cancel_ack=pb.CancelAck(job_id=assignment.job_id, attempt=assignment.attempt))
    )


async def reasons(stubs: Stubs, job_id: str, event_type: JobEventType) -> list[str]:
    return [e.reason for e in await events(stubs, job_id) if e.type == event_type]


@pytest.fixture
async def engine(engine_factory: EngineFactory) -> EngineHandle:
    """cancel_grace short enough to pass within a test, so that its passing is seen to change nothing."""
    return await engine_factory(cancel_grace=0.2)


async def test_the_cancel_grace_does_not_end_a_job_whose_worker_lives(
    engine: EngineHandle, stubs: Stubs
) -> None:
    worker = await RawWorker(engine.address, ["edit"], capacity=2).connect()
    job = await submit(stubs, "edit", locks=[lock("asset:1")], timeouts=timeouts(heartbeat=0.3))
    held = await worker.next_assignment()
    waiter = await submit(stubs, "edit", locks=[lock("asset:1")])
    await wait_status(stubs, waiter.id, S.WAITING_FOR_LOCK)
    await stubs.jobs.CancelJob(js.CancelJobRequest(job_id=job.id, reason="wrong asset"))
    assert (await worker.next_cancel()).reason == "wrong asset"
    assert await holders_of(stubs, "asset:1") == [(job.id, CANCEL_NOTE)]

    async def overdue() -> list[str]:
        return [r for r in await reasons(stubs, job.id, JobEventType.UPDATED) if "has not confirmed" in r]

    noted = await wait_for_async(overdue, message="the cancel grace to pass")
    assert noted == [
        "the worker has not confirmed within 0.2s that the executor stopped; the job's locks stay held "
        "until it stops or its worker's session is declared dead"
    ]
    assert (await worker.next_cancel()).job_id == job.id, "the cancel is sent again"
    # The worker sends nothing for the job, past its heartbeat timeout: its session lives, so it stays.
    await wait_for(
        lambda: engine.core.timers.due("heartbeat", job.id) is None, message="the heartbeat deadline to pass"
    )
    assert (await get(stubs, job.id)).status == S.RUNNING
    assert (await get(stubs, waiter.id)).status == S.WAITING_FOR_LOCK
    assert engine.core.sessions[worker.worker_id].jobs == {job.id: 1}, "it keeps its slot"

    await ack_cancel(worker, held)
    cancelled = await wait_status(stubs, job.id, S.CANCELLED)
    assert cancelled.status_reason == "wrong asset"
    assert (await worker.next_assignment()).job_id == waiter.id, "the lock passed on"
    assert await holders_of(stubs, "asset:1") == [(waiter.id, "")]
    await worker.close()


async def test_a_retry_is_queued_only_once_the_killed_executor_stopped(
    engine: EngineHandle, stubs: Stubs
) -> None:
    worker = await RawWorker(engine.address, ["edit"], capacity=2).connect()
    job = await submit(
        stubs,
        "edit",
        locks=[lock("asset:2")],
        timeouts=timeouts(execution=0.05),
        retry_policy=retry_policy(2, 0.01),
    )
    first = await worker.next_assignment()
    await worker.next_cancel()
    assert await holders_of(stubs, "asset:2") == [(job.id, KILL_NOTE)]
    # Past the cancel grace it is still the first attempt's, and no second attempt was dispatched.
    await wait_for_async(
        lambda: reasons(stubs, job.id, JobEventType.UPDATED), message="the cancel grace to pass"
    )
    assert worker.assignments.empty()
    stopping = await get(stubs, job.id)
    assert (stopping.status, stopping.attempt) == (S.RUNNING, 1)

    await worker.fail(first, "interrupted")
    ack = await worker.next_ack()
    assert ack.accepted, "a result of the killed attempt is its stop acknowledgement"
    second = await worker.next_assignment()
    assert (second.job_id, second.attempt) == (job.id, 2)
    await worker.complete(second)
    assert (await worker.next_ack()).accepted
    done = await wait_status(stubs, job.id, S.COMPLETED)
    assert done.attempts[0].error.kind == ErrorKind.KILLED
    assert "reported FAILED, which was dropped" in done.attempts[0].error.message
    assert await status_path(stubs, job.id) == [
        S.QUEUED,
        S.RUNNING,
        S.DELAYED,
        S.QUEUED,
        S.RUNNING,
        S.COMPLETED,
    ]
    await worker.close()


async def test_a_stopping_job_of_a_dead_session_is_killed_at_the_takeover_deadline_never_taken_over(
    engine: EngineHandle, stubs: Stubs
) -> None:
    first = await RawWorker(engine.address, [("edit", True, 0)], capacity=2, name="first").connect()
    job = await submit(
        stubs, "edit", locks=[lock("asset:3")], timeouts=timeouts(execution=0.05, takeover=0.3)
    )
    await first.next_assignment()
    await first.next_cancel()
    waiter = await submit(stubs, "edit", locks=[lock("asset:3")])
    await wait_status(stubs, waiter.id, S.WAITING_FOR_LOCK)
    # A worker that could take it over (it supports resume and has room) is there.
    second = await RawWorker(engine.address, [("edit", True, 0)], name="second").connect()
    await first.drop()
    await wait_status(stubs, job.id, S.TIMED_OUT)
    assert await holders_of(stubs, "asset:3") == [(job.id, KILL_NOTE)], "a dead session's job keeps its locks"

    killed = await wait_status(stubs, job.id, S.FAILED)
    assert killed.error.kind == ErrorKind.KILLED
    assert "session was declared dead" in killed.error.message
    assert killed.attempt == 1, "never taken over"
    assert (await second.next_assignment()).job_id == waiter.id, "the lock passed on"
    assert await status_path(stubs, job.id) == [S.QUEUED, S.RUNNING, S.TIMED_OUT, S.FAILED]
    await second.close()


async def test_a_worker_that_comes_back_is_told_to_stop_again(engine: EngineHandle, stubs: Stubs) -> None:
    worker = await RawWorker(engine.address, ["edit"]).connect()
    job = await submit(stubs, "edit", locks=[lock("asset:4")], timeouts=timeouts(execution=0.05, takeover=30))
    held = await worker.next_assignment()
    await worker.next_cancel()
    await worker.drop()
    await wait_status(stubs, job.id, S.TIMED_OUT)
    back = await RawWorker(
        engine.address, ["edit"], worker_id=worker.worker_id, running_jobs=[(job.id, held.attempt)]
    ).connect()
    assert back.registered is not None
    assert [j.job_id for j in back.registered.resumed_jobs] == [job.id]
    again = await back.next_cancel()
    assert (again.job_id, again.reason) == (job.id, "execution timeout of 0.05s passed")
    assert (await get(stubs, job.id)).status == S.RUNNING
    await ack_cancel(back, held)
    killed = await wait_status(stubs, job.id, S.FAILED)
    assert killed.error.kind == ErrorKind.KILLED
    await back.close()


async def test_a_stopping_job_cannot_be_handed_back(engine: EngineHandle, stubs: Stubs) -> None:
    worker = await RawWorker(engine.address, ["edit"]).connect()
    job = await submit(stubs, "edit", timeouts=timeouts(execution=0.05))
    held = await worker.next_assignment()
    await worker.next_cancel()
    await worker.send(
        pb.ConnectRequest(
            release_jobs=pb.ReleaseJobs(
                jobs=[pb.RunningJob(job_id=job.id, attempt=held.attempt)], reason="bye"
            )
        )
    )
    refusal = await worker.next_refusal()
    assert (refusal.code, refusal.refused) == (grpc.StatusCode.FAILED_PRECONDITION.value[0], "release_jobs")
    assert "is being stopped" in refusal.message
    after = await get(stubs, job.id)
    assert (after.status, after.attempt) == (S.RUNNING, 1)
    await worker.close()


async def test_the_decided_outcome_survives_a_restart(engine_factory: EngineFactory, sqlite_url: str) -> None:
    first = await engine_factory(db_url=sqlite_url, cancel_grace=0.2)
    channel = first.channel()
    worker = await RawWorker(first.address, ["edit"]).connect()
    stubs = Stubs(*_stubs_of(channel), channel)  # type: ignore[arg-type]
    job = await submit(stubs, "edit", locks=[lock("asset:5")], timeouts=timeouts(execution=0.05, takeover=30))
    held = await worker.next_assignment()
    await worker.next_cancel()
    await first.core.writer.flush()
    await channel.close()
    await first.server.stop(grace=0)
    await worker.drop()

    second = await engine_factory(db_url=sqlite_url, cancel_grace=0.2)
    channel = second.channel()
    stubs = Stubs(*_stubs_of(channel), channel)  # type: ignore[arg-type]
    assert (await get(stubs, job.id)).status == S.TIMED_OUT
    assert await holders_of(stubs, "asset:5") == [(job.id, KILL_NOTE)]
    back = await RawWorker(
        second.address, ["edit"], worker_id=worker.worker_id, running_jobs=[(job.id, held.attempt)]
    ).connect()
    assert (await back.next_cancel()).job_id == job.id
    await back.complete(held, {"late": True})
    assert (await back.next_ack()).accepted
    killed = await wait_status(stubs, job.id, S.FAILED)
    assert killed.error.kind == ErrorKind.KILLED, "the execution timeout decided it before the restart"
    assert await holders_of(stubs, "asset:5") == []
    await back.close()
    await channel.close()


async def test_force_release_ends_a_stopping_job_and_passes_its_lock_on(
    engine: EngineHandle, stubs: Stubs
) -> None:
    worker = await RawWorker(engine.address, ["edit"], capacity=2).connect()
    job = await submit(stubs, "edit", locks=[lock("asset:6")], timeouts=timeouts(execution=0.05))
    held = await worker.next_assignment()
    waiter = await submit(stubs, "edit", locks=[lock("asset:6")])
    await wait_status(stubs, waiter.id, S.WAITING_FOR_LOCK)
    await worker.next_cancel()
    await engine.core.writer.flush()
    before = engine.core.registry.sequence

    async def refused(job_id: str, reason: str) -> tuple[grpc.StatusCode, str]:
        request = ls.ForceReleaseJobLocksRequest(job_id=job_id, reason=reason)
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stubs.locks.ForceReleaseJobLocks(request)
        return error.value.code(), error.value.details() or ""

    code, details = await refused(waiter.id, "stuck")
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert "WAITING_FOR_LOCK and not being stopped" in details
    code, details = await refused("01a00000-0000-7000-8000-000000000000", "stuck")
    assert code == grpc.StatusCode.NOT_FOUND
    code, details = await refused(job.id, "  ")
    assert (code, details.split(":")[0]) == (grpc.StatusCode.INVALID_ARGUMENT, "reason is required")
    assert engine.core.registry.sequence == before, "a refused force release changed nothing"
    assert (await get(stubs, job.id)).status == S.RUNNING

    response = await stubs.locks.ForceReleaseJobLocks(
        ls.ForceReleaseJobLocksRequest(job_id=job.id, reason="the encoder is wedged")
    )
    assert response.released == 1
    assert response.job.status == S.FAILED
    assert response.job.error.kind == ErrorKind.KILLED
    last = (await events(stubs, job.id))[-1]
    assert last.actor.startswith("anonymous@")
    assert f"locks force-released by admin:{last.actor}: the encoder is wedged" in last.reason
    assert (await worker.next_assignment()).job_id == waiter.id, "the lock passed on"
    # The worker's word about that attempt comes too late: refused, and nothing changes.
    await ack_cancel(worker, held)
    refusal = await worker.next_refusal()
    assert (refusal.job_id, refusal.refused) == (job.id, "cancel_ack")
    code, details = await refused(job.id, "again")
    assert (code, "already FAILED" in details) == (grpc.StatusCode.FAILED_PRECONDITION, True)
    await worker.close()


def _stubs_of(channel: grpc.aio.Channel) -> tuple[object, object, object]:
    from jobwarden.v1 import executor_service_pb2_grpc, job_service_pb2_grpc, lock_service_pb2_grpc

    return (
        job_service_pb2_grpc.JobServiceStub(channel),
        executor_service_pb2_grpc.ExecutorServiceStub(channel),
        lock_service_pb2_grpc.LockServiceStub(channel),
    )
