"""Waiting for the console to reach a state, with generous timeouts and no fixed sleeps."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from typing import Any

import grpc
import grpc.aio
from google.protobuf import struct_pb2
from jobwarden.tui import ConsoleApp
from jobwarden.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc
from textual.pilot import Pilot


async def until(
    pilot: Pilot[Any], condition: Callable[[], object], *, timeout: float = 40.0, what: str = ""
) -> None:
    """Let the app run until ``condition()`` is true; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        await pilot.pause(0.05)


async def settle(pilot: Pilot[Any]) -> None:
    """Let a couple of flushes pass (the console draws stream changes a few times a second)."""
    app = pilot.app
    flushes = getattr(app, "flushes", 0)
    await until(pilot, lambda: getattr(app, "flushes", 0) >= flushes + 2, what="two flushes")
    await pilot.pause()
    await asyncio.sleep(0)


def closed_address() -> str:
    """An address where nothing listens (a port that was free a moment ago)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"127.0.0.1:{port}"


class RecordingConsole(ConsoleApp):
    """The console, remembering every notification it showed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.notes: list[tuple[str, str]] = []

    def notify(self, message: str, *args: Any, **kwargs: Any) -> None:
        self.notes.append((str(kwargs.get("severity", "information")), str(message)))
        super().notify(message, *args, **kwargs)

    def noted(self, fragment: str) -> bool:
        return any(fragment in message for _, message in self.notes)


def row_text(app: ConsoleApp, job_id: str) -> str:
    return app.jobs_screen.table.row_text(job_id) or ""


async def submit(
    channel: grpc.aio.Channel,
    action: str,
    *,
    locks: tuple[tuple[str, job_pb2.LockMode.ValueType], ...] = (),
    **input_: Any,
) -> job_pb2.Job:
    """Submit one job through the real API and return it as the engine stored it."""
    stub = job_service_pb2_grpc.JobServiceStub(channel)
    payload = struct_pb2.Struct()
    payload.update(input_)
    request = job_service_pb2.SubmitJobRequest(
        action=action,
        input=payload,
        locks=[job_pb2.LockRequest(resource=resource, mode=mode) for resource, mode in locks],
    )
    return (await stub.SubmitJob(request)).job


async def engine_job(channel: grpc.aio.Channel, job_id: str) -> job_pb2.Job:
    stub = job_service_pb2_grpc.JobServiceStub(channel)
    return (await stub.GetJob(job_service_pb2.GetJobRequest(job_id=job_id))).job
