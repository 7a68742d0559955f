"""The console's connection to the engine: the generated gRPC stubs over one asyncio channel.

Every call the console makes goes through here, and every refusal comes back as an
``EngineError`` carrying the engine's status code and message, ready to show to an operator.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

import grpc
import grpc.aio
from jobwarden.contract import JobStatus, Limits
from jobwarden.sdk._credentials import aio_channel
from jobwarden.v1 import (
    executor_service_pb2,
    executor_service_pb2_grpc,
    job_pb2,
    job_service_pb2,
    job_service_pb2_grpc,
    lock_service_pb2,
    lock_service_pb2_grpc,
)

T = TypeVar("T")

#: a unary call that takes longer than this is reported as an error rather than hanging a screen
CALL_TIMEOUT = 10.0

# The channel must come back quickly after the engine restarts: gRPC's default reconnect backoff
# grows to two minutes, far longer than an operator should stare at "reconnecting".
_CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 4 * Limits.MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", Limits.MAX_MESSAGE_BYTES),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
    ("grpc.enable_retries", 0),
]


class EngineError(Exception):
    """A call the engine refused or could not answer, with its gRPC status code and message."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}" if message else code.name)
        self.code = code
        self.message = message

    @classmethod
    def from_rpc(cls, error: grpc.aio.AioRpcError) -> EngineError:
        return cls(error.code(), error.details() or "")

    @property
    def unavailable(self) -> bool:
        return self.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


async def _call(awaitable: Awaitable[T]) -> T:
    try:
        return await awaitable
    except grpc.aio.AioRpcError as error:
        raise EngineError.from_rpc(error) from None


class EngineClient:
    """The engine's three services over one channel. Create it inside the running event loop."""

    def __init__(self, address: str) -> None:
        self.address = address
        # TLS and the token come from the environment (JOBWARDEN_TOKEN_FILE, JOBWARDEN_TLS_CA, ...).
        self._channel = aio_channel(address, options=_CHANNEL_OPTIONS)
        self.jobs = job_service_pb2_grpc.JobServiceStub(self._channel)
        self.executors = executor_service_pb2_grpc.ExecutorServiceStub(self._channel)
        self.locks = lock_service_pb2_grpc.LockServiceStub(self._channel)

    async def close(self) -> None:
        await self._channel.close(grace=None)

    async def list_jobs(
        self,
        *,
        statuses: frozenset[JobStatus] | set[JobStatus] = frozenset(),
        text: str = "",
        page_size: int = Limits.MAX_PAGE_SIZE,
        page_token: str = "",
        summary: bool = True,
    ) -> job_service_pb2.ListJobsResponse:
        request = job_service_pb2.ListJobsRequest(
            statuses=[job_pb2.JobStatus.ValueType(status) for status in sorted(statuses)],
            text=text,
            page_size=page_size,
            page_token=page_token,
            summary=summary,
        )
        return await _call(self.jobs.ListJobs(request, timeout=CALL_TIMEOUT))

    def watch(self, after_sequence: int) -> Any:
        """The ``WatchJobs`` call from ``after_sequence``: iterate it, ``cancel()`` it to stop."""
        request = job_service_pb2.WatchJobsRequest(after_sequence=after_sequence)
        return self.jobs.WatchJobs(request)

    async def iterate_watch(
        self, call: AsyncIterator[job_service_pb2.WatchJobsResponse]
    ) -> AsyncIterator[job_service_pb2.WatchJobsResponse]:
        try:
            async for response in call:
                yield response
        except grpc.aio.AioRpcError as error:
            raise EngineError.from_rpc(error) from None

    async def get_job(self, job_id: str) -> job_service_pb2.GetJobResponse:
        request = job_service_pb2.GetJobRequest(job_id=job_id)
        return await _call(self.jobs.GetJob(request, timeout=CALL_TIMEOUT))

    async def job_events(self, job_id: str) -> job_service_pb2.GetJobEventsResponse:
        request = job_service_pb2.GetJobEventsRequest(job_id=job_id)
        return await _call(self.jobs.GetJobEvents(request, timeout=CALL_TIMEOUT))

    async def job_logs(self, job_id: str, after_index: int = 0) -> job_service_pb2.GetJobLogsResponse:
        request = job_service_pb2.GetJobLogsRequest(job_id=job_id, after_index=after_index)
        return await _call(self.jobs.GetJobLogs(request, timeout=CALL_TIMEOUT))

    async def cancel(self, job_id: str, reason: str) -> job_service_pb2.CancelJobResponse:
        request = job_service_pb2.CancelJobRequest(job_id=job_id, reason=reason)
        return await _call(self.jobs.CancelJob(request, timeout=CALL_TIMEOUT))

    async def retry(self, job_id: str, reason: str, from_step: str = "") -> job_service_pb2.RetryJobResponse:
        request = job_service_pb2.RetryJobRequest(job_id=job_id, reason=reason, from_step=from_step)
        return await _call(self.jobs.RetryJob(request, timeout=CALL_TIMEOUT))

    async def stats(self) -> job_service_pb2.GetStatsResponse:
        return await _call(self.jobs.GetStats(job_service_pb2.GetStatsRequest(), timeout=CALL_TIMEOUT))

    async def actions(self) -> job_service_pb2.ListActionsResponse:
        request = job_service_pb2.ListActionsRequest()
        return await _call(self.jobs.ListActions(request, timeout=CALL_TIMEOUT))

    async def pause(self, action: str) -> job_service_pb2.PauseActionResponse:
        request = job_service_pb2.PauseActionRequest(action=action)
        return await _call(self.jobs.PauseAction(request, timeout=CALL_TIMEOUT))

    async def resume(self, action: str) -> job_service_pb2.ResumeActionResponse:
        request = job_service_pb2.ResumeActionRequest(action=action)
        return await _call(self.jobs.ResumeAction(request, timeout=CALL_TIMEOUT))

    async def workers(self) -> executor_service_pb2.ListWorkersResponse:
        request = executor_service_pb2.ListWorkersRequest()
        return await _call(self.executors.ListWorkers(request, timeout=CALL_TIMEOUT))

    async def lock_table(self, prefix: str = "") -> lock_service_pb2.ListLocksResponse:
        request = lock_service_pb2.ListLocksRequest(prefix=prefix)
        return await _call(self.locks.ListLocks(request, timeout=CALL_TIMEOUT))
