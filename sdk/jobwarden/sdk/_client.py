"""``JobClient``: submit, read, steer and watch jobs (asyncio)."""

from __future__ import annotations

import asyncio
import builtins
import inspect
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Protocol, TypeVar

import grpc
import grpc.aio
from google.protobuf.message import Message
from jobwarden.contract import OPERATOR_RETRYABLE_STATUSES, TERMINAL_STATUSES, JobStatus, Limits
from jobwarden.sdk._address import CHANNEL_OPTIONS
from jobwarden.sdk._backoff import Backoff
from jobwarden.sdk._credentials import ClientSecurity, aio_channel
from jobwarden.sdk._endpoints import FAILOVER_CODES, Endpoints, engine_addresses, never_delivered
from jobwarden.sdk._exceptions import (
    EngineUnavailable,
    InvalidRequest,
    InvalidTransition,
    JobwardenError,
    LockConflict,
    from_rpc_error,
)
from jobwarden.sdk._requests import LockSpec, int64, lock_request, statuses, submit_request
from jobwarden.sdk._workflow_requests import (
    RUN_TERMINAL_STATUSES,
    RunStatusSpec,
    run_statuses,
    start_request,
)
from jobwarden.v1 import (
    cluster_service_pb2,
    cluster_service_pb2_grpc,
    executor_service_pb2,
    executor_service_pb2_grpc,
    job_pb2,
    job_service_pb2,
    job_service_pb2_grpc,
    lock_service_pb2,
    lock_service_pb2_grpc,
    workflow_pb2,
    workflow_service_pb2,
    workflow_service_pb2_grpc,
)
from jobwarden.wire import duration

__all__ = ["JobClient", "WatchStream"]

logger = logging.getLogger("jobwarden.client")

T = TypeVar("T")


class WorkflowLike(Protocol):
    """What ``put_workflow`` takes besides a ``WorkflowDefinition``: a builder (``Workflow``)."""

    def definition(self) -> workflow_pb2.WorkflowDefinition: ...


#: watch errors after which the stream is opened again from the last sequence
_RECONNECT_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.ABORTED,
    }
)


class JobClient:
    """An asyncio client of the engine's ``JobService``, ``ExecutorService``, ``LockService`` and
    ``WorkflowService`` and ``ClusterService``.

    ``async with JobClient("127.0.0.1:50051") as client: job = await client.submit("resize", {...})``.
    Methods return the API's messages (``jobwarden.v1.job_pb2.Job`` and friends) and raise the
    ``JobwardenError`` tree (``JobNotFound``, ``InvalidTransition``, ``EngineUnavailable``, ...).

    Several engines on one database (``"a:50051,b:50051,c:50051"``): calls go to the leader, found
    by following a standby's refusal (it names the leader) or by trying the next address when one
    cannot be reached, with backoff, for up to ``failover_timeout`` seconds. A call is sent again
    only where that is safe: when the engine certainly did not carry it out (a standby refused it,
    no connection was made), and otherwise for reads, submits (each carries an idempotency key: one
    is made per job when the caller gave none, so a submit whose answer was lost cannot run twice),
    cancels and retries (each checked first against the job, so it is not done twice), and the
    calls that set a value. With one address nothing is sent twice, as before.

    Args:
        engine: ``HOST:PORT``, several separated by commas, or a list of them; default
            ``$JOBWARDEN_ENGINE`` (the same form) or ``127.0.0.1:50051``.
        timeout: seconds each unary call may take (each try, with several engines).
        security: the token and TLS to present; default from the environment (``ClientSecurity``).
        channel_options: gRPC channel options that replace the SDK's own of the same name (the
            console, for one, reconnects sooner and reads larger pages).
        failover_timeout: seconds a call keeps looking for a leader before ``EngineUnavailable``.
    """

    def __init__(
        self,
        engine: str | Sequence[str] | None = None,
        *,
        timeout: float | None = 30.0,
        security: ClientSecurity | None = None,
        channel_options: Sequence[tuple[str, Any]] = (),
        failover_timeout: float = 30.0,
    ) -> None:
        self._endpoints = Endpoints(engine_addresses(engine))
        self.timeout = timeout
        self.failover_timeout = failover_timeout
        self._security = security or ClientSecurity.from_environment()
        self._options = list((dict(CHANNEL_OPTIONS) | dict(channel_options)).items())
        self._stubs_by_address: dict[str, _Stubs] = {}
        first = self._stubs(self._endpoints.current)
        # The first engine's stubs, as before several engines (tests and the console reach them).
        self._channel = first.channel
        self._jobs = first.jobs
        self._executors = first.executors
        self._locks = first.locks
        self._workflows = first.workflows

    @property
    def address(self) -> str:
        """The engine calls go to now: the leader, as far as this client knows."""
        return self._endpoints.current

    @property
    def addresses(self) -> tuple[str, ...]:
        """Every engine this client may call, in the order it tries them."""
        return tuple(self._endpoints.addresses)

    def _stubs(self, address: str) -> _Stubs:
        stubs = self._stubs_by_address.get(address)
        if stubs is None:
            channel = aio_channel(address, options=self._options, security=self._security)
            stubs = self._stubs_by_address[address] = _Stubs(channel)
        return stubs

    async def __aenter__(self) -> JobClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        for stubs in self._stubs_by_address.values():
            await stubs.channel.close()

    async def _call(
        self,
        expect: type[T],
        invoke: Callable[[_Stubs], Awaitable[Any]],
        job_id: str | None = None,
        *,
        repeat: bool = True,
        settled: Callable[[], Awaitable[T | None]] | None = None,
    ) -> T:
        """One unary call, at the leader, failing over to the other engines.

        ``repeat``: the call may be sent again after a failure that leaves open whether the engine
        carried it out; else only after one where it certainly did not. ``settled`` is asked before
        such a repeat whether the call already took effect (its answer then stands for the call's).
        """
        endpoints = self._endpoints
        address = endpoints.current
        give_up_at: float | None = None
        backoff: Backoff | None = None
        while True:
            try:
                response = await invoke(self._stubs(address))
            except grpc.RpcError as error:
                certain = never_delivered(error)
                target = endpoints.next_after(address, error) if _code(error) in FAILOVER_CODES else None
                if target is None:
                    raise from_rpc_error(error, job_id=job_id, address=address) from None
                if not certain and not repeat:
                    unsure = from_rpc_error(error, job_id=job_id, address=address)
                    unsure.message = (
                        f"{unsure.message}; the engine may or may not have done it before it was lost "
                        "(this call is not repeated on its own): check, then call again"
                    )
                    raise unsure from None
                now = time.monotonic()
                if give_up_at is None:
                    give_up_at = now + self.failover_timeout
                elif now >= give_up_at:
                    gave_up = from_rpc_error(error, job_id=job_id, address=address)
                    gave_up.message = (
                        f"no engine of {endpoints.describe()} took the call as leader within "
                        f"{self.failover_timeout:g}s; the last said: {gave_up.message}"
                    )
                    raise gave_up from None
                backoff = backoff or Backoff(0.05, 0.5)
                delay = backoff.next_delay()
                logger.info(
                    "call to %s failed (%s); trying %s in %.2fs", address, _code(error), target, delay
                )
                await asyncio.sleep(delay)
                address = target
                if not certain and settled is not None:
                    done = await settled()
                    if done is not None:
                        return done
                continue
            endpoints.answered(address)
            assert isinstance(response, expect)
            return response

    # -- jobs --------------------------------------------------------------------------------
    async def submit(
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
        """Submit one job; with an ``idempotency_key`` seen before, the first job is returned if this
        is the same request (else ``InvalidTransition``, and nothing is submitted). With several
        engines a job without a key is given one, so that it may be sent again safely.

        ``locks`` take ``"resource:SHARED"``, ``"resource"`` (EXCLUSIVE) or ``(resource, mode)``.
        With OpenTelemetry installed and a span active, the job carries that span's trace context
        (the engine's and the worker's spans join its trace); ``trace_context`` sets it instead.
        """
        request = submit_request(
            action,
            input,
            priority=priority,
            labels=labels,
            locks=locks,
            run_at=run_at,
            correlation_id=correlation_id,
            idempotency_key=idempotency_key or self._idempotency_key(),
            timeouts=timeouts,
            retry_policy=retry_policy,
            workflow_variables=workflow_variables,
            trace_context=trace_context,
        )
        _check_size(request, "the job")
        response = await self._call(
            job_service_pb2.SubmitJobResponse, lambda s: s.jobs.SubmitJob(request, timeout=self.timeout)
        )
        return response.job

    def _idempotency_key(self) -> str:
        """A key of its own for a job submitted without one, when it may be sent twice (several
        engines); with one engine nothing is sent twice and the job keeps none, as before."""
        return f"jobwarden-sdk-{uuid.uuid4().hex}" if self._endpoints.several else ""

    async def submit_many(
        self, jobs: Iterable[job_service_pb2.SubmitJobRequest | Mapping[str, Any]]
    ) -> builtins.list[job_pb2.Job]:
        """Submit many jobs in one commit, in order. Each item is a ``SubmitJobRequest`` or a dict
        of ``submit``'s arguments (``{"action": "resize", "input": {...}, "priority": 5}``)."""
        requests = [
            job if isinstance(job, job_service_pb2.SubmitJobRequest) else submit_request(**job)
            for job in jobs
        ]
        for request in requests:
            if not request.idempotency_key:
                request.idempotency_key = self._idempotency_key()
        batch = job_service_pb2.SubmitJobsRequest(jobs=requests)
        _check_size(batch, f"the batch of {len(requests)} jobs", "split it")
        response = await self._call(
            job_service_pb2.SubmitJobsResponse, lambda s: s.jobs.SubmitJobs(batch, timeout=self.timeout)
        )
        return [item.job for item in response.jobs]

    async def get(self, job_id: str) -> job_pb2.Job:
        """The job, with its input, result, attempts and checkpoint; ``JobNotFound`` if none."""
        request = job_service_pb2.GetJobRequest(job_id=job_id)
        response = await self._call(
            job_service_pb2.GetJobResponse, lambda s: s.jobs.GetJob(request, timeout=self.timeout), job_id
        )
        return response.job

    async def list(
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
        """One page of jobs, newest first (``.jobs``, ``.next_page_token``, ``.sequence``)."""
        request = job_service_pb2.ListJobsRequest(
            statuses=_statuses(statuses),
            action=action,
            label=label,
            text=text,
            page_size=page_size,
            page_token=page_token,
            summary=summary,
        )
        return await self._call(
            job_service_pb2.ListJobsResponse, lambda s: s.jobs.ListJobs(request, timeout=self.timeout)
        )

    async def iter_jobs(self, **filters: Any) -> AsyncIterator[job_pb2.Job]:
        """Every job matching ``list``'s filters, newest first, page after page."""
        token = ""
        while True:
            page = await self.list(page_token=token, **filters)
            for job in page.jobs:
                yield job
            token = page.next_page_token
            if not token:
                return

    async def cancel(self, job_id: str, reason: str = "") -> job_pb2.Job:
        """Cancel a job: at once if it waits, through its worker if it runs."""
        request = job_service_pb2.CancelJobRequest(job_id=job_id, reason=reason)

        async def settled() -> job_service_pb2.CancelJobResponse | None:
            # A cancel lost with its engine may have been done: it shows on the job.
            job = await self.get(job_id)
            done = JobStatus(job.status) is JobStatus.CANCELLED or job.cancel_requested
            return job_service_pb2.CancelJobResponse(job=job) if done else None

        response = await self._call(
            job_service_pb2.CancelJobResponse,
            lambda s: s.jobs.CancelJob(request, timeout=self.timeout),
            job_id,
            settled=settled,
        )
        return response.job

    async def retry(self, job_id: str, *, from_step: str = "", reason: str = "") -> job_pb2.Job:
        """A new attempt of a FAILED or CANCELLED job, from its last checkpoint or from ``from_step``."""
        request = job_service_pb2.RetryJobRequest(job_id=job_id, from_step=from_step, reason=reason)
        settled = None
        if self._endpoints.several:
            # A retry lost with its engine may have taken (a second one would run the job once
            # more): the job as read now tells afterwards. A FAILED or CANCELLED job changes only
            # by a retry, which makes it wait again (or, when its new attempt has already ended,
            # shows in the attempt number and the update time).
            before = await self.get(job_id)

            async def settled() -> job_service_pb2.RetryJobResponse | None:
                job = await self.get(job_id)
                took = (
                    JobStatus(job.status) not in OPERATOR_RETRYABLE_STATUSES
                    or job.attempt > before.attempt
                    or job.updated_at != before.updated_at
                )
                return job_service_pb2.RetryJobResponse(job=job) if took else None

        response = await self._call(
            job_service_pb2.RetryJobResponse,
            lambda s: s.jobs.RetryJob(request, timeout=self.timeout),
            job_id,
            repeat=settled is not None,
            settled=settled,
        )
        return response.job

    async def events(self, job_id: str) -> builtins.list[job_pb2.JobEvent]:
        """The job's history, oldest first."""
        request = job_service_pb2.GetJobEventsRequest(job_id=job_id)
        response = await self._call(
            job_service_pb2.GetJobEventsResponse,
            lambda s: s.jobs.GetJobEvents(request, timeout=self.timeout),
            job_id,
        )
        return list(response.events)

    async def logs(
        self, job_id: str, *, after_index: int = 0, limit: int = 0
    ) -> builtins.list[job_pb2.LogLine]:
        """The lines the job's executors logged (after ``after_index``, to follow a log)."""
        request = job_service_pb2.GetJobLogsRequest(job_id=job_id, after_index=after_index, limit=limit)
        response = await self._call(
            job_service_pb2.GetJobLogsResponse,
            lambda s: s.jobs.GetJobLogs(request, timeout=self.timeout),
            job_id,
        )
        return list(response.lines)

    async def stats(self) -> job_service_pb2.GetStatsResponse:
        return await self._call(
            job_service_pb2.GetStatsResponse,
            lambda s: s.jobs.GetStats(job_service_pb2.GetStatsRequest(), timeout=self.timeout),
        )

    async def wait(
        self, job_id: str, *, on_change: Callable[[job_pb2.Job], object] | None = None
    ) -> job_pb2.Job:
        """Wait until the job is finished (COMPLETED, FAILED, CANCELLED or REJECTED) and return it.

        ``on_change`` (a function or a coroutine function) gets the job as it is at first, then after
        each of its events, to show what it waits for. Bound the wait with ``asyncio.timeout(...)``.
        """
        # The committed head first, then the job: a change after the head reaches the watch, and one
        # before it shows in the job read after it.
        head = (await self.stats()).head_sequence
        job = await self.get(job_id)
        await _notify(on_change, job)
        if JobStatus(job.status) in TERMINAL_STATUSES:
            return job
        async for event in self.watch(after_sequence=head, job_ids=[job.id]):
            await _notify(on_change, event.job)
            if JobStatus(event.job.status) in TERMINAL_STATUSES:
                return await self.get(job.id)
        raise EngineUnavailable(f"the watch of job {job.id} ended", job_id=job.id)

    # -- actions -------------------------------------------------------------------------------
    async def pause_action(self, action: str, *, create_if_unknown: bool = False) -> job_pb2.ActionConfig:
        """Stop dispatching ``action``'s jobs (they keep queueing). An action no job, worker or
        configuration names raises ``JobNotFound`` unless ``create_if_unknown`` (pause it ahead)."""
        request = job_service_pb2.PauseActionRequest(action=action, create_if_unknown=create_if_unknown)
        return (
            await self._call(
                job_service_pb2.PauseActionResponse,
                lambda s: s.jobs.PauseAction(request, timeout=self.timeout),
            )
        ).config

    async def resume_action(self, action: str, *, create_if_unknown: bool = False) -> job_pb2.ActionConfig:
        request = job_service_pb2.ResumeActionRequest(action=action, create_if_unknown=create_if_unknown)
        return (
            await self._call(
                job_service_pb2.ResumeActionResponse,
                lambda s: s.jobs.ResumeAction(request, timeout=self.timeout),
            )
        ).config

    async def get_action_config(self, action: str) -> job_pb2.ActionConfig:
        request = job_service_pb2.GetActionConfigRequest(action=action)
        return (
            await self._call(
                job_service_pb2.GetActionConfigResponse,
                lambda s: s.jobs.GetActionConfig(request, timeout=self.timeout),
            )
        ).config

    async def set_action_config(self, config: job_pb2.ActionConfig) -> job_pb2.ActionConfig:
        """Replace an action's configuration (timeouts, retry policy, limits, lock templates)."""
        request = job_service_pb2.SetActionConfigRequest(config=config)
        _check_size(request, f"the configuration of {config.action!r}")
        return (
            await self._call(
                job_service_pb2.SetActionConfigResponse,
                lambda s: s.jobs.SetActionConfig(request, timeout=self.timeout),
            )
        ).config

    async def list_actions(self) -> job_service_pb2.ListActionsResponse:
        request = job_service_pb2.ListActionsRequest()
        return await self._call(
            job_service_pb2.ListActionsResponse, lambda s: s.jobs.ListActions(request, timeout=self.timeout)
        )

    # -- workers and locks -----------------------------------------------------------------------
    async def workers(self) -> builtins.list[executor_service_pb2.Worker]:
        """The connected workers, their executors, capacity and jobs in hand."""
        request = executor_service_pb2.ListWorkersRequest()
        response = await self._call(
            executor_service_pb2.ListWorkersResponse,
            lambda s: s.executors.ListWorkers(request, timeout=self.timeout),
        )
        return list(response.workers)

    async def locks(self, prefix: str = "") -> builtins.list[lock_service_pb2.ResourceLocks]:
        """Holders and waiters of each locked resource (starting with ``prefix``)."""
        request = lock_service_pb2.ListLocksRequest(prefix=prefix)
        response = await self._call(
            lock_service_pb2.ListLocksResponse, lambda s: s.locks.ListLocks(request, timeout=self.timeout)
        )
        return list(response.resources)

    async def acquire_lock(
        self,
        holder: str,
        locks: Iterable[LockSpec],
        *,
        ttl: float | timedelta,
        wait: float | timedelta | None = None,
    ) -> builtins.list[lock_service_pb2.LockHolder]:
        """Take locks for an external holder, all at once, for ``ttl``; ``LockConflict`` if held."""
        request = lock_service_pb2.AcquireLockRequest(
            holder=holder, locks=[lock_request(lock) for lock in locks], ttl=duration(ttl)
        )
        if wait is not None:
            request.wait.CopyFrom(duration(wait))
        call_timeout = None if self.timeout is None else self.timeout + _total_seconds(wait)
        try:
            response = await self._call(
                lock_service_pb2.AcquireLockResponse,
                lambda s: s.locks.AcquireLock(request, timeout=call_timeout),
                repeat=False,
            )
        except InvalidTransition as refused:
            conflict = LockConflict(refused.message)
            conflict.code = refused.code
            raise conflict from None
        return list(response.held)

    async def release_lock(self, holder: str, resources: Iterable[str] = ()) -> int:
        """Release the holder's locks on ``resources`` (all of them when empty); how many were released."""
        request = lock_service_pb2.ReleaseLockRequest(holder=holder, resources=list(resources))
        return (
            await self._call(
                lock_service_pb2.ReleaseLockResponse,
                lambda s: s.locks.ReleaseLock(request, timeout=self.timeout),
            )
        ).released

    async def force_release_job_locks(
        self, job_id: str, reason: str
    ) -> lock_service_pb2.ForceReleaseJobLocksResponse:
        """Admin only: end a job whose executor has not confirmed its stop (execution timeout or
        cancel) as decided, so its locks pass on now. ``reason`` is kept with the admin's name."""
        request = lock_service_pb2.ForceReleaseJobLocksRequest(job_id=job_id, reason=reason)
        return await self._call(
            lock_service_pb2.ForceReleaseJobLocksResponse,
            lambda s: s.locks.ForceReleaseJobLocks(request, timeout=self.timeout),
            repeat=False,
        )

    # -- the engines -----------------------------------------------------------------------------
    async def engines(self) -> cluster_service_pb2.ListEnginesResponse:
        """The engines sharing the database: the leader first, its epoch, and the standbys."""
        return await self._call(
            cluster_service_pb2.ListEnginesResponse,
            lambda s: s.cluster.ListEngines(cluster_service_pb2.ListEnginesRequest(), timeout=self.timeout),
        )

    # -- workflows -------------------------------------------------------------------------------
    async def put_workflow(
        self, definition: workflow_pb2.WorkflowDefinition | WorkflowLike
    ) -> workflow_service_pb2.PutWorkflowResponse:
        """Store a definition as its name's next version (``.definition``, ``.created``).

        ``definition`` is a ``WorkflowDefinition`` or anything with a ``definition()`` method that
        makes one (``jobwarden.sdk.Workflow``). The same content as the latest version creates
        nothing (``created`` False) and returns that version. ``InvalidRequest`` names the step or
        edge at fault (an unknown step, a cycle, a template that does not compile, ...)."""
        message = (
            definition if isinstance(definition, workflow_pb2.WorkflowDefinition) else definition.definition()
        )
        request = workflow_service_pb2.PutWorkflowRequest(definition=message)
        _check_size(request, f"the definition of workflow {message.name!r}")
        return await self._call(
            workflow_service_pb2.PutWorkflowResponse,
            lambda s: s.workflows.PutWorkflow(request, timeout=self.timeout),
        )

    async def get_workflow(self, name: str, *, version: int = 0) -> workflow_pb2.WorkflowDefinition:
        """A definition: ``version`` of ``name``, or its latest (0); ``JobNotFound`` if none."""
        request = workflow_service_pb2.GetWorkflowRequest(name=name, version=version)
        response = await self._call(
            workflow_service_pb2.GetWorkflowResponse,
            lambda s: s.workflows.GetWorkflow(request, timeout=self.timeout),
        )
        return response.definition

    async def list_workflows(
        self, *, name: str = "", all_versions: bool = False
    ) -> builtins.list[workflow_pb2.WorkflowDefinition]:
        """The latest version of each workflow (or every version), by name then version."""
        request = workflow_service_pb2.ListWorkflowsRequest(name=name, all_versions=all_versions)
        response = await self._call(
            workflow_service_pb2.ListWorkflowsResponse,
            lambda s: s.workflows.ListWorkflows(request, timeout=self.timeout),
        )
        return list(response.definitions)

    async def start_workflow(
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
        """Make a work order of ``workflow`` (its latest version, or ``version``) and its first run
        (``.order``, ``.run``). ``context`` overrides the definition's context variables. With an
        ``idempotency_key`` seen before, the first work order is returned (``.duplicate``) if this is
        the same request, else ``InvalidTransition`` and nothing is started."""
        request = start_request(
            workflow,
            input,
            version=version,
            context=context,
            labels=labels,
            correlation_id=correlation_id,
            idempotency_key=idempotency_key or self._idempotency_key(),
        )
        _check_size(request, f"the start of workflow {workflow!r}")
        return await self._call(
            workflow_service_pb2.StartWorkflowResponse,
            lambda s: s.workflows.StartWorkflow(request, timeout=self.timeout),
        )

    async def get_work_order(self, work_order_id: str) -> workflow_service_pb2.GetWorkOrderResponse:
        """A work order (``.order``) and every run of it, oldest first (``.runs``); the id may be
        abbreviated to 8 characters or more."""
        request = workflow_service_pb2.GetWorkOrderRequest(work_order_id=work_order_id)
        return await self._call(
            workflow_service_pb2.GetWorkOrderResponse,
            lambda s: s.workflows.GetWorkOrder(request, timeout=self.timeout),
        )

    async def list_work_orders(
        self,
        *,
        workflow: str = "",
        statuses: Iterable[RunStatusSpec] | None = None,
        correlation_id: str = "",
        limit: int = 0,
        page_token: str = "",
    ) -> workflow_service_pb2.ListWorkOrdersResponse:
        """One page of work orders, newest first (``.orders``, ``.next_page_token``). ``statuses``
        take ``WorkflowRunStatus`` numbers or names (``"failed"``); ``limit`` 0 means 100."""
        request = workflow_service_pb2.ListWorkOrdersRequest(
            workflow=workflow,
            statuses=run_statuses(statuses),
            correlation_id=correlation_id,
            limit=limit,
            page_token=page_token,
        )
        return await self._call(
            workflow_service_pb2.ListWorkOrdersResponse,
            lambda s: s.workflows.ListWorkOrders(request, timeout=self.timeout),
        )

    async def iter_work_orders(self, **filters: Any) -> AsyncIterator[workflow_pb2.WorkOrder]:
        """Every work order matching ``list_work_orders``' filters, newest first, page after page."""
        token = ""
        while True:
            page = await self.list_work_orders(page_token=token, **filters)
            for order in page.orders:
                yield order
            token = page.next_page_token
            if not token:
                return

    async def get_workflow_run(self, run_id: str) -> workflow_pb2.WorkflowRun:
        """A run with its steps, edges, input and output; the id may be abbreviated."""
        request = workflow_service_pb2.GetWorkflowRunRequest(run_id=run_id)
        response = await self._call(
            workflow_service_pb2.GetWorkflowRunResponse,
            lambda s: s.workflows.GetWorkflowRun(request, timeout=self.timeout),
        )
        return response.run

    async def retry_work_order(
        self, work_order_id: str, *, from_step: str = "", latest_version: bool = False
    ) -> workflow_service_pb2.RetryWorkOrderResponse:
        """A new run of a work order whose last run ended (``.order``, ``.run``): from the start, or
        from ``from_step``, reusing the outcome of every step not downstream of it; on the pinned
        version, or the latest with ``latest_version``. ``InvalidTransition`` while the last run is
        unfinished, ``InvalidRequest`` for a step not in the run's definition."""
        request = workflow_service_pb2.RetryWorkOrderRequest(
            work_order_id=work_order_id, from_step=from_step, latest_version=latest_version
        )
        return await self._call(
            workflow_service_pb2.RetryWorkOrderResponse,
            lambda s: s.workflows.RetryWorkOrder(request, timeout=self.timeout),
            repeat=False,
        )

    async def cancel_workflow_run(self, run_id: str, reason: str = "") -> workflow_pb2.WorkflowRun:
        """Cancel a run: its waiting steps at once, its running jobs through their workers; the run
        ends CANCELLED. ``InvalidTransition`` for a finished run."""
        request = workflow_service_pb2.CancelWorkflowRunRequest(run_id=run_id, reason=reason)
        response = await self._call(
            workflow_service_pb2.CancelWorkflowRunResponse,
            lambda s: s.workflows.CancelWorkflowRun(request, timeout=self.timeout),
            repeat=False,
        )
        return response.run

    async def wait_workflow_run(
        self, run_id: str, *, on_change: Callable[[workflow_pb2.WorkflowEvent], object] | None = None
    ) -> workflow_pb2.WorkflowRun:
        """Wait until the run is finished (COMPLETED, FAILED or CANCELLED) and return it whole.

        ``on_change`` (a function or a coroutine function) gets each of the run's workflow events
        (step changes included). Bound the wait with ``asyncio.timeout(...)``."""
        head = (await self.stats()).head_sequence
        run = await self.get_workflow_run(run_id)
        if run.status in RUN_TERMINAL_STATUSES:
            return run
        async for event in self.watch_workflows(after_sequence=head, run_ids=[run.id]):
            await _notify(on_change, event)
            if event.run.id == run.id and event.run.status in RUN_TERMINAL_STATUSES:
                return await self.get_workflow_run(run.id)
        raise EngineUnavailable(f"the watch of workflow run {run.id} ended")

    async def watch_workflows(
        self,
        *,
        after_sequence: int | None = None,
        run_ids: Iterable[str] | None = None,
        work_order_ids: Iterable[str] | None = None,
        reconnect: bool = True,
        max_backoff: float = 5.0,
    ) -> AsyncIterator[workflow_pb2.WorkflowEvent]:
        """Every workflow event (work orders, runs, steps), in sequence order, as it happens; only
        those of ``run_ids`` and ``work_order_ids`` when given. Replays and reconnects as ``watch``
        does. Job events are left out; ``watch_all`` has both, merged."""
        request = job_service_pb2.WatchJobsRequest(
            workflow_events=True,
            exclude_job_events=True,
            run_ids=list(run_ids or ()),
            work_order_ids=list(work_order_ids or ()),
        )
        async for event in self._watch(request, after_sequence, reconnect, max_backoff):
            if isinstance(event, workflow_pb2.WorkflowEvent):
                yield event

    async def watch_all(
        self,
        *,
        after_sequence: int | None = None,
        reconnect: bool = True,
        max_backoff: float = 5.0,
    ) -> AsyncIterator[job_pb2.JobEvent | workflow_pb2.WorkflowEvent]:
        """Job and workflow events together, as one stream in sequence order (gap-free)."""
        request = job_service_pb2.WatchJobsRequest(workflow_events=True)
        async for event in self._watch(request, after_sequence, reconnect, max_backoff):
            yield event

    # -- the event stream ------------------------------------------------------------------------
    def open_watch(self, after_sequence: int = 0, *, workflow_events: bool = False) -> WatchStream:
        """The raw ``WatchJobs`` stream from ``after_sequence``, one response (a batch of events and
        the engine's head, or an empty keep-alive) per ``read()``, and no reconnection: for a caller
        that keeps its own (the console). With ``workflow_events`` the responses carry workflow
        events too (``.workflow_events``; merged by sequence with ``.events``, one ordered stream).
        Most callers want ``watch`` or ``watch_workflows``."""
        request = job_service_pb2.WatchJobsRequest(
            after_sequence=int64(after_sequence, "after_sequence", 0), workflow_events=workflow_events
        )
        address = self.address
        return WatchStream(
            self._stubs(address).jobs.WatchJobs(request),
            address,
            lambda error: self._endpoints.next_after(address, error),
        )

    async def watch(
        self,
        *,
        after_sequence: int | None = None,
        statuses: Iterable[JobStatus | str | int] | None = None,
        actions: Iterable[str] | None = None,
        job_ids: Iterable[str] | None = None,
        reconnect: bool = True,
        max_backoff: float = 5.0,
    ) -> AsyncGenerator[job_pb2.JobEvent, None]:
        """Every job event, in sequence order, as it happens.

        With ``after_sequence`` the missed events come first (0 replays the whole history). When the
        stream breaks (engine restart, a slow subscriber cut off) it is opened again from the last
        sequence seen, so no event is missed or repeated. The first connection failing raises
        ``EngineUnavailable``; later ones are retried with backoff unless ``reconnect`` is False.
        With several engines the stream reads from any of them (every engine serves reads), and
        goes to the next when one fails; the first connection too, for up to ``failover_timeout``.
        """
        request = job_service_pb2.WatchJobsRequest(
            statuses=_statuses(statuses), actions=list(actions or ()), job_ids=list(job_ids or ())
        )
        async for event in self._watch(request, after_sequence, reconnect, max_backoff):
            if isinstance(event, job_pb2.JobEvent):
                yield event

    async def _watch(
        self,
        request: job_service_pb2.WatchJobsRequest,
        after_sequence: int | None,
        reconnect: bool,
        max_backoff: float,
    ) -> AsyncIterator[job_pb2.JobEvent | workflow_pb2.WorkflowEvent]:
        """The events ``request`` asks for, job and workflow events merged by sequence, reopening the
        stream from the last sequence seen when it breaks."""
        last = None if after_sequence is None else int64(after_sequence, "after_sequence", 0)
        ever_connected = False
        backoff = Backoff(0.1, max_backoff)
        address = self.address
        started = time.monotonic()
        while True:
            if last is not None:
                request.after_sequence = last
            stream = self._stubs(address).jobs.WatchJobs(request)
            try:
                async for response in stream:
                    ever_connected = True
                    backoff.reset()
                    for event in _merged(response):
                        if last is not None and event.sequence <= last:
                            continue  # already seen before a reconnect
                        last = event.sequence
                        yield event
                    if last is None:
                        # Live only: a reconnect resumes from what the engine had committed by now.
                        last = response.head_sequence
                error: JobwardenError | None = None
            except grpc.RpcError as rpc_error:
                error = from_rpc_error(rpc_error, address=address)
                elsewhere = (
                    self._endpoints.next_after(address, rpc_error) if error.code in FAILOVER_CODES else None
                )
                may_fail_over = elsewhere is not None and (
                    ever_connected or time.monotonic() - started < self.failover_timeout
                )
                if (not ever_connected and not may_fail_over) or error.code not in _RECONNECT_CODES:
                    raise error from None
                if not reconnect:
                    raise error from None
                address = elsewhere or address
            finally:
                stream.cancel()
            if not reconnect:
                return
            delay = backoff.next_delay()
            logger.info("watch: stream ended (%s); reconnecting after %s in %.1fs", error, last, delay)
            await asyncio.sleep(delay)


class WatchStream:
    """One open ``WatchJobs`` call (see ``JobClient.open_watch``); ``cancel()`` ends it."""

    def __init__(
        self, call: Any, address: str, on_failure: Callable[[grpc.RpcError], object] | None = None
    ) -> None:
        self._call = call
        self._address = address
        # Tells the client that this engine failed, so the next stream opens at another one.
        self._on_failure = on_failure

    async def read(self) -> job_service_pb2.WatchJobsResponse | None:
        """The next response, or None when the engine ended the stream; the ``JobwardenError`` tree
        when it broke (``EngineUnavailable``, ``Rejected`` for a subscriber that fell behind, ...)."""
        try:
            response = await self._call.read()
        except grpc.RpcError as error:
            if self._on_failure is not None and _code(error) in FAILOVER_CODES:
                self._on_failure(error)
            raise from_rpc_error(error, address=self._address) from None
        if response is grpc.aio.EOF:
            return None
        assert isinstance(response, job_service_pb2.WatchJobsResponse)
        return response

    def cancel(self) -> None:
        self._call.cancel()


class _Stubs:
    """The stubs of one engine's channel."""

    __slots__ = ("channel", "cluster", "executors", "jobs", "locks", "workflows")

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.channel = channel
        self.jobs = job_service_pb2_grpc.JobServiceStub(channel)
        self.executors = executor_service_pb2_grpc.ExecutorServiceStub(channel)
        self.locks = lock_service_pb2_grpc.LockServiceStub(channel)
        self.cluster = cluster_service_pb2_grpc.ClusterServiceStub(channel)
        self.workflows = workflow_service_pb2_grpc.WorkflowServiceStub(channel)


def _code(error: BaseException) -> grpc.StatusCode | None:
    code_of = getattr(error, "code", None)
    code = code_of() if callable(code_of) else None
    return code if isinstance(code, grpc.StatusCode) else None


async def _notify(callback: Callable[[Any], object] | None, item: Any) -> None:
    if callback is not None:
        result = callback(item)
        if inspect.isawaitable(result):
            await result


def _merged(
    response: job_service_pb2.WatchJobsResponse,
) -> builtins.list[job_pb2.JobEvent | workflow_pb2.WorkflowEvent]:
    """A response's job and workflow events as one list in sequence order."""
    if not response.workflow_events:
        return list(response.events)
    if not response.events:
        return list(response.workflow_events)
    events: builtins.list[job_pb2.JobEvent | workflow_pb2.WorkflowEvent] = [
        *response.events,
        *response.workflow_events,
    ]
    events.sort(key=lambda event: event.sequence)
    return events


def _check_size(request: Message, what: str, advice: str = "") -> None:
    """Refuse, before sending, a message the channel would refuse with gRPC's own terse wording."""
    size = request.ByteSize()
    if size > Limits.MAX_MESSAGE_BYTES:
        hint = f"; {advice}" if advice else ""
        raise InvalidRequest(
            f"{what} is {size} bytes, over the {Limits.MAX_MESSAGE_BYTES} bytes a message to the engine "
            f"may hold (a job's input or result may be {Limits.MAX_PAYLOAD_BYTES} bytes as JSON){hint}; "
            "nothing was sent"
        )


def _statuses(values: Iterable[JobStatus | str | int] | None) -> builtins.list[job_pb2.JobStatus.ValueType]:
    return statuses(values)


def _total_seconds(value: float | timedelta | None) -> float:
    if value is None:
        return 0.0
    return value.total_seconds() if isinstance(value, timedelta) else float(value)
