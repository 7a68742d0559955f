"""The execution timeout (the worker is told to cancel; FAILED(KILLED) once it stopped) and the retry
policy (Temporal's: failed attempts with retries left go DELAYED with exponential backoff, then QUEUED
as a new attempt)."""

from __future__ import annotations

import re

from jobwarden.contract import ErrorKind, ExecutionMode, JobEventType, JobStatus
from jobwarden.v1 import executor_service_pb2 as pb
from jobwarden.v1 import job_pb2

from tests.conftest import EngineHandle, Stubs
from tests.support import RawWorker
from tests.timers.helpers import (
    events,
    get,
    retry_policy,
    seconds,
    status_path,
    submit,
    timeouts,
    wait_status,
)

S = JobStatus


async def test_execution_timeout_cancels_the_worker_and_kills_the_job_once_it_stopped(
    engine: EngineHandle, stubs: Stubs
) -> None:
    worker = await RawWorker(engine.address, ["render"]).connect()
    job = await submit(stubs, "render", timeouts=timeouts(execution=0.05))
    assignment = await worker.next_assignment()
    assert seconds(assignment.deadlines.execution) > 0
    cancel = await worker.next_cancel()
    assert (cancel.job_id, cancel.attempt) == (job.id, 1)
    assert "execution timeout of 0.05s" in cancel.reason
    # Until the worker says its executor stopped, the job is not over: it still runs, stopping.
    stopping = await get(stubs, job.id)
    assert stopping.status == S.RUNNING
    requested = [e for e in await events(stubs, job.id) if e.type == JobEventType.CANCEL_REQUESTED]
    assert [e.reason for e in requested] == ["execution timeout of 0.05s passed"]
    # The executor finally returns: its result is the stop's acknowledgement, and is dropped.
    await worker.complete(assignment, {"late": True})
    ack = await worker.next_ack()
    assert ack.accepted
    assert "dropped" in ack.reason
    failed = await wait_status(stubs, job.id, S.FAILED)
    assert failed.error.kind == ErrorKind.KILLED
    assert "reported COMPLETED, which was dropped" in failed.error.message
    assert failed.attempts[0].status == S.FAILED
    assert not failed.HasField("result") or "late" not in failed.result
    assert await status_path(stubs, job.id) == [S.QUEUED, S.RUNNING, S.FAILED]
    await worker.close()


async def test_killed_runs_again_when_the_policy_allows(engine: EngineHandle, stubs: Stubs) -> None:
    worker = await RawWorker(engine.address, ["render"]).connect()
    job = await submit(stubs, "render", timeouts=timeouts(execution=0.05), retry_policy=retry_policy(2, 0.01))
    first = await worker.next_assignment()
    await worker.next_cancel()
    await worker.send(pb.ConnectRequest(cancel_ack=pb.CancelAck(job_id=job.id, attempt=first.attempt)))
    second = await worker.next_assignment()
    assert (second.job_id, second.attempt, second.mode) == (job.id, 2, ExecutionMode.RETRY)
    await worker.complete(second)
    assert (await worker.next_ack()).accepted
    done = await get(stubs, job.id)
    assert done.status == S.COMPLETED
    assert done.attempts[0].error.kind == ErrorKind.KILLED
    assert first.attempt == 1
    await worker.close()


async def test_exponential_backoff_reaches_completed_on_attempt_three(
    any_engine: EngineHandle, any_stubs: Stubs
) -> None:
    engine, stubs = any_engine, any_stubs  # on SQLite and on PostgreSQL
    worker = await RawWorker(engine.address, ["flaky"]).connect()
    job = await submit(stubs, "flaky", {"n": 1}, retry_policy=retry_policy(5, 0.03, 2.0, maximum=1.0))
    modes = []
    for attempt in (1, 2):
        assignment = await worker.next_assignment()
        assert (assignment.job_id, assignment.attempt) == (job.id, attempt)
        modes.append(assignment.mode)
        await worker.fail(assignment, f"boom {attempt}")
        assert (await worker.next_ack()).accepted
    third = await worker.next_assignment()
    modes.append(third.mode)
    assert third.attempt == 3
    assert modes == [ExecutionMode.EXECUTE, ExecutionMode.RETRY, ExecutionMode.RETRY]
    await worker.complete(third, {"ok": True})
    assert (await worker.next_ack()).accepted

    done = await get(stubs, job.id)
    assert done.status == S.COMPLETED
    assert done.attempt == 3
    assert [(a.number, S(a.status)) for a in done.attempts] == [
        (1, S.FAILED),
        (2, S.FAILED),
        (3, S.COMPLETED),
    ]
    assert [a.error.message for a in done.attempts[:2]] == ["boom 1", "boom 2"]
    assert await status_path(stubs, job.id) == [
        S.QUEUED,
        S.RUNNING,
        S.DELAYED,
        S.QUEUED,
        S.RUNNING,
        S.DELAYED,
        S.QUEUED,
        S.RUNNING,
        S.COMPLETED,
    ]
    history = [e for e in await events(stubs, job.id) if e.type == JobEventType.STATUS_CHANGED]
    delayed = [(i, e) for i, e in enumerate(history) if e.job.status == S.DELAYED]
    delays = [float(re.search(r"in ([\d.]+)s$", e.reason).group(1)) for _, e in delayed]  # type: ignore[union-attr]
    assert delays == [0.03, 0.06], "initial_interval, then times backoff_coefficient"
    assert ["attempt 2 of 5" in e.reason for _, e in delayed] == [True, False]
    for (index, event), delay in zip(delayed, delays, strict=True):
        woke = history[index + 1]
        assert woke.job.status == S.QUEUED
        assert seconds(woke.time) - seconds(event.time) >= delay - 0.002
    await worker.close()


async def test_backoff_is_capped_by_max_interval(engine: EngineHandle, stubs: Stubs) -> None:
    worker = await RawWorker(engine.address, ["flaky"]).connect()
    job = await submit(stubs, "flaky", retry_policy=retry_policy(4, 0.02, 10.0, maximum=0.05))
    for _ in range(3):
        assignment = await worker.next_assignment()
        await worker.fail(assignment, "again")
        await worker.next_ack()
    assignment = await worker.next_assignment()
    await worker.fail(assignment, "last")
    await worker.next_ack()
    failed = await wait_status(stubs, job.id, S.FAILED)
    assert failed.attempt == 4, "max_attempts counts every attempt"
    assert failed.error.message == "last"
    reasons = [
        e.reason
        for e in await events(stubs, job.id)
        if e.job.status == S.DELAYED and e.type == JobEventType.STATUS_CHANGED
    ]
    assert [re.search(r"in ([\d.]+)s$", r).group(1) for r in reasons] == ["0.02", "0.05", "0.05"]  # type: ignore[union-attr]
    await worker.close()


async def test_non_retryable_kinds_go_terminal_at_once(engine: EngineHandle, stubs: Stubs) -> None:
    worker = await RawWorker(engine.address, ["strict"]).connect()
    job = await submit(
        stubs, "strict", retry_policy=retry_policy(5, 0.01, non_retryable=[ErrorKind.JOB_ERROR])
    )
    assignment = await worker.next_assignment()
    await worker.fail(assignment, "bad input", kind=job_pb2.ERROR_KIND_JOB_ERROR)
    assert (await worker.next_ack()).accepted
    failed = await get(stubs, job.id)
    assert failed.status == S.FAILED
    assert failed.attempt == 1
    assert failed.error.kind == ErrorKind.JOB_ERROR
    assert await status_path(stubs, job.id) == [S.QUEUED, S.RUNNING, S.FAILED]

    # A CRASHED failure of the same policy is retried.
    crashing = await submit(
        stubs, "strict", retry_policy=retry_policy(5, 0.01, non_retryable=[ErrorKind.JOB_ERROR])
    )
    assignment = await worker.next_assignment()
    await worker.fail(assignment, "segfault", kind=job_pb2.ERROR_KIND_CRASHED, stack_trace="Traceback ...")
    await worker.next_ack()
    retried = await worker.next_assignment()
    assert (retried.job_id, retried.attempt) == (crashing.id, 2)
    await worker.complete(retried)
    await worker.next_ack()
    await worker.close()


async def test_an_error_marked_not_retryable_is_not_retried(engine: EngineHandle, stubs: Stubs) -> None:
    worker = await RawWorker(engine.address, ["strict"]).connect()
    job = await submit(stubs, "strict", retry_policy=retry_policy(5, 0.01))
    assignment = await worker.next_assignment()
    await worker.fail(assignment, "permanent", retryable=False)
    await worker.next_ack()
    assert (await get(stubs, job.id)).status == S.FAILED
    await worker.close()
