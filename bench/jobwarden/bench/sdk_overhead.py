"""Measure the per-job cost of the SDK's worker runtime.

Two measures, each through one worker process with a no-op executor:

- ``--null``: against a *null engine* (this file), a gRPC server that speaks the worker protocol and
  nothing else: it assigns jobs as fast as the worker's capacity allows and acknowledges results at
  once, with no storage. Its jobs/s is the SDK's ceiling: the cost of the worker runtime itself.
- ``--engine HOST:PORT``: against a real engine: submits N jobs in batches, then times how long
  one worker takes to finish them all (the engine's share included).

    python -m jobwarden.bench.sdk_overhead --null --jobs 20000 --capacity 100
    python -m jobwarden.bench.sdk_overhead --engine 127.0.0.1:50051 --jobs 5000 --capacity 100
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
from jobwarden.contract import JobStatus
from jobwarden.sdk import Executor, JobClient, JobContext
from jobwarden.v1 import executor_service_pb2 as pb
from jobwarden.v1 import executor_service_pb2_grpc, job_pb2

#: the executors a worker process loads (``jobwarden worker MODULE:CLASS``)
NOOP = "jobwarden.bench.sdk_overhead:Noop"
SYNC_NOOP = "jobwarden.bench.sdk_overhead:SyncNoop"


class Noop(Executor):
    action = "noop"

    async def execute(self, ctx: JobContext) -> None:
        return None


class SyncNoop(Executor):
    action = "noop"

    def execute(self, ctx: JobContext) -> None:
        return None


class NullEngine(executor_service_pb2_grpc.ExecutorServiceServicer):
    """Assigns ``total`` jobs to the first worker as fast as its capacity allows; acks at once."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.finished = 0
        self.done = asyncio.Event()
        self.started_at = 0.0
        self.finished_at = 0.0

    async def Connect(
        self, request_iterator: AsyncIterator[pb.ConnectRequest], context: Any
    ) -> AsyncIterator[pb.ConnectResponse]:
        outgoing: asyncio.Queue[pb.ConnectResponse | None] = asyncio.Queue()
        register = (await anext(aiter(request_iterator))).register
        capacity = register.capacity
        yield pb.ConnectResponse(registered=pb.Registered(worker_id="null-worker"))
        sent = 0
        job_template = job_pb2.Job(action="noop")

        def assign(count: int) -> None:
            nonlocal sent
            batch = pb.Assignments()
            for _ in range(min(count, self.total - sent)):
                sent += 1
                job_id = f"job-{sent}"
                assignment = batch.assignments.add(job_id=job_id, attempt=1, mode=1)
                assignment.job.CopyFrom(job_template)
                assignment.job.id = job_id
            if batch.assignments:
                outgoing.put_nowait(pb.ConnectResponse(assignments=batch))

        async def read() -> None:
            async for message in request_iterator:
                kind = message.WhichOneof("message")
                results = (
                    [message.job_result]
                    if kind == "job_result"
                    else list(message.job_results.results)
                    if kind == "job_results"
                    else []
                )
                if results:
                    acks = pb.ResultAcks(
                        acks=[
                            pb.ResultAck(job_id=r.job_id, attempt=r.attempt, accepted=True) for r in results
                        ]
                    )
                    outgoing.put_nowait(pb.ConnectResponse(result_acks=acks))
                    self.finished += len(results)
                    assign(len(results))
                    if self.finished >= self.total:
                        self.finished_at = time.perf_counter()
                        self.done.set()
            outgoing.put_nowait(None)

        self.started_at = time.perf_counter()
        assign(capacity)
        reader = asyncio.create_task(read())
        try:
            while (item := await outgoing.get()) is not None:
                yield item
        finally:
            reader.cancel()

    async def ListWorkers(self, request: Any, context: Any) -> pb.ListWorkersResponse:
        return pb.ListWorkersResponse()


def _worker_process(address: str, capacity: int, target: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "jobwarden.sdk.cli", "worker", target, "--engine", address,
         "--capacity", str(capacity), "--log-level", "WARNING"],
    )  # fmt: skip


async def bench_null(jobs: int, capacity: int, target: str) -> float:
    server = grpc.aio.server()
    engine = NullEngine(jobs)
    executor_service_pb2_grpc.add_ExecutorServiceServicer_to_server(engine, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    worker = _worker_process(f"127.0.0.1:{port}", capacity, target)
    try:
        await asyncio.wait_for(engine.done.wait(), 600)
    finally:
        worker.terminate()
        worker.wait(30)
        await server.stop(None)
    return jobs / (engine.finished_at - engine.started_at)


async def bench_engine(address: str, jobs: int, capacity: int, target: str) -> float:
    async with JobClient(address, timeout=120) as client:
        for start in range(0, jobs, 1000):
            await client.submit_many([{"action": "noop"} for _ in range(min(1000, jobs - start))])
        head = (await client.stats()).head_sequence
        worker = _worker_process(address, capacity, target)
        first = last = 0.0
        done = 0
        try:
            async for event in client.watch(after_sequence=head, actions=["noop"]):
                status = JobStatus(event.job.status)
                if status is JobStatus.RUNNING and not first:
                    first = time.perf_counter()
                if status in (JobStatus.COMPLETED, JobStatus.FAILED):
                    done += 1
                    last = time.perf_counter()
                    if done >= jobs:
                        break
        finally:
            worker.terminate()
            worker.wait(30)
    return jobs / (last - first)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--null", action="store_true", help="against the null engine")
    parser.add_argument("--engine", help="against a real engine at HOST:PORT")
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--capacity", type=int, default=100)
    parser.add_argument("--sync", action="store_true", help="a plain (thread pool) executor")
    args = parser.parse_args()
    target = SYNC_NOOP if args.sync else NOOP
    kind = "sync" if args.sync else "async"
    if args.null or not args.engine:
        rate = asyncio.run(bench_null(args.jobs, args.capacity, target))
        where = "null engine"
    else:
        rate = asyncio.run(bench_engine(args.engine, args.jobs, args.capacity, target))
        where = f"engine {args.engine}"
    print(
        f"{args.jobs} jobs, {kind} no-op executor, capacity {args.capacity}, {where}: "
        f"{rate:,.0f} jobs/s ({1e6 / rate:,.0f} us/job)"
    )


if __name__ == "__main__":
    main()
