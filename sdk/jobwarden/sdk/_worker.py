"""``Worker``: hosts executors and runs the jobs the engine assigns, over one ``Connect`` stream."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import random
import signal
import socket
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import grpc.aio
from jobwarden.contract import ErrorKind, ExecutionMode, Limits
from jobwarden.sdk._address import CHANNEL_OPTIONS, engine_address
from jobwarden.sdk._context import Checkpoint, JobContext
from jobwarden.sdk._convert import normalize_object
from jobwarden.sdk._credentials import aio_channel
from jobwarden.sdk._exceptions import (
    EngineUnavailable,
    ExecutorDefinitionError,
    JobCancelled,
    JobFailed,
    JobNotFound,
    JobwardenError,
    from_rpc_error,
)
from jobwarden.sdk._executor import Executor, method_for, overrides, validate
from jobwarden.sdk._outbox import JobKey, Outbox
from jobwarden.sdk._requests import lock_request
from jobwarden.sdk._tracing import trace_attempt
from jobwarden.v1 import executor_service_pb2 as pb
from jobwarden.v1 import executor_service_pb2_grpc, job_pb2
from jobwarden.wire import dict_to_struct

__all__ = ["Worker"]

logger = logging.getLogger("jobwarden.worker")

#: stream errors after which reconnecting cannot help: the engine refused this worker
_FATAL_CODES = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)
#: the checkpoint of a job that has none (shared: a Checkpoint is immutable)
_NO_CHECKPOINT = Checkpoint()
_NOT_HELD_CODES = frozenset(
    {grpc.StatusCode.NOT_FOUND.value[0], grpc.StatusCode.FAILED_PRECONDITION.value[0]}
)


@dataclass(slots=True)
class _Hosted:
    """An executor instance and what the worker knows of it."""

    executor: Executor
    action: str
    is_async: dict[str, bool]
    running: int = 0
    methods: dict[ExecutionMode, tuple[Callable[[JobContext], Any], bool]] = field(default_factory=dict)

    @classmethod
    def of(cls, executor: Executor) -> _Hosted:
        is_async = {
            name: inspect.iscoroutinefunction(getattr(executor, name))
            for name in ("execute", "resume", "retry", "cancel", "on_cancelled")
        }
        return cls(executor=executor, action=executor.action, is_async=is_async)

    def overrides(self, name: str) -> bool:
        return overrides(type(self.executor), name)

    def method(self, mode: ExecutionMode) -> tuple[Callable[[JobContext], Any], bool]:
        """The method that runs an attempt in ``mode``, and whether it is async (cached per mode)."""
        found = self.methods.get(mode)
        if found is None:
            method = method_for(self.executor, mode)
            found = self.methods[mode] = (method, inspect.iscoroutinefunction(method))
        return found


@dataclass(slots=True, eq=False)
class _Job:
    key: JobKey
    hosted: _Hosted
    ctx: JobContext
    is_async: bool
    task: asyncio.Task[None] | None = None
    cancel_requested: bool = False
    #: no longer this worker's: released, rejected or fenced
    detached: bool = False
    grace: asyncio.TimerHandle | None = None
    #: the job's heartbeat timeout in seconds, when it has its own
    heartbeat_timeout: float = 0.0
    started: float = field(default_factory=time.monotonic)


class _Fatal(Exception):
    """The engine refused this worker; reconnecting would not help."""


class Worker:
    """Runs executors for the engine: ``await Worker([MyExecutor]).run()``.

    The worker registers its executors, runs assigned jobs (async executors as tasks on the event
    loop, plain ones in a thread pool), heartbeats, and reconnects with exponential backoff and
    jitter, re-attaching the jobs it still runs. A finished result is kept until the engine
    acknowledges it. On SIGTERM (or ``drain()``) it takes no new jobs and waits up to
    ``drain_timeout`` for running ones, then hands the rest back to the engine.

    Args:
        executors: Executor subclasses (instantiated with no arguments) or instances, one per action.
        engine: ``HOST:PORT``; default ``$JOBWARDEN_ENGINE`` or ``127.0.0.1:50051``.
        capacity: most jobs at once across all executors.
        name: a name for people; default ``host:pid``.
        labels: free-form labels shown with the worker.
        drain_timeout: seconds a draining worker waits for running jobs before handing them back.
        cancel_grace: seconds a cancelled job gets to stop before a warning says it ignores the
            cancel. It is reported stopped only once its code has returned: until then the engine
            keeps its locks and this worker keeps its slot.
        connect_timeout: give up (raise ``EngineUnavailable``) when the first connection has not
            succeeded after this many seconds; None keeps trying.
        reconnect_initial, reconnect_max: bounds (seconds) of the reconnect backoff.
    """

    def __init__(
        self,
        executors: Iterable[Executor | type[Executor]] | Executor | type[Executor],
        *,
        engine: str | None = None,
        capacity: int = 10,
        name: str | None = None,
        labels: Mapping[str, str] | None = None,
        drain_timeout: float = 30.0,
        cancel_grace: float = 10.0,
        connect_timeout: float | None = None,
        reconnect_initial: float = 0.2,
        reconnect_max: float = 10.0,
    ) -> None:
        self.address = engine_address(engine)
        if not _is_int(capacity) or not 0 < capacity <= Limits.MAX_WORKER_CAPACITY:
            raise ExecutorDefinitionError(
                f"capacity must be an int from 1 to {Limits.MAX_WORKER_CAPACITY}, got {capacity!r}"
            )
        self.capacity = capacity
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.labels = dict(labels or {})
        self.drain_timeout = drain_timeout
        self.cancel_grace = cancel_grace
        self.connect_timeout = connect_timeout
        self.reconnect_initial = reconnect_initial
        self.reconnect_max = reconnect_max
        self._hosted: dict[str, _Hosted] = {}
        for executor in _instances(executors):
            validate(executor)
            if executor.action in self._hosted:
                raise ExecutorDefinitionError(
                    f"two executors serve action {executor.action!r}: "
                    f"{type(self._hosted[executor.action].executor).__qualname__} "
                    f"and {type(executor).__qualname__}"
                )
            self._hosted[executor.action] = _Hosted.of(executor)
        if not self._hosted:
            raise ExecutorDefinitionError("a worker needs at least one executor")

        #: the id the engine gave this worker (kept across reconnects)
        self.worker_id = ""
        # The secret of the session: a reconnect presents it to replace a session the engine still
        # thinks alive (a cut it has not noticed yet); without it that worker id is refused.
        self._session_token = ""
        self._jobs: dict[str, _Job] = {}
        self._unacked: dict[JobKey, pb.JobResult] = {}
        #: jobs whose result the engine refused as malformed, now reported as a failure instead
        self._fallbacks: set[JobKey] = set()
        self._outbox = Outbox()
        self._draining = False
        self._heartbeat_interval = 5.0
        self._loop: asyncio.AbstractEventLoop | None = None
        # asyncio.Event binds to a loop on first use, so these may be made here.
        self._wake = asyncio.Event()
        self._flushed = asyncio.Event()
        self._idle = asyncio.Event()
        self._stop = asyncio.Event()
        self._connected = asyncio.Event()
        self._period_changed = asyncio.Event()
        self._call: Any = None
        self._pool: ThreadPoolExecutor | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._locks_declared = False
        self._session_registered = False
        #: the number of jobs finished by this worker (completed, failed or cancelled)
        self.finished_jobs = 0

    # -- public API --------------------------------------------------------------------------
    @property
    def actions(self) -> list[str]:
        return sorted(self._hosted)

    @property
    def running_jobs(self) -> int:
        return len(self._jobs)

    @property
    def draining(self) -> bool:
        return self._draining

    async def wait_connected(self) -> None:
        """Return once the worker is registered with the engine."""
        await self._connected.wait()

    def run_sync(self, *, handle_signals: bool = True) -> None:
        """Run the worker in a new event loop until it is stopped or drained."""
        asyncio.run(self.run(handle_signals=handle_signals))

    async def run(self, *, handle_signals: bool = False) -> None:
        """Serve until ``stop()``, or until drained (SIGTERM/SIGINT when ``handle_signals``).

        Raises ``EngineUnavailable`` when ``connect_timeout`` passes before the first connection,
        and ``JobwardenError`` when the engine refuses the registration.
        """
        self._loop = asyncio.get_running_loop()
        self._pool = ThreadPoolExecutor(
            max_workers=self.capacity + 4, thread_name_prefix=f"jobwarden-{self.name}"
        )
        if handle_signals:
            for signum in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    self._loop.add_signal_handler(signum, self._on_signal, signum)
        try:
            await self._serve()
        finally:
            if handle_signals:
                for signum in (signal.SIGTERM, signal.SIGINT):
                    with contextlib.suppress(NotImplementedError, RuntimeError):
                        self._loop.remove_signal_handler(signum)
            for job in list(self._jobs.values()):
                self._detach(job, "the worker stopped")
            for task in list(self._background):
                task.cancel()
            # Threads of sync jobs that were abandoned are not waited for.
            self._pool.shutdown(wait=False, cancel_futures=True)

    def drain(self) -> None:
        """Take no new jobs; stop once running jobs finish (or are handed back after the timeout)."""
        if self._draining or self._loop is None:
            return
        logger.info("worker %s draining: takes no new jobs; %s", self.name, self._drain_wait())
        self._draining = True
        self._outbox.set_draining()
        self._kick()
        self._spawn(self._drain())

    def stop(self) -> None:
        """Stop at once: running jobs are abandoned (the engine times them out and may resume them)."""
        self._stop.set()
        if self._call is not None:
            self._call.cancel()

    # -- the session loop ----------------------------------------------------------------------
    async def _serve(self) -> None:
        failures = 0
        first_try = time.monotonic()
        ever_connected = False
        while not self._stop.is_set():
            self._session_registered = False
            problem: str = "the stream ended"
            try:
                await self._session()
            except _Fatal:
                raise
            except grpc.RpcError as error:
                refused = from_rpc_error(error, address=self.address)
                if refused.code in _FATAL_CODES and not self._session_registered:
                    raise refused from None
                problem = str(refused)
            except (OSError, EngineUnavailable) as error:
                problem = str(error)
            registered = self._session_registered
            self._connected.clear()
            ever_connected = ever_connected or registered
            if self._stop.is_set():
                break
            failures = 1 if registered else failures + 1
            if (
                not ever_connected
                and self.connect_timeout is not None
                and time.monotonic() - first_try >= self.connect_timeout
            ):
                raise EngineUnavailable(
                    f"cannot reach the engine at {self.address} (gave up after {self.connect_timeout:g}s)"
                )
            delay = min(self.reconnect_max, self.reconnect_initial * 2 ** (failures - 1))
            delay *= random.uniform(0.5, 1.0)
            logger.warning(
                "worker %s: %s (%s); reconnecting in %.1fs",
                self.name,
                "lost the engine" if registered else f"no session with the engine at {self.address}",
                problem,
                delay,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)

    async def _session(self) -> None:
        """One ``Connect`` stream, until it ends (``_session_registered`` says if it got that far)."""
        async with aio_channel(self.address, options=CHANNEL_OPTIONS) as channel:
            stub = executor_service_pb2_grpc.ExecutorServiceStub(channel)
            call = stub.Connect(wait_for_ready=False)
            self._call = call
            tasks: list[asyncio.Task[None]] = []
            try:
                await call.write(pb.ConnectRequest(register=self._register_message()))
                first = await call.read()
                if not isinstance(first, pb.ConnectResponse):  # grpc.aio.EOF
                    raise EngineUnavailable(
                        f"the engine at {self.address} closed the stream before Registered"
                    )
                if first.WhichOneof("message") != "registered":
                    raise _Fatal(f"the engine answered Register with {first.WhichOneof('message')!r}")
                self._on_registered(first.registered)
                self._session_registered = True
                if not self._locks_declared:
                    self._locks_declared = True
                    self._spawn(self._declare_locks())
                self._connected.set()
                tasks = [
                    asyncio.create_task(self._write_loop(call)),
                    asyncio.create_task(self._heartbeat_loop()),
                ]
                while True:
                    message = await call.read()
                    if not isinstance(message, pb.ConnectResponse):  # grpc.aio.EOF
                        break
                    self._on_message(message)
            except asyncio.CancelledError:
                if not self._stop.is_set():
                    raise
            except grpc.RpcError as error:
                if not (self._stop.is_set() and error.code() == grpc.StatusCode.CANCELLED):
                    raise
            finally:
                self._call = None
                for task in tasks:
                    task.cancel()
                call.cancel()

    def _register_message(self) -> pb.Register:
        running = [pb.RunningJob(job_id=job.key[0], attempt=job.key[1]) for job in self._jobs.values()]
        # A job whose result was not acknowledged is still ours: re-attach it so the result lands.
        running += [pb.RunningJob(job_id=job_id, attempt=attempt) for job_id, attempt in self._unacked]
        return pb.Register(
            worker_name=self.name,
            executors=[
                pb.ExecutorSpec(
                    action=hosted.action,
                    supports_resume=bool(hosted.executor.supports_resume),
                    max_concurrency=hosted.executor.max_concurrency,
                )
                for hosted in self._hosted.values()
            ],
            capacity=self.capacity,
            labels=self.labels,
            running_jobs=running,
            worker_id=self.worker_id,
            session_token=self._session_token,
        )

    async def _write_loop(self, call: Any) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            # One more turn of the loop lets reports made together leave together.
            await asyncio.sleep(0)
            try:
                for message in self._outbox.take(self._vouched()):
                    await call.write(message)
            except (grpc.RpcError, grpc.aio.UsageError, asyncio.InvalidStateError) as error:
                # The stream broke: the reader sees it and reconnects; unacknowledged results are
                # sent again on the next session.
                logger.debug("worker %s: write failed: %r", self.name, error)
                return
            if not self._outbox:
                self._flushed.set()

    async def _heartbeat_loop(self) -> None:
        while True:
            self._period_changed.clear()
            try:
                await asyncio.wait_for(self._period_changed.wait(), self._heartbeat_period())
            except TimeoutError:
                self._outbox.heartbeat()
                self._kick()

    def _heartbeat_period(self) -> float:
        """The engine's interval, or less when a vouched job's heartbeat timeout is shorter than it."""
        period = self._heartbeat_interval
        for job in self._jobs.values():
            if job.heartbeat_timeout and job.hosted.executor.auto_heartbeat:
                period = min(period, job.heartbeat_timeout / 3)
        return max(period, 0.05)

    def _vouched(self) -> list[JobKey]:
        return [
            job.key
            for job in self._jobs.values()
            if job.hosted.executor.auto_heartbeat and not job.detached and not job.cancel_requested
        ]

    def _kick(self) -> None:
        self._flushed.clear()
        self._wake.set()

    async def _declare_locks(self) -> None:
        """Add each executor's lock templates to its action's configuration on the engine."""
        from jobwarden.sdk._client import JobClient

        wanted = {
            hosted.action: hosted.executor.locks for hosted in self._hosted.values() if hosted.executor.locks
        }
        if not wanted:
            return
        async with JobClient(self.address) as client:
            for action, templates in wanted.items():
                try:
                    try:
                        config = await client.get_action_config(action)
                    except JobNotFound:
                        config = job_pb2.ActionConfig(action=action)
                    have = {(lock.resource, lock.mode) for lock in config.lock_templates}
                    missing = [
                        lock
                        for lock in map(lock_request, templates)
                        if (lock.resource, lock.mode) not in have
                    ]
                    if missing:
                        config.lock_templates.extend(missing)
                        await client.set_action_config(config)
                        logger.info(
                            "worker %s: action %s now takes locks %s",
                            self.name,
                            action,
                            ", ".join(lock.resource for lock in config.lock_templates),
                        )
                except JobwardenError as error:
                    logger.warning(
                        "worker %s: could not declare the locks of %s: %s", self.name, action, error
                    )

    # -- engine messages -----------------------------------------------------------------------
    def _on_registered(self, registered: pb.Registered) -> None:
        self.worker_id = registered.worker_id
        self._session_token = registered.session_token
        if registered.HasField("heartbeat_interval"):
            interval = registered.heartbeat_interval.ToTimedelta().total_seconds()
            if interval > 0:
                self._heartbeat_interval = interval
        for rejected in registered.rejected_jobs:
            key = (rejected.job_id, rejected.attempt)
            self._unacked.pop(key, None)
            self._fallbacks.discard(key)
            job = self._jobs.get(rejected.job_id)
            if job is not None and job.key == key:
                self._detach(job, "the engine did not re-attach it after a reconnect")
        if registered.resumed_jobs:
            logger.info("worker %s re-attached %d job(s)", self.name, len(registered.resumed_jobs))
        # Whatever was queued before the reconnect may not have left: send every unacknowledged result.
        self._outbox.clear_results()
        for result in self._unacked.values():
            self._outbox.result(result)
        if self._draining:
            self._outbox.set_draining()
        self._outbox.heartbeat()
        self._kick()
        self._check_idle()

    def _on_message(self, message: pb.ConnectResponse) -> None:
        kind = message.WhichOneof("message")
        if kind == "assignment":
            self._on_assignment(message.assignment)
        elif kind == "assignments":
            for assignment in message.assignments.assignments:
                self._on_assignment(assignment)
        elif kind == "result_ack":
            self._on_result_ack(message.result_ack)
        elif kind == "result_acks":
            for ack in message.result_acks.acks:
                self._on_result_ack(ack)
        elif kind == "cancel_request":
            self._on_cancel_request(message.cancel_request)
        elif kind == "refusal":
            self._on_refusal(message.refusal)
        elif kind == "registered":
            logger.warning("worker %s: unexpected second Registered; ignored", self.name)

    def _on_assignment(self, assignment: pb.Assignment) -> None:
        assert self._loop is not None
        job_id = assignment.job_id or assignment.job.id
        key = (job_id, assignment.attempt)
        if self._draining:
            self._outbox.release([key], "the worker is draining")
            self._kick()
            return
        current = self._jobs.get(job_id)
        if current is not None:
            if current.key == key:
                return  # already running here (re-attached)
            self._detach(current, f"superseded by attempt {assignment.attempt}")
        hosted = self._hosted.get(assignment.job.action)
        mode = ExecutionMode(assignment.mode or ExecutionMode.EXECUTE)
        if hosted is None:
            self._send_result(
                _failure(
                    key,
                    ErrorKind.JOB_ERROR,
                    f"worker {self.name} has no executor for action {assignment.job.action!r} "
                    f"(it serves {', '.join(self.actions)})",
                )
            )
            return
        method, is_async = hosted.method(mode)
        proto_checkpoint = (
            assignment.checkpoint if assignment.HasField("checkpoint") else assignment.job.checkpoint
        )
        checkpoint = (
            Checkpoint.from_proto(proto_checkpoint)
            if proto_checkpoint.step or proto_checkpoint.completed_steps
            else _NO_CHECKPOINT
        )
        ctx = JobContext(
            job=assignment.job,
            attempt=assignment.attempt,
            mode=mode,
            checkpoint=checkpoint,
            reporter=self,
            loop=self._loop,
            sync=not is_async,
        )
        job = _Job(key=key, hosted=hosted, ctx=ctx, is_async=is_async)
        if assignment.job.timeouts.HasField("heartbeat"):
            job.heartbeat_timeout = assignment.job.timeouts.heartbeat.ToTimedelta().total_seconds()
            if job.heartbeat_timeout and job.heartbeat_timeout / 3 < self._heartbeat_interval:
                # A job that must be vouched for more often than the engine's interval: beat now, then
                # at the shorter period.
                self._outbox.heartbeat()
                self._kick()
                self._period_changed.set()
        self._jobs[job_id] = job
        self._idle_clear()
        hosted.running += 1
        job.task = self._loop.create_task(self._run_job(job, method))

    def _on_result_ack(self, ack: pb.ResultAck) -> None:
        key = (ack.job_id, ack.attempt)
        fallback = key in self._fallbacks
        self._fallbacks.discard(key)
        if self._unacked.pop(key, None) is not None and not ack.accepted:
            logger.warning(
                "worker %s: the result of job %s was refused: %s", self.name, ack.job_id, ack.reason
            )
            if ack.code == grpc.StatusCode.INVALID_ARGUMENT.value[0] and not fallback:
                # The engine changed nothing and the job is still ours: a failure that says why beats a
                # job left running until its heartbeat deadline.
                self._fallbacks.add(key)
                message = f"the engine refused the result: {ack.reason}"
                self._send_result(_failure(key, ErrorKind.CRASHED, message, retryable=False), counted=False)
        self._check_idle()

    def _on_cancel_request(self, request: pb.CancelRequest) -> None:
        job = self._jobs.get(request.job_id)
        if job is None or job.key[1] != request.attempt:
            logger.info("worker %s: cancel of job %s, which is not running here", self.name, request.job_id)
            return
        self._cancel(job, request.reason or "cancelled")

    def _on_refusal(self, refusal: pb.Refusal) -> None:
        logger.warning(
            "worker %s: the engine refused %s for job %s (attempt %d): %s",
            self.name,
            refusal.refused or "a message",
            refusal.job_id,
            refusal.attempt,
            refusal.message,
        )
        key = (refusal.job_id, refusal.attempt)
        if refusal.refused in ("job_result", "job_results"):
            self._unacked.pop(key, None)
            self._fallbacks.discard(key)
            self._check_idle()
        job = self._jobs.get(refusal.job_id)
        if (
            job is not None
            and job.key == key
            and refusal.code in _NOT_HELD_CODES
            and refusal.refused in ("job_update", "job_updates", "heartbeat")
        ):
            # The engine no longer gives this attempt to us (taken over, cancelled): stop it quietly.
            self._detach(job, f"the engine no longer gives it to this worker: {refusal.message}")

    # -- running jobs --------------------------------------------------------------------------
    async def _run_job(self, job: _Job, method: Callable[[JobContext], Any]) -> None:
        assert self._loop is not None
        ctx = job.ctx
        method = trace_attempt(method, job.is_async, self.name)
        try:
            if job.is_async:
                value = await method(ctx)
            else:
                value = await self._loop.run_in_executor(self._pool, method, ctx)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            if job.detached:
                return
            if job.cancel_requested:
                await self._finish_cancelled(job)
                return
            raise
        except JobCancelled:
            if job.detached:
                return
            if job.cancel_requested:
                await self._finish_cancelled(job)
            else:
                cancelled = pb.JobResult(
                    job_id=job.key[0], attempt=job.key[1], status=job_pb2.JOB_STATUS_CANCELLED
                )
                self._finish(job, cancelled)
            return
        except JobFailed as failed:
            if job.detached:
                return
            if job.cancel_requested:
                await self._finish_cancelled(job)
                return
            result = _failure(
                job.key, failed.kind, failed.message, step=ctx.current_step, retryable=failed.retryable
            )
            self._finish(job, result)
            return
        except BaseException as error:
            if job.detached:
                return
            if job.cancel_requested:
                await self._finish_cancelled(job)
                return
            if not isinstance(error, Exception):
                raise
            self._finish(job, _crash(job.key, error, ctx.current_step))
            return
        if job.detached:
            return
        if job.cancel_requested:
            await self._finish_cancelled(job)
            return
        self._finish(job, _completed(job, value))

    def _finish(self, job: _Job, result: pb.JobResult) -> None:
        if self._forget(job):
            self._send_result(result)

    def _send_result(self, result: pb.JobResult, *, counted: bool = True) -> None:
        self._unacked[(result.job_id, result.attempt)] = result
        self._idle_clear()
        self._outbox.result(result)
        if counted:
            self.finished_jobs += 1
        self._kick()

    def _forget(self, job: _Job) -> bool:
        """Stop tracking ``job``; False when it was already forgotten."""
        if self._jobs.get(job.key[0]) is not job:
            return False
        del self._jobs[job.key[0]]
        job.hosted.running -= 1
        if job.grace is not None:
            job.grace.cancel()
        return True

    def _cancel(self, job: _Job, reason: str) -> None:
        assert self._loop is not None
        if job.cancel_requested:
            return
        job.cancel_requested = True
        job.ctx._request_cancel(reason)
        if job.hosted.overrides("cancel"):
            self._spawn(self._call_hook(job, "cancel"))
        if job.is_async and job.task is not None:
            job.task.cancel()
        job.grace = self._loop.call_later(self.cancel_grace, self._cancel_grace_over, job)

    def _cancel_grace_over(self, job: _Job) -> None:
        """The executor ignores its cancel. It is never reported stopped while it runs: the engine keeps
        the job's locks (and its slot here) until it returns, so nobody else touches what it writes."""
        if self._jobs.get(job.key[0]) is not job:
            return
        why = (
            f"did not stop within {self.cancel_grace:g}s of its cancel; the executor ignores it, and the "
            "job's locks and its slot on this worker stay held until it returns"
        )
        logger.warning("worker %s: job %s %s", self.name, job.key[0], why)
        job.ctx.log(why, level="WARNING")

    async def _finish_cancelled(self, job: _Job) -> None:
        if job.hosted.overrides("on_cancelled"):
            await self._call_hook(job, "on_cancelled")
        if self._forget(job):
            self._outbox.cancel_ack(job.key)
            self.finished_jobs += 1
            self._kick()
            self._check_idle()

    async def _call_hook(self, job: _Job, name: str) -> None:
        hook = getattr(job.hosted.executor, name)
        try:
            if job.hosted.is_async[name]:
                await hook(job.ctx)
            else:
                assert self._loop is not None
                await self._loop.run_in_executor(None, hook, job.ctx)
        except Exception as error:
            logger.exception("worker %s: %s() of job %s raised", self.name, name, job.key[0])
            job.ctx.log(
                f"{name}() raised {type(error).__name__}: {error}\n{_trace(error)}",
                level="ERROR",
            )

    def _detach(self, job: _Job, why: str) -> None:
        """Stop a job this worker no longer owns, reporting nothing about it."""
        logger.info("worker %s: stopping job %s: %s", self.name, job.key[0], why)
        job.detached = True
        job.ctx._request_cancel(why)
        self._forget(job)
        self._outbox.drop_job(job.key)
        if job.is_async and job.task is not None and not job.task.done():
            job.task.cancel()
        self._check_idle()

    # -- draining ------------------------------------------------------------------------------
    def _on_signal(self, signum: int) -> None:
        key = "Ctrl+C" if signum == signal.SIGINT else signal.Signals(signum).name
        if self._draining:
            logger.warning(
                "worker %s: %s again: stopping now; the engine times out its %d running job(s), and "
                "another worker may take them over",
                self.name,
                key,
                len(self._jobs),
            )
            self.stop()
            return
        self.drain()
        if self._jobs:
            logger.warning("worker %s: %s: draining; %s again stops at once", self.name, key, key)

    def _drain_wait(self) -> str:
        """What a draining worker waits for, as the operator who stopped it reads it."""
        if not self._jobs:
            return "no job running, stopping"
        ids = sorted(self._jobs)
        shown = ", ".join(ids[:5]) + (", ..." if len(ids) > 5 else "")
        return f"waiting up to {self.drain_timeout:g}s for {len(ids)} running job(s): {shown}"

    async def _drain(self) -> None:
        self._check_idle()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.drain_timeout
        waiting_for = set(self._jobs)
        try:
            while not self._idle.is_set():
                left = deadline - loop.time()
                if left <= 0:
                    raise TimeoutError
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._idle.wait(), min(left, 1.0))
                if self._jobs and set(self._jobs) != waiting_for:
                    # Say so each time one finishes: the operator sees the drain move.
                    waiting_for = set(self._jobs)
                    logger.info(
                        "worker %s draining: %d running job(s) left: %s (%.0fs more at most)",
                        self.name,
                        len(waiting_for),
                        ", ".join(sorted(waiting_for)[:5]) + (", ..." if len(waiting_for) > 5 else ""),
                        max(0.0, deadline - loop.time()),
                    )
        except TimeoutError:
            # A job being stopped is not handed back: it would run elsewhere beside its own executor.
            running = [job for job in self._jobs.values() if not job.cancel_requested]
            logger.warning("worker %s: handing %d running job(s) back to the engine", self.name, len(running))
            self._outbox.release([job.key for job in running], "the worker is shutting down")
            for job in running:
                self._detach(job, "handed back to the engine (drain timeout)")
            self._kick()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._flushed.wait(), 5.0)
        self.stop()

    def _idle_clear(self) -> None:
        self._idle.clear()

    def _check_idle(self) -> None:
        if not self._jobs and not self._unacked:
            self._idle.set()

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- the reporter interface of JobContext -----------------------------------------------------
    def report_update(
        self,
        ctx: JobContext,
        *,
        progress: int | None = None,
        message: str | None = None,
        step: str | None = None,
        completed_step: tuple[str, dict[str, Any]] | None = None,
        job_variables: Mapping[str, str] | None = None,
        workflow_variables: Mapping[str, str] | None = None,
    ) -> None:
        if not self._holds(ctx):
            return
        self._outbox.update(
            (ctx.job_id, ctx.attempt),
            progress=progress,
            message=message,
            step=step,
            completed_step=completed_step,
            job_variables=job_variables,
            workflow_variables=workflow_variables,
            finished_at=datetime.now(UTC) if completed_step else None,
        )
        self._kick()

    def report_log(self, ctx: JobContext, level: str, message: str, time: datetime) -> None:
        if not self._holds(ctx) and (ctx.job_id, ctx.attempt) not in self._unacked:
            return
        self._outbox.log((ctx.job_id, ctx.attempt), level, message, time)
        self._kick()

    def report_heartbeat(self, ctx: JobContext, extend_execution: timedelta | None) -> None:
        if not self._holds(ctx):
            return
        self._outbox.heartbeat((ctx.job_id, ctx.attempt), extend_execution)
        self._kick()

    def _holds(self, ctx: JobContext) -> bool:
        job = self._jobs.get(ctx.job_id)
        return job is not None and job.ctx is ctx


def _instances(
    executors: Iterable[Executor | type[Executor]] | Executor | type[Executor],
) -> list[Executor]:
    items: Iterable[Any]
    items = [executors] if isinstance(executors, Executor | type) else executors
    out: list[Executor] = []
    for item in items:
        if isinstance(item, type) and issubclass(item, Executor):
            out.append(item())
        elif isinstance(item, Executor):
            out.append(item)
        else:
            raise ExecutorDefinitionError(
                f"{item!r} is not an Executor subclass or instance (subclass jobwarden.sdk.Executor)"
            )
    return out


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _completed(job: _Job, value: Any) -> pb.JobResult:
    try:
        data = normalize_object(value)
        result = pb.JobResult(
            job_id=job.key[0],
            attempt=job.key[1],
            status=job_pb2.JOB_STATUS_COMPLETED,
            job_variables=job.ctx.job_variables,
            workflow_variables=job.ctx.workflow_variables,
        )
        if data is not None:
            dict_to_struct(data, result.result)
    except (TypeError, ValueError) as error:
        return _failure(
            job.key,
            ErrorKind.CRASHED,
            f"{job.hosted.action}: the executor returned a result that is not JSON: {error}",
            retryable=False,
        )
    size = result.result.ByteSize()
    if size > Limits.MAX_PAYLOAD_BYTES:
        return _failure(
            job.key,
            ErrorKind.CRASHED,
            f"the result is {size} bytes encoded, over the limit of {Limits.MAX_PAYLOAD_BYTES}",
            retryable=False,
        )
    return result


def _failure(
    key: JobKey,
    kind: ErrorKind,
    message: str,
    *,
    stack_trace: str = "",
    step: str | None = None,
    retryable: bool = True,
) -> pb.JobResult:
    return pb.JobResult(
        job_id=key[0],
        attempt=key[1],
        status=job_pb2.JOB_STATUS_FAILED,
        error=job_pb2.JobError(
            kind=job_pb2.ErrorKind.ValueType(kind),
            message=message[: Limits.MAX_MESSAGE_LENGTH],
            stack_trace=stack_trace,
            step=step or "",
            retryable=retryable,
        ),
    )


def _crash(key: JobKey, error: BaseException, step: str | None) -> pb.JobResult:
    message = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    if isinstance(error, JobwardenError) and not isinstance(error, JobFailed):
        message = f"{type(error).__name__}: {error.message}"
    return _failure(key, ErrorKind.CRASHED, message, stack_trace=_trace(error), step=step)


def _trace(error: BaseException) -> str:
    """The whole stack trace with its cause chain, cut in the middle if it is over the limit."""
    text = "".join(traceback.format_exception(error))
    limit = Limits.MAX_STACK_TRACE_LENGTH
    if len(text) > limit:
        half = limit // 2 - 40
        text = f"{text[:half]}\n... ({len(text) - 2 * half} characters cut) ...\n{text[-half:]}"
    return text
