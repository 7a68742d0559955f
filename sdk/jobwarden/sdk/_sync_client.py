"""``SyncJobClient``: ``JobClient`` for code without an event loop."""

from __future__ import annotations

import asyncio
import builtins
import functools
import threading
from collections.abc import (
    AsyncIterator,
    Callable,
    Coroutine,
    Generator,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, TypeVar

from jobwarden.sdk._client import JobClient
from jobwarden.sdk._requests import submit_request
from jobwarden.sdk._tracing import current_trace_context
from jobwarden.v1 import job_pb2, job_service_pb2, workflow_pb2

__all__ = ["SyncJobClient"]

T = TypeVar("T")
P = ParamSpec("P")


def _blocking(
    method: Callable[Concatenate[JobClient, P], Coroutine[Any, Any, T]], *, carry_trace: bool = False
) -> Callable[Concatenate[SyncJobClient, P], T]:
    """``JobClient``'s ``method``, blocking: the same arguments, types and docstring, run on the
    client's loop. With ``carry_trace`` a ``trace_context`` left out is the caller's: the client's
    loop runs in another thread, where the caller's span is not current."""

    @functools.wraps(method)
    def call(self: SyncJobClient, /, *args: P.args, **kwargs: P.kwargs) -> T:
        if carry_trace and kwargs.get("trace_context") is None:
            kwargs["trace_context"] = current_trace_context()
        return self._run(method(self._client, *args, **kwargs))

    return call


def _iterated(
    method: Callable[Concatenate[JobClient, P], AsyncIterator[T]],
) -> Callable[Concatenate[SyncJobClient, P], Generator[T, None, None]]:
    """``JobClient``'s async-iterator ``method`` as a plain iterator, closed when dropped."""

    @functools.wraps(method)
    def call(self: SyncJobClient, /, *args: P.args, **kwargs: P.kwargs) -> Generator[T, None, None]:
        yield from self._iterate(method(self._client, *args, **kwargs))

    return call


class SyncJobClient:
    """The same calls as ``JobClient``, blocking; ``watch()`` is a plain iterator.

    It runs a ``JobClient`` on an event loop in a private thread, so it is safe to use from any
    one thread at a time, including code that has no event loop of its own. Close it (or use
    ``with``) to stop that thread.
    """

    def __init__(
        self,
        engine: str | Sequence[str] | None = None,
        *,
        timeout: float | None = 30.0,
        failover_timeout: float = 30.0,
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="jobwarden-client", daemon=True)
        self._thread.start()
        self._client = self._run(_make_client(engine, timeout, failover_timeout))

    @property
    def address(self) -> str:
        """See ``JobClient.address``."""
        return self._client.address

    @property
    def addresses(self) -> tuple[str, ...]:
        return self._client.addresses

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def __enter__(self) -> SyncJobClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._run(self._client.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    # Each call below is ``JobClient``'s of the same name (its arguments, types and docstring), run
    # to its end on the client's loop; those that differ are written out after them.
    submit = _blocking(JobClient.submit, carry_trace=True)
    get = _blocking(JobClient.get)
    list = _blocking(JobClient.list)
    cancel = _blocking(JobClient.cancel)
    retry = _blocking(JobClient.retry)
    events = _blocking(JobClient.events)
    logs = _blocking(JobClient.logs)
    stats = _blocking(JobClient.stats)
    engines = _blocking(JobClient.engines)
    pause_action = _blocking(JobClient.pause_action)
    resume_action = _blocking(JobClient.resume_action)
    get_action_config = _blocking(JobClient.get_action_config)
    set_action_config = _blocking(JobClient.set_action_config)
    list_actions = _blocking(JobClient.list_actions)
    workers = _blocking(JobClient.workers)
    locks = _blocking(JobClient.locks)
    acquire_lock = _blocking(JobClient.acquire_lock)
    release_lock = _blocking(JobClient.release_lock)
    # -- workflows
    put_workflow = _blocking(JobClient.put_workflow)
    get_workflow = _blocking(JobClient.get_workflow)
    list_workflows = _blocking(JobClient.list_workflows)
    start_workflow = _blocking(JobClient.start_workflow)
    get_work_order = _blocking(JobClient.get_work_order)
    list_work_orders = _blocking(JobClient.list_work_orders)
    get_workflow_run = _blocking(JobClient.get_workflow_run)
    retry_work_order = _blocking(JobClient.retry_work_order)
    cancel_workflow_run = _blocking(JobClient.cancel_workflow_run)
    # -- event streams: plain iterators, every event, reconnecting from the last sequence on their own
    watch = _iterated(JobClient.watch)
    watch_workflows = _iterated(JobClient.watch_workflows)

    def submit_many(
        self, jobs: Iterable[job_service_pb2.SubmitJobRequest | Mapping[str, Any]]
    ) -> builtins.list[job_pb2.Job]:
        # Built here, in the caller's thread, so that they carry the caller's trace context.
        requests = [
            job if isinstance(job, job_service_pb2.SubmitJobRequest) else submit_request(**job)
            for job in jobs
        ]
        return self._run(self._client.submit_many(requests))

    def wait(self, job_id: str, timeout: float | None = None) -> job_pb2.Job:
        """Wait until the job is finished and return it; ``TimeoutError`` after ``timeout`` seconds."""
        return self._run(asyncio.wait_for(self._client.wait(job_id), timeout))

    def wait_workflow_run(self, run_id: str, timeout: float | None = None) -> workflow_pb2.WorkflowRun:
        """Wait until the run is finished and return it; ``TimeoutError`` after ``timeout`` seconds."""
        return self._run(asyncio.wait_for(self._client.wait_workflow_run(run_id), timeout))

    def _iterate(self, stream: AsyncIterator[T]) -> Iterator[T]:
        """An async iterator of the client's loop as a plain iterator, closed when dropped."""
        try:
            while True:
                try:
                    yield self._run(_next(stream))
                except StopAsyncIteration:
                    return
        finally:
            if not self._loop.is_closed():
                self._run(_close(stream))


async def _make_client(
    engine: str | Sequence[str] | None, call_timeout: float | None, failover_timeout: float
) -> JobClient:
    # grpc.aio channels belong to the loop they are made on: make it on the client's own loop.
    return JobClient(engine, timeout=call_timeout, failover_timeout=failover_timeout)


async def _close(stream: Any) -> None:
    await stream.aclose()


async def _next(stream: AsyncIterator[T]) -> T:
    return await stream.__anext__()
