"""What was acknowledged survives kill -9 of the engine (a real process), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import grpc
from jobwarden.contract import JobStatus
from jobwarden.v1 import job_pb2, job_service_pb2_grpc
from jobwarden.v1 import job_service_pb2 as js

from tests.engine.helpers import request
from tests.support import EngineProcess, RawWorker, wait_for


async def test_acknowledged_submits_and_results_survive_kill_9(db_url: str, tmp_path: Path) -> None:
    engine = EngineProcess(db_url, log_path=tmp_path / "engine.log").start()
    channel = grpc.aio.insecure_channel(engine.address)
    jobs = job_service_pb2_grpc.JobServiceStub(channel)
    submitted: list[str] = []
    completed: dict[str, int] = {}
    running: dict[str, int] = {}
    stop = asyncio.Event()

    async def submitter(n: int) -> None:
        i = 0
        while not stop.is_set():
            try:
                if i % 3:
                    response = await jobs.SubmitJob(request("work", {"s": n, "i": i}))
                    submitted.append(response.job.id)
                else:
                    batch = await jobs.SubmitJobs(
                        js.SubmitJobsRequest(
                            jobs=[request("work", {"s": n, "i": i, "b": b}) for b in range(5)]
                        )
                    )
                    submitted.extend(j.job.id for j in batch.jobs)
            except grpc.aio.AioRpcError:
                return  # the engine died under us: this submit was never acknowledged
            i += 1

    worker = await RawWorker(engine.address, ["work"], capacity=8).connect()

    async def work() -> None:
        with contextlib.suppress(Exception):
            while True:
                a = await worker.next_assignment(timeout=30)
                running[a.job_id] = a.attempt
                if len(running) in (5, 10, 15):
                    continue  # leave a few running when the engine dies
                await worker.complete(a, {"by": "worker", "attempt": a.attempt})

    async def acks() -> None:
        with contextlib.suppress(Exception):
            while True:
                ack = await worker.next_ack(timeout=30)
                if ack.accepted:
                    completed[ack.job_id] = ack.attempt

    tasks = [asyncio.get_running_loop().create_task(c) for c in (submitter(1), submitter(2), work(), acks())]
    await wait_for(lambda: len(completed) >= 30 and len(submitted) >= 150, timeout=60)
    engine.kill()  # SIGKILL: nothing gets flushed on the way out
    stop.set()
    await asyncio.gather(*tasks[:2])
    for task in tasks[2:]:
        task.cancel()
    await worker.drop()
    await channel.close()

    engine.start()
    channel = grpc.aio.insecure_channel(engine.address)
    jobs = job_service_pb2_grpc.JobServiceStub(channel)
    try:
        lost = []
        for job_id in submitted:
            try:
                await jobs.GetJob(js.GetJobRequest(job_id=job_id))
            except grpc.aio.AioRpcError:
                lost.append(job_id)
        assert not lost, f"{len(lost)} acknowledged submits lost out of {len(submitted)}"
        for job_id, attempt in completed.items():
            job = (await jobs.GetJob(js.GetJobRequest(job_id=job_id))).job
            assert job.status == JobStatus.COMPLETED, f"acknowledged result of {job_id} lost"
            assert job.result["attempt"] == attempt
        # Every job that was RUNNING when the engine died is TIMED_OUT now, waiting to be resumed.
        still_running = await jobs.ListJobs(
            js.ListJobsRequest(statuses=[job_pb2.JOB_STATUS_RUNNING], page_size=1000)
        )
        assert not still_running.jobs
        timed_out = await jobs.ListJobs(
            js.ListJobsRequest(statuses=[job_pb2.JOB_STATUS_TIMED_OUT], page_size=1000)
        )
        # An assignment may have been committed but still on the wire when the engine died; and a submit
        # may have been committed (even dispatched, in the same commit) without its answer reaching us:
        # that call failed, so it promised nothing, yet its job exists. Either way the job is one of ours
        # and none whose result was acknowledged.
        assert not {j.id for j in timed_out.jobs} & set(completed)
        assert all("s" in j.input for j in timed_out.jobs), "a timed-out job nobody here submitted"
        for job_id in set(running) - set(completed):
            job = (await jobs.GetJob(js.GetJobRequest(job_id=job_id))).job
            # Running when the engine died, or finished with its ack lost on the way: never anything else.
            assert job.status in (JobStatus.TIMED_OUT, JobStatus.COMPLETED), (job_id, job.status)
        assert all(j.status_reason == "the engine restarted while it ran" for j in timed_out.jobs)
        # The event history has no gap.
        events = await jobs.GetStats(js.GetStatsRequest())
        watched: list[int] = []
        call = jobs.WatchJobs(js.WatchJobsRequest(after_sequence=0))
        async for response in call:
            watched.extend(e.sequence for e in response.events)
            if watched and watched[-1] >= events.head_sequence:
                break
        call.cancel()
        assert watched == list(range(1, events.head_sequence + 1))
    finally:
        await channel.close()
        engine.terminate()


async def test_worker_reattaches_its_jobs_after_an_engine_restart(sqlite_url: str, tmp_path: Path) -> None:
    engine = EngineProcess(sqlite_url, log_path=tmp_path / "engine.log").start()
    channel = grpc.aio.insecure_channel(engine.address)
    jobs = job_service_pb2_grpc.JobServiceStub(channel)
    job = (await jobs.SubmitJob(request("work"))).job
    worker = await RawWorker(engine.address, [("work", True, 0)]).connect()
    a = await worker.next_assignment()
    await asyncio.sleep(0.2)  # let the RUNNING transition commit
    engine.kill()
    await worker.drop()
    await channel.close()
    engine.start()
    channel = grpc.aio.insecure_channel(engine.address)
    jobs = job_service_pb2_grpc.JobServiceStub(channel)
    assert (await jobs.GetJob(js.GetJobRequest(job_id=job.id))).job.status == JobStatus.TIMED_OUT
    back = await RawWorker(
        engine.address, [("work", True, 0)], worker_id=worker.worker_id, running_jobs=[(a.job_id, a.attempt)]
    ).connect()
    assert [j.job_id for j in back.registered.resumed_jobs] == [job.id]  # type: ignore[union-attr]
    await back.complete(a, {"ok": 1})
    assert (await back.next_ack()).accepted
    assert (await jobs.GetJob(js.GetJobRequest(job_id=job.id))).job.status == JobStatus.COMPLETED
    await back.close()
    await channel.close()
    engine.terminate()
