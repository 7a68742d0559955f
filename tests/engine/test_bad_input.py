"""Every bad request gets a precise status and message, changes nothing, and breaks no other stream."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from jobwarden.contract import JobStatus, Limits
from jobwarden.v1 import executor_service_pb2 as pb
from jobwarden.v1 import job_pb2
from jobwarden.v1 import job_service_pb2 as js

from tests.conftest import EngineHandle, Stubs
from tests.engine.helpers import Watcher, get, nested, request, rpc_error, struct, submit
from tests.support import RawWorker, wait_for

UNKNOWN_ID = "01a20000-0000-7000-8000-000000000000"


def deep_request(levels: int) -> js.SubmitJobRequest:
    """A submit whose input nests beyond what a protobuf decoder takes (built in place: copying a
    message that deep would decode it)."""
    built = js.SubmitJobRequest(action="work")
    built.input.update(nested(levels))
    return built


async def snapshot(stubs: Stubs) -> tuple[list[tuple[str, int, int]], int]:
    """Every job's id, status and attempt, and the head sequence: what a refused call must not move."""
    listed = await stubs.jobs.ListJobs(js.ListJobsRequest(page_size=1000))
    stats = await stubs.jobs.GetStats(js.GetStatsRequest())
    return [(j.id, j.status, j.attempt) for j in listed.jobs], stats.head_sequence


@pytest.mark.parametrize(
    ("call", "code", "words"),
    [
        (lambda s: s.jobs.GetJob(js.GetJobRequest(job_id=UNKNOWN_ID)), "NOT_FOUND", "not found"),
        (
            lambda s: s.jobs.GetJob(js.GetJobRequest(job_id=UNKNOWN_ID[-8:])),
            "NOT_FOUND",
            "no job id starts or ends with '00000000'",
        ),
        (lambda s: s.jobs.CancelJob(js.CancelJobRequest(job_id="01a2")), "INVALID_ARGUMENT", "too short"),
        (
            lambda s: s.jobs.SubmitJob(request("work", {"ratio": float("nan")})),
            "INVALID_ARGUMENT",
            "input holds NaN or an infinity, which JSON cannot hold",
        ),
        (lambda s: s.jobs.GetJob(js.GetJobRequest(job_id="nope")), "INVALID_ARGUMENT", "malformed job_id"),
        (lambda s: s.jobs.GetJob(js.GetJobRequest()), "INVALID_ARGUMENT", "job_id is required"),
        (lambda s: s.jobs.CancelJob(js.CancelJobRequest(job_id=UNKNOWN_ID)), "NOT_FOUND", "not found"),
        (lambda s: s.jobs.RetryJob(js.RetryJobRequest(job_id="x" * 100)), "INVALID_ARGUMENT", "malformed"),
        (lambda s: s.jobs.GetJobEvents(js.GetJobEventsRequest(job_id=UNKNOWN_ID)), "NOT_FOUND", "not found"),
        (lambda s: s.jobs.GetJobLogs(js.GetJobLogsRequest(job_id=UNKNOWN_ID)), "NOT_FOUND", "not found"),
        (lambda s: s.jobs.SubmitJob(request("")), "INVALID_ARGUMENT", "action is required"),
        (lambda s: s.jobs.SubmitJob(request("bad action!")), "INVALID_ARGUMENT", "not a valid action name"),
        (lambda s: s.jobs.SubmitJob(request("a" * 300)), "INVALID_ARGUMENT", "longer than 200"),
        (
            lambda s: s.jobs.SubmitJob(request("work", {"blob": "x" * (Limits.MAX_PAYLOAD_BYTES + 10)})),
            "INVALID_ARGUMENT",
            "over the limit",
        ),
        (
            lambda s: s.jobs.SubmitJob(request("work", {"blob": "x" * (Limits.MAX_MESSAGE_BYTES + 10)})),
            "RESOURCE_EXHAUSTED",
            "",
        ),
        (
            lambda s: s.jobs.SubmitJob(request("work", nested(Limits.MAX_PAYLOAD_DEPTH + 1))),
            "INVALID_ARGUMENT",
            "input nests objects and lists deeper than 20 levels (at input.a[0].a[0]",
        ),
        (
            lambda s: s.jobs.SubmitJob(deep_request(60)),
            "INVALID_ARGUMENT",
            "the request body is not a valid jobwarden.v1.SubmitJobRequest: its messages nest deeper than "
            "the decoder allows (a JSON payload may nest at most 20 levels)",
        ),
        (
            lambda s: s.jobs.SubmitJob(request("work", locks=[job_pb2.LockRequest(resource="r", mode=7)])),  # type: ignore[arg-type]
            "INVALID_ARGUMENT",
            "unknown lock mode 7",
        ),
        (
            lambda s: s.jobs.SubmitJob(
                request("work", locks=[job_pb2.LockRequest(resource="", mode=job_pb2.LOCK_MODE_SHARED)])
            ),
            "INVALID_ARGUMENT",
            "empty resource",
        ),
        (
            lambda s: s.jobs.SubmitJob(request("work", labels={f"k{i}": "v" for i in range(100)})),
            "INVALID_ARGUMENT",
            "at most 64",
        ),
        (lambda s: s.jobs.SubmitJob(request("work", priority=10**9)), "INVALID_ARGUMENT", "priority"),
        (lambda s: s.jobs.SubmitJobs(js.SubmitJobsRequest()), "INVALID_ARGUMENT", "no jobs"),
        (lambda s: s.jobs.ListJobs(js.ListJobsRequest(page_size=5000)), "INVALID_ARGUMENT", "page_size"),
        (lambda s: s.jobs.ListJobs(js.ListJobsRequest(page_token="zzz")), "INVALID_ARGUMENT", "page_token"),
        (
            lambda s: s.jobs.ListJobs(js.ListJobsRequest(statuses=[42])),  # type: ignore[list-item]
            "INVALID_ARGUMENT",
            "unknown job status",
        ),
        (lambda s: s.jobs.PauseAction(js.PauseActionRequest(action="")), "INVALID_ARGUMENT", "action"),
    ],
)
async def test_bad_request_is_refused_precisely_and_changes_nothing(
    stubs: Stubs, call: object, code: str, words: str
) -> None:
    await submit(stubs, "work")
    before = await snapshot(stubs)
    error = await rpc_error(call(stubs))  # type: ignore[operator]
    assert error.code().name == code, error.details()
    assert words in (error.details() or ""), error.details()
    assert await snapshot(stubs) == before


async def test_refused_transitions_are_failed_precondition_and_change_nothing(
    engine: EngineHandle, stubs: Stubs
) -> None:
    running = await submit(stubs, "work")
    worker = await RawWorker(engine.address, ["work"]).connect()
    a = await worker.next_assignment()
    before = await get(stubs, running.id)
    error = await rpc_error(stubs.jobs.RetryJob(js.RetryJobRequest(job_id=running.id)))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "is RUNNING; only FAILED or CANCELLED jobs can be retried" in (error.details() or "")
    assert await get(stubs, running.id) == before
    await worker.complete(a)
    await worker.next_ack()
    done = await get(stubs, running.id)
    error = await rpc_error(stubs.jobs.CancelJob(js.CancelJobRequest(job_id=running.id)))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "already COMPLETED" in (error.details() or "")
    error = await rpc_error(stubs.jobs.RetryJob(js.RetryJobRequest(job_id=running.id)))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert await get(stubs, running.id) == done
    failed = await submit(stubs, "work")
    a = await worker.next_assignment()
    await worker.fail(a, "boom")
    await worker.next_ack()
    error = await rpc_error(stubs.jobs.RetryJob(js.RetryJobRequest(job_id=failed.id, from_step="nope")))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "no finished step 'nope'" in (error.details() or "")
    assert (await get(stubs, failed.id)).status == JobStatus.FAILED
    await worker.close()


async def test_bad_worker_messages_are_refused_on_that_stream_only(
    engine: EngineHandle, stubs: Stubs
) -> None:
    job = await submit(stubs, "work")
    other_job = await submit(stubs, "other")
    worker = await RawWorker(engine.address, ["work"]).connect()
    bystander = await RawWorker(engine.address, ["other"]).connect()
    watcher = Watcher(stubs)
    a = await worker.next_assignment()
    b = await bystander.next_assignment()
    before = await get(stubs, job.id)

    await worker.update(a, progress=140)
    refusal = await worker.next_refusal()
    assert refusal.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "progress must be between 0 and 100, got 140" in refusal.message
    assert refusal.refused == "job_update"

    await worker.send(pb.ConnectRequest(job_update=pb.JobUpdate(job_id=other_job.id, attempt=1, progress=5)))
    refusal = await worker.next_refusal()
    assert refusal.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    assert "not held by worker" in refusal.message

    await worker.send(
        pb.ConnectRequest(
            job_result=pb.JobResult(job_id=other_job.id, attempt=1, status=job_pb2.JOB_STATUS_COMPLETED)
        )
    )
    ack = await worker.next_ack()
    assert not ack.accepted
    assert "not held by worker" in ack.reason

    await worker.send(pb.ConnectRequest(job_update=pb.JobUpdate(job_id=UNKNOWN_ID, attempt=1, progress=5)))
    assert (await worker.next_refusal()).code == grpc.StatusCode.NOT_FOUND.value[0]
    await worker.send(pb.ConnectRequest(job_update=pb.JobUpdate(job_id="garbage", attempt=1)))
    assert (await worker.next_refusal()).code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    await worker.send(pb.ConnectRequest())
    assert "empty message" in (await worker.next_refusal()).message
    await worker.update(a, completed_step=job_pb2.CompletedStep(name="s1"))
    await worker.update(a, completed_step=job_pb2.CompletedStep(name="s1"))
    assert "already finished" in (await worker.next_refusal()).message
    await worker.send(pb.ConnectRequest(cancel_ack=pb.CancelAck(job_id=a.job_id, attempt=a.attempt)))
    assert "no cancel was requested" in (await worker.next_refusal()).message

    after = await get(stubs, job.id)
    assert (after.status, after.progress, after.attempt) == (before.status, before.progress, before.attempt)
    assert [s.name for s in after.checkpoint.completed_steps] == ["s1"]
    assert (await get(stubs, other_job.id)).status == JobStatus.RUNNING

    # A second register is refused like any bad message: the session, its jobs and the stream go on.
    session = engine.core.sessions[worker.worker_id]
    await worker.send(
        pb.ConnectRequest(
            register=pb.Register(worker_name="again", executors=[pb.ExecutorSpec(action="work")], capacity=1)
        )
    )
    refusal = await worker.next_refusal()
    assert refusal.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    assert refusal.refused == "register"
    assert f"this stream is already registered as worker {worker.worker_id}" in refusal.message
    assert engine.core.sessions[worker.worker_id] is session
    assert session.jobs == {a.job_id: a.attempt}
    assert not session.closed
    assert (await get(stubs, job.id)).status == JobStatus.RUNNING
    await worker.complete(a, {"after": "the refused register"})
    assert (await worker.next_ack()).accepted
    assert worker.error is None
    await bystander.complete(b, {"fine": True})
    assert (await bystander.next_ack()).accepted
    assert watcher.error is None
    watcher.cancel()
    await worker.close()
    await bystander.close()


@pytest.mark.parametrize(
    ("register", "words"),
    [
        (None, "first message must be register"),
        (pb.Register(worker_name="w", capacity=1), "at least one action"),
        (pb.Register(worker_name="w", executors=[pb.ExecutorSpec(action="a")], capacity=0), "capacity"),
        (
            pb.Register(worker_name="w", executors=[pb.ExecutorSpec(action="a")] * 2, capacity=1),
            "listed twice",
        ),
        (
            pb.Register(worker_name="w", executors=[pb.ExecutorSpec(action="no spaces")], capacity=1),
            "valid action",
        ),
    ],
)
async def test_bad_registration_is_refused(
    engine: EngineHandle, register: pb.Register | None, words: str
) -> None:
    worker = RawWorker(engine.address, [])
    await worker.connect(register=False)
    if register is None:
        await worker.send(pb.ConnectRequest(heartbeat=pb.Heartbeat()))
    else:
        await worker.send(pb.ConnectRequest(register=register))
    await wait_for(lambda: worker.error is not None)
    assert worker.error is not None
    assert worker.error.code() in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.INVALID_ARGUMENT)
    assert words in (worker.error.details() or "")
    assert not engine.core.sessions
    await worker.drop()


async def test_watch_bad_requests(stubs: Stubs) -> None:
    await submit(stubs)
    call = stubs.jobs.WatchJobs(js.WatchJobsRequest(after_sequence=10_000))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in call:
            pass
    assert info.value.code() == grpc.StatusCode.OUT_OF_RANGE
    call = stubs.jobs.WatchJobs(js.WatchJobsRequest(job_ids=["not-an-id"]))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in call:
            pass
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    await asyncio.sleep(0)


def _result(a: pb.Assignment, status: int, **fields: object) -> pb.JobResult:
    return pb.JobResult(job_id=a.job_id, attempt=a.attempt, status=status, **fields)  # type: ignore[arg-type]


def _failed(a: pb.Assignment, kind: int, message: str = "boom") -> pb.JobResult:
    return _result(a, job_pb2.JOB_STATUS_FAILED, error=job_pb2.JobError(kind=kind, message=message))  # type: ignore[arg-type]


MALFORMED_RESULTS = [
    *(
        (
            f"status {name}",
            lambda a, s=status: _result(a, s),
            f"status must be COMPLETED, FAILED or CANCELLED, not {name}",
        )
        for name, status in [
            ("RUNNING", job_pb2.JOB_STATUS_RUNNING),
            ("QUEUED", job_pb2.JOB_STATUS_QUEUED),
            ("UNSPECIFIED", job_pb2.JOB_STATUS_UNSPECIFIED),
            ("REJECTED", job_pb2.JOB_STATUS_REJECTED),
            ("TIMED_OUT", job_pb2.JOB_STATUS_TIMED_OUT),
        ]
    ),
    ("an unknown status", lambda a: _result(a, 42), "not unknown status 42"),
    *(
        (
            f"FAILED {name}",
            lambda a, k=kind: _failed(a, k),
            f"error.kind: a worker reports JOB_ERROR or CRASHED, not {name}",
        )
        for name, kind in [
            ("KILLED", job_pb2.ERROR_KIND_KILLED),
            ("LOST", job_pb2.ERROR_KIND_LOST),
            ("START_TIMEOUT", job_pb2.ERROR_KIND_START_TIMEOUT),
            ("ENGINE", job_pb2.ERROR_KIND_ENGINE),
        ]
    ),
    ("FAILED with an unknown kind", lambda a: _failed(a, 99), "error.kind: unknown error kind 99"),
    (
        "a result over the payload limit",
        lambda a: _result(
            a, job_pb2.JOB_STATUS_COMPLETED, result=struct({"blob": "x" * Limits.MAX_PAYLOAD_BYTES})
        ),
        "result is",
    ),
    (
        "a result nested too deep",
        lambda a: _result(
            a, job_pb2.JOB_STATUS_COMPLETED, result=struct(nested(Limits.MAX_PAYLOAD_DEPTH + 1))
        ),
        "result nests objects and lists deeper than 20 levels (at result.a[0]",
    ),
    (
        "too many job variables",
        lambda a: _result(
            a,
            job_pb2.JOB_STATUS_COMPLETED,
            job_variables={f"v{i}": "1" for i in range(Limits.MAX_VARIABLES + 1)},
        ),
        "job_variables:",
    ),
    (
        "a workflow variable with an empty key",
        lambda a: _result(a, job_pb2.JOB_STATUS_COMPLETED, workflow_variables={"": "1"}),
        "workflow_variables: empty key",
    ),
    (
        "an error message over the limit",
        lambda a: _failed(a, job_pb2.ERROR_KIND_JOB_ERROR, "m" * (Limits.MAX_MESSAGE_LENGTH + 1)),
        "error.message is longer than",
    ),
]


@pytest.mark.parametrize(
    ("make", "words"), [(m, w) for _, m, w in MALFORMED_RESULTS], ids=[c[0] for c in MALFORMED_RESULTS]
)
async def test_a_malformed_result_is_refused_and_changes_nothing(
    engine: EngineHandle, stubs: Stubs, make: object, words: str
) -> None:
    job = await submit(stubs, "work")
    worker = await RawWorker(engine.address, ["work"]).connect()
    a = await worker.next_assignment()
    await worker.update(a, progress=30, job_variables={"kept": "yes"})
    await wait_for(lambda: engine.core.registry.jobs[job.id].progress == 30, message="the update")
    await engine.core.writer.flush()
    before = await get(stubs, job.id)
    events = await stubs.jobs.GetJobEvents(js.GetJobEventsRequest(job_id=job.id))
    head = engine.core.bus.head

    await worker.send(pb.ConnectRequest(job_result=make(a)))  # type: ignore[operator]
    ack = await worker.next_ack()
    assert (ack.job_id, ack.attempt, ack.accepted) == (a.job_id, a.attempt, False)
    assert ack.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert words in ack.reason, ack.reason

    await engine.core.writer.flush()
    assert await get(stubs, job.id) == before
    assert await stubs.jobs.GetJobEvents(js.GetJobEventsRequest(job_id=job.id)) == events
    assert engine.core.bus.head == head
    assert engine.core.sessions[worker.worker_id].jobs == {a.job_id: a.attempt}
    # Still this worker's: a corrected result is accepted.
    await worker.complete(a, {"fixed": True})
    assert (await worker.next_ack()).accepted
    done = await get(stubs, job.id)
    assert done.status == JobStatus.COMPLETED
    assert dict(done.job_variables) == {"kept": "yes"}
    await worker.close()


async def test_a_malformed_result_in_a_batch_is_refused_alone(engine: EngineHandle, stubs: Stubs) -> None:
    first = await submit(stubs, "work")
    second = await submit(stubs, "work")
    worker = await RawWorker(engine.address, ["work"], capacity=2).connect()
    assignments = {a.job_id: a for a in [await worker.next_assignment(), await worker.next_assignment()]}
    a, b = assignments[first.id], assignments[second.id]
    await engine.core.writer.flush()
    before = await get(stubs, second.id)
    await worker.send(
        pb.ConnectRequest(
            job_results=pb.JobResults(
                results=[
                    _result(a, job_pb2.JOB_STATUS_COMPLETED, result=struct({"ok": True})),
                    _result(b, job_pb2.JOB_STATUS_RUNNING),
                ]
            )
        )
    )
    acks = {ack.job_id: ack for ack in [await worker.next_ack(), await worker.next_ack()]}
    assert acks[first.id].accepted
    assert not acks[second.id].accepted
    assert "status must be COMPLETED, FAILED or CANCELLED, not RUNNING" in acks[second.id].reason
    assert (await get(stubs, first.id)).status == JobStatus.COMPLETED
    assert await get(stubs, second.id) == before
    await worker.close()
