"""The job registry over the API: submit, read, list, cancel, retry, history, stats (SQLite, PostgreSQL)."""

from __future__ import annotations

import asyncio
import time

import grpc
from google.protobuf import timestamp_pb2
from google.protobuf.json_format import MessageToDict
from jobwarden.contract import ExecutionMode, JobEventType, JobStatus
from jobwarden.v1 import job_pb2
from jobwarden.v1 import job_service_pb2 as js

from tests.conftest import EngineHandle, Stubs
from tests.engine.helpers import get, request, rpc_error, submit
from tests.support import RawWorker, wait_for_async


async def test_submit_returns_a_queued_job_with_everything_it_was_given(any_stubs: Stubs) -> None:
    job = await submit(
        any_stubs,
        "transcode",
        {"asset": "a1", "n": 3, "ratio": 0.5, "tags": ["x"], "nested": {"ok": True}},
        priority=7,
        labels={"team": "media", "env": "prod"},
        correlation_id="order-9",
        workflow_variables={"wf": "1"},
    )
    assert job.status == JobStatus.QUEUED
    assert job.action == "transcode"
    assert job.priority == 7
    assert dict(job.labels) == {"team": "media", "env": "prod"}
    assert job.correlation_id == "order-9"
    assert dict(job.workflow_variables) == {"wf": "1"}
    assert job.attempt == 0
    assert job.created_at.seconds > 0
    got = await get(any_stubs, job.id)
    assert got.input["asset"] == "a1"
    assert got.input["n"] == 3
    assert got.input["ratio"] == 0.5
    assert MessageToDict(got.input)["tags"] == ["x"]
    assert MessageToDict(got.input)["nested"]["ok"] is True


async def test_idempotency_key_returns_the_first_job_and_never_creates_a_second(any_stubs: Stubs) -> None:
    first = await any_stubs.jobs.SubmitJob(request("work", {"v": 1}, idempotency_key="k-1"))
    again = await any_stubs.jobs.SubmitJob(request("work", {"v": 1}, idempotency_key="k-1"))
    assert not first.duplicate
    assert again.duplicate
    assert again.job.id == first.job.id
    assert again.job.input["v"] == 1
    # Concurrent submits with one key: still one job. (A different request under a used key is
    # refused: tests/engine/test_idempotency.py.)
    responses = await asyncio.gather(
        *(any_stubs.jobs.SubmitJob(request("work", {"v": 2}, idempotency_key="k-2")) for _ in range(10))
    )
    assert len({r.job.id for r in responses}) == 1
    assert sum(not r.duplicate for r in responses) == 1
    listed = await any_stubs.jobs.ListJobs(js.ListJobsRequest(page_size=100))
    assert len(listed.jobs) == 2


async def test_batch_submit_is_one_call_in_order_and_one_bad_job_refuses_all(any_stubs: Stubs) -> None:
    batch = js.SubmitJobsRequest(jobs=[request("work", {"i": i}) for i in range(50)])
    response = await any_stubs.jobs.SubmitJobs(batch)
    assert [j.job.input["i"] for j in response.jobs] == list(range(50))
    bad = js.SubmitJobsRequest(jobs=[request("work", {"i": 1}), request("", {"i": 2})])
    error = await rpc_error(any_stubs.jobs.SubmitJobs(bad))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "jobs[1]" in (error.details() or "")
    listed = await any_stubs.jobs.ListJobs(js.ListJobsRequest(page_size=1000))
    assert len(listed.jobs) == 50


async def test_run_at_in_the_future_is_delayed_then_queued(any_stubs: Stubs) -> None:
    run_at = timestamp_pb2.Timestamp()
    run_at.FromNanoseconds(int((time.time() + 0.3) * 1e9))
    job = await submit(any_stubs, "work", run_at=run_at)
    assert job.status == JobStatus.DELAYED

    async def queued() -> bool:
        return (await get(any_stubs, job.id)).status == JobStatus.QUEUED

    await wait_for_async(queued, message="the delayed job to become QUEUED")


async def test_list_newest_first_with_filters_and_pages(any_stubs: Stubs, any_engine: EngineHandle) -> None:
    ids = []
    for i in range(12):
        job = await submit(
            any_stubs,
            "alpha" if i % 2 else "beta",
            {"i": i},
            labels={"n": str(i), "kind": "k"},
            correlation_id=f"corr-{i}",
        )
        ids.append(job.id)
    page = await any_stubs.jobs.ListJobs(js.ListJobsRequest(page_size=5))
    assert [j.id for j in page.jobs] == ids[::-1][:5]
    assert page.next_page_token
    seen = [j.id for j in page.jobs]
    while page.next_page_token:
        page = await any_stubs.jobs.ListJobs(js.ListJobsRequest(page_size=5, page_token=page.next_page_token))
        seen += [j.id for j in page.jobs]
    assert seen == ids[::-1]
    alpha = await any_stubs.jobs.ListJobs(js.ListJobsRequest(action="alpha", page_size=100))
    assert {j.input["i"] for j in alpha.jobs} == {1, 3, 5, 7, 9, 11}
    labelled = await any_stubs.jobs.ListJobs(js.ListJobsRequest(label="n=4"))
    assert [j.input["i"] for j in labelled.jobs] == [4]
    has_label = await any_stubs.jobs.ListJobs(js.ListJobsRequest(label="kind", page_size=100))
    assert len(has_label.jobs) == 12
    text = await any_stubs.jobs.ListJobs(js.ListJobsRequest(text="CORR-7"))
    assert [j.input["i"] for j in text.jobs] == [7]
    worker = await RawWorker(any_engine.address, ["beta"]).connect()
    assignment = await worker.next_assignment()
    await worker.complete(assignment)
    await worker.next_ack()
    completed = await any_stubs.jobs.ListJobs(js.ListJobsRequest(statuses=[job_pb2.JOB_STATUS_COMPLETED]))
    assert [j.id for j in completed.jobs] == [assignment.job_id]
    several = await any_stubs.jobs.ListJobs(
        js.ListJobsRequest(
            statuses=[job_pb2.JOB_STATUS_COMPLETED, job_pb2.JOB_STATUS_QUEUED, job_pb2.JOB_STATUS_RUNNING],
            page_size=100,
        )
    )
    assert len(several.jobs) == 12  # the worker may already run the next beta job
    summary = await any_stubs.jobs.ListJobs(js.ListJobsRequest(summary=True, page_size=1))
    assert not summary.jobs[0].HasField("input")
    assert summary.sequence > 0
    await worker.close()


async def test_cancel_waiting_job_is_immediate(any_stubs: Stubs) -> None:
    job = await submit(any_stubs)
    cancelled = await any_stubs.jobs.CancelJob(js.CancelJobRequest(job_id=job.id, reason="not needed"))
    assert cancelled.job.status == JobStatus.CANCELLED
    assert cancelled.job.status_reason == "not needed"
    events = await any_stubs.jobs.GetJobEvents(js.GetJobEventsRequest(job_id=job.id))
    assert events.events[-1].actor.startswith("anonymous@")
    assert events.events[-1].reason == "not needed"


async def test_cancel_running_job_reaches_the_worker_and_ends_when_it_acknowledges(
    any_stubs: Stubs, any_engine: EngineHandle
) -> None:
    job = await submit(any_stubs)
    worker = await RawWorker(any_engine.address, ["work"]).connect()
    assignment = await worker.next_assignment()
    response = await any_stubs.jobs.CancelJob(js.CancelJobRequest(job_id=job.id, reason="operator"))
    assert response.job.status == JobStatus.RUNNING
    assert response.job.cancel_requested
    cancel = await worker.next_cancel()
    assert (cancel.job_id, cancel.attempt, cancel.reason) == (job.id, assignment.attempt, "operator")
    from jobwarden.v1 import executor_service_pb2 as pb

    await worker.send(pb.ConnectRequest(cancel_ack=pb.CancelAck(job_id=job.id, attempt=assignment.attempt)))

    async def cancelled() -> bool:
        return (await get(any_stubs, job.id)).status == JobStatus.CANCELLED

    await wait_for_async(cancelled)
    events = await any_stubs.jobs.GetJobEvents(js.GetJobEventsRequest(job_id=job.id))
    assert JobEventType.CANCEL_REQUESTED in [e.type for e in events.events]
    await worker.close()


async def test_retry_makes_a_new_attempt_with_the_checkpoint_or_from_a_named_step(
    any_stubs: Stubs, any_engine: EngineHandle
) -> None:
    job = await submit(any_stubs)
    worker = await RawWorker(any_engine.address, ["work"]).connect()
    first = await worker.next_assignment()
    assert first.mode == ExecutionMode.EXECUTE
    for step in ("download", "transcode"):
        await worker.update(first, completed_step=job_pb2.CompletedStep(name=step))
    await worker.fail(first, "disk full", stack_trace="Traceback ...")
    await worker.next_ack()
    failed = await get(any_stubs, job.id)
    assert failed.status == JobStatus.FAILED
    assert failed.error.kind == job_pb2.ERROR_KIND_JOB_ERROR
    assert failed.error.message == "disk full"
    assert [s.name for s in failed.checkpoint.completed_steps] == ["download", "transcode"]

    retried = await any_stubs.jobs.RetryJob(js.RetryJobRequest(job_id=job.id))
    assert retried.job.status == JobStatus.QUEUED
    second = await worker.next_assignment()
    assert second.attempt == 2
    assert second.mode == ExecutionMode.RETRY
    assert second.checkpoint.step == "transcode"
    await worker.fail(second, "again")
    await worker.next_ack()

    from_step = await any_stubs.jobs.RetryJob(js.RetryJobRequest(job_id=job.id, from_step="transcode"))
    assert [s.name for s in from_step.job.checkpoint.completed_steps] == ["download"]
    third = await worker.next_assignment()
    assert third.attempt == 3
    assert third.checkpoint.step == "download"
    await worker.complete(third, {"done": 1})
    await worker.next_ack()
    done = await get(any_stubs, job.id)
    assert done.status == JobStatus.COMPLETED
    assert [a.status for a in done.attempts] == [JobStatus.FAILED, JobStatus.FAILED, JobStatus.COMPLETED]
    assert all(a.worker_id == worker.worker_id for a in done.attempts)
    await worker.close()


async def test_history_and_stats(any_stubs: Stubs, any_engine: EngineHandle) -> None:
    for _ in range(3):
        await submit(any_stubs, "stats-a")
    await submit(any_stubs, "stats-b")
    stats = await any_stubs.jobs.GetStats(js.GetStatsRequest())
    counts = {JobStatus(s.status): s.count for s in stats.statuses}
    assert counts[JobStatus.QUEUED] == 4
    assert set(stats.actions_without_workers) == {"stats-a", "stats-b"}
    worker = await RawWorker(any_engine.address, ["stats-a"], capacity=3).connect()
    for _ in range(3):
        await worker.complete(await worker.next_assignment())
        await worker.next_ack()
    stats = await any_stubs.jobs.GetStats(js.GetStatsRequest())
    by_action = {a.action: a for a in stats.actions}
    assert by_action["stats-a"].completed == 3
    assert by_action["stats-a"].workers == 1
    assert by_action["stats-a"].free_capacity == 3
    assert by_action["stats-b"].queued == 1
    assert stats.actions_without_workers == ["stats-b"]
    assert stats.throughput > 0
    assert stats.workers == 1
    await worker.close()
