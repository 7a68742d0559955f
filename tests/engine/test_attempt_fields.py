"""A work order shows its last attempt: after a policy retry, the job's per-attempt fields (error,
progress, message, step, result, worker) are the new attempt's, never the failed one's; the failed
attempt keeps them in ``attempts[]``. Through the real engine and the real SDK worker (in this event
loop, so the test holds the second attempt open while it looks)."""

from __future__ import annotations

import asyncio
from typing import Any

from jobwarden.contract import ErrorKind, JobStatus
from jobwarden.sdk import Executor, JobClient, JobContext, JobFailed, Worker
from jobwarden.v1 import job_pb2

from tests.conftest import EngineHandle
from tests.support import wait_for_async
from tests.tui.helpers import RecordingConsole, row_text, until


class FailsFirst(Executor):
    """Reports progress, a message and a step, then fails its first attempt; the second waits for
    the test, then completes without reporting anything of its own."""

    action = "fails-first"

    def __init__(self) -> None:
        self.second_started = asyncio.Event()
        self.finish = asyncio.Event()

    async def execute(self, ctx: JobContext) -> dict[str, Any]:
        if ctx.attempt == 1:
            await ctx.step("upload", self._upload, ctx)
            ctx.progress(60, "uploading")
            await asyncio.sleep(0.2)  # let the report reach the engine before the failure
            raise JobFailed("the upstream service said 503", retryable=True)
        self.second_started.set()
        await self.finish.wait()
        return {"ok": True}

    async def retry(self, ctx: JobContext) -> dict[str, Any]:
        return await self.execute(ctx)

    async def _upload(self, ctx: JobContext) -> str:
        ctx.progress(40, "uploading")
        return "uploaded"


async def _job(client: JobClient, job_id: str, wanted: JobStatus) -> job_pb2.Job:
    async def reached() -> job_pb2.Job | None:
        job = await client.get(job_id)
        return job if JobStatus(job.status) is wanted else None

    return await wait_for_async(reached, timeout=30, message=f"job {job_id} to be {wanted.name}")


def _assert_clean(job: job_pb2.Job) -> None:
    assert job.progress == 0
    assert job.message == ""
    assert job.step == ""
    assert not job.HasField("result")


async def test_a_policy_retry_shows_only_its_own_attempt(engine: EngineHandle) -> None:
    executor = FailsFirst()
    worker = Worker([executor], engine=engine.address, capacity=1, name="attempts")
    running = asyncio.create_task(worker.run())
    app = RecordingConsole(engine.address, flush_interval=0.1, stats_interval=0.3)
    try:
        await asyncio.wait_for(worker.wait_connected(), 30)
        async with JobClient(engine.address) as client, app.run_test(size=(140, 40)) as pilot:
            # A long backoff: the test sees the DELAYED job between the attempts.
            submitted = await client.submit(
                "fails-first", {}, retry_policy={"max_attempts": 2, "initial_interval": 1.5}
            )
            delayed = await _job(client, submitted.id, JobStatus.DELAYED)
            _assert_clean(delayed)
            assert delayed.worker_id == ""
            # Between the attempts the failed one's error says why the job waits; the next clears it.
            assert delayed.error.message == "the upstream service said 503"
            assert "attempt 1 failed (JOB_ERROR: the upstream service said 503)" in delayed.status_reason
            first = delayed.attempts[0]
            assert (first.status, first.progress, first.message) == (JobStatus.FAILED, 60, "uploading")
            assert first.error.kind == ErrorKind.JOB_ERROR
            assert first.error.message == "the upstream service said 503"
            assert first.worker_id
            # The console's row says why it waits, not the failed attempt's message or worker.
            await until(pilot, lambda: "DELAYED" in (row_text(app, submitted.id) or ""), what="the row")
            row = row_text(app, submitted.id) or ""
            assert "uploading" not in row
            assert "attempts" not in row
            assert "attempt 1 failed" in row

            await asyncio.wait_for(executor.second_started.wait(), 30)
            during = await _job(client, submitted.id, JobStatus.RUNNING)
            assert during.attempt == 2
            _assert_clean(during)
            assert not during.HasField("error"), during.error
            assert during.worker_id == first.worker_id
            assert during.attempts[0].message == "uploading"

            executor.finish.set()
            done = await _job(client, submitted.id, JobStatus.COMPLETED)
            assert done.message == ""
            assert done.step == ""
            assert not done.HasField("error")
            assert [a.status for a in done.attempts] == [JobStatus.FAILED, JobStatus.COMPLETED]
            assert done.attempts[0].step == "upload"
            assert done.attempts[1].message == ""
    finally:
        worker.drain()
        await asyncio.wait_for(running, 30)
