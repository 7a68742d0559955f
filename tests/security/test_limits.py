"""A limit on every input. Over it, INVALID_ARGUMENT (a malformed request) or RESOURCE_EXHAUSTED (too
much: a message over the size limit, too many watchers), and nothing changes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2
from jobwarden.contract import Limits
from jobwarden.v1 import executor_service_pb2 as ep
from jobwarden.v1 import job_pb2, lock_service_pb2
from jobwarden.v1 import job_service_pb2 as js

from tests.conftest import EngineHandle, Stubs
from tests.engine.helpers import nested, request, struct
from tests.engine.test_bad_input import deep_request
from tests.security.conftest import SecureEngineFactory
from tests.security.test_auth import fingerprint
from tests.support import RawWorker, next_message, raw_unary, raw_unary_stream

INVALID = grpc.StatusCode.INVALID_ARGUMENT
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
WATCHERS_PER_CLIENT = 3


def big(n: int) -> str:
    return "x" * n


@pytest.fixture
async def limited(secure_engine_factory: SecureEngineFactory) -> EngineHandle:
    return await secure_engine_factory(max_watchers_per_client=WATCHERS_PER_CLIENT)


@dataclass
class TargetedStubs(Stubs):
    # A job the cases may name, so that a refusal is about the limit and not an unknown id.
    target: str = ""


@pytest.fixture
async def stubs(limited: EngineHandle) -> AsyncIterator[TargetedStubs]:
    from jobwarden.v1 import executor_service_pb2_grpc, job_service_pb2_grpc, lock_service_pb2_grpc

    channel = grpc.aio.insecure_channel(
        limited.address, options=[("grpc.max_send_message_length", 4 * Limits.MAX_MESSAGE_BYTES)]
    )
    stubs = TargetedStubs(
        job_service_pb2_grpc.JobServiceStub(channel),
        executor_service_pb2_grpc.ExecutorServiceStub(channel),
        lock_service_pb2_grpc.LockServiceStub(channel),
        channel,
    )
    stubs.target = (await stubs.jobs.SubmitJob(request("target"))).job.id
    yield stubs
    await channel.close()


CASES: list[tuple[str, grpc.StatusCode, Callable[[TargetedStubs], Any]]] = [
    (
        "a message over the size limit",
        EXHAUSTED,
        lambda s: s.jobs.SubmitJob(request("a", {"blob": big(Limits.MAX_MESSAGE_BYTES + 1)})),
    ),
    (
        "an input nested too deep",
        INVALID,
        lambda s: s.jobs.SubmitJob(request("a", nested(Limits.MAX_PAYLOAD_DEPTH + 1))),
    ),
    (
        "a body nested beyond the decoder's depth",
        INVALID,
        lambda s: s.jobs.SubmitJob(deep_request(60)),
    ),
    (
        "an input over the payload limit",
        INVALID,
        lambda s: s.jobs.SubmitJob(request("a", {"b": big(Limits.MAX_PAYLOAD_BYTES)})),
    ),
    (
        "too many labels",
        INVALID,
        lambda s: s.jobs.SubmitJob(request("a", labels={f"k{i}": "v" for i in range(Limits.MAX_LABELS + 1)})),
    ),
    (
        "a long label key",
        INVALID,
        lambda s: s.jobs.SubmitJob(request("a", labels={big(Limits.MAX_LABEL_KEY_LENGTH + 1): "v"})),
    ),
    (
        "a long label value",
        INVALID,
        lambda s: s.jobs.SubmitJob(request("a", labels={"k": big(Limits.MAX_LABEL_VALUE_LENGTH + 1)})),
    ),
    (
        "too many variables",
        INVALID,
        lambda s: s.jobs.SubmitJob(
            request("a", workflow_variables={f"v{i}": "1" for i in range(Limits.MAX_VARIABLES + 1)})
        ),
    ),
    (
        "a long variable",
        INVALID,
        lambda s: s.jobs.SubmitJob(
            request("a", workflow_variables={"v": big(Limits.MAX_VARIABLE_VALUE_LENGTH + 1)})
        ),
    ),
    ("a long action", INVALID, lambda s: s.jobs.SubmitJob(request(big(Limits.MAX_ACTION_LENGTH + 1)))),
    (
        "a long correlation id",
        INVALID,
        lambda s: s.jobs.SubmitJob(request("a", correlation_id=big(Limits.MAX_STRING_LENGTH + 1))),
    ),
    (
        "a long idempotency key",
        INVALID,
        lambda s: s.jobs.SubmitJob(request("a", idempotency_key=big(Limits.MAX_STRING_LENGTH + 1))),
    ),
    (
        "too many locks",
        INVALID,
        lambda s: s.jobs.SubmitJob(
            request(
                "a",
                locks=[
                    job_pb2.LockRequest(resource=f"r{i}", mode=job_pb2.LOCK_MODE_SHARED)
                    for i in range(Limits.MAX_LOCKS_PER_JOB + 1)
                ],
            )
        ),
    ),
    (
        "a long resource",
        INVALID,
        lambda s: s.jobs.SubmitJob(
            request(
                "a",
                locks=[
                    job_pb2.LockRequest(
                        resource=big(Limits.MAX_RESOURCE_LENGTH + 1), mode=job_pb2.LOCK_MODE_SHARED
                    )
                ],
            )
        ),
    ),
    (
        "too big a batch",
        INVALID,
        lambda s: s.jobs.SubmitJobs(
            js.SubmitJobsRequest(jobs=[request("a")] * (Limits.MAX_BATCH_SUBMIT + 1))
        ),
    ),
    (
        "a priority out of range",
        INVALID,
        lambda s: s.jobs.SubmitJob(request("a", priority=Limits.MAX_PRIORITY + 1)),
    ),
    (
        "a page too large",
        INVALID,
        lambda s: s.jobs.ListJobs(js.ListJobsRequest(page_size=Limits.MAX_PAGE_SIZE + 1)),
    ),
    (
        "a long search text",
        INVALID,
        lambda s: s.jobs.ListJobs(js.ListJobsRequest(text=big(Limits.MAX_STRING_LENGTH + 1))),
    ),
    (
        "too many statuses in a filter",
        INVALID,
        lambda s: s.jobs.ListJobs(js.ListJobsRequest(statuses=[job_pb2.JOB_STATUS_QUEUED] * 1001)),
    ),
    (
        "a long cancel reason",
        INVALID,
        lambda s: s.jobs.CancelJob(
            js.CancelJobRequest(job_id=s.target, reason=big(Limits.MAX_MESSAGE_LENGTH + 1))
        ),
    ),
    (
        "too many log lines asked for",
        INVALID,
        lambda s: s.jobs.GetJobLogs(js.GetJobLogsRequest(job_id=s.target, limit=10_001)),
    ),
    (
        "too many external locks",
        INVALID,
        lambda s: s.locks.AcquireLock(
            lock_service_pb2.AcquireLockRequest(
                holder="h",
                locks=[
                    job_pb2.LockRequest(resource=f"r{i}", mode=job_pb2.LOCK_MODE_SHARED)
                    for i in range(Limits.MAX_LOCKS_PER_JOB + 1)
                ],
                ttl=duration_pb2.Duration(seconds=5),
            )
        ),
    ),
    (
        "a long lock holder",
        INVALID,
        lambda s: s.locks.AcquireLock(
            lock_service_pb2.AcquireLockRequest(
                holder=big(257),
                locks=[job_pb2.LockRequest(resource="r", mode=job_pb2.LOCK_MODE_SHARED)],
                ttl=duration_pb2.Duration(seconds=5),
            )
        ),
    ),
    (
        "too many resources to release",
        INVALID,
        lambda s: s.locks.ReleaseLock(lock_service_pb2.ReleaseLockRequest(holder="h", resources=["r"] * 33)),
    ),
    (
        "a long lock prefix",
        INVALID,
        lambda s: s.locks.ListLocks(
            lock_service_pb2.ListLocksRequest(prefix=big(Limits.MAX_RESOURCE_LENGTH + 1))
        ),
    ),
]


@pytest.mark.parametrize(("what", "code", "make"), CASES, ids=[c[0] for c in CASES])
async def test_over_the_limit_is_refused_and_changes_nothing(
    limited: EngineHandle,
    stubs: TargetedStubs,
    what: str,
    code: grpc.StatusCode,
    make: Callable[[TargetedStubs], Any],
) -> None:
    await limited.core.writer.flush()
    before = fingerprint(limited)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await make(stubs)
    assert refused.value.code() == code, (what, refused.value.details())
    assert refused.value.details(), "a refusal says why"
    await limited.core.writer.flush()
    assert fingerprint(limited) == before, f"{what} changed the engine"


async def test_watchers_per_client(limited: EngineHandle, stubs: Stubs) -> None:
    watches = [stubs.jobs.WatchJobs(js.WatchJobsRequest()) for _ in range(WATCHERS_PER_CLIENT)]
    for watch in watches:
        await watch.read()  # each one is open (a keep-alive arrives)
    extra = stubs.jobs.WatchJobs(js.WatchJobsRequest())
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await extra.read()
    assert refused.value.code() == EXHAUSTED
    assert "watchers" in (refused.value.details() or "")
    # A closed watcher frees its place.
    watches[0].cancel()
    for _ in range(100):
        again = stubs.jobs.WatchJobs(js.WatchJobsRequest())
        try:
            await again.read()
            break
        except grpc.aio.AioRpcError:
            continue
    else:
        raise AssertionError("a freed watcher place was not given back")
    for watch in [*watches, again]:
        watch.cancel()
    with pytest.raises(grpc.aio.AioRpcError) as too_many_ids:
        await stubs.jobs.WatchJobs(js.WatchJobsRequest(job_ids=["x"] * 1001)).read()
    assert too_many_ids.value.code() == INVALID


async def test_worker_messages_over_the_limit_are_refused_on_the_stream(
    limited: EngineHandle, stubs: Stubs
) -> None:
    job = (await stubs.jobs.SubmitJob(request("w"))).job
    worker = await RawWorker(limited.address, ["w"]).connect()
    try:
        a = await worker.next_assignment()
        await limited.core.writer.flush()
        before = (await stubs.jobs.GetJob(js.GetJobRequest(job_id=job.id))).job
        refusals = [
            ep.JobUpdate(job_id=a.job_id, attempt=a.attempt, progress=101),
            ep.JobUpdate(job_id=a.job_id, attempt=a.attempt, message=big(Limits.MAX_MESSAGE_LENGTH + 1)),
            ep.JobUpdate(job_id=a.job_id, attempt=a.attempt, step=big(Limits.MAX_STEP_NAME_LENGTH + 1)),
            ep.JobUpdate(
                job_id=a.job_id,
                attempt=a.attempt,
                job_variables={f"v{i}": "1" for i in range(Limits.MAX_VARIABLES + 1)},
            ),
            ep.JobUpdate(
                job_id=a.job_id,
                attempt=a.attempt,
                completed_step=job_pb2.CompletedStep(
                    name="s", data=struct(nested(Limits.MAX_PAYLOAD_DEPTH + 1))
                ),
            ),
        ]
        for update in refusals:
            await worker.send(ep.ConnectRequest(job_update=update))
            refusal = await worker.next_refusal()
            assert refusal.code == INVALID.value[0], refusal
        too_many_lines = ep.JobLog(
            job_id=a.job_id,
            attempt=a.attempt,
            lines=[ep.JobLogLine(message="l")] * (Limits.MAX_LOG_LINES_PER_MESSAGE + 1),
        )
        await worker.send(ep.ConnectRequest(job_log=too_many_lines))
        assert (await worker.next_refusal()).code == INVALID.value[0]
        after = (await stubs.jobs.GetJob(js.GetJobRequest(job_id=job.id))).job
        assert after == before, "a refused worker message changed the job"
        # The stream goes on: a good update still lands.
        await worker.update(a, progress=40)
        await worker.complete(a, {"ok": True})
        assert (await worker.next_ack()).accepted
    finally:
        await worker.close()


_SUBMIT = ("/jobwarden.v1.JobService/SubmitJob", "jobwarden.v1.SubmitJobRequest", False)
_WATCH = ("/jobwarden.v1.JobService/WatchJobs", "jobwarden.v1.WatchJobsRequest", True)
_ACQUIRE = ("/jobwarden.v1.LockService/AcquireLock", "jobwarden.v1.AcquireLockRequest", False)
GARBAGE = b"\xff\xff\xff\xff"
UNDECODABLE = [
    ("garbage, unary", *_SUBMIT, GARBAGE, "Wire format was corrupt"),
    ("garbage, server stream", *_WATCH, GARBAGE, "Wire format was corrupt"),
    ("garbage, another service", *_ACQUIRE, GARBAGE, "Wire format was corrupt"),
    ("a truncated field", *_SUBMIT, b"\x0a\x05ab", "Wire format was corrupt"),
    (
        "nesting beyond the decoder's depth",
        *_SUBMIT,
        deep_request(60).SerializeToString(),
        "its messages nest deeper than the decoder allows (a JSON payload may nest at most 20 levels)",
    ),
]


@pytest.mark.parametrize(
    ("path", "type_name", "streaming", "body", "why"),
    [u[1:] for u in UNDECODABLE],
    ids=[u[0] for u in UNDECODABLE],
)
async def test_an_undecodable_body_is_invalid_argument_logged_once_and_changes_nothing(
    limited: EngineHandle,
    stubs: Stubs,
    caplog: pytest.LogCaptureFixture,
    path: str,
    type_name: str,
    streaming: bool,
    body: bytes,
    why: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    await limited.core.writer.flush()
    before = fingerprint(limited)
    caplog.clear()
    call = (
        raw_unary_stream(stubs.channel, path)(body, timeout=10).read()
        if streaming
        else raw_unary(stubs.channel, path)(body, timeout=10)
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call
    assert refused.value.code() == INVALID, refused.value.details()
    assert refused.value.details() == f"the request body is not a valid {type_name}: {why}"
    await limited.core.writer.flush()
    assert fingerprint(limited) == before
    _logged_once_as_a_warning(caplog, type_name)


def _logged_once_as_a_warning(caplog: pytest.LogCaptureFixture, type_name: str) -> None:
    serious = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not serious, [r.getMessage() for r in serious]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert f"not a valid {type_name}" in warnings[0].getMessage()


async def test_an_undecodable_message_on_the_worker_stream_is_refused_there(
    limited: EngineHandle, stubs: Stubs, caplog: pytest.LogCaptureFixture
) -> None:
    """As the first message, the stream is refused (nothing registered); later on, that one message
    is refused on the stream, which goes on, and the worker keeps its session and its job."""
    caplog.set_level(logging.DEBUG)
    connect = "/jobwarden.v1.ExecutorService/Connect"
    caplog.clear()
    first: grpc.aio.StreamStreamCall[bytes, bytes] = stubs.channel.stream_stream(connect)(timeout=10)
    await first.write(GARBAGE)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await first.read()
    assert refused.value.code() == INVALID
    assert refused.value.details() == (
        "the request body is not a valid jobwarden.v1.ConnectRequest: Wire format was corrupt"
    )
    assert not limited.core.sessions
    _logged_once_as_a_warning(caplog, "jobwarden.v1.ConnectRequest")

    job = (await stubs.jobs.SubmitJob(request("w"))).job
    stream: grpc.aio.StreamStreamCall[bytes, ep.ConnectResponse] = stubs.channel.stream_stream(
        connect, response_deserializer=ep.ConnectResponse.FromString
    )(timeout=30)
    register = ep.Register(worker_name="w", executors=[ep.ExecutorSpec(action="w")], capacity=1)
    await stream.write(ep.ConnectRequest(register=register).SerializeToString())
    registered = (await next_message(stream)).registered
    assignment = (await next_message(stream)).assignment
    assert assignment.job_id == job.id
    caplog.clear()
    await stream.write(deep_request(60).SerializeToString()[:7] + b"\xff\xff")
    refusal = (await next_message(stream)).refusal
    assert refusal.code == INVALID.value[0]
    assert refusal.refused == "undecodable"
    assert refusal.message.startswith("the request body is not a valid jobwarden.v1.ConnectRequest: ")
    _logged_once_as_a_warning(caplog, "jobwarden.v1.ConnectRequest")
    session = limited.core.sessions[registered.worker_id]
    assert session.jobs == {job.id: assignment.attempt}
    done = ep.JobResult(job_id=job.id, attempt=assignment.attempt, status=job_pb2.JOB_STATUS_COMPLETED)
    await stream.write(ep.ConnectRequest(job_result=done).SerializeToString())
    assert (await next_message(stream)).result_ack.accepted
    stream.cancel()
