"""A second CancelJob of a running job whose cancel is already requested is refused
(FAILED_PRECONDITION: who asked, when, and that the engine waits for the worker) and changes nothing:
no event, nothing stored. The CLI and the console show the refusal."""

from __future__ import annotations

import asyncio
import sys

import grpc
from jobwarden.contract import JobEventType, JobStatus
from jobwarden.tui.screens import ConfirmScreen
from jobwarden.v1 import executor_service_pb2 as pb
from jobwarden.v1 import job_service_pb2 as js

from tests.conftest import EngineHandle, Stubs
from tests.engine.helpers import get, rpc_error, submit
from tests.support import RawWorker, wait_for_async
from tests.tui.helpers import RecordingConsole, row_text, until


async def _running(stubs: Stubs, engine: EngineHandle, worker: RawWorker) -> str:
    job = await submit(stubs, "work")
    assignment = await worker.next_assignment()
    assert assignment.job_id == job.id
    return job.id


async def test_a_second_cancel_is_refused_and_changes_nothing(engine: EngineHandle, stubs: Stubs) -> None:
    worker = await RawWorker(engine.address, ["work"]).connect()
    job_id = await _running(stubs, engine, worker)
    first = await stubs.jobs.CancelJob(js.CancelJobRequest(job_id=job_id, reason="wrong input"))
    assert first.job.cancel_requested
    assert (await worker.next_cancel()).job_id == job_id
    before = await get(stubs, job_id)
    events = (await stubs.jobs.GetJobEvents(js.GetJobEventsRequest(job_id=job_id))).events
    error = await rpc_error(stubs.jobs.CancelJob(js.CancelJobRequest(job_id=job_id, reason="again")))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    details = error.details() or ""
    assert f"job {job_id} is RUNNING and its cancel was already requested by anonymous@" in details
    assert "(wrong input)" in details
    assert "waits for its worker to confirm" in details
    assert await get(stubs, job_id) == before
    assert (await stubs.jobs.GetJobEvents(js.GetJobEventsRequest(job_id=job_id))).events == events
    assert [JobEventType(e.type) for e in events].count(JobEventType.CANCEL_REQUESTED) == 1
    # The worker confirms: CANCELLED, and a cancel now is refused as for any finished job.
    await worker.send(pb.ConnectRequest(cancel_ack=pb.CancelAck(job_id=job_id, attempt=1)))

    async def cancelled() -> bool:
        return (await get(stubs, job_id)).status == JobStatus.CANCELLED

    await wait_for_async(cancelled, message="the confirmed cancel")
    error = await rpc_error(stubs.jobs.CancelJob(js.CancelJobRequest(job_id=job_id)))
    assert "already CANCELLED" in (error.details() or "")
    await worker.close()


async def test_the_cli_shows_the_refusal(engine: EngineHandle, stubs: Stubs) -> None:
    worker = await RawWorker(engine.address, ["work"]).connect()
    job_id = await _running(stubs, engine, worker)
    at = ("--engine", engine.address)

    async def cancel() -> tuple[int, str, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "jobwarden.sdk.cli",
            "cancel",
            job_id,
            *at,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode is not None
        return process.returncode, out.decode(), err.decode()

    code, out, err = await cancel()
    assert (code, err) == (0, "")
    assert "cancel requested" in out
    code, out, err = await cancel()
    assert code == 1
    assert out == ""
    assert err.startswith("jobwarden cancel: ")
    assert "cancel was already requested" in err
    assert "Traceback" not in err
    await worker.close()


async def test_the_consoles_bulk_cancel_goes_on_past_the_refusal(engine: EngineHandle, stubs: Stubs) -> None:
    worker = await RawWorker(engine.address, ["work"], capacity=2).connect()
    asked = await _running(stubs, engine, worker)
    fresh = await _running(stubs, engine, worker)
    await stubs.jobs.CancelJob(js.CancelJobRequest(job_id=asked))
    app = RecordingConsole(engine.address, flush_interval=0.1, stats_interval=0.3)
    async with app.run_test(size=(140, 40)) as pilot:
        table = app.jobs_screen.table
        await until(pilot, lambda: all("RUNNING" in row_text(app, j) for j in (asked, fresh)), what="rows")
        for job_id in (asked, fresh):
            table.move_to(job_id)
            await pilot.press("space")
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
        await pilot.press("right", "enter")
        await until(pilot, lambda: app.noted("Cancelled"), what="the summary")
        summary = next(message for _, message in app.notes if "Cancelled" in message)
        assert "Cancelled 1 job; 1 refused" in summary
        assert "cancel was already requested" in summary
    assert (await get(stubs, fresh)).cancel_requested
    await worker.close()
