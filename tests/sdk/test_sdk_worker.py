"""Real workers in real processes against a real engine: results, failures, steps, cancel, bad executors."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jobwarden.contract import ErrorKind, JobStatus
from jobwarden.sdk import JobClient
from jobwarden.wire import struct_to_dict

from .conftest import WorkerProcess, read_trace, wait_status, wait_until

Workers = Callable[..., WorkerProcess]


async def test_async_executor_runs_its_steps_and_completes(
    client: JobClient, workers: Workers, tmp_path: Path
) -> None:
    worker = workers()
    await worker.connected(client)
    trace = tmp_path / "trace"
    job = await client.submit("sdk-steps", {"trace": str(trace)})
    done = await wait_status(client, job.id)
    assert JobStatus(done.status) is JobStatus.COMPLETED, done.error
    result = struct_to_dict(done.result)
    assert result == {"one": {"pid": worker.pid}, "two": 2, "three": f"{worker.pid}-2", "attempt": 1}
    assert done.progress == 100
    assert [step.name for step in done.checkpoint.completed_steps] == ["one", "two", "three"]
    assert read_trace(trace) == [
        "execute attempt=1 mode=EXECUTE",
        "step one attempt=1 mode=EXECUTE",
        "step two attempt=1 mode=EXECUTE",
        "step three attempt=1 mode=EXECUTE",
    ]


async def test_sync_executor_reports_variables_logs_and_result(
    client: JobClient, workers: Workers, tmp_path: Path
) -> None:
    worker = workers()
    await worker.connected(client)
    gate = tmp_path / "gate"
    gate.touch()
    job = await client.submit("sdk-sync", {"gate": str(gate), "numbers": [1, 2, 3]})
    done = await wait_status(client, job.id)
    assert JobStatus(done.status) is JobStatus.COMPLETED, done.error
    assert struct_to_dict(done.result) == {"first": {"tid": "thread"}, "second": 2, "sum": 6}
    assert dict(done.job_variables) == {"answer": "42"}
    assert dict(done.workflow_variables) == {"seen_by": "sync"}
    lines = await wait_until(lambda: client.logs(job.id), what="the job's log lines")
    assert [(line.level, line.message) for line in lines] == [("INFO", "waiting for the gate")]


async def test_failures_keep_the_handled_message_or_the_whole_trace(
    client: JobClient, workers: Workers
) -> None:
    worker = workers()
    await worker.connected(client)
    crash = await client.submit("sdk-crash")
    refuse = await client.submit("sdk-refuse")
    crashed = await wait_status(client, crash.id)
    refused = await wait_status(client, refuse.id)

    assert JobStatus(crashed.status) is JobStatus.FAILED
    assert ErrorKind(crashed.error.kind) is ErrorKind.CRASHED
    assert crashed.error.message == "RuntimeError: could not read the manifest"
    trace = crashed.error.stack_trace
    assert "KeyError: 'missing'" in trace
    assert "The above exception was the direct cause of the following exception" in trace
    assert 'raise RuntimeError("could not read the manifest") from error' in trace

    assert JobStatus(refused.status) is JobStatus.FAILED
    assert ErrorKind(refused.error.kind) is ErrorKind.JOB_ERROR
    assert refused.error.message == "asset 7 does not exist"
    assert refused.error.stack_trace == ""
    assert not refused.error.retryable


async def test_misbehaving_executors_fail_their_job_with_the_reason_and_the_worker_goes_on(
    client: JobClient, workers: Workers
) -> None:
    worker = workers()
    await worker.connected(client)
    expected = {
        "sdk-bad-result": "the executor returned a result that is not JSON: the result.when is a datetime",
        "sdk-bad-progress": "ValueError: progress must be from 0 to 100, got 140",
        "sdk-step-twice": "StepError: step 'a' is used twice in one job: every step needs its own name",
    }
    jobs = {action: await client.submit(action) for action in expected}
    for action, fragment in expected.items():
        failed = await wait_status(client, jobs[action].id)
        assert JobStatus(failed.status) is JobStatus.FAILED, action
        assert fragment in failed.error.message, (action, failed.error.message)
    after = await client.submit("sdk-noop")
    assert JobStatus((await wait_status(client, after.id)).status) is JobStatus.COMPLETED
    assert worker.process.poll() is None


async def test_cancel_reaches_a_running_sync_job(client: JobClient, workers: Workers, tmp_path: Path) -> None:
    worker = workers()
    await worker.connected(client)
    trace = tmp_path / "trace"
    job = await client.submit("sdk-sync", {"gate": str(tmp_path / "never"), "trace": str(trace)})
    await wait_until(
        lambda: _progress_is(client, job.id, 30), what="the sync job to report progress 30 while it waits"
    )
    await client.cancel(job.id, "operator changed their mind")
    cancelled = await wait_status(client, job.id)
    assert JobStatus(cancelled.status) is JobStatus.CANCELLED
    await wait_until(lambda: "on_cancelled attempt=1 mode=EXECUTE" in read_trace(trace), what="on_cancelled")
    assert read_trace(trace) == [
        "execute attempt=1 mode=EXECUTE",
        "saw cancel attempt=1 mode=EXECUTE",
        "on_cancelled attempt=1 mode=EXECUTE",
    ]


async def test_a_cancel_hook_that_raises_is_logged_and_the_job_still_cancelled(
    client: JobClient, workers: Workers, tmp_path: Path
) -> None:
    worker = workers()
    await worker.connected(client)
    job = await client.submit("sdk-bad-cancel", {"trace": str(tmp_path / "trace")})
    await wait_status(client, job.id, JobStatus.RUNNING)
    await wait_until(lambda: _progress_is(client, job.id, 1), what="the job to start waiting")
    await client.cancel(job.id)
    cancelled = await wait_status(client, job.id)
    assert JobStatus(cancelled.status) is JobStatus.CANCELLED
    lines = await wait_until(lambda: client.logs(job.id), what="the hook's error in the job log")
    assert lines[0].level == "ERROR"
    assert "cancel() raised RuntimeError: the encoder did not answer" in lines[0].message
    assert worker.process.poll() is None


async def test_a_sync_job_that_ignores_cancel_is_reported_only_once_it_returns(
    client: JobClient, workers: Workers, tmp_path: Path
) -> None:
    worker = workers("--cancel-grace", "0.5", "--capacity", "1")
    await worker.connected(client)
    gate = tmp_path / "gate"
    job = await client.submit("sdk-stubborn", {"gate": str(gate), "trace": str(tmp_path / "trace")})
    await wait_status(client, job.id, JobStatus.RUNNING)
    await wait_until(lambda: (tmp_path / "trace").exists(), what="the job to start")
    await client.cancel(job.id)
    await wait_until(lambda: "did not stop within 0.5s" in worker.output(), what="the grace warning")
    assert "stay held until it returns" in worker.output()
    # Its code still runs: it is not reported stopped, and it keeps its slot (capacity 1).
    assert JobStatus((await client.get(job.id)).status) is JobStatus.RUNNING
    [serving] = [w for w in await client.workers() if w.name == worker.name]
    assert [j.job_id for j in serving.jobs] == [job.id]
    queued = await client.submit("sdk-noop")
    gate.touch()  # the executor returns: now the cancel is acknowledged
    cancelled = await wait_status(client, job.id)
    assert JobStatus(cancelled.status) is JobStatus.CANCELLED
    assert JobStatus((await wait_status(client, queued.id)).status) is JobStatus.COMPLETED


async def test_retry_policy_retries_from_the_checkpoint(
    client: JobClient, workers: Workers, tmp_path: Path
) -> None:
    worker = workers()
    await worker.connected(client)
    trace = tmp_path / "trace"
    job = await client.submit(
        "sdk-flaky", {"trace": str(trace)}, retry_policy={"max_attempts": 2, "initial_interval": 0.1}
    )
    done = await wait_status(client, job.id)
    assert JobStatus(done.status) is JobStatus.COMPLETED, done.error
    assert done.attempt == 2
    assert struct_to_dict(done.result) == {"prepared": "ready", "worked": "done"}
    assert read_trace(trace) == [
        "execute attempt=1 mode=EXECUTE",
        "step prepare attempt=1 mode=EXECUTE",
        "step work attempt=1 mode=EXECUTE",
        "retry after=prepare attempt=2 mode=RETRY",
        "execute attempt=2 mode=RETRY",
        "step work attempt=2 mode=RETRY",
    ]


async def test_operator_retry_from_a_named_step_runs_it_again(
    client: JobClient, workers: Workers, tmp_path: Path
) -> None:
    worker = workers()
    await worker.connected(client)
    trace = tmp_path / "trace"
    job = await client.submit("sdk-flaky", {"trace": str(trace)}, retry_policy={"max_attempts": 1})
    failed = await wait_status(client, job.id)
    assert JobStatus(failed.status) is JobStatus.FAILED
    assert failed.error.message == "the upstream service said 503"
    assert failed.error.step == "work"
    await client.retry(job.id, from_step="prepare")
    done = await wait_status(client, job.id)
    assert JobStatus(done.status) is JobStatus.COMPLETED, done.error
    assert read_trace(trace)[-4:] == [
        "retry after= attempt=2 mode=RETRY",
        "execute attempt=2 mode=RETRY",
        "step prepare attempt=2 mode=RETRY",
        "step work attempt=2 mode=RETRY",
    ]


async def test_max_concurrency_bounds_an_action_below_the_workers_capacity(
    client: JobClient, workers: Workers, tmp_path: Path
) -> None:
    worker = workers("--capacity", "4")
    await worker.connected(client)
    gate, trace = tmp_path / "gate", tmp_path / "trace"
    jobs = [
        await client.submit("sdk-one-at-a-time", {"gate": str(gate), "trace": str(trace)}) for _ in range(3)
    ]
    await wait_until(lambda: trace.exists(), what="the first job to start")
    other = await client.submit("sdk-noop")
    assert JobStatus((await wait_status(client, other.id)).status) is JobStatus.COMPLETED
    statuses = [JobStatus((await client.get(job.id)).status) for job in jobs]
    assert sorted(statuses) == [JobStatus.QUEUED, JobStatus.QUEUED, JobStatus.RUNNING]
    gate.touch()
    for job in jobs:
        assert JobStatus((await wait_status(client, job.id)).status) is JobStatus.COMPLETED
    assert len(read_trace(trace)) == 3


async def _progress_is(client: JobClient, job_id: str, progress: int) -> bool:
    job = await client.get(job_id)
    return job.progress == progress and JobStatus(job.status) is JobStatus.RUNNING


async def test_the_overhead_bench_runs_through_a_worker_process() -> None:
    """jobwarden.bench.sdk_overhead measures the SDK's per-job cost; keep it working (no speed asserted)."""
    from jobwarden.bench.sdk_overhead import NOOP, bench_null

    rate = await bench_null(jobs=300, capacity=20, target=NOOP)
    assert rate > 0


async def test_a_worker_in_the_callers_event_loop(engine: Any, client: JobClient) -> None:
    """The library form: ``await Worker([...]).run()``, stopped with ``drain()``."""
    from jobwarden.sdk import Worker

    from .sdk_executors import AsyncSteps, SyncSteps

    worker = Worker([AsyncSteps(), SyncSteps], engine=engine.address, capacity=2, name="in-process")
    running = asyncio.create_task(worker.run())
    await asyncio.wait_for(worker.wait_connected(), 30)
    assert worker.actions == ["sdk-steps", "sdk-sync"]
    job = await client.submit("sdk-steps")
    done = await wait_status(client, job.id)
    assert JobStatus(done.status) is JobStatus.COMPLETED, done.error
    worker.drain()
    await asyncio.wait_for(running, 30)
    assert worker.finished_jobs == 1

    async def gone() -> bool:
        return not [w for w in await client.workers() if w.name == "in-process"]

    await wait_until(gone, what="the engine to see the worker leave")


async def test_a_result_the_engine_refuses_becomes_a_failure_that_says_why(
    engine: Any, client: JobClient
) -> None:
    """The engine refuses a malformed result and changes nothing; the worker then reports the job
    failed with the engine's reason instead of leaving it running until its heartbeat deadline."""
    from jobwarden.sdk import Executor, JobContext, JobFailed, Worker

    class ClaimsKilled(Executor):
        action = "sdk-claims-killed"

        async def execute(self, ctx: JobContext) -> None:
            if ctx.input.get("kill"):
                raise JobFailed("pretending the engine killed me", kind=ErrorKind.KILLED)

    worker = Worker([ClaimsKilled], engine=engine.address, capacity=1, name="claims-killed")
    running = asyncio.create_task(worker.run())
    await asyncio.wait_for(worker.wait_connected(), 30)
    job = await client.submit("sdk-claims-killed", {"kill": True})
    failed = await wait_status(client, job.id)
    assert JobStatus(failed.status) is JobStatus.FAILED
    assert ErrorKind(failed.error.kind) is ErrorKind.CRASHED
    assert failed.error.message == (
        "the engine refused the result: error.kind: a worker reports JOB_ERROR or CRASHED, not KILLED"
    )
    assert failed.attempt == 1
    after = await client.submit("sdk-claims-killed")
    assert JobStatus((await wait_status(client, after.id)).status) is JobStatus.COMPLETED
    worker.drain()
    await asyncio.wait_for(running, 30)
    assert worker.finished_jobs == 2
