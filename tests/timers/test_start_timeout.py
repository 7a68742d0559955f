"""Start timeouts (Unmeshed's StartTimeoutConfiguration): FAIL, RETRY with backoff, NONE, run_request.

The start timeout counts from each time a job becomes QUEUED (submit, the end of a DELAYED wait, an
operator retry) and is disarmed when the job starts.
"""

from __future__ import annotations

import itertools
import re
import time

from jobwarden.contract import ErrorKind, JobEventType, JobStatus, StartTimeoutAction
from jobwarden.v1 import job_pb2
from jobwarden.v1 import job_service_pb2 as js

from tests.conftest import EngineHandle, Stubs
from tests.support import RawWorker, wait_for, wait_for_async
from tests.timers.helpers import (
    events,
    get,
    seconds,
    stamp,
    start_timeout,
    status_path,
    submit,
    timeouts,
    wait_status,
)

S = JobStatus
LABEL = "jobwarden.start_timeout_of"


async def alert_jobs(stubs: Stubs, job_id: str) -> list[job_pb2.Job]:
    response = await stubs.jobs.ListJobs(js.ListJobsRequest(label=f"{LABEL}={job_id}"))
    return list(response.jobs)


async def test_fail_ends_the_job_with_start_timeout(any_engine: EngineHandle, any_stubs: Stubs) -> None:
    engine, stubs = any_engine, any_stubs  # on SQLite and on PostgreSQL
    job = await submit(
        stubs,
        "nobody-serves-this",
        timeouts=timeouts(start=start_timeout(0.05, StartTimeoutAction.FAIL)),
    )
    assert job.status == S.QUEUED
    assert seconds(job.deadlines.start) > 0

    failed = await wait_status(stubs, job.id, S.FAILED)
    assert failed.error.kind == ErrorKind.START_TIMEOUT
    assert "not started within 0.05s" in failed.error.message
    assert failed.attempt == 0, "it never ran"
    assert await status_path(stubs, job.id) == [S.QUEUED, S.FAILED]
    history = await events(stubs, job.id)
    # It fired no earlier than its deadline.
    assert seconds(history[-1].time) >= seconds(history[0].time) + 0.05 - 0.002
    assert engine.core.timers.due("start", job.id) is None


async def test_retry_backs_off_exponentially_then_fails(any_engine: EngineHandle, any_stubs: Stubs) -> None:
    stubs = any_stubs  # on SQLite and on PostgreSQL
    job = await submit(
        stubs,
        "nobody-serves-this",
        timeouts=timeouts(
            start=start_timeout(
                0.03, StartTimeoutAction.RETRY, retry_interval=0.02, exponential=True, retry_count=3
            )
        ),
    )
    failed = await wait_status(stubs, job.id, S.FAILED)
    assert failed.error.kind == ErrorKind.START_TIMEOUT
    assert "3 start retries" in failed.error.message
    assert await status_path(stubs, job.id) == [
        S.QUEUED,
        S.DELAYED,
        S.QUEUED,
        S.DELAYED,
        S.QUEUED,
        S.DELAYED,
        S.QUEUED,
        S.FAILED,
    ]
    history = await events(stubs, job.id)
    delayed = [e for e in history if e.job.status == S.DELAYED]
    delays = [float(re.search(r"re-queued in ([\d.]+)s", e.reason).group(1)) for e in delayed]  # type: ignore[union-attr]
    assert delays == [0.02, 0.04, 0.08], "the retry interval doubles each time"
    assert [e.reason.rsplit("(", 1)[1] for e in delayed] == [
        "start retry 1 of 3)",
        "start retry 2 of 3)",
        "start retry 3 of 3)",
    ]
    # Each DELAYED wait lasted at least its interval, and each QUEUED spell at least the start timeout.
    times = [
        (S(e.job.status), seconds(e.time))
        for e in history
        if e.type in (JobEventType.SUBMITTED, JobEventType.STATUS_CHANGED)
    ]
    for (status, at), (_, next_at) in itertools.pairwise(times):
        if status is S.DELAYED:
            assert next_at - at >= delays.pop(0) - 0.002
        elif status is S.QUEUED:
            assert next_at - at >= 0.03 - 0.002


async def test_retry_with_a_fixed_interval(stubs: Stubs) -> None:
    job = await submit(
        stubs,
        "nobody-serves-this",
        timeouts=timeouts(
            start=start_timeout(0.02, StartTimeoutAction.RETRY, retry_interval=0.03, retry_count=2)
        ),
    )
    await wait_status(stubs, job.id, S.FAILED)
    reasons = [e.reason for e in await events(stubs, job.id) if e.job.status == S.DELAYED]
    assert [re.search(r"re-queued in ([\d.]+)s", r).group(1) for r in reasons] == ["0.03", "0.03"]  # type: ignore[union-attr]


async def test_retry_that_finds_a_worker_runs(engine: EngineHandle, stubs: Stubs) -> None:
    """A job re-queued by its start timeout runs when a worker comes, and its timer is gone."""
    job = await submit(
        stubs,
        "late-worker",
        timeouts=timeouts(
            start=start_timeout(0.03, StartTimeoutAction.RETRY, retry_interval=0.05, retry_count=50)
        ),
    )
    await wait_for_async(lambda: _has_status(stubs, job.id, S.DELAYED), message="a first start-timeout retry")
    worker = await RawWorker(engine.address, ["late-worker"]).connect()
    assignment = await worker.next_assignment()
    assert assignment.job_id == job.id
    assert assignment.attempt == 1
    running = await get(stubs, job.id)
    assert running.status == S.RUNNING
    assert engine.core.timers.due("start", job.id) is None
    assert engine.core.timers.due("wake", job.id) is None
    await worker.complete(assignment, {"ok": True})
    assert (await worker.next_ack()).accepted
    assert (await get(stubs, job.id)).status == S.COMPLETED
    await worker.close()


async def _has_status(stubs: Stubs, job_id: str, status: JobStatus) -> bool:
    return any(e.job.status == status for e in await events(stubs, job_id))


async def test_none_leaves_the_job_queued_and_submits_the_run_request(
    engine: EngineHandle, stubs: Stubs
) -> None:
    job = await submit(
        stubs,
        "slow-start",
        timeouts=timeouts(
            start=start_timeout(
                0.03,
                StartTimeoutAction.NONE,
                run_request=("alert", {"reason": "slow-start did not start"}, "incident-7"),
            )
        ),
    )
    found = await wait_for_async(lambda: alert_jobs(stubs, job.id), message="the run request's job")
    assert len(found) == 1
    alert = found[0]
    assert alert.action == "alert"
    assert alert.input["reason"] == "slow-start did not start"
    assert alert.correlation_id == "incident-7"
    assert dict(alert.labels) == {LABEL: job.id}
    # NONE: the job is left as it is, and the timeout does not fire again.
    still = await get(stubs, job.id)
    assert still.status == S.QUEUED
    assert engine.core.timers.due("start", job.id) is None
    assert await status_path(stubs, job.id) == [S.QUEUED]
    # ... and it runs when a worker comes.
    worker = await RawWorker(engine.address, ["slow-start"]).connect()
    assignment = await worker.next_assignment()
    assert assignment.job_id == job.id
    await worker.complete(assignment)
    assert (await worker.next_ack()).accepted
    assert len(await alert_jobs(stubs, job.id)) == 1
    await worker.close()


async def test_fail_with_a_run_request_submits_it_too(stubs: Stubs) -> None:
    job = await submit(
        stubs,
        "nobody-serves-this",
        timeouts=timeouts(
            start=start_timeout(0.03, StartTimeoutAction.FAIL, run_request=("alert", {"n": 1}, ""))
        ),
    )
    await wait_status(stubs, job.id, S.FAILED)
    [alert] = await wait_for_async(lambda: alert_jobs(stubs, job.id))
    # Without a correlation id of its own, the alert is correlated with the job that timed out.
    assert alert.correlation_id == job.id
    assert alert.status == S.QUEUED


async def test_counts_from_each_time_the_job_is_queued(engine: EngineHandle, stubs: Stubs) -> None:
    """DELAYED does not count; the clock starts when it becomes QUEUED. An operator retry restarts it."""
    run_at = time.time() + 0.15
    job = await submit(
        stubs,
        "nobody-serves-this",
        run_at=stamp(run_at),
        timeouts=timeouts(start=start_timeout(0.05, StartTimeoutAction.FAIL)),
    )
    assert job.status == S.DELAYED
    assert engine.core.timers.due("start", job.id) is None, "no start timeout while DELAYED"
    failed = await wait_status(stubs, job.id, S.FAILED)
    assert failed.error.kind == ErrorKind.START_TIMEOUT
    history = await events(stubs, job.id)
    assert [S(e.job.status) for e in history] == [S.DELAYED, S.QUEUED, S.FAILED]
    queued_at, failed_at = seconds(history[1].time), seconds(history[2].time)
    assert queued_at >= run_at - 0.002
    assert failed_at - queued_at >= 0.05 - 0.002

    retried = (await stubs.jobs.RetryJob(js.RetryJobRequest(job_id=job.id))).job
    assert retried.status == S.QUEUED
    assert seconds(retried.deadlines.start) >= seconds(history[-1].time)
    again = await wait_status(stubs, job.id, S.FAILED)
    assert again.error.kind == ErrorKind.START_TIMEOUT
    assert await status_path(stubs, job.id) == [S.DELAYED, S.QUEUED, S.FAILED, S.QUEUED, S.FAILED]


async def test_disarmed_when_the_job_starts(engine: EngineHandle, stubs: Stubs) -> None:
    worker = await RawWorker(engine.address, ["quick"]).connect()
    job = await submit(stubs, "quick", timeouts=timeouts(start=start_timeout(0.1, StartTimeoutAction.FAIL)))
    deadline = seconds(job.deadlines.start)
    assignment = await worker.next_assignment()
    assert engine.core.timers.due("start", job.id) is None
    running = await get(stubs, job.id)
    assert running.status == S.RUNNING
    assert not running.HasField("deadlines") or not running.deadlines.HasField("start")
    await wait_for(lambda: time.time() > deadline + 0.05, message="the old start deadline to pass")
    assert (await get(stubs, job.id)).status == S.RUNNING
    await worker.complete(assignment)
    assert (await worker.next_ack()).accepted
    assert (await get(stubs, job.id)).status == S.COMPLETED
    await worker.close()


async def test_action_default_and_job_override(engine: EngineHandle, stubs: Stubs) -> None:
    config = job_pb2.ActionConfig(
        action="configured", timeouts=timeouts(start=start_timeout(0.03, StartTimeoutAction.FAIL))
    )
    await stubs.jobs.SetActionConfig(js.SetActionConfigRequest(config=config))
    inherits = await submit(stubs, "configured")
    overrides = await submit(
        stubs,
        "configured",
        timeouts=timeouts(
            start=start_timeout(0.03, StartTimeoutAction.NONE, run_request=("alert", {}, "override"))
        ),
    )
    assert (await wait_status(stubs, inherits.id, S.FAILED)).error.kind == ErrorKind.START_TIMEOUT
    await wait_for_async(lambda: alert_jobs(stubs, overrides.id), message="the override's run request")
    assert (await get(stubs, overrides.id)).status == S.QUEUED
