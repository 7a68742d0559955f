"""A bad network between a worker (the SDK's) and the engine: cut connections, lost bytes, a stalled
stream. The worker reconnects; every job completes exactly once; a stalled stream is a dead worker."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import grpc
import pytest
from jobwarden.sdk import Executor, JobContext, Worker
from jobwarden.v1 import executor_service_pb2, executor_service_pb2_grpc, job_pb2, job_service_pb2_grpc
from jobwarden.v1 import job_service_pb2 as js

from tests.conftest import EngineFactory, EngineHandle
from tests.engine.helpers import request
from tests.reliability._harness import Ledger, check_invariants, wait_all_terminal
from tests.reliability.proxy import FaultyProxy, Mode
from tests.support import wait_for, wait_for_async

ACTION = "net"
JOBS = 24
#: runs per job id, across attempts (at-least-once: a job may run again, it may not complete twice)
RUNS: Counter[str] = Counter()


class NetExecutor(Executor):
    action = ACTION

    async def execute(self, ctx: JobContext) -> dict[str, Any]:
        RUNS[ctx.job_id] += 1
        await ctx.step("work", asyncio.sleep, random.uniform(0.2, 0.8))
        return {"n": ctx.input["n"]}

    async def resume(self, ctx: JobContext) -> dict[str, Any]:
        return await self.execute(ctx)


class Rig:
    def __init__(self, engine: EngineHandle, proxy: FaultyProxy, worker: Worker) -> None:
        self.engine = engine
        self.proxy = proxy
        self.worker = worker
        self.channel = engine.channel()
        self.jobs = job_service_pb2_grpc.JobServiceStub(self.channel)
        self.executors = executor_service_pb2_grpc.ExecutorServiceStub(self.channel)
        self.ledger = Ledger()

    async def submit(self, count: int) -> None:
        for n in range(count):
            job = (await self.jobs.SubmitJob(request(ACTION, {"n": n}))).job
            self.ledger.submitted.append(job.id)

    async def finished(self) -> int:
        page = await self.jobs.ListJobs(
            js.ListJobsRequest(statuses=[job_pb2.JOB_STATUS_COMPLETED], page_size=1000)
        )
        return len(page.jobs)

    async def worker_connected(self) -> bool:
        response = await self.executors.ListWorkers(executor_service_pb2.ListWorkersRequest())
        return any(w.name == "net-worker" for w in response.workers)

    async def check(self) -> None:
        await wait_all_terminal(self.jobs, timeout=60)
        figures = await check_invariants(self.channel, self.ledger)
        assert not figures.problems, "\n".join(figures.problems[:20])
        assert figures.by_status == Counter({"COMPLETED": JOBS}), (figures.by_status, figures.failures)
        print(
            f"{figures.line()}; proxy: {self.proxy.connections} connections, {self.proxy.cuts} cuts, "
            f"{self.proxy.dropped} connections refused; runs per job: "
            f"{dict(Counter(RUNS[j] for j in self.ledger.submitted))}"
        )


@pytest.fixture
async def rig(engine_factory: EngineFactory) -> AsyncIterator[Rig]:
    async with _rig(engine_factory) as made:
        yield made


@pytest.fixture
async def unaware_rig(engine_factory: EngineFactory) -> AsyncIterator[Rig]:
    """An engine that would call a silent session dead only after minutes, far beyond the test."""
    async with _rig(engine_factory, session_timeout_intervals=1000) as made:
        yield made


@contextlib.asynccontextmanager
async def _rig(engine_factory: EngineFactory, **config: Any) -> AsyncIterator[Rig]:
    RUNS.clear()
    engine = await engine_factory(heartbeat_interval=0.5, default_takeover_timeout=8.0, **config)
    proxy = FaultyProxy(engine.address)
    await proxy.start()
    worker = Worker(
        [NetExecutor],
        engine=proxy.address,
        capacity=6,
        name="net-worker",
        reconnect_initial=0.05,
        reconnect_max=0.5,
    )
    task = asyncio.get_running_loop().create_task(worker.run())
    rig = Rig(engine, proxy, worker)
    await wait_for_async(rig.worker_connected, timeout=30, message="the worker to connect")
    yield rig
    worker.stop()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(task, 10)
    await proxy.stop()
    await rig.channel.close()


async def test_cut_connections(rig: Rig) -> None:
    await rig.submit(JOBS)
    for _ in range(4):
        await wait_for_async(lambda: _progress(rig), timeout=30, message="jobs to complete between cuts")
        before = rig.proxy.connections
        await rig.proxy.cut()
        # A new connection, not only a listed worker: the engine may still list the cut session
        # (the next cut then fell on no connection at all, once under load: 4 connections, not 5).
        await wait_for(partial(_more_connections, rig, before), timeout=30, message="a new connection")
        await wait_for_async(rig.worker_connected, timeout=30, message="the worker to reconnect")
    await rig.check()
    assert rig.proxy.connections >= 5


def _more_connections(rig: Rig, before: int) -> bool:
    return rig.proxy.connections > before


async def test_a_cut_the_engine_has_not_seen_yet(unaware_rig: Rig) -> None:
    """Only the worker's side of the link breaks: the engine still holds the worker's session, alive
    as far as it knows. The worker reconnects at once, presents its session's token, replaces that
    session and carries on with its jobs; nothing waits for the old session to be called dead."""
    rig = unaware_rig
    core = rig.engine.core
    await rig.submit(JOBS)
    for _ in range(3):
        await wait_for_async(lambda: _progress(rig), timeout=30, message="jobs to complete between cuts")
        old = core.sessions[rig.worker.worker_id]
        await rig.proxy.cut_worker_side()
        await wait_for(
            lambda old=old: core.sessions.get(rig.worker.worker_id) not in (None, old),  # type: ignore[misc]
            timeout=15,
            message="the worker to replace its live session",
        )
        assert old.closed
    await rig.check()


async def test_dropped_connections(rig: Rig) -> None:
    await rig.submit(JOBS)
    await wait_for_async(lambda: _progress(rig), timeout=30, message="some jobs to complete")
    # The link goes down: the connection is reset and every reconnect attempt is refused, for longer
    # than the engine waits for a silent session, so the worker's running jobs time out.
    rig.proxy.set_mode(Mode.DROP)
    await wait_for_async(
        lambda: _not(rig.worker_connected()), timeout=30, message="the engine to drop the worker"
    )
    await wait_for(lambda: rig.proxy.dropped >= 2, timeout=30, message="reconnects to be refused")
    rig.proxy.set_mode(Mode.PASS)
    # The worker gets through again and re-attaches its jobs (or finishes them as taken over).
    await wait_for_async(rig.worker_connected, timeout=30, message="the worker to reconnect")
    await rig.check()


async def test_stalled_stream_is_a_dead_worker(rig: Rig) -> None:
    await rig.submit(JOBS)
    await wait_for_async(lambda: _progress(rig), timeout=30, message="some jobs to complete")
    rig.proxy.set_mode(Mode.STALL)
    # Nothing arrives from the worker: within 3 heartbeat intervals the engine calls it dead and its
    # running jobs TIMED_OUT, while the worker process itself is alive and well.
    await wait_for_async(
        lambda: _not(rig.worker_connected()), timeout=30, message="the engine to drop the worker"
    )

    async def none_running() -> bool:
        running = await rig.jobs.ListJobs(
            js.ListJobsRequest(statuses=[job_pb2.JOB_STATUS_RUNNING], page_size=1000)
        )
        return not running.jobs

    # ListJobs reads what is committed: the TIMED_OUT the drop made shows once its batch commits.
    await wait_for_async(none_running, timeout=10, message="a stalled worker's jobs must not stay RUNNING")
    rig.proxy.set_mode(Mode.PASS)
    await wait_for_async(rig.worker_connected, timeout=30, message="the worker to reconnect")
    await rig.check()


async def _progress(rig: Rig) -> bool:
    rig_done = await rig.finished()
    previous = getattr(rig, "_done", 0)
    if rig_done > previous or rig_done == JOBS:
        rig._done = rig_done  # type: ignore[attr-defined]
        return True
    return False


async def _not(awaitable: Any) -> bool:
    try:
        return not await awaitable
    except grpc.aio.AioRpcError:
        return False
