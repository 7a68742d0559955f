"""Small helpers for engine tests: requests in one line, and collecting watched events."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
from google.protobuf import struct_pb2
from jobwarden.v1 import job_pb2
from jobwarden.v1 import job_service_pb2 as js

from tests.conftest import Stubs


def struct(data: dict[str, Any] | None = None) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(data or {})
    return s


def nested(levels: int) -> dict[str, Any]:
    """A JSON object that nests ``levels`` levels of objects and lists: ``{"a": [{"a": ...}]}``."""
    value: Any = 1
    for level in range(levels - 1):
        value = [value] if level % 2 else {"a": value}
    return {"a": value}


def request(action: str = "work", data: dict[str, Any] | None = None, **fields: Any) -> js.SubmitJobRequest:
    return js.SubmitJobRequest(action=action, input=struct(data), **fields)


async def submit(
    stubs: Stubs, action: str = "work", data: dict[str, Any] | None = None, **fields: Any
) -> job_pb2.Job:
    response = await stubs.jobs.SubmitJob(request(action, data, **fields))
    return response.job


async def get(stubs: Stubs, job_id: str) -> job_pb2.Job:
    return (await stubs.jobs.GetJob(js.GetJobRequest(job_id=job_id))).job


async def status_of(stubs: Stubs, job_id: str) -> int:
    return (await get(stubs, job_id)).status


async def rpc_error(call: Any) -> grpc.aio.AioRpcError:
    """The error a call fails with (the test fails if it succeeds)."""
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error
    raise AssertionError("the call succeeded; an error was expected")


class Watcher:
    """Collects WatchJobs events in the background."""

    def __init__(self, stubs: Stubs, **request_fields: Any) -> None:
        self.call = stubs.jobs.WatchJobs(js.WatchJobsRequest(**request_fields))
        self.events: list[job_pb2.JobEvent] = []
        self.keepalives = 0
        self.error: grpc.aio.AioRpcError | None = None
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        try:
            async for response in self.call:
                if not response.events:
                    self.keepalives += 1
                self.events.extend(response.events)
        except grpc.aio.AioRpcError as error:
            self.error = error

    def sequences(self) -> list[int]:
        return [e.sequence for e in self.events]

    def cancel(self) -> None:
        self.call.cancel()
        self.task.cancel()
