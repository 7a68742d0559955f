"""Bad timeouts, retry policies and lock requests at submit: each refused with INVALID_ARGUMENT (naming
the field and the rule), and nothing is created or changed."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from jobwarden.contract import LockMode, StartTimeoutAction
from jobwarden.v1 import executor_service_pb2 as pb
from jobwarden.v1 import job_pb2
from jobwarden.v1 import job_service_pb2 as js
from jobwarden.v1 import lock_service_pb2 as ls

from tests.conftest import EngineHandle, Stubs
from tests.support import RawWorker
from tests.timers.helpers import (
    dur,
    get,
    lock,
    retry_policy,
    seconds,
    stamp,
    start_timeout,
    submit,
    submit_request,
    timeouts,
)

X = LockMode.EXCLUSIVE
YEAR = 365 * 24 * 3600.0


def negative_heartbeat() -> job_pb2.JobTimeouts:
    return timeouts(heartbeat=-0.5)


CASES: list[tuple[str, dict[str, Any], str]] = [
    ("unknown lock mode", {"locks": [lock("asset:1", 9)]}, "unknown lock mode 9"),
    ("unspecified lock mode", {"locks": [lock("asset:1", 0)]}, "unknown lock mode 0"),
    ("empty resource", {"locks": [lock("", X)]}, "empty resource"),
    ("blank resource", {"locks": [lock("  ", X)]}, "empty resource"),
    ("too many locks", {"locks": [lock(f"r{i}") for i in range(40)]}, "at most 32"),
    ("negative heartbeat", {"timeouts": negative_heartbeat()}, "timeouts.heartbeat must be positive"),
    ("zero heartbeat", {"timeouts": timeouts(heartbeat=0)}, "timeouts.heartbeat must be positive"),
    ("absurd execution", {"timeouts": timeouts(execution=50 * YEAR)}, "absurd"),
    ("negative takeover", {"timeouts": timeouts(takeover=-1)}, "timeouts.takeover"),
    (
        "negative start duration",
        {"timeouts": timeouts(start=start_timeout(-1))},
        "timeouts.start.duration must be positive",
    ),
    (
        "absurd start duration",
        {"timeouts": timeouts(start=start_timeout(100 * YEAR))},
        "timeouts.start.duration of",
    ),
    (
        "start retry without a count",
        {"timeouts": timeouts(start=start_timeout(1, StartTimeoutAction.RETRY, retry_interval=1))},
        "RETRY needs a retry_count",
    ),
    (
        "start retry backoff absurd",
        {
            "timeouts": timeouts(
                start=start_timeout(
                    1, StartTimeoutAction.RETRY, retry_interval=60, exponential=True, retry_count=60
                )
            )
        },
        "exponential backoff reaches an absurd",
    ),
    (
        "negative start retry interval",
        {
            "timeouts": timeouts(
                start=start_timeout(1, StartTimeoutAction.RETRY, retry_interval=-2, retry_count=1)
            )
        },
        "retry_interval must be positive",
    ),
    (
        "unknown start timeout action",
        {"timeouts": timeouts(start=start_timeout(1, 9))},  # type: ignore[arg-type]
        "unknown start timeout action 9",
    ),
    (
        "retry interval above its maximum",
        {"retry_policy": retry_policy(3, 10, maximum=5)},
        "initial_interval 10s exceeds max_interval 5s",
    ),
    ("negative max_attempts", {"retry_policy": retry_policy(-1, 1)}, "max_attempts must be between"),
    ("absurd max_attempts", {"retry_policy": retry_policy(10**6, 1)}, "max_attempts must be between"),
    ("coefficient below 1", {"retry_policy": retry_policy(3, 1, 0.5)}, "backoff_coefficient"),
    ("negative initial interval", {"retry_policy": retry_policy(3, -1)}, "initial_interval must be positive"),
    ("absurd run_at", {"run_at": stamp(4e10)}, "run_at"),
    (
        "run request without an action",
        {"timeouts": timeouts(start=start_timeout(1, StartTimeoutAction.NONE, run_request=("", {}, "")))},
        "run_request.action is required",
    ),
]


@pytest.mark.parametrize(("fields", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
async def test_bad_submit_is_refused_and_creates_nothing(
    engine: EngineHandle, stubs: Stubs, fields: dict[str, Any], words: str
) -> None:
    existing = await submit(stubs, "edit", {"keep": True}, locks=[lock("asset:1")])
    before_jobs = await stubs.jobs.ListJobs(js.ListJobsRequest())
    before_locks = await stubs.locks.ListLocks(ls.ListLocksRequest())
    before_head = engine.core.bus.head
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await submit(stubs, "edit", {"asset_id": 1}, **fields)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert words in (refused.value.details() or "")
    # One bad job refuses the whole batch.
    with pytest.raises(grpc.aio.AioRpcError) as batch:
        await stubs.jobs.SubmitJobs(
            js.SubmitJobsRequest(
                jobs=[submit_request("edit"), submit_request("edit", {"asset_id": 1}, **fields)]
            )
        )
    assert batch.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "jobs[1]: " in (batch.value.details() or "")
    after_jobs = await stubs.jobs.ListJobs(js.ListJobsRequest())
    assert [j.id for j in after_jobs.jobs] == [j.id for j in before_jobs.jobs]
    assert await stubs.locks.ListLocks(ls.ListLocksRequest()) == before_locks
    assert engine.core.bus.head == before_head, "no event"
    assert (await get(stubs, existing.id)).status == existing.status


async def test_a_bad_heartbeat_extension_is_refused_and_changes_nothing(
    engine: EngineHandle, stubs: Stubs
) -> None:
    worker = await RawWorker(engine.address, ["edit"]).connect()
    job = await submit(stubs, "edit", timeouts=timeouts(execution=60))
    assignment = await worker.next_assignment()
    before = seconds((await get(stubs, job.id)).deadlines.execution)
    for bad in (-1.0, 100 * YEAR):
        await worker.send(
            pb.ConnectRequest(
                heartbeat=pb.Heartbeat(
                    jobs=[
                        pb.JobHeartbeat(job_id=job.id, attempt=assignment.attempt, extend_execution=dur(bad))
                    ]
                )
            )
        )
        refusal = await worker.next_refusal()
        assert refusal.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert "extend_execution" in refusal.message
    after = await get(stubs, job.id)
    assert seconds(after.deadlines.execution) == before
    assert engine.core.timers.due("execution", job.id) == pytest.approx(before, abs=1e-3)
    # The stream survived the refusals.
    await worker.complete(assignment)
    assert (await worker.next_ack()).accepted
    await worker.close()
