"""``SyncJobClient``: ``JobClient`` for code without an event loop."""

from __future__ import annotations

import asyncio
import builtins
import threading
from collections.abc import AsyncIterator, Coroutine, Generator, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, TypeVar

from jobwarden.contract import JobStatus
from jobwarden.sdk._client import JobClient, WorkflowLike
from jobwarden.sdk._requests import LockSpec, submit_request
from jobwarden.sdk._tracing import current_trace_context
from jobwarden.sdk._workflow_requests import RunStatusSpec
from jobwarden.v1 import (
    cluster_service_pb2,
    executor_service_pb2,
    job_pb2,
    job_service_pb2,
    lock_service_pb2,
    workflow_pb2,
    workflow_service_pb2,
)

__all__ = ["SyncJobClient"]

T = TypeVar("T")


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

    def submit(
        self,
        action: str,
        input: Mapping[str, Any] | None = None,
        *,
        priority: int = 0,
        labels: Mapping[str, str] | None = None,
        locks: Iterable[LockSpec] | None = None,
        run_at: datetime | None = None,
        correlation_id: str = "",
        idempotency_key: str = "",
        timeouts: job_pb2.JobTimeouts | Mapping[str, Any] | None = None,
        retry_policy: job_pb2.RetryPolicy | Mapping[str, Any] | None = None,
        workflow_variables: Mapping[str, str] | None = None,
        trace_context: Mapping[str, str] | None = None,
    ) -> job_pb2.Job:
        """See ``JobClient.submit``."""
        # The client's loop runs in another thread: the caller's span is current here, not there.
        if trace_context is None:
            trace_context = current_trace_context()
        return self._run(
            self._client.submit(
                action,
                input,
                priority=priority,
                labels=labels,
                locks=locks,
                run_at=run_at,
                correlation_id=correlation_id,
                idempotency_key=idempotency_key,
                timeouts=timeouts,
                retry_policy=retry_policy,
                workflow_variables=workflow_variables,
                trace_context=trace_context,
            )
        )

    def submit_many(
        self, jobs: Iterable[job_service_pb2.SubmitJobRequest | Mapping[str, Any]]
    ) -> builtins.list[job_pb2.Job]:
        # Built here, in the caller's thread, so that they carry the caller's trace context.
        requests = [
            job if isinstance(job, job_service_pb2.SubmitJobRequest) else submit_request(**job)
            for job in jobs
        ]
        return self._run(self._client.submit_many(requests))

    def get(self, job_id: str) -> job_pb2.Job:
        return self._run(self._client.get(job_id))

    def list(
        self,
        *,
        statuses: Iterable[JobStatus | str | int] | None = None,
        action: str = "",
        label: str = "",
        text: str = "",
        page_size: int = 0,
        page_token: str = "",
        summary: bool = False,
    ) -> job_service_pb2.ListJobsResponse:
        return self._run(
            self._client.list(
                statuses=statuses,
                action=action,
                label=label,
                text=text,
                page_size=page_size,
                page_token=page_token,
                summary=summary,
            )
        )

    def cancel(self, job_id: str, reason: str = "") -> job_pb2.Job:
        return self._run(self._client.cancel(job_id, reason))

    def retry(self, job_id: str, *, from_step: str = "", reason: str = "") -> job_pb2.Job:
        return self._run(self._client.retry(job_id, from_step=from_step, reason=reason))

    def events(self, job_id: str) -> builtins.list[job_pb2.JobEvent]:
        return self._run(self._client.events(job_id))

    def logs(self, job_id: str, *, after_index: int = 0, limit: int = 0) -> builtins.list[job_pb2.LogLine]:
        return self._run(self._client.logs(job_id, after_index=after_index, limit=limit))

    def stats(self) -> job_service_pb2.GetStatsResponse:
        return self._run(self._client.stats())

    def engines(self) -> cluster_service_pb2.ListEnginesResponse:
        """See ``JobClient.engines``."""
        return self._run(self._client.engines())

    def wait(self, job_id: str, timeout: float | None = None) -> job_pb2.Job:
        """Wait until the job is finished and return it; ``TimeoutError`` after ``timeout`` seconds."""
        return self._run(asyncio.wait_for(self._client.wait(job_id), timeout))

    def pause_action(self, action: str, *, create_if_unknown: bool = False) -> job_pb2.ActionConfig:
        return self._run(self._client.pause_action(action, create_if_unknown=create_if_unknown))

    def resume_action(self, action: str, *, create_if_unknown: bool = False) -> job_pb2.ActionConfig:
        return self._run(self._client.resume_action(action, create_if_unknown=create_if_unknown))

    def get_action_config(self, action: str) -> job_pb2.ActionConfig:
        return self._run(self._client.get_action_config(action))

    def set_action_config(self, config: job_pb2.ActionConfig) -> job_pb2.ActionConfig:
        return self._run(self._client.set_action_config(config))

    def list_actions(self) -> job_service_pb2.ListActionsResponse:
        return self._run(self._client.list_actions())

    def workers(self) -> builtins.list[executor_service_pb2.Worker]:
        return self._run(self._client.workers())

    def locks(self, prefix: str = "") -> builtins.list[lock_service_pb2.ResourceLocks]:
        return self._run(self._client.locks(prefix))

    def acquire_lock(
        self,
        holder: str,
        locks: Iterable[LockSpec],
        *,
        ttl: float | timedelta,
        wait: float | timedelta | None = None,
    ) -> builtins.list[lock_service_pb2.LockHolder]:
        return self._run(self._client.acquire_lock(holder, locks, ttl=ttl, wait=wait))

    def release_lock(self, holder: str, resources: Iterable[str] = ()) -> int:
        return self._run(self._client.release_lock(holder, resources))

    # -- workflows: see the ``JobClient`` methods of the same names -----------------------------
    def put_workflow(
        self, definition: workflow_pb2.WorkflowDefinition | WorkflowLike
    ) -> workflow_service_pb2.PutWorkflowResponse:
        return self._run(self._client.put_workflow(definition))

    def get_workflow(self, name: str, *, version: int = 0) -> workflow_pb2.WorkflowDefinition:
        return self._run(self._client.get_workflow(name, version=version))

    def list_workflows(
        self, *, name: str = "", all_versions: bool = False
    ) -> builtins.list[workflow_pb2.WorkflowDefinition]:
        return self._run(self._client.list_workflows(name=name, all_versions=all_versions))

    def start_workflow(
        self,
        workflow: str,
        input: Mapping[str, Any] | None = None,
        *,
        version: int = 0,
        context: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
        correlation_id: str = "",
        idempotency_key: str = "",
    ) -> workflow_service_pb2.StartWorkflowResponse:
        return self._run(
            self._client.start_workflow(
                workflow,
                input,
                version=version,
                context=context,
                labels=labels,
                correlation_id=correlation_id,
                idempotency_key=idempotency_key,
            )
        )

    def get_work_order(self, work_order_id: str) -> workflow_service_pb2.GetWorkOrderResponse:
        return self._run(self._client.get_work_order(work_order_id))

    def list_work_orders(
        self,
        *,
        workflow: str = "",
        statuses: Iterable[RunStatusSpec] | None = None,
        correlation_id: str = "",
        limit: int = 0,
        page_token: str = "",
    ) -> workflow_service_pb2.ListWorkOrdersResponse:
        return self._run(
            self._client.list_work_orders(
                workflow=workflow,
                statuses=statuses,
                correlation_id=correlation_id,
                limit=limit,
                page_token=page_token,
            )
        )

    def get_workflow_run(self, run_id: str) -> workflow_pb2.WorkflowRun:
        return self._run(self._client.get_workflow_run(run_id))

    def retry_work_order(
        self, work_order_id: str, *, from_step: str = "", latest_version: bool = False
    ) -> workflow_service_pb2.RetryWorkOrderResponse:
        return self._run(
            self._client.retry_work_order(work_order_id, from_step=from_step, latest_version=latest_version)
        )

    def cancel_workflow_run(self, run_id: str, reason: str = "") -> workflow_pb2.WorkflowRun:
        return self._run(self._client.cancel_workflow_run(run_id, reason))

    def wait_workflow_run(self, run_id: str, timeout: float | None = None) -> workflow_pb2.WorkflowRun:
        """Wait until the run is finished and return it; ``TimeoutError`` after ``timeout`` seconds."""
        return self._run(asyncio.wait_for(self._client.wait_workflow_run(run_id), timeout))

    def watch_workflows(
        self,
        *,
        after_sequence: int | None = None,
        run_ids: Iterable[str] | None = None,
        work_order_ids: Iterable[str] | None = None,
        reconnect: bool = True,
    ) -> Generator[workflow_pb2.WorkflowEvent, None, None]:
        """See ``JobClient.watch_workflows``."""
        yield from self._iterate(
            self._client.watch_workflows(
                after_sequence=after_sequence,
                run_ids=run_ids,
                work_order_ids=work_order_ids,
                reconnect=reconnect,
            )
        )

    def watch(
        self,
        *,
        after_sequence: int | None = None,
        statuses: Iterable[JobStatus | str | int] | None = None,
        actions: Iterable[str] | None = None,
        job_ids: Iterable[str] | None = None,
        reconnect: bool = True,
    ) -> Generator[job_pb2.JobEvent, None, None]:
        """See ``JobClient.watch``: every event, reconnecting from the last sequence on its own."""
        yield from self._iterate(
            self._client.watch(
                after_sequence=after_sequence,
                statuses=statuses,
                actions=actions,
                job_ids=job_ids,
                reconnect=reconnect,
            )
        )

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
