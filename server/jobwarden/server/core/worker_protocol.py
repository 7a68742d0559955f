"""The engine side of ExecutorService.Connect: sessions opening and closing, and the messages
workers send (updates, results, logs, heartbeats, cancel acks, hand-backs).

Every message about a job names its attempt (a fencing token): a message for an attempt that is not
the live one, or not held by this worker, is refused and changes nothing.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import logging
import secrets
import uuid
from collections.abc import Sequence

from jobwarden.contract import (
    ACTIVE_STATUSES,
    ErrorKind,
    ExecutionMode,
    JobStatus,
    Limits,
)

from .dispatch import Dispatcher
from .errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    JobNotFound,
    StaleAttempt,
)
from .flow import FlowPart, JobFlow, status_name
from .ids import parse_job_id
from .model import (
    Checkpoint,
    CompletedStep,
    Job,
    JobError,
    LogLine,
)
from .sessions import (
    CancelOut,
    RefusalOut,
    RegisteredOut,
    ResultAckOut,
    WorkerSession,
)
from .store import dumps
from .timers import TimerKind
from .validation import (
    check_action,
    check_duration,
    check_payload,
    check_string,
    check_string_map,
)
from .values import WORKER_ERROR_KINDS, JobResultIn, JobUpdateIn, Registration

__all__ = ["WorkerProtocol"]

log = logging.getLogger("jobwarden.engine")


class WorkerProtocol(FlowPart):
    """Worker sessions: register, updates, results, logs, heartbeats, cancel acks, hand-backs."""

    def __init__(self, flow: JobFlow, dispatcher: Dispatcher) -> None:
        super().__init__(flow)
        self.dispatcher = dispatcher
        self.sessions = dispatcher.sessions
        self._sweeper: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start declaring silent sessions dead."""
        self._sweeper = asyncio.get_running_loop().create_task(
            self._sweep_sessions(), name="jobwarden-sweeper"
        )

    def stop(self) -> None:
        """Stop the sweeper and close every session (its stream ends; its jobs stay as they are)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
        for session in list(self.sessions.values()):
            session.close()
        self.sessions.clear()

    def register(self, reg: Registration) -> WorkerSession:
        """Open a worker session. Re-attaches the jobs it reports still running when they are still
        its own; the rest it must stop (``rejected`` in the answer). A worker id whose session is alive
        is refused (AlreadyExists) unless the register presents that session's token."""
        self.flow.check_running()
        self._check_registration(reg)
        now = self.clock()
        worker_id = reg.worker_id or f"w-{uuid.uuid4().hex[:12]}"
        old = self.sessions.get(worker_id)
        if old is not None:
            self._check_replaces(old, reg)
            self.disconnect(old, reason="replaced by a new session of the same worker")
        session = WorkerSession(
            id=worker_id,
            name=reg.worker_name or worker_id,
            executors={spec.action: spec for spec in reg.executors},
            capacity=reg.capacity,
            labels=dict(reg.labels),
            connected_at=now,
            last_seen=now,
            info={"peer": reg.peer},
            token=secrets.token_urlsafe(32),
        )
        self.sessions[worker_id] = session
        resumed: list[tuple[str, int]] = []
        rejected: list[tuple[str, int]] = []
        for job_id, attempt in reg.running_jobs:
            job = self.registry.jobs.get(job_id)
            if (
                job is None
                or job.attempt != attempt
                or job.status not in ACTIVE_STATUSES
                or job.worker_id != worker_id
                or job.action not in session.executors
            ):
                rejected.append((job_id, attempt))
                continue
            session.hold(job)
            job.heartbeat_at = now
            if job.status is JobStatus.TIMED_OUT:
                self.flow.back_to_running(
                    job, reason=f"worker {session.name} reconnected", actor=f"worker:{worker_id}"
                )
            resumed.append((job_id, attempt))
            if job.stop_request is not None:
                cancel = CancelOut(job.id, attempt, job.stop_request.reason)
                self.writer.after_commit(functools.partial(session.send, cancel))
        session.send(
            RegisteredOut(worker_id, self.config.heartbeat_interval, resumed, rejected, session.token)
        )
        self._persist_worker(session, connected=True)
        log.info(
            "worker %s (%s) connected: actions %s, capacity %d, %d jobs resumed",
            session.name,
            worker_id,
            ",".join(session.executors),
            session.capacity,
            len(resumed),
        )
        self.dispatcher.schedule()
        return session

    def _check_replaces(self, old: WorkerSession, reg: Registration) -> None:
        """Only the worker of a live session may replace it (a reconnect that came before the engine saw
        the old stream die): it alone has the session's token. Anyone else would take its jobs."""
        if hmac.compare_digest(reg.session_token.encode(), old.token.encode()):
            return
        log.warning(
            "refused a register as worker %s from %s: its session (from %s) is alive and the register %s",
            old.id,
            reg.peer or "an unknown peer",
            old.info.get("peer") or "an unknown peer",
            "presented another session_token" if reg.session_token else "presented no session_token",
        )
        raise AlreadyExists(
            f"register: worker id {old.id} has a live session; only that worker, presenting its "
            "session_token, may replace it (a new worker leaves worker_id empty, or picks another id)"
        )

    def _check_registration(self, reg: Registration) -> None:
        if not reg.executors:
            raise InvalidArgument("register: a worker must serve at least one action")
        if len(reg.executors) > 1000:
            raise InvalidArgument("register: at most 1000 executors")
        seen = set()
        for spec in reg.executors:
            check_action(spec.action, "register: executor action")
            if spec.action in seen:
                raise InvalidArgument(f"register: action {spec.action!r} is listed twice")
            seen.add(spec.action)
            if spec.max_concurrency < 0:
                raise InvalidArgument(f"register: max_concurrency of {spec.action!r} must not be negative")
        if not 1 <= reg.capacity <= Limits.MAX_WORKER_CAPACITY:
            raise InvalidArgument(f"register: capacity must be between 1 and {Limits.MAX_WORKER_CAPACITY}")
        check_string(reg.worker_name, "register: worker_name")
        check_string(reg.worker_id, "register: worker_id", 64)
        check_string_map(
            reg.labels,
            "register: labels",
            Limits.MAX_LABELS,
            Limits.MAX_LABEL_KEY_LENGTH,
            Limits.MAX_LABEL_VALUE_LENGTH,
        )
        if len(reg.running_jobs) > Limits.MAX_WORKER_CAPACITY:
            raise InvalidArgument("register: too many running_jobs")

    def disconnect(self, session: WorkerSession, *, reason: str) -> None:
        """The session ended: the jobs it held go TIMED_OUT and may be resumed until the second deadline."""
        if self.sessions.get(session.id) is session:
            del self.sessions[session.id]
        session.close()
        now = self.clock()
        for job_id in list(session.jobs):
            job = self.registry.jobs.get(job_id)
            if job is None:
                continue
            session.drop(job)
            if job.status is JobStatus.RUNNING:
                self.flow.time_out(job, now, reason=f"worker {session.name} disconnected ({reason})")
        if self.flow.running:
            self._persist_worker(session, connected=False)
        log.info("worker %s (%s) disconnected: %s", session.name, session.id, reason)

    def _persist_worker(self, session: WorkerSession, *, connected: bool) -> None:
        doc = {
            "executors": [
                {
                    "action": s.action,
                    "supports_resume": s.supports_resume,
                    "max_concurrency": s.max_concurrency,
                }
                for s in session.executors.values()
            ],
            "capacity": session.capacity,
            "labels": session.labels,
        }
        self.writer.worker(
            {
                "id": session.id,
                "name": session.name,
                "doc": dumps(doc),
                "connected_at": session.connected_at,
                "last_seen_at": session.last_seen,
                "connected": connected,
            }
        )

    def _held_job(self, session: WorkerSession, job_id: str, attempt: int) -> Job:
        """The live job this session holds at ``attempt``; StaleAttempt (fencing) or JobNotFound otherwise."""
        job = self.registry.jobs.get(job_id)
        if job is None:
            try:
                parse_job_id(job_id)
            except InvalidArgument:
                raise
            finished = self.registry.get(job_id)
            if finished is not None:
                raise StaleAttempt(
                    f"job {job_id} is already {finished.status.name}; attempt {attempt} is no longer live",
                    job_id=job_id,
                )
            raise JobNotFound(job_id)
        if job.attempt != attempt or job.worker_id != session.id or session.jobs.get(job_id) != attempt:
            raise StaleAttempt(
                f"job {job_id} attempt {attempt} is not held by worker {session.id} "
                f"(live attempt {job.attempt}, worker {job.worker_id or 'none'}, {job.status.name})",
                job_id=job_id,
            )
        return job

    def worker_update(self, session: WorkerSession, update: JobUpdateIn) -> None:
        """Progress, message, step, checkpoint or variables of a running job."""
        job = self._held_job(session, update.job_id, update.attempt)
        if update.progress is not None and not 0 <= update.progress <= 100:
            raise InvalidArgument(f"progress must be between 0 and 100, got {update.progress}", job_id=job.id)
        if update.message is not None:
            check_string(update.message, "message", Limits.MAX_MESSAGE_LENGTH)
        if update.step is not None:
            check_string(update.step, "step", Limits.MAX_STEP_NAME_LENGTH)
        if update.completed_step is not None:
            name, data = update.completed_step
            if not name:
                raise InvalidArgument("completed_step needs a name", job_id=job.id)
            check_string(name, "completed_step.name", Limits.MAX_STEP_NAME_LENGTH)
            check_payload(data, "completed_step.data")
            if job.checkpoint.has_step(name):
                raise InvalidArgument(
                    f"step {name!r} already finished in job {job.id}: step names must be unique",
                    job_id=job.id,
                )
        self._check_variables(update.job_variables, update.workflow_variables, job)
        if update.progress is not None:
            job.progress = update.progress
        if update.message is not None:
            job.message = update.message
        if update.step is not None:
            job.step = update.step
        if update.completed_step is not None:
            name, data = update.completed_step
            job.checkpoint = Checkpoint(
                [*job.checkpoint.completed_steps, CompletedStep(name, data, self.clock())]
            )
        if update.job_variables:
            job.job_variables = {**job.job_variables, **update.job_variables}
        if update.workflow_variables:
            job.workflow_variables = {**job.workflow_variables, **update.workflow_variables}
        self.flow.heard_from(job)
        if job.status is JobStatus.TIMED_OUT:
            self.flow.back_to_running(
                job, reason="an update arrived before the takeover deadline", actor=f"worker:{session.id}"
            )
        else:
            self.registry.record(job, actor=f"worker:{session.id}")

    def _check_variables(
        self, job_variables: dict[str, str], workflow_variables: dict[str, str], job: Job
    ) -> None:
        for what, values, current in (
            ("job_variables", job_variables, job.job_variables),
            ("workflow_variables", workflow_variables, job.workflow_variables),
        ):
            check_string_map(
                values,
                what,
                Limits.MAX_VARIABLES,
                Limits.MAX_VARIABLE_KEY_LENGTH,
                Limits.MAX_VARIABLE_VALUE_LENGTH,
            )
            if len(set(current) | set(values)) > Limits.MAX_VARIABLES:
                raise InvalidArgument(
                    f"{what}: the job would have more than {Limits.MAX_VARIABLES}", job_id=job.id
                )

    def worker_result(self, session: WorkerSession, result: JobResultIn) -> None:
        """A finished attempt. Acknowledged (ResultAck) only once committed; a stale or malformed one is
        refused (``accepted`` false, with the code and the reason) and changes nothing."""
        try:
            job = self._held_job(session, result.job_id, result.attempt)
        except (StaleAttempt, JobNotFound) as error:
            session.send(ResultAckOut(result.job_id, result.attempt, False, error.message, error.code))
            return
        problem = self._result_problem(result, job)
        if problem:
            # Refused before anything changed: the job is still this worker's, which may report it again.
            session.send(ResultAckOut(job.id, result.attempt, False, problem, InvalidArgument.code))
            return
        if job.stop_request is not None and job.stop_request.error is not None:
            self._result_of_killed(session, job, result)
            return
        actor = f"worker:{session.id}"
        status = result.status
        if result.job_variables:
            job.job_variables = {**job.job_variables, **result.job_variables}
        if result.workflow_variables:
            job.workflow_variables = {**job.workflow_variables, **result.workflow_variables}
        if status == JobStatus.COMPLETED:
            job.result = result.result or {}
            job.progress = 100
            job.error = None
            self.flow.end(job, JobStatus.COMPLETED, actor=actor)
        elif status == JobStatus.CANCELLED:
            self.flow.end(
                job,
                JobStatus.CANCELLED,
                actor=actor,
                reason=job.status_reason if job.cancel_requested else "cancelled by the executor",
            )
        else:
            failure = result.error or JobError(
                ErrorKind.JOB_ERROR, "the executor reported a failure without an error"
            )
            failure.step = failure.step or job.step
            self.flow.fail(job, failure, actor=actor)
        attempt = result.attempt
        self.writer.after_commit(lambda: session.send(ResultAckOut(job.id, attempt, True)))
        self.dispatcher.schedule()

    def _result_of_killed(self, session: WorkerSession, job: Job, result: JobResultIn) -> None:
        """A result for an attempt the engine had decided to kill (its execution timeout passed): it says
        the executor stopped, which is all it is taken for. What the executor reported is noted in the
        job's error and dropped, as a late result (accepted: the stop is acknowledged)."""
        reported = status_name(result.status)
        self.flow.finish_stop(
            job,
            actor=f"worker:{session.id}",
            how=f"its executor stopped later and reported {reported}, which was dropped",
        )
        attempt = result.attempt
        note = f"taken as the stop of the killed attempt; the reported {reported} was dropped"
        self.writer.after_commit(lambda: session.send(ResultAckOut(job.id, attempt, True, note)))

    def _result_problem(self, result: JobResultIn, job: Job) -> str:
        if result.status not in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED):
            given = "UNSPECIFIED" if result.status == 0 else status_name(result.status)
            return f"status must be COMPLETED, FAILED or CANCELLED, not {given}"
        try:
            if result.result is not None:
                check_payload(result.result, "result")
            self._check_variables(result.job_variables, result.workflow_variables, job)
            if result.status == JobStatus.FAILED and result.error is not None:
                check_string(result.error.message, "error.message", Limits.MAX_MESSAGE_LENGTH)
                check_string(result.error.stack_trace, "error.stack_trace", Limits.MAX_STACK_TRACE_LENGTH)
        except InvalidArgument as error:
            return error.message
        if result.status == JobStatus.FAILED:
            try:
                kind = ErrorKind(result.error_kind or ErrorKind.JOB_ERROR)
            except ValueError:
                return f"error.kind: unknown error kind {result.error_kind}"
            if kind not in WORKER_ERROR_KINDS:
                return f"error.kind: a worker reports JOB_ERROR or CRASHED, not {kind.name}"
            if result.error is not None:
                result.error.kind = kind
        return ""

    async def worker_logs(
        self, session: WorkerSession, job_id: str, attempt: int, lines: Sequence[tuple[float, str, str]]
    ) -> None:
        job = self._held_job(session, job_id, attempt)
        if len(lines) > Limits.MAX_LOG_LINES_PER_MESSAGE:
            raise InvalidArgument(
                f"{len(lines)} log lines in one message, at most {Limits.MAX_LOG_LINES_PER_MESSAGE}",
                job_id=job_id,
            )
        if job.id not in self.flow.log_index:
            base = await self.read(self.store.max_log_index, job.id)
            self.flow.log_index.setdefault(job.id, base)
        index = self.flow.log_index[job.id]
        out = []
        for when, level, message in lines:
            index += 1
            if len(message) > Limits.MAX_LOG_LINE_LENGTH:
                message = message[: Limits.MAX_LOG_LINE_LENGTH] + " …[truncated]"
            out.append(LogLine(job.id, index, attempt, when or self.clock(), (level or "INFO")[:32], message))
        self.flow.log_index[job.id] = index
        self.writer.log_lines(out)

    def worker_heartbeat(
        self, session: WorkerSession, jobs: Sequence[tuple[str, int, float | None]], draining: bool
    ) -> list[RefusalOut]:
        """Each listed job counts as an update for its heartbeat deadline; returns refusals for the rest."""
        refusals = []
        if draining and not session.draining:
            session.draining = True
            log.info("worker %s is draining", session.name)
        for job_id, attempt, extend in jobs:
            try:
                job = self._held_job(session, job_id, attempt)
                if extend is not None:
                    check_duration(extend, "extend_execution")
            except (StaleAttempt, JobNotFound, InvalidArgument) as error:
                refusals.append(RefusalOut(job_id, attempt, error.code, error.message, "heartbeat"))
                continue
            self.flow.heard_from(job)
            if extend is not None:
                job.deadlines.execution = self.clock() + extend
                self.timers.arm(TimerKind.EXECUTION, job.id, job.deadlines.execution)
                self.registry.touch(job)
            if job.status is JobStatus.TIMED_OUT:
                self.flow.back_to_running(
                    job,
                    reason="a heartbeat arrived before the takeover deadline",
                    actor=f"worker:{session.id}",
                )
        return refusals

    def worker_cancel_ack(self, session: WorkerSession, job_id: str, attempt: int) -> None:
        job = self._held_job(session, job_id, attempt)
        if job.stop_request is None:
            raise FailedPrecondition(f"no cancel was requested for job {job_id}", job_id=job_id)
        self.flow.finish_stop(job, actor=f"worker:{session.id}")

    def worker_release(self, session: WorkerSession, jobs: Sequence[tuple[str, int]], reason: str) -> None:
        """A draining worker hands running jobs back: they go first in the queue, as RESUME when the
        action supports it (keeping their locks), else as RETRY from the last checkpoint."""
        found = [self._held_job(session, job_id, attempt) for job_id, attempt in jobs]
        for job in found:
            if job.stop_request is not None:
                # Handed back, it would run elsewhere beside an executor that may not have stopped.
                raise FailedPrecondition(
                    f"job {job.id} is being stopped ({job.stop_request.reason}): it cannot be handed "
                    "back; confirm the stop (cancel_ack) once its executor has stopped",
                    job_id=job.id,
                )
        for job in found:
            spec = session.executors.get(job.action)
            self.flow.finish_attempt(job, JobStatus.QUEUED, session)
            job.next_mode = ExecutionMode.RESUME if spec and spec.supports_resume else ExecutionMode.RETRY
            self.flow.set_start_deadline(job, self.clock())
            self.registry.transition(
                job,
                JobStatus.QUEUED,
                actor=f"worker:{session.id}",
                reason=f"handed back by worker {session.name}" + (f": {reason}" if reason else ""),
            )
            self.flow.arm_start(job)
            self.dispatcher.job_ready(job, urgent=True)
        self.dispatcher.schedule()

    def workers(self) -> list[WorkerSession]:
        return sorted(self.sessions.values(), key=lambda s: s.connected_at)

    async def _sweep_sessions(self) -> None:
        """A session that has sent nothing for a while is dead (a stalled stream, not a zombie)."""
        while True:
            await asyncio.sleep(min(self.config.heartbeat_interval, 1.0))
            limit = self.config.heartbeat_interval * self.config.session_timeout_intervals
            now = self.clock()
            for session in list(self.sessions.values()):
                if now - session.last_seen > limit:
                    self.disconnect(session, reason=f"silent for {now - session.last_seen:.1f}s")
