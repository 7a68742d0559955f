"""The worker protocol over ExecutorService.Connect, with raw-stub workers (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from jobwarden.contract import JobStatus
from jobwarden.v1 import executor_service_pb2 as pb
from jobwarden.v1 import job_pb2
from jobwarden.v1 import job_service_pb2 as js

from tests.conftest import EngineFactory, EngineHandle, Stubs
from tests.engine.helpers import get, request, submit
from tests.support import RawWorker, wait_for, wait_for_async


async def test_assignments_never_exceed_free_capacity_and_follow_priority_then_fifo(
    any_stubs: Stubs, any_engine: EngineHandle
) -> None:
    low = [await submit(any_stubs, "work", {"n": i}, priority=0) for i in range(4)]
    high = [await submit(any_stubs, "work", {"n": 10 + i}, priority=5) for i in range(2)]
    worker = await RawWorker(any_engine.address, ["work"], capacity=3).connect()
    first = [await worker.next_assignment() for _ in range(3)]
    assert [a.job_id for a in first] == [high[0].id, high[1].id, low[0].id]
    await asyncio.sleep(0.2)
    assert worker.assignments.empty(), "a fourth job was assigned to a worker of capacity 3"
    workers = await any_stubs.executors.ListWorkers(pb.ListWorkersRequest())
    assert len(workers.workers[0].jobs) == 3
    await worker.complete(first[0])
    nxt = await worker.next_assignment()
    assert nxt.job_id == low[1].id
    await asyncio.sleep(0.1)
    assert worker.assignments.empty()
    await worker.close()


async def test_executor_max_concurrency_caps_one_action_on_a_worker(
    engine: EngineHandle, stubs: Stubs
) -> None:
    for _ in range(3):
        await submit(stubs, "heavy")
    for _ in range(3):
        await submit(stubs, "light")
    worker = await RawWorker(engine.address, [("heavy", False, 1), ("light", False, 0)], capacity=4).connect()
    got = [await worker.next_assignment() for _ in range(4)]
    assert sorted(a.job.action for a in got) == ["heavy", "light", "light", "light"]
    await asyncio.sleep(0.1)
    assert worker.assignments.empty()
    await worker.close()


async def test_updates_reach_the_job_and_the_result_is_acknowledged_after_commit(
    any_stubs: Stubs, any_engine: EngineHandle
) -> None:
    job = await submit(any_stubs, "work", {"x": 1})
    worker = await RawWorker(any_engine.address, ["work"]).connect()
    a = await worker.next_assignment()
    assert a.job.input["x"] == 1
    assert a.mode == job_pb2.EXECUTION_MODE_EXECUTE
    await worker.update(
        a,
        progress=40,
        message="encoding",
        step="encode",
        job_variables={"codec": "h264"},
        workflow_variables={"shared": "yes"},
    )
    await worker.update(a, completed_step=job_pb2.CompletedStep(name="encode"))

    async def updated() -> job_pb2.Job | None:
        j = await get(any_stubs, job.id)
        return j if j.checkpoint.step == "encode" else None

    j = await wait_for_async(updated)
    assert (j.progress, j.message, j.step) == (40, "encoding", "encode")
    assert dict(j.job_variables) == {"codec": "h264"}
    assert dict(j.workflow_variables) == {"shared": "yes"}
    assert j.worker_id == worker.worker_id
    await worker.send(
        pb.ConnectRequest(
            job_log=pb.JobLog(
                job_id=a.job_id,
                attempt=a.attempt,
                lines=[
                    pb.JobLogLine(level="INFO", message="line one"),
                    pb.JobLogLine(level="WARNING", message="line two"),
                ],
            )
        )
    )
    await worker.complete(a, {"size": 10})
    ack = await worker.next_ack()
    assert (ack.job_id, ack.attempt, ack.accepted) == (job.id, 1, True)
    # Acknowledged means committed: a fresh read shows it.
    done = await get(any_stubs, job.id)
    assert done.status == JobStatus.COMPLETED
    assert done.result["size"] == 10
    logs = await any_stubs.jobs.GetJobLogs(js.GetJobLogsRequest(job_id=job.id))
    assert [(line.index, line.level, line.message) for line in logs.lines] == [
        (1, "INFO", "line one"),
        (2, "WARNING", "line two"),
    ]
    later = await any_stubs.jobs.GetJobLogs(js.GetJobLogsRequest(job_id=job.id, after_index=1))
    assert [line.message for line in later.lines] == ["line two"]
    await worker.close()


async def test_several_results_in_one_message_are_all_acknowledged(
    engine: EngineHandle, stubs: Stubs
) -> None:
    await stubs.jobs.SubmitJobs(js.SubmitJobsRequest(jobs=[request("work") for _ in range(5)]))
    worker = await RawWorker(engine.address, ["work"], capacity=5).connect()
    got = [await worker.next_assignment() for _ in range(5)]
    assert any(m.WhichOneof("message") == "assignments" for m in worker.messages), (
        "ready assignments were not batched"
    )
    await worker.send(
        pb.ConnectRequest(
            job_results=pb.JobResults(
                results=[
                    pb.JobResult(job_id=a.job_id, attempt=a.attempt, status=job_pb2.JOB_STATUS_COMPLETED)
                    for a in got
                ]
            )
        )
    )
    acks = [await worker.next_ack() for _ in range(5)]
    assert sorted(a.job_id for a in acks) == sorted(a.job_id for a in got)
    assert all(a.accepted for a in acks)
    await worker.close()


async def test_disconnected_worker_jobs_time_out_and_resume_when_it_comes_back(
    any_stubs: Stubs, any_engine: EngineHandle
) -> None:
    job = await submit(any_stubs)
    worker = await RawWorker(any_engine.address, [("work", True, 0)], name="w1").connect()
    a = await worker.next_assignment()
    worker_id = worker.worker_id
    await worker.drop()

    async def timed_out() -> bool:
        return (await get(any_stubs, job.id)).status == JobStatus.TIMED_OUT

    await wait_for_async(timed_out, message="the job of a vanished worker to go TIMED_OUT")
    back = await RawWorker(
        any_engine.address,
        [("work", True, 0)],
        worker_id=worker_id,
        running_jobs=[(a.job_id, a.attempt), ("00000000-0000-7000-8000-000000000000", 1)],
    ).connect()
    assert back.registered is not None
    assert [j.job_id for j in back.registered.resumed_jobs] == [job.id]
    assert [j.job_id for j in back.registered.rejected_jobs] == ["00000000-0000-7000-8000-000000000000"]
    resumed = await get(any_stubs, job.id)
    assert resumed.status == JobStatus.RUNNING
    assert resumed.attempt == 1
    await back.complete(a, {"after": "reconnect"})
    assert (await back.next_ack()).accepted
    assert (await get(any_stubs, job.id)).status == JobStatus.COMPLETED
    await back.close()


async def test_stale_attempt_is_refused_and_changes_nothing(engine_factory: EngineFactory) -> None:
    engine = await engine_factory(default_takeover_timeout=0.2)
    channel = engine.channel()
    from jobwarden.v1 import job_service_pb2_grpc

    jobs = job_service_pb2_grpc.JobServiceStub(channel)
    job = (await jobs.SubmitJob(request("work"))).job
    old = await RawWorker(engine.address, [("work", True, 0)], name="old").connect()
    a1 = await old.next_assignment()
    # The old worker's stream is cut; the job is taken over by another worker as attempt 2.
    old_id = old.worker_id
    await old.drop()
    new = await RawWorker(engine.address, [("work", True, 0)], name="new").connect()
    a2 = await new.next_assignment()
    assert (a2.job_id, a2.attempt, a2.mode) == (job.id, 2, job_pb2.EXECUTION_MODE_RESUME)
    # The old worker comes back, reporting attempt 1: it is not given the job back.
    ghost = await RawWorker(
        engine.address, [("work", True, 0)], worker_id=old_id, running_jobs=[(a1.job_id, a1.attempt)]
    ).connect()
    assert [j.job_id for j in ghost.registered.rejected_jobs] == [job.id]  # type: ignore[union-attr]
    before = (await jobs.GetJob(js.GetJobRequest(job_id=job.id))).job
    await ghost.update(a1, progress=99, message="late")
    refusal = await ghost.next_refusal()
    assert refusal.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    assert "attempt 1" in refusal.message
    await ghost.complete(a1, {"late": True})
    ack = await ghost.next_ack()
    assert not ack.accepted
    after = (await jobs.GetJob(js.GetJobRequest(job_id=job.id))).job
    assert after == before
    await new.complete(a2, {"winner": "new"})
    assert (await new.next_ack()).accepted
    final = (await jobs.GetJob(js.GetJobRequest(job_id=job.id))).job
    assert final.result["winner"] == "new"
    assert [a.mode for a in final.attempts] == [job_pb2.EXECUTION_MODE_EXECUTE, job_pb2.EXECUTION_MODE_RESUME]
    for w in (new, ghost):
        await w.close()
    await channel.close()


async def test_list_workers_shows_actions_capacity_and_jobs(engine: EngineHandle, stubs: Stubs) -> None:
    job = await submit(stubs, "a")
    worker = await RawWorker(engine.address, [("a", True, 2), "b"], capacity=4, name="box-1").connect()
    await worker.next_assignment()
    response = await stubs.executors.ListWorkers(pb.ListWorkersRequest())
    [w] = response.workers
    assert w.name == "box-1"
    assert w.capacity == 4
    assert [(e.action, e.supports_resume, e.max_concurrency) for e in w.executors] == [
        ("a", True, 2),
        ("b", False, 0),
    ]
    assert [j.job_id for j in w.jobs] == [job.id]
    await worker.close()
    await wait_for(lambda: not engine.core.sessions, message="the session to close")


async def test_a_live_worker_id_cannot_be_taken_over(
    engine: EngineHandle, stubs: Stubs, caplog: pytest.LogCaptureFixture
) -> None:
    """Without tokens anyone may connect, but not as a worker whose session is alive: the newcomer is
    refused, and the worker keeps its session, its jobs and its stream."""
    job = await submit(stubs, "work")
    victim = await RawWorker(engine.address, ["work"], name="victim").connect()
    a = await victim.next_assignment()
    session = engine.core.sessions[victim.worker_id]
    await engine.core.writer.flush()
    before = await get(stubs, job.id)
    events = await stubs.jobs.GetJobEvents(js.GetJobEventsRequest(job_id=job.id))

    for token in ("", "guessed-" + "x" * 40):
        thief = RawWorker(
            engine.address,
            ["work"],
            name="thief",
            worker_id=victim.worker_id,
            running_jobs=[(a.job_id, a.attempt)],
            session_token=token,
        )
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await thief.connect()
        assert refused.value.code() == grpc.StatusCode.ALREADY_EXISTS
        details = refused.value.details() or ""
        assert f"worker id {victim.worker_id} has a live session" in details, details
        assert "a new worker leaves worker_id empty, or picks another id" in details, details
        await thief.drop()

    assert engine.core.sessions[victim.worker_id] is session
    assert not session.closed
    assert session.jobs == {a.job_id: a.attempt}
    await engine.core.writer.flush()
    assert await get(stubs, job.id) == before
    assert await stubs.jobs.GetJobEvents(js.GetJobEventsRequest(job_id=job.id)) == events
    assert victim.session_token not in caplog.text
    assert [r for r in caplog.records if "refused a register as worker" in r.getMessage()]
    # The victim's stream goes on and its result is accepted.
    await victim.update(a, progress=60)
    await victim.complete(a, {"by": "victim"})
    assert (await victim.next_ack()).accepted
    assert victim.error is None
    done = await get(stubs, job.id)
    assert (done.status, done.result["by"], done.worker_id) == (
        JobStatus.COMPLETED,
        "victim",
        victim.worker_id,
    )
    await victim.close()


async def test_a_reconnect_with_the_session_token_replaces_the_live_session_at_once(
    engine: EngineHandle, stubs: Stubs
) -> None:
    """A worker whose connection broke before the engine noticed comes back on a new stream, presents
    its session's token and gets its jobs back without waiting for the old session to time out."""
    job = await submit(stubs, "work")
    first = await RawWorker(engine.address, ["work"], name="w").connect()
    a = await first.next_assignment()
    old = engine.core.sessions[first.worker_id]
    again = await RawWorker(
        engine.address,
        ["work"],
        name="w",
        worker_id=first.worker_id,
        running_jobs=[(a.job_id, a.attempt)],
        session_token=first.session_token,
    ).connect()
    assert again.registered is not None
    assert [(j.job_id, j.attempt) for j in again.registered.resumed_jobs] == [(a.job_id, a.attempt)]
    assert again.session_token
    assert again.session_token != first.session_token
    assert old.closed
    assert engine.core.sessions[first.worker_id] is not old
    await again.complete(a, {"after": "reconnect"})
    assert (await again.next_ack()).accepted
    assert (await get(stubs, job.id)).status == JobStatus.COMPLETED
    # The old stream was ended by the engine; the old token no longer replaces anything.
    await wait_for(
        lambda: first._reader is not None and first._reader.done(), message="the old stream to end"
    )
    await first.close()
    await again.close()
