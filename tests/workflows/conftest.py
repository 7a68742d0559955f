"""Fixtures of the workflow tests: a WorkflowService stub on the test's real engine, and real SDK
workers running counting executors in the test's event loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from jobwarden.sdk import Executor, Worker
from jobwarden.v1 import job_service_pb2_grpc, workflow_service_pb2_grpc

from tests.conftest import EngineHandle

from .helpers import CALLS

StartWorkers = Callable[..., Awaitable[Worker]]


@pytest.fixture(autouse=True)
def _fresh_counts() -> None:
    CALLS.clear()


@pytest.fixture
async def wf(engine: EngineHandle) -> AsyncIterator[workflow_service_pb2_grpc.WorkflowServiceStub]:
    channel = engine.channel()
    yield workflow_service_pb2_grpc.WorkflowServiceStub(channel)
    await channel.close()


@pytest.fixture
async def jobs(engine: EngineHandle) -> AsyncIterator[job_service_pb2_grpc.JobServiceStub]:
    channel = engine.channel()
    yield job_service_pb2_grpc.JobServiceStub(channel)
    await channel.close()


@pytest.fixture
async def workers(engine: EngineHandle) -> AsyncIterator[StartWorkers]:
    """``await workers(executor, ...)``: a real SDK worker serving them, connected, stopped at the end."""
    started: list[tuple[Worker, asyncio.Task[None]]] = []

    async def start(*executors: Executor, address: str | None = None, capacity: int = 50) -> Worker:
        worker = Worker(list(executors), engine=address or engine.address, capacity=capacity, name="wf-test")
        task = asyncio.create_task(worker.run())
        started.append((worker, task))
        await asyncio.wait_for(worker.wait_connected(), 30)
        return worker

    yield start
    for worker, task in started:
        worker.stop()
        try:
            await asyncio.wait_for(task, 10)
        except (TimeoutError, Exception):
            task.cancel()
