"""An idempotency key returns the first job only for the same request; a different request under a
used key is refused (FAILED_PRECONDITION, naming the key and the first job) and nothing changes: in
memory, after an engine restart (the first job read back from the store), within one batch, and
through the SDK client."""

from __future__ import annotations

import time
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2, timestamp_pb2
from jobwarden.sdk import InvalidTransition, JobClient
from jobwarden.v1 import job_pb2
from jobwarden.v1 import job_service_pb2 as js

from tests.conftest import EngineFactory, EngineHandle, Stubs, _stubs
from tests.engine.helpers import request, rpc_error

#: a fixed time a day ahead, the same in every request of a run
RUN_AT = int(time.time()) + 86_400


def _first(key: str, **changes: Any) -> js.SubmitJobRequest:
    """The first request under ``key``, with every field that defines a job set (and ``changes``)."""
    fields: dict[str, Any] = {
        "priority": 3,
        "labels": {"team": "media"},
        "locks": [job_pb2.LockRequest(resource="asset:1", mode=job_pb2.LOCK_MODE_EXCLUSIVE)],
        "correlation_id": "order-1",
        "run_at": timestamp_pb2.Timestamp(seconds=RUN_AT),
        "timeouts": job_pb2.JobTimeouts(heartbeat=duration_pb2.Duration(seconds=30)),
        "retry_policy": job_pb2.RetryPolicy(max_attempts=3),
        "workflow_variables": {"wf": "1"},
        "idempotency_key": key,
    }
    action = changes.pop("action", "work")
    data = changes.pop("data", {"asset": 1})
    fields.update(changes)
    return request(action, data, **fields)


#: one change per field that defines a job, and the name the refusal gives it
CHANGES: list[tuple[str, dict[str, Any]]] = [
    ("action", {"action": "other"}),
    ("input", {"data": {"asset": 2}}),
    ("priority", {"priority": 4}),
    ("labels", {"labels": {"team": "web"}}),
    ("locks", {"locks": [job_pb2.LockRequest(resource="asset:2", mode=job_pb2.LOCK_MODE_EXCLUSIVE)]}),
    ("correlation_id", {"correlation_id": "order-2"}),
    ("run_at", {"run_at": timestamp_pb2.Timestamp(seconds=RUN_AT + 1)}),
    ("timeouts", {"timeouts": job_pb2.JobTimeouts(heartbeat=duration_pb2.Duration(seconds=31))}),
    ("retry_policy", {"retry_policy": job_pb2.RetryPolicy(max_attempts=4)}),
    ("workflow_variables", {"workflow_variables": {"wf": "2"}}),
]


async def _all_jobs(stubs: Stubs) -> list[job_pb2.Job]:
    return list((await stubs.jobs.ListJobs(js.ListJobsRequest(page_size=1000))).jobs)


async def _head(stubs: Stubs) -> int:
    return (await stubs.jobs.GetStats(js.GetStatsRequest())).head_sequence


async def test_the_same_request_under_a_key_returns_the_first_job(stubs: Stubs) -> None:
    first = await stubs.jobs.SubmitJob(_first("k-same"))
    again = await stubs.jobs.SubmitJob(_first("k-same"))
    assert not first.duplicate
    assert again.duplicate
    assert again.job.id == first.job.id
    assert len(await _all_jobs(stubs)) == 1


@pytest.mark.parametrize(("field", "change"), CHANGES, ids=[name for name, _ in CHANGES])
async def test_a_different_request_under_a_used_key_is_refused_and_changes_nothing(
    stubs: Stubs, field: str, change: dict[str, Any]
) -> None:
    first = (await stubs.jobs.SubmitJob(_first("k-1"))).job
    head = await _head(stubs)
    error = await rpc_error(stubs.jobs.SubmitJob(_first("k-1", **change)))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    details = error.details() or ""
    assert "'k-1'" in details, details
    assert first.id in details, details
    assert field in details, details
    assert [j.id for j in await _all_jobs(stubs)] == [first.id]
    assert await _head(stubs) == head, "a refused submit made an event"
    # The first job is untouched, and the same request still gets it back.
    assert (await stubs.jobs.GetJob(js.GetJobRequest(job_id=first.id))).job.input["asset"] == 1
    assert (await stubs.jobs.SubmitJob(_first("k-1"))).job.id == first.id


async def test_a_batch_with_a_reused_key_is_refused_whole(stubs: Stubs) -> None:
    first = (await stubs.jobs.SubmitJob(_first("k-batch"))).job
    batch = js.SubmitJobsRequest(jobs=[request("work", {"fresh": 1}), _first("k-batch", data={"asset": 9})])
    error = await rpc_error(stubs.jobs.SubmitJobs(batch))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "jobs[1]" in (error.details() or "")
    assert first.id in (error.details() or "")
    assert [j.id for j in await _all_jobs(stubs)] == [first.id], "the batch's fresh job was created"


async def test_two_specs_of_one_batch_sharing_a_key(stubs: Stubs) -> None:
    same = await stubs.jobs.SubmitJobs(js.SubmitJobsRequest(jobs=[_first("k-twin"), _first("k-twin")]))
    assert [r.duplicate for r in same.jobs] == [False, True]
    assert same.jobs[0].job.id == same.jobs[1].job.id
    head = await _head(stubs)
    different = js.SubmitJobsRequest(jobs=[_first("k-pair"), _first("k-pair", priority=9)])
    error = await rpc_error(stubs.jobs.SubmitJobs(different))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    details = error.details() or ""
    assert "'k-pair'" in details, details
    assert "jobs[0]" in details, details
    assert "priority" in details, details
    assert len(await _all_jobs(stubs)) == 1
    assert await _head(stubs) == head


async def test_a_reused_key_is_compared_with_the_stored_job_after_a_restart(
    engine_factory: EngineFactory, sqlite_url: str
) -> None:
    engine = await engine_factory()
    stubs = _stubs(engine)
    first = (await stubs.jobs.SubmitJob(_first("k-restart"))).job
    # Finished, so the restarted engine keeps it only in the store.
    await stubs.jobs.CancelJob(js.CancelJobRequest(job_id=first.id))
    await stubs.channel.close()
    await engine.server.stop(grace=0)
    again: EngineHandle = await engine_factory(db_url=sqlite_url)
    assert not again.core.registry.keys, "the key should be read from the store, not memory"
    stubs = _stubs(again)
    try:
        error = await rpc_error(stubs.jobs.SubmitJob(_first("k-restart", data={"asset": 2})))
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert first.id in (error.details() or "")
        assert "input" in (error.details() or "")
        assert [j.id for j in await _all_jobs(stubs)] == [first.id]
        same = await stubs.jobs.SubmitJob(_first("k-restart"))
        assert same.duplicate
        assert same.job.id == first.id
    finally:
        await stubs.channel.close()


async def test_the_sdk_client_raises_on_a_reused_key(engine: EngineHandle) -> None:
    async with JobClient(engine.address) as client:
        first = await client.submit("work", {"n": 1}, idempotency_key="k-sdk", labels={"a": "1"})
        assert (
            await client.submit("work", {"n": 1}, idempotency_key="k-sdk", labels={"a": "1"})
        ).id == first.id
        with pytest.raises(InvalidTransition) as refused:
            await client.submit("work", {"n": 2}, idempotency_key="k-sdk", labels={"a": "1"})
        assert refused.value.job_id == first.id or first.id in str(refused.value)
        assert "k-sdk" in str(refused.value)
        assert len((await client.list()).jobs) == 1
