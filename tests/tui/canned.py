"""A gRPC engine with fixed contents, for the console's snapshot tests.

The real engine makes random ids and stamps real times, so a picture of its screens changes on
every run. This server speaks the same API over a real channel but serves a fixed set of jobs,
workers, locks and actions, with times relative to ``T0``; the snapshot tests pin each screen
against it with a clock fixed at ``NOW``. Behaviour tests use the real engine instead.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import grpc.aio
from google.protobuf import struct_pb2
from google.protobuf.timestamp_pb2 import Timestamp
from jobwarden.contract import TERMINAL_STATUSES, ErrorKind, ExecutionMode, JobEventType, JobStatus, LockMode
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

#: the canned world's "now" minus a few minutes: every time in it is relative to this
T0 = 1_763_800_000
NOW = float(T0 + 300)


def ts(offset: float) -> Timestamp:
    value = T0 + offset
    return Timestamp(seconds=int(value), nanos=int((value % 1) * 1e9))


def _struct(**values: Any) -> struct_pb2.Struct:
    result = struct_pb2.Struct()
    result.update(values)
    return result


def _job(
    number: int,
    action: str,
    status: JobStatus,
    *,
    progress: int = 0,
    message: str = "",
    attempt: int = 0,
    worker: str = "",
    created: float = 0,
    started: float = 0,
    finished: float = 0,
    locks: tuple[tuple[str, LockMode], ...] = (),
    locks_held: bool = False,
    step: str = "",
    reason: str = "",
) -> job_pb2.Job:
    job = job_pb2.Job(
        id=f"0193a000-0000-7000-8000-{number:012d}",
        action=action,
        status=job_pb2.JobStatus.ValueType(status),
        progress=progress,
        message=message,
        attempt=attempt,
        worker_id=worker,
        created_at=ts(created),
        updated_at=ts(max(created, started, finished)),
        step=step,
        status_reason=reason,
        locks_held=locks_held,
        input=_struct(asset_id=number, profile="hd"),
    )
    if started:
        job.started_at.CopyFrom(ts(started))
    if finished:
        job.finished_at.CopyFrom(ts(finished))
    for resource, mode in locks:
        job.locks.add(resource=resource, mode=int(mode))
    if attempt:
        job.attempts.add(
            number=attempt,
            status=job_pb2.JobStatus.ValueType(status),
            worker_id=worker,
            started_at=ts(started) if started else None,
            finished_at=ts(finished) if finished else None,
            mode=int(ExecutionMode.EXECUTE),
        )
    return job


def canned_jobs() -> list[job_pb2.Job]:
    """A dozen jobs, at least one in every status."""
    x, s = LockMode.EXCLUSIVE, LockMode.SHARED
    jobs = [
        _job(
            1,
            "transcode",
            JobStatus.COMPLETED,
            progress=100,
            message="done",
            attempt=1,
            worker="w-alpha",
            created=10,
            started=12,
            finished=70,
        ),
        _job(
            2,
            "transcode",
            JobStatus.RUNNING,
            progress=64,
            message="encoding 1080p",
            attempt=1,
            worker="w-alpha",
            created=200,
            started=205,
            step="encode",
        ),
        _job(
            3,
            "thumbnail",
            JobStatus.RUNNING,
            progress=20,
            message="frame 12/60",
            attempt=1,
            worker="w-beta",
            created=230,
            started=240,
            locks=(("asset:42", s),),
            locks_held=True,
        ),
        _job(
            4,
            "publish",
            JobStatus.WAITING_FOR_LOCK,
            created=250,
            locks=(("asset:42", x),),
            reason="waiting for asset:42 (held SHARED by 00000003)",
        ),
        _job(5, "transcode", JobStatus.QUEUED, created=260),
        _job(6, "ingest", JobStatus.QUEUED, created=262, reason="no worker serves ingest"),
        # A retry waiting out its backoff still carries its last attempt's worker and message.
        _job(
            7,
            "flaky",
            JobStatus.DELAYED,
            progress=50,
            message="uploading",
            attempt=1,
            worker="w-alpha",
            created=150,
            started=151,
            reason="attempt 1 failed (JOB_ERROR: connection reset); retry in 4s",
        ),
        _job(
            8,
            "heartbeat-loss",
            JobStatus.TIMED_OUT,
            progress=30,
            attempt=1,
            worker="w-beta",
            created=120,
            started=121,
            message="encoding part 3",
            reason="no update for 30s",
        ),
        _job(
            9,
            "flaky",
            JobStatus.FAILED,
            progress=50,
            attempt=3,
            worker="w-alpha",
            created=40,
            started=90,
            finished=95,
            step="upload",
        ),
        _job(
            10,
            "slow",
            JobStatus.CANCELLED,
            progress=12,
            attempt=1,
            worker="w-beta",
            created=30,
            started=31,
            finished=80,
            message="exporting, 70s left",
            reason="cancelled from the console",
        ),
        _job(11, "transcode", JobStatus.REJECTED, created=100, reason="queue limit of transcode reached"),
        _job(
            12,
            "multi-step",
            JobStatus.COMPLETED,
            progress=100,
            attempt=1,
            worker="w-alpha",
            created=20,
            started=21,
            finished=61,
            message="[upload] upload 80%",
            step="upload",
        ),
    ]
    failed = jobs[8]
    failed.error.kind = job_pb2.ErrorKind.ValueType(ErrorKind.CRASHED)
    failed.error.message = "ConnectionResetError: upload peer went away"
    failed.error.step = "upload"
    failed.error.retryable = True
    failed.error.stack_trace = (
        "Traceback (most recent call last):\n"
        '  File "demo/executors.py", line 88, in execute\n'
        "    await upload(chunk)\n"
        "ConnectionResetError: upload peer went away"
    )
    failed.attempts[0].error.CopyFrom(failed.error)
    failed.checkpoint.step = "download"
    failed.checkpoint.completed_steps.add(name="download", finished_at=ts(92))
    failed.checkpoint.completed_steps.add(name="encode", finished_at=ts(94))
    failed.job_variables["bytes"] = "1048576"
    failed.result.Clear()
    for index, job in enumerate(jobs, 1):
        job.sequence = index
    return jobs


def canned_workers() -> list[executor_service_pb2.Worker]:
    alpha = executor_service_pb2.Worker(
        id="w-alpha", name="demo-worker-1", capacity=4, connected_at=ts(0), last_heartbeat_at=ts(298)
    )
    alpha.executors.add(action="transcode", supports_resume=True, max_concurrency=2)
    alpha.executors.add(action="flaky")
    alpha.executors.add(action="multi-step")
    alpha.jobs.add(job_id=canned_jobs()[1].id, attempt=1)
    beta = executor_service_pb2.Worker(
        id="w-beta", name="demo-worker-2", capacity=2, connected_at=ts(5), last_heartbeat_at=ts(296)
    )
    beta.executors.add(action="thumbnail")
    beta.executors.add(action="publish")
    beta.executors.add(action="heartbeat-loss")
    beta.executors.add(action="slow")
    beta.jobs.add(job_id=canned_jobs()[2].id, attempt=1)
    return [alpha, beta]


def canned_locks() -> list[lock_service_pb2.ResourceLocks]:
    jobs = canned_jobs()
    asset = lock_service_pb2.ResourceLocks(resource="asset:42")
    asset.holders.add(
        resource="asset:42", mode=int(LockMode.SHARED), holder=jobs[2].id, job_id=jobs[2].id, since=ts(240)
    )
    asset.waiters.add(
        resource="asset:42", mode=int(LockMode.EXCLUSIVE), holder=jobs[3].id, job_id=jobs[3].id, since=ts(250)
    )
    external = lock_service_pb2.ResourceLocks(resource="mam:sync")
    external.holders.add(
        resource="mam:sync",
        mode=int(LockMode.EXCLUSIVE),
        holder="mam-sync",
        since=ts(200),
        expires_at=ts(500),
    )
    return [asset, external]


def canned_cluster(*, leader: bool = True) -> cluster_service_pb2.ListEnginesResponse:
    """Three engines on one database: e-a leads at epoch 7 (or none leads), e-b and e-c stand by."""
    role = cluster_service_pb2.ENGINE_ROLE_LEADER if leader else cluster_service_pb2.ENGINE_ROLE_STANDBY
    engines = [
        cluster_service_pb2.EngineInfo(
            engine_id="e-a", address="10.0.0.1:50051", role=role, epoch=7, lease_expires_at=ts(302)
        ),
        cluster_service_pb2.EngineInfo(
            engine_id="e-b", address="10.0.0.2:50051", role=cluster_service_pb2.ENGINE_ROLE_STANDBY, epoch=7
        ),
        cluster_service_pb2.EngineInfo(
            engine_id="e-c", address="10.0.0.3:50051", role=cluster_service_pb2.ENGINE_ROLE_STANDBY, epoch=7
        ),
    ]
    return cluster_service_pb2.ListEnginesResponse(
        engine_id="e-b",
        engines=engines,
        leader_id="e-a" if leader else "",
        leader_address="10.0.0.1:50051" if leader else "",
        epoch=7,
    )


class CannedEngine(
    cluster_service_pb2_grpc.ClusterServiceServicer,
    job_service_pb2_grpc.JobServiceServicer,
    executor_service_pb2_grpc.ExecutorServiceServicer,
    lock_service_pb2_grpc.LockServiceServicer,
    workflow_service_pb2_grpc.WorkflowServiceServicer,
):
    """Serves the canned world; ``push`` (and ``push_run``) send more events to every watcher."""

    def __init__(self) -> None:
        self.jobs = {job.id: job for job in canned_jobs()}
        self.sequence = len(self.jobs)
        #: work orders and their runs (oldest first); the tests add them with ``add_order``
        self.orders: dict[str, workflow_pb2.WorkOrder] = {}
        self.runs: dict[str, list[workflow_pb2.WorkflowRun]] = {}
        self.paused: set[str] = set()
        self.watchers: list[asyncio.Queue[job_pb2.JobEvent | workflow_pb2.WorkflowEvent | None]] = []
        self.calls: list[tuple[str, str]] = []
        #: what ListEngines answers; None: UNIMPLEMENTED, as an engine from before ClusterService
        self.cluster: cluster_service_pb2.ListEnginesResponse | None = None
        self._server: grpc.aio.Server | None = None
        self.address = ""

    async def start(self) -> str:
        server = grpc.aio.server()
        job_service_pb2_grpc.add_JobServiceServicer_to_server(self, server)
        cluster_service_pb2_grpc.add_ClusterServiceServicer_to_server(self, server)
        executor_service_pb2_grpc.add_ExecutorServiceServicer_to_server(self, server)
        lock_service_pb2_grpc.add_LockServiceServicer_to_server(self, server)
        workflow_service_pb2_grpc.add_WorkflowServiceServicer_to_server(self, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        self._server = server
        self.address = f"127.0.0.1:{port}"
        return self.address

    async def stop(self) -> None:
        for queue in self.watchers:
            queue.put_nowait(None)
        if self._server is not None:
            await self._server.stop(grace=None)

    def push(self, job: job_pb2.Job, kind: JobEventType = JobEventType.UPDATED) -> None:
        self.sequence += 1
        job.sequence = self.sequence
        self.jobs[job.id] = job
        event = job_pb2.JobEvent(
            sequence=self.sequence,
            job_id=job.id,
            type=job_pb2.JobEventType.ValueType(kind),
            job=job,
            time=ts(300),
        )
        for queue in self.watchers:
            queue.put_nowait(event)

    # -- JobService ---------------------------------------------------------------------------

    async def ListJobs(self, request: Any, context: Any) -> job_service_pb2.ListJobsResponse:
        jobs = sorted(self.jobs.values(), key=lambda job: (-job.created_at.seconds, job.id))
        if request.statuses:
            jobs = [job for job in jobs if job.status in request.statuses]
        if request.text:
            jobs = [
                job for job in jobs if request.text.lower() in f"{job.id} {job.action} {job.message}".lower()
            ]
        start = int(request.page_token or 0)
        size = request.page_size or 50
        page = jobs[start : start + size]
        token = str(start + size) if start + size < len(jobs) else ""
        return job_service_pb2.ListJobsResponse(jobs=page, next_page_token=token, sequence=self.sequence)

    async def WatchJobs(self, request: Any, context: Any) -> AsyncIterator[job_service_pb2.WatchJobsResponse]:
        queue: asyncio.Queue[job_pb2.JobEvent | workflow_pb2.WorkflowEvent | None] = asyncio.Queue()
        self.watchers.append(queue)
        try:
            yield job_service_pb2.WatchJobsResponse(head_sequence=self.sequence)
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), timeout=2.0)
                except TimeoutError:
                    yield job_service_pb2.WatchJobsResponse(head_sequence=self.sequence)
                    continue
                if event is None:
                    return
                if isinstance(event, workflow_pb2.WorkflowEvent):
                    if request.workflow_events:
                        yield job_service_pb2.WatchJobsResponse(
                            workflow_events=[event], head_sequence=self.sequence
                        )
                    continue
                if not request.exclude_job_events:
                    yield job_service_pb2.WatchJobsResponse(events=[event], head_sequence=self.sequence)
        finally:
            self.watchers.remove(queue)

    async def GetJob(self, request: Any, context: Any) -> job_service_pb2.GetJobResponse:
        job = self.jobs.get(request.job_id)
        if job is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no job {request.job_id}")
        return job_service_pb2.GetJobResponse(job=job)

    async def GetJobEvents(self, request: Any, context: Any) -> job_service_pb2.GetJobEventsResponse:
        job = self.jobs[request.job_id]
        submitted = job_pb2.Job(
            id=job.id, action=job.action, status=job_pb2.JobStatus.ValueType(JobStatus.QUEUED)
        )
        events = [
            job_pb2.JobEvent(
                sequence=1,
                job_id=job.id,
                type=job_pb2.JobEventType.ValueType(JobEventType.SUBMITTED),
                job=submitted,
                time=job.created_at,
                actor="api",
            ),
        ]
        if job.started_at.seconds:
            running = job_pb2.Job(
                id=job.id, status=job_pb2.JobStatus.ValueType(JobStatus.RUNNING), progress=0
            )
            events.append(
                job_pb2.JobEvent(
                    sequence=2,
                    job_id=job.id,
                    type=job_pb2.JobEventType.ValueType(JobEventType.STATUS_CHANGED),
                    job=running,
                    time=job.started_at,
                    previous_status=job_pb2.JobStatus.ValueType(JobStatus.QUEUED),
                    actor=f"worker:{job.worker_id}",
                )
            )
        if job.status != JobStatus.RUNNING and job.status != JobStatus.QUEUED:
            events.append(
                job_pb2.JobEvent(
                    sequence=3,
                    job_id=job.id,
                    type=job_pb2.JobEventType.ValueType(JobEventType.STATUS_CHANGED),
                    job=job,
                    time=job.updated_at,
                    previous_status=job_pb2.JobStatus.ValueType(JobStatus.RUNNING),
                    actor="engine",
                    reason=job.error.message,
                )
            )
        return job_service_pb2.GetJobEventsResponse(events=events)

    async def GetJobLogs(self, request: Any, context: Any) -> job_service_pb2.GetJobLogsResponse:
        lines = [
            job_pb2.LogLine(index=index, time=ts(90 + index), level=level, message=message, attempt=1)
            for index, (level, message) in enumerate(
                [("INFO", "downloading asset 9"), ("INFO", "encoding"), ("ERROR", "upload peer went away")], 1
            )
        ]
        return job_service_pb2.GetJobLogsResponse(
            lines=[line for line in lines if line.index > request.after_index]
        )

    async def CancelJob(self, request: Any, context: Any) -> job_service_pb2.CancelJobResponse:
        self.calls.append(("cancel", request.job_id))
        job = self.jobs[request.job_id]
        if job.status in TERMINAL_STATUSES:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "job is finished")
        job.status = job_pb2.JobStatus.ValueType(JobStatus.CANCELLED)
        self.push(job, JobEventType.STATUS_CHANGED)
        return job_service_pb2.CancelJobResponse(job=job)

    async def RetryJob(self, request: Any, context: Any) -> job_service_pb2.RetryJobResponse:
        self.calls.append(("retry", f"{request.job_id}@{request.from_step}"))
        job = self.jobs[request.job_id]
        job.status = job_pb2.JobStatus.ValueType(JobStatus.QUEUED)
        job.attempt += 1
        self.push(job, JobEventType.STATUS_CHANGED)
        return job_service_pb2.RetryJobResponse(job=job)

    async def ListEngines(self, request: Any, context: Any) -> cluster_service_pb2.ListEnginesResponse:
        if self.cluster is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not implemented!")
        assert self.cluster is not None
        return self.cluster

    async def GetStats(self, request: Any, context: Any) -> job_service_pb2.GetStatsResponse:
        counts: dict[job_pb2.JobStatus.ValueType, int] = {}
        for job in self.jobs.values():
            counts[job.status] = counts.get(job.status, 0) + 1
        response = job_service_pb2.GetStatsResponse(
            statuses=[
                job_service_pb2.StatusCount(status=status, count=count) for status, count in counts.items()
            ],
            actions_without_workers=["ingest"],
            head_sequence=self.sequence,
            workers=2,
        )
        response.actions.extend(self._action_stats())
        return response

    def _action_stats(self) -> list[job_pb2.ActionStats]:
        stats: dict[str, job_pb2.ActionStats] = {}
        fields = {
            JobStatus.QUEUED: "queued",
            JobStatus.DELAYED: "delayed",
            JobStatus.WAITING_FOR_LOCK: "waiting_for_lock",
            JobStatus.RUNNING: "running",
            JobStatus.TIMED_OUT: "timed_out",
            JobStatus.COMPLETED: "completed",
            JobStatus.FAILED: "failed",
            JobStatus.CANCELLED: "cancelled",
            JobStatus.REJECTED: "rejected",
        }
        served = {spec.action for worker in canned_workers() for spec in worker.executors}
        for job in self.jobs.values():
            entry = stats.setdefault(job.action, job_pb2.ActionStats(action=job.action))
            name = fields[JobStatus(job.status)]
            setattr(entry, name, getattr(entry, name) + 1)
        for entry in stats.values():
            entry.workers = 1 if entry.action in served else 0
            entry.free_capacity = 2 if entry.action in served else 0
            entry.paused = entry.action in self.paused
        return sorted(stats.values(), key=lambda entry: entry.action)

    async def ListActions(self, request: Any, context: Any) -> job_service_pb2.ListActionsResponse:
        stats = self._action_stats()
        configs = [
            job_pb2.ActionConfig(action=entry.action, paused=entry.action in self.paused) for entry in stats
        ]
        return job_service_pb2.ListActionsResponse(configs=configs, stats=stats)

    async def PauseAction(self, request: Any, context: Any) -> job_service_pb2.PauseActionResponse:
        self.calls.append(("pause", request.action))
        self.paused.add(request.action)
        return job_service_pb2.PauseActionResponse(
            config=job_pb2.ActionConfig(action=request.action, paused=True)
        )

    async def ResumeAction(self, request: Any, context: Any) -> job_service_pb2.ResumeActionResponse:
        self.calls.append(("resume", request.action))
        self.paused.discard(request.action)
        return job_service_pb2.ResumeActionResponse(config=job_pb2.ActionConfig(action=request.action))

    # -- WorkflowService ----------------------------------------------------------------------

    def add_order(self, order: workflow_pb2.WorkOrder, runs: list[workflow_pb2.WorkflowRun]) -> None:
        order.run_count = len(runs)
        order.last_run_id = runs[-1].id
        order.status = runs[-1].status
        self.orders[order.id] = order
        self.runs[order.id] = runs

    def push_run(self, run: workflow_pb2.WorkflowRun, step: str = "") -> None:
        """A new state of a run (a step changed), to every watcher of workflow events."""
        self.sequence += 1
        run.sequence = self.sequence
        runs = self.runs[run.work_order_id]
        index = next((i for i, known in enumerate(runs) if known.id == run.id), None)
        if index is None:
            runs.append(run)
        else:
            runs[index] = run
        order = self.orders[run.work_order_id]
        order.status = runs[-1].status
        order.run_count = len(runs)
        order.last_run_id = runs[-1].id
        order.sequence = self.sequence
        event = workflow_pb2.WorkflowEvent(
            sequence=self.sequence,
            type=workflow_pb2.WORKFLOW_EVENT_TYPE_STEP_CHANGED,
            run=run,
            order=order,
            step=step,
            time=ts(300),
        )
        for queue in self.watchers:
            queue.put_nowait(event)

    async def ListWorkOrders(self, request: Any, context: Any) -> workflow_service_pb2.ListWorkOrdersResponse:
        orders = sorted(self.orders.values(), key=lambda order: order.id, reverse=True)
        return workflow_service_pb2.ListWorkOrdersResponse(orders=orders)

    async def GetWorkOrder(self, request: Any, context: Any) -> workflow_service_pb2.GetWorkOrderResponse:
        order = self.orders.get(request.work_order_id)
        if order is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no work order {request.work_order_id}")
        assert order is not None  # (abort raises)
        return workflow_service_pb2.GetWorkOrderResponse(order=order, runs=self.runs[order.id])

    async def GetWorkflowRun(self, request: Any, context: Any) -> workflow_service_pb2.GetWorkflowRunResponse:
        for runs in self.runs.values():
            for run in runs:
                if run.id == request.run_id:
                    return workflow_service_pb2.GetWorkflowRunResponse(run=run)
        await context.abort(grpc.StatusCode.NOT_FOUND, f"no run {request.run_id}")
        raise AssertionError("unreachable")

    async def RetryWorkOrder(self, request: Any, context: Any) -> workflow_service_pb2.RetryWorkOrderResponse:
        self.calls.append(("retry_order", f"{request.work_order_id}@{request.from_step}"))
        runs = self.runs[request.work_order_id]
        if runs[-1].status == workflow_pb2.WORKFLOW_RUN_STATUS_RUNNING:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "the last run is RUNNING")
        run = workflow_pb2.WorkflowRun()
        run.CopyFrom(runs[-1])
        run.id = run.id[:-4] + f"{len(runs) + 1:04d}"
        run.number = len(runs) + 1
        run.status = workflow_pb2.WORKFLOW_RUN_STATUS_RUNNING
        run.rerun_from_step = request.from_step
        run.previous_run_id = runs[-1].id
        self.push_run(run)
        return workflow_service_pb2.RetryWorkOrderResponse(order=self.orders[request.work_order_id], run=run)

    async def CancelWorkflowRun(
        self, request: Any, context: Any
    ) -> workflow_service_pb2.CancelWorkflowRunResponse:
        self.calls.append(("cancel_run", request.run_id))
        for runs in self.runs.values():
            for run in runs:
                if run.id == request.run_id:
                    if run.status != workflow_pb2.WORKFLOW_RUN_STATUS_RUNNING:
                        await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "the run is finished")
                    cancelled = workflow_pb2.WorkflowRun()
                    cancelled.CopyFrom(run)
                    cancelled.status = workflow_pb2.WORKFLOW_RUN_STATUS_CANCELLED
                    self.push_run(cancelled)
                    return workflow_service_pb2.CancelWorkflowRunResponse(run=cancelled)
        await context.abort(grpc.StatusCode.NOT_FOUND, f"no run {request.run_id}")
        raise AssertionError("unreachable")

    # -- ExecutorService and LockService ------------------------------------------------------

    async def ListWorkers(self, request: Any, context: Any) -> executor_service_pb2.ListWorkersResponse:
        return executor_service_pb2.ListWorkersResponse(workers=canned_workers())

    async def ListLocks(self, request: Any, context: Any) -> lock_service_pb2.ListLocksResponse:
        return lock_service_pb2.ListLocksResponse(resources=canned_locks())


class CannedThread:
    """A ``CannedEngine`` serving from its own event loop, so any test (sync or async) can use it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        # The calls it does not serve are the generated servicers' own UNIMPLEMENTED answers.
        self.engine = CannedEngine()  # type: ignore[abstract]
        self._thread = threading.Thread(target=self.loop.run_forever, name="canned-engine", daemon=True)
        self._thread.start()
        self.address = self.run(self.engine.start)

    def run(self, function: Callable[[], Any]) -> Any:
        """Run ``function`` (sync, or returning an awaitable) on the engine's loop and wait for it."""

        async def call() -> Any:
            result = function()
            if asyncio.iscoroutine(result):
                result = await result
            return result

        return asyncio.run_coroutine_threadsafe(call(), self.loop).result(timeout=10)

    def close(self) -> None:
        self.run(self.engine.stop)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()
