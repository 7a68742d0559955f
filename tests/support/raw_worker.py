"""A worker written straight on the generated stubs: what any language can do from the .proto files.

Tests use it to drive the engine's worker protocol message by message.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from typing import Any

import grpc
from google.protobuf import struct_pb2
from jobwarden.v1 import executor_service_pb2 as pb
from jobwarden.v1 import executor_service_pb2_grpc, job_pb2


class RawWorker:
    def __init__(
        self,
        address: str,
        actions: Iterable[str | tuple[str, bool, int]],
        *,
        capacity: int = 1,
        name: str = "raw-worker",
        worker_id: str = "",
        running_jobs: Iterable[tuple[str, int]] = (),
        session_token: str = "",
    ) -> None:
        self.address = address
        self.executors = []
        for action in actions:
            if isinstance(action, str):
                self.executors.append(pb.ExecutorSpec(action=action))
            else:
                name_, resume, limit = action
                self.executors.append(
                    pb.ExecutorSpec(action=name_, supports_resume=resume, max_concurrency=limit)
                )
        self.capacity = capacity
        self.name = name
        self.worker_id = worker_id
        self.running_jobs = list(running_jobs)
        #: the secret of this worker's session (from Registered), to replace it when reconnecting
        self.session_token = session_token
        self.channel: grpc.aio.Channel | None = None
        self._outgoing: asyncio.Queue[pb.ConnectRequest | None] = asyncio.Queue()
        self.assignments: asyncio.Queue[pb.Assignment] = asyncio.Queue()
        self.acks: asyncio.Queue[pb.ResultAck] = asyncio.Queue()
        self.cancels: asyncio.Queue[pb.CancelRequest] = asyncio.Queue()
        self.refusals: asyncio.Queue[pb.Refusal] = asyncio.Queue()
        self.registered: pb.Registered | None = None
        self.messages: list[pb.ConnectResponse] = []
        self.error: grpc.aio.AioRpcError | None = None
        self._reader: asyncio.Task[None] | None = None
        self._call: Any = None

    async def connect(self, *, register: bool = True) -> RawWorker:
        self.channel = grpc.aio.insecure_channel(self.address)
        stub = executor_service_pb2_grpc.ExecutorServiceStub(self.channel)
        self._call = stub.Connect(self._requests())
        self._reader = asyncio.get_running_loop().create_task(self._read())
        if register:
            await self.send(
                pb.ConnectRequest(
                    register=pb.Register(
                        worker_name=self.name,
                        executors=self.executors,
                        capacity=self.capacity,
                        worker_id=self.worker_id,
                        running_jobs=[pb.RunningJob(job_id=j, attempt=a) for j, a in self.running_jobs],
                        session_token=self.session_token,
                    )
                )
            )
            for _ in range(1000):
                if self.registered is not None or self.error is not None:
                    break
                await asyncio.sleep(0.01)
            if self.error is not None:
                raise self.error
            assert self.registered is not None, "no Registered answer"
            self.worker_id = self.registered.worker_id
            self.session_token = self.registered.session_token
        return self

    async def _requests(self) -> AsyncIterator[pb.ConnectRequest]:
        while True:
            message = await self._outgoing.get()
            if message is None:
                return
            yield message

    async def _read(self) -> None:
        try:
            async for message in self._call:
                self.messages.append(message)
                kind = message.WhichOneof("message")
                if kind == "registered":
                    self.registered = message.registered
                elif kind == "assignment":
                    self.assignments.put_nowait(message.assignment)
                elif kind == "assignments":
                    for a in message.assignments.assignments:
                        self.assignments.put_nowait(a)
                elif kind == "result_ack":
                    self.acks.put_nowait(message.result_ack)
                elif kind == "result_acks":
                    for ack in message.result_acks.acks:
                        self.acks.put_nowait(ack)
                elif kind == "cancel_request":
                    self.cancels.put_nowait(message.cancel_request)
                elif kind == "refusal":
                    self.refusals.put_nowait(message.refusal)
        except grpc.aio.AioRpcError as error:
            self.error = error

    async def send(self, message: pb.ConnectRequest) -> None:
        await self._outgoing.put(message)

    async def next_assignment(self, timeout: float = 15.0) -> pb.Assignment:
        return await asyncio.wait_for(self.assignments.get(), timeout)

    async def next_ack(self, timeout: float = 15.0) -> pb.ResultAck:
        return await asyncio.wait_for(self.acks.get(), timeout)

    async def next_refusal(self, timeout: float = 15.0) -> pb.Refusal:
        return await asyncio.wait_for(self.refusals.get(), timeout)

    async def next_cancel(self, timeout: float = 15.0) -> pb.CancelRequest:
        return await asyncio.wait_for(self.cancels.get(), timeout)

    async def update(self, a: pb.Assignment, **fields: Any) -> None:
        await self.send(
            pb.ConnectRequest(job_update=pb.JobUpdate(job_id=a.job_id, attempt=a.attempt, **fields))
        )

    async def complete(self, a: pb.Assignment, result: dict[str, Any] | None = None, **fields: Any) -> None:
        struct = struct_pb2.Struct()
        struct.update(result or {})
        await self.send(
            pb.ConnectRequest(
                job_result=pb.JobResult(
                    job_id=a.job_id,
                    attempt=a.attempt,
                    status=job_pb2.JOB_STATUS_COMPLETED,
                    result=struct,
                    **fields,
                )
            )
        )

    async def fail(
        self,
        a: pb.Assignment,
        message: str,
        kind: job_pb2.ErrorKind.ValueType = job_pb2.ERROR_KIND_JOB_ERROR,
        stack_trace: str = "",
        retryable: bool = True,
    ) -> None:
        await self.send(
            pb.ConnectRequest(
                job_result=pb.JobResult(
                    job_id=a.job_id,
                    attempt=a.attempt,
                    status=job_pb2.JOB_STATUS_FAILED,
                    error=job_pb2.JobError(
                        kind=kind, message=message, stack_trace=stack_trace, retryable=retryable
                    ),
                )
            )
        )

    async def heartbeat(self, *assignments: pb.Assignment, draining: bool = False) -> None:
        await self.send(
            pb.ConnectRequest(
                heartbeat=pb.Heartbeat(
                    jobs=[pb.JobHeartbeat(job_id=a.job_id, attempt=a.attempt) for a in assignments],
                    draining=draining,
                )
            )
        )

    @contextlib.asynccontextmanager
    async def beating(self, *assignments: pb.Assignment, every: float = 0.2) -> AsyncIterator[None]:
        """Heartbeat ``assignments`` (or just the session) while the block runs: a raw worker that
        sends nothing for 3 heartbeat intervals is rightly taken for dead, and on a loaded machine a
        test's own steps (CLI processes, console dialogs) can take that long."""

        async def beat() -> None:
            while True:
                await self.heartbeat(*assignments)
                await asyncio.sleep(every)

        task = asyncio.get_running_loop().create_task(beat())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def close(self) -> None:
        """End the stream cleanly (half-close, then the channel)."""
        await self._outgoing.put(None)
        if self._reader is not None:
            try:
                await asyncio.wait_for(self._reader, 5)
            except (TimeoutError, asyncio.CancelledError):
                self._reader.cancel()
        if self.channel is not None:
            await self.channel.close()

    async def drop(self) -> None:
        """Vanish without a goodbye (like a killed process)."""
        if self._call is not None:
            self._call.cancel()
        if self._reader is not None:
            self._reader.cancel()
        if self.channel is not None:
            await self.channel.close(grace=None)
