"""``jobwarden demo``: real processes (engine, two SDK workers, the trickle) show every status, and
leaving the demo stops them all."""

from __future__ import annotations

import asyncio
import socket
import time

import grpc.aio
from jobwarden.contract import JobStatus
from jobwarden.tui.demo import Demo
from jobwarden.v1 import job_service_pb2, job_service_pb2_grpc

#: the issue's promise is a minute; the bound is looser so a busy machine does not fail it
EVERY_STATUS_WITHIN = 90.0


async def statuses_seen(address: str, timeout: float) -> set[JobStatus]:
    """Every status any job had, from the whole event history, until all are seen or time is up."""
    seen: set[JobStatus] = set()
    async with grpc.aio.insecure_channel(address) as channel:
        stub = job_service_pb2_grpc.JobServiceStub(channel)
        call = stub.WatchJobs(job_service_pb2.WatchJobsRequest(after_sequence=0))

        async def follow() -> None:
            async for response in call:
                seen.update(JobStatus(event.job.status) for event in response.events if event.job.status)
                if seen == set(JobStatus):
                    return

        try:
            await asyncio.wait_for(follow(), timeout)
        except TimeoutError:
            pass
        finally:
            call.cancel()
    return seen


async def test_demo_shows_every_status_and_stops_everything_it_started() -> None:
    started = time.monotonic()
    demo = Demo(rate=2.0)
    await asyncio.to_thread(demo.start)
    try:
        processes = dict(demo.processes)
        assert set(processes) == {"engine", "demo-worker-1", "demo-worker-2", "trickle"}
        directory = demo.directory
        assert (directory / "demo.db").exists()
        seen = await statuses_seen(demo.address, EVERY_STATUS_WITHIN - (time.monotonic() - started))
        missing = {status.name for status in set(JobStatus) - seen}
        assert not missing, f"not seen within {EVERY_STATUS_WITHIN}s: {sorted(missing)}"
    finally:
        await asyncio.to_thread(demo.stop)
    assert all(process.poll() is not None for process in processes.values())
    assert not directory.exists()
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", demo.port)) != 0, "the engine still listens"
