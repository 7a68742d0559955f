"""ExecutorService: one bidirectional stream per worker. A thin translation onto the engine.

One task reads the worker's messages and hands them to the engine; the handler itself writes the
session's outbox to the stream, packing messages that are ready together (several assignments or
acks in one ``ConnectResponse``). A refused message (about one job, a second ``register``, or one
that does not decode) becomes a ``Refusal`` on this stream and changes nothing; only a stream that
does not start with ``register`` is ended, and never another worker's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, TypeVar

import grpc
from grpc import aio
from jobwarden import wire
from jobwarden.server.core import (
    AssignmentOut,
    CancelOut,
    Engine,
    ExecutorSpec,
    JobResultIn,
    JobUpdateIn,
    JobwardenError,
    OutMessage,
    RefusalOut,
    RegisteredOut,
    Registration,
    ResultAckOut,
    WorkerSession,
)
from jobwarden.v1 import executor_service_pb2 as pb
from jobwarden.v1 import executor_service_pb2_grpc
from jobwarden.wire import dict_to_struct, duration, duration_seconds, struct_to_dict, timestamp_seconds

from .convert import job_error_from_proto, job_to_proto, timestamp, wire_enum
from .decoding import Undecodable
from .errors import abort_with, grpc_errors, status_code

__all__ = ["ExecutorService"]

log = logging.getLogger("jobwarden.api")

Context = aio.ServicerContext[Any, Any]
#: a worker's message about one job's attempt
_JobMessage = TypeVar("_JobMessage", pb.JobUpdate, pb.JobResult, pb.CancelAck)
_T = TypeVar("_T")


class ExecutorService(executor_service_pb2_grpc.ExecutorServiceServicer):
    def __init__(self, engine: Engine, *, register_timeout: float = 30.0) -> None:
        self.engine = engine
        self.register_timeout = register_timeout

    async def Connect(
        self, request_iterator: AsyncIterator[pb.ConnectRequest | Undecodable], context: Context
    ) -> AsyncIterator[pb.ConnectResponse]:
        try:
            first = await asyncio.wait_for(anext(request_iterator), self.register_timeout)
        except (StopAsyncIteration, TimeoutError):
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "the first message must be register")
            return
        if isinstance(first, Undecodable):
            log.warning("refused Connect from %s: INVALID_ARGUMENT %s", context.peer(), first.message)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, first.message)
            return
        if first.WhichOneof("message") != "register":
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                "the first message must be register, not "
                f"{first.WhichOneof('message') or 'an empty message'}",
            )
            return
        try:
            session = self.engine.register(_registration(first.register, context.peer()))
        except JobwardenError as error:
            await context.abort(status_code(error.code), error.message)
            return
        reader = asyncio.get_running_loop().create_task(self._read(session, request_iterator))
        reason = "the stream ended"
        try:
            while True:
                item = await session.outbox.get()
                if item is None:
                    break
                items = [item]
                while not session.outbox.empty():
                    more = session.outbox.get_nowait()
                    if more is None:
                        session.outbox.put_nowait(None)
                        break
                    items.append(more)
                for response in _pack(items):
                    yield response
            if not self.engine.is_leader:
                # This engine stopped leading: tell the worker where to go (it re-registers there).
                reason = "the engine stopped leading"
                await abort_with(context, self.engine.not_leader())
        except asyncio.CancelledError:
            reason = "the worker went away"
            raise
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            # Idempotent: a session already replaced by a reconnect has nothing left to give up.
            self.engine.disconnect(session, reason=reason)

    async def _read(
        self,
        session: WorkerSession,
        request_iterator: AsyncIterator[pb.ConnectRequest | Undecodable],
    ) -> None:
        engine = self.engine
        try:
            async for message in request_iterator:
                session.last_seen = engine.clock()
                if isinstance(message, Undecodable):
                    self._refuse_undecodable(session, message)
                    continue
                kind = message.WhichOneof("message")
                await self._handle(session, kind, message)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a broken stream: the session ends, its jobs time out
            log.info("worker %s stream failed: %s", session.id, error)
        finally:
            session.close()

    async def _handle(self, session: WorkerSession, kind: str | None, message: pb.ConnectRequest) -> None:
        engine = self.engine
        if kind in ("job_update", "job_updates"):
            # One update, or a batch of them: each is applied (or refused) on its own.
            updates = [message.job_update] if kind == "job_update" else message.job_updates.updates
            self._guard_each(session, kind, updates, lambda u: engine.worker_update(session, _update(u)))
        elif kind in ("job_result", "job_results"):
            results = [message.job_result] if kind == "job_result" else message.job_results.results
            self._guard_each(session, kind, results, lambda r: engine.worker_result(session, _result(r)))
        elif kind == "heartbeat":
            beats = [
                (
                    b.job_id,
                    b.attempt,
                    duration_seconds(b.extend_execution) if b.HasField("extend_execution") else None,
                )
                for b in message.heartbeat.jobs
            ]
            try:
                refusals = engine.worker_heartbeat(session, beats, message.heartbeat.draining)
            except JobwardenError as error:
                refusals = [RefusalOut("", 0, error.code, error.message, kind)]
            for refusal in refusals:
                session.send(refusal)
        elif kind == "job_log":
            log_message = message.job_log
            lines = [
                (timestamp_seconds(line.time) if line.HasField("time") else 0.0, line.level, line.message)
                for line in log_message.lines
            ]
            try:
                await engine.worker_logs(session, log_message.job_id, log_message.attempt, lines)
            except JobwardenError as error:
                session.send(
                    RefusalOut(log_message.job_id, log_message.attempt, error.code, error.message, kind)
                )
        elif kind == "cancel_ack":
            self._guard_each(
                session,
                kind,
                [message.cancel_ack],
                lambda a: engine.worker_cancel_ack(session, a.job_id, a.attempt),
            )
        elif kind == "register":
            session.send(
                RefusalOut(
                    "",
                    0,
                    "FAILED_PRECONDITION",
                    f"this stream is already registered as worker {session.id}; the session goes on "
                    "unchanged (open a new stream to register again)",
                    kind,
                )
            )
        elif kind == "release_jobs":
            jobs = [(j.job_id, j.attempt) for j in message.release_jobs.jobs]
            self._guard(
                session,
                kind,
                jobs[0][0] if jobs else "",
                jobs[0][1] if jobs else 0,
                lambda release: engine.worker_release(session, jobs, release.reason),
                message.release_jobs,
            )
        else:
            session.send(
                RefusalOut(
                    "", 0, "INVALID_ARGUMENT", "empty message: set one field of ConnectRequest", "none"
                )
            )

    @staticmethod
    def _refuse_undecodable(session: WorkerSession, message: Undecodable) -> None:
        log.warning("refused a message from worker %s: INVALID_ARGUMENT %s", session.id, message.message)
        session.send(RefusalOut("", 0, "INVALID_ARGUMENT", message.message, "undecodable"))

    @classmethod
    def _guard_each(
        cls,
        session: WorkerSession,
        kind: str,
        messages: Iterable[_JobMessage],
        handle: Callable[[_JobMessage], object],
    ) -> None:
        """``handle`` each of ``messages`` (each about one job's attempt) on its own (see ``_guard``)."""
        for message in messages:
            cls._guard(session, kind, message.job_id, message.attempt, handle, message)

    @staticmethod
    def _guard(
        session: WorkerSession,
        kind: str,
        job_id: str,
        attempt: int,
        handle: Callable[[_T], object],
        message: _T,
    ) -> None:
        """``handle(message)``; a refusal, or even an engine fault, answers that message only."""
        try:
            handle(message)
        except JobwardenError as error:
            session.send(RefusalOut(job_id, attempt, error.code, error.message, kind))
        except Exception as error:
            log.exception("engine fault handling %s of job %s from worker %s", kind, job_id, session.id)
            session.send(
                RefusalOut(job_id, attempt, "INTERNAL", f"engine fault: {type(error).__name__}", kind)
            )

    @grpc_errors
    async def ListWorkers(self, request: pb.ListWorkersRequest, context: Context) -> pb.ListWorkersResponse:
        workers = []
        for session in self.engine.workers():
            workers.append(
                pb.Worker(
                    id=session.id,
                    name=session.name,
                    executors=[
                        pb.ExecutorSpec(
                            action=s.action,
                            supports_resume=s.supports_resume,
                            max_concurrency=s.max_concurrency,
                        )
                        for s in session.executors.values()
                    ],
                    capacity=session.capacity,
                    jobs=[
                        pb.RunningJob(job_id=job_id, attempt=attempt)
                        for job_id, attempt in session.jobs.items()
                    ],
                    connected_at=timestamp(session.connected_at),
                    last_heartbeat_at=timestamp(session.last_seen),
                    labels=session.labels,
                    draining=session.draining,
                    info=dict_to_struct(session.info),
                )
            )
        return pb.ListWorkersResponse(workers=workers)


def _registration(message: pb.Register, peer: str) -> Registration:
    return Registration(
        worker_name=message.worker_name,
        executors=[
            ExecutorSpec(
                action=e.action, supports_resume=e.supports_resume, max_concurrency=e.max_concurrency
            )
            for e in message.executors
        ],
        capacity=message.capacity,
        labels=dict(message.labels),
        running_jobs=[(j.job_id, j.attempt) for j in message.running_jobs],
        worker_id=message.worker_id,
        peer=peer,
        session_token=message.session_token,
    )


def _update(message: pb.JobUpdate) -> JobUpdateIn:
    completed = None
    if message.HasField("completed_step"):
        completed = (message.completed_step.name, struct_to_dict(message.completed_step.data))
    return JobUpdateIn(
        job_id=message.job_id,
        attempt=message.attempt,
        progress=message.progress if message.HasField("progress") else None,
        message=message.message if message.HasField("message") else None,
        step=message.step if message.HasField("step") else None,
        completed_step=completed,
        job_variables=dict(message.job_variables),
        workflow_variables=dict(message.workflow_variables),
    )


def _result(message: pb.JobResult) -> JobResultIn:
    return JobResultIn(
        job_id=message.job_id,
        attempt=message.attempt,
        status=message.status,
        result=struct_to_dict(message.result) if message.HasField("result") else None,
        job_variables=dict(message.job_variables),
        workflow_variables=dict(message.workflow_variables),
        error=job_error_from_proto(message.error) if message.HasField("error") else None,
        error_kind=message.error.kind if message.HasField("error") else 0,
    )


def _out(item: OutMessage) -> pb.ConnectResponse:
    if isinstance(item, RegisteredOut):
        return pb.ConnectResponse(
            registered=pb.Registered(
                worker_id=item.worker_id,
                heartbeat_interval=duration(item.heartbeat_interval),
                resumed_jobs=[pb.RunningJob(job_id=j, attempt=a) for j, a in item.resumed],
                rejected_jobs=[pb.RunningJob(job_id=j, attempt=a) for j, a in item.rejected],
                session_token=item.session_token,
            )
        )
    if isinstance(item, AssignmentOut):
        response = pb.ConnectResponse()
        _fill_assignment(response.assignment, item)
        return response
    if isinstance(item, ResultAckOut):
        return pb.ConnectResponse(result_ack=_ack(item))
    if isinstance(item, CancelOut):
        return pb.ConnectResponse(
            cancel_request=pb.CancelRequest(job_id=item.job_id, attempt=item.attempt, reason=item.reason)
        )
    return pb.ConnectResponse(
        refusal=pb.Refusal(
            job_id=item.job_id,
            attempt=item.attempt,
            code=status_code(item.code).value[0],
            message=item.message,
            refused=item.refused,
        )
    )


def _fill_assignment(target: pb.Assignment, item: AssignmentOut) -> None:
    """Written into its place in the response: a message given to a constructor is copied, and an
    assignment built apart was copied twice more on its way into a batch (about 6 µs a job)."""
    job = target.job
    job.CopyFrom(job_to_proto(item.job))
    target.job_id = job.id
    target.attempt = item.attempt
    target.mode = wire_enum(item.mode)
    target.checkpoint.CopyFrom(job.checkpoint)
    deadlines = item.deadlines
    for name, value in (
        ("heartbeat", deadlines.heartbeat),
        ("takeover", deadlines.takeover),
        ("execution", deadlines.execution),
    ):
        if value is not None:
            wire.timestamp(value, getattr(target.deadlines, name))
    target.deadlines.SetInParent()


def _ack(item: ResultAckOut) -> pb.ResultAck:
    return pb.ResultAck(
        job_id=item.job_id,
        attempt=item.attempt,
        accepted=item.accepted,
        reason=item.reason,
        code=status_code(item.code).value[0] if item.code else 0,
    )


def _pack(items: list[OutMessage]) -> list[pb.ConnectResponse]:
    """Runs of assignments (or of acks) ready together go out as one message; order is kept."""
    out: list[pb.ConnectResponse] = []
    index = 0
    while index < len(items):
        item = items[index]
        end = index + 1
        while end < len(items) and type(items[end]) is type(item):
            end += 1
        run = items[index:end]
        if len(run) > 1 and isinstance(item, AssignmentOut):
            response = pb.ConnectResponse()
            add = response.assignments.assignments.add
            for assignment in run:
                _fill_assignment(add(), assignment)  # type: ignore[arg-type]
            out.append(response)
        elif len(run) > 1 and isinstance(item, ResultAckOut):
            out.append(pb.ConnectResponse(result_acks=pb.ResultAcks(acks=[_ack(a) for a in run])))  # type: ignore[arg-type]
        else:
            out.extend(_out(x) for x in run)
        index = end
    return out
