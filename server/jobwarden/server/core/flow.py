"""The job flow every part of the engine shares: starting and ending attempts, failing with
retries, taking and giving back locks, arming deadlines. State lives here; the parts add behaviour.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import ParamSpec, TypeVar

from jobwarden.contract import (
    ACTIVE_STATUSES,
    ExecutionMode,
    JobEventType,
    JobStatus,
    LockMode,
)

from .errors import (
    EngineStopping,
)
from .events import EventBus
from .locks import Grant, LockTable
from .model import (
    ActionConfig,
    Attempt,
    Job,
    JobError,
    LockRequest,
    RetryPolicy,
    StopRequest,
    Timeouts,
)
from .queues import ReadyQueues
from .registry import Registry
from .sessions import (
    CancelOut,
    WorkerSession,
)
from .store import Store
from .timers import TimerKind, Timers
from .validation import (
    SubmitSpec,
)
from .values import EngineConfig
from .writer import Writer

__all__ = ["EngineBase"]

log = logging.getLogger("jobwarden.engine")
P = ParamSpec("P")
T = TypeVar("T")


class EngineBase:
    """State and shared steps of the engine (see ``Engine``)."""

    def __init__(self, config: EngineConfig | None = None, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config or EngineConfig()
        self.clock = clock
        self.store = Store(self.config.db_url)
        self.locks = LockTable()
        self.queues = ReadyQueues()
        self.timers = Timers(self._on_timer)
        self.sessions: dict[str, WorkerSession] = {}
        self._configs: dict[str, ActionConfig] = {}
        self._default_configs: dict[str, ActionConfig] = {}
        self._readers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="jobwarden-reader")
        self._dispatch_scheduled = False
        self._log_index: dict[str, int] = {}
        #: external lock holders waiting in AcquireLock
        self._lock_waiters: dict[str, asyncio.Future[None]] = {}
        self._lock_ttls: dict[str, float] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._running = False
        self.started_at = 0.0
        # Made in start(), once the store has told us where the sequence stands.
        self.bus: EventBus
        self.writer: Writer
        self.registry: Registry

    def _check_running(self) -> None:
        if not self._running:
            raise EngineStopping("the engine is not running")

    async def _read(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a blocking store read in a reader thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, lambda: fn(*args, **kwargs))

    def action_config(self, action: str) -> ActionConfig:
        """The action's configuration, or its defaults (made once: this is on every job's path)."""
        config = self._configs.get(action)
        if config is None:
            config = self._default_configs.get(action)
            if config is None:
                config = self._default_configs[action] = ActionConfig(action=action)
        return config

    def _timeouts(self, job: Job) -> Timeouts:
        return job.timeouts.over(self.action_config(job.action).timeouts)

    def _takeover_timeout(self, job: Job) -> float:
        takeover = self._timeouts(job).takeover
        return self.config.default_takeover_timeout if takeover is None else takeover

    def _retry_policy(self, job: Job) -> RetryPolicy | None:
        return job.retry_policy or self.action_config(job.action).retry_policy

    def _enqueue(self, job: Job, *, urgent: bool = False) -> None:
        self.queues.push(job, urgent=urgent or job.locks_held)
        self._schedule_dispatch()

    def _schedule_dispatch(self) -> None:
        if not self._dispatch_scheduled:
            self._dispatch_scheduled = True
            asyncio.get_running_loop().call_soon(self._dispatch)

    def _start(self, job: Job, session: WorkerSession) -> None:
        """A new attempt of ``job`` on ``session`` (QUEUED or TIMED_OUT -> RUNNING)."""
        now = self.clock()
        mode = job.next_mode
        _clear_attempt_fields(job)
        job.attempt += 1
        job.attempts.append(Attempt(job.attempt, JobStatus.RUNNING, session.id, mode, now))
        job.worker_id = session.id
        job.mode = mode
        job.started_at = job.started_at or now
        job.heartbeat_at = now
        job.cancel_requested = False
        job.stop_request = None
        deadlines = job.deadlines
        deadlines.start = None
        deadlines.takeover = None
        self.timers.disarm(TimerKind.START, job.id)
        self.timers.disarm(TimerKind.TAKEOVER, job.id)
        timeouts = self._timeouts(job)
        if timeouts.heartbeat is not None:
            deadlines.heartbeat = now + timeouts.heartbeat
            self.timers.arm(TimerKind.HEARTBEAT, job.id, deadlines.heartbeat)
        if timeouts.execution is not None:
            deadlines.execution = now + timeouts.execution
            self.timers.arm(TimerKind.EXECUTION, job.id, deadlines.execution)
        session.hold(job)
        reason = {
            ExecutionMode.EXECUTE: "",
            ExecutionMode.RESUME: "resumed on another worker",
            ExecutionMode.RETRY: "a new attempt",
        }[mode]
        self.registry.transition(job, JobStatus.RUNNING, reason=reason)
        attempt = job.attempt
        self.writer.after_commit(lambda: self._send_assignment(session, job, attempt))

    def _holder(self, job: Job) -> WorkerSession | None:
        session = self.sessions.get(job.worker_id)
        if session is not None and session.jobs.get(job.id) == job.attempt:
            return session
        return None

    def _take_locks(self, job: Job) -> bool:
        """All of the job's locks now, or WAITING_FOR_LOCK in FIFO order."""
        if self.locks.acquire(job.id, _lock_map(job.locks), now=self.clock(), job_id=job.id):
            self._locks_taken(job)
            return True
        self.registry.transition(job, JobStatus.WAITING_FOR_LOCK, reason=self._blocking_reason(job))
        return False

    def _blocking_reason(self, job: Job) -> str:
        busy = []
        for lock in job.locks:
            holders = self.locks.holders_of(lock.resource)
            if holders:
                busy.append(f"{lock.resource} ({', '.join(h.holder for h in holders[:3])})")
        return "waiting for " + (", ".join(busy[:5]) if busy else "earlier waiters")

    def _locks_taken(self, job: Job) -> None:
        job.locks_held = True
        self._persist_holdings(job.id)

    def _persist_holdings(self, holder: str) -> None:
        for resource, holding in self.locks.held_by(holder).items():
            self.writer.lock_added(
                {
                    "resource": resource,
                    "holder": holder,
                    "mode": int(holding.mode),
                    "job_id": holding.job_id,
                    "since": holding.since,
                    "expires_at": holding.expires_at,
                }
            )

    def _let_go_of_locks(self, job: Job) -> Callable[[], None]:
        """Mark the job as holding (and awaiting) no lock, and return the step that gives them back.
        Call that step after the job's own status change: the event that hands a lock on to a waiter
        must come after the one that freed it, or a reader of the events sees two holders at once."""
        if job.locks_held:
            job.locks_held = False
            return lambda: self._release_locks_of_job(job.id)
        if self.locks.is_waiting(job.id):
            return lambda: self._handle_grants(self.locks.withdraw(job.id))
        return _nothing

    def _release_locks_of_job(self, job_id: str) -> None:
        self._release_locks_of(job_id)

    def _release_locks_of(self, holder: str, resources: Iterable[str] | None = None) -> int:
        released, grants = self.locks.release(holder, resources)
        for resource in released:
            self.writer.lock_removed(resource, holder)
        self._handle_grants(grants)
        return len(released)

    def _handle_grants(self, grants: list[Grant]) -> None:
        for grant in grants:
            if grant.job_id is None:
                # An external holder waiting in AcquireLock: it persists and arms its TTL when it wakes.
                waiter = self._lock_waiters.get(grant.holder)
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)
                else:
                    self._release_locks_of(grant.holder)
                continue
            job = self.registry.jobs.get(grant.job_id)
            if job is None or job.status is not JobStatus.WAITING_FOR_LOCK:
                # Cannot happen: a job leaving WAITING_FOR_LOCK withdraws. Never keep a lock for nobody.
                self.locks.release(grant.holder)
                continue
            self._locks_taken(job)
            self.registry.transition(job, JobStatus.QUEUED, reason="its locks were granted")
            self.queues.push(job, urgent=True)
        if grants:
            self._schedule_dispatch()

    def _finish_attempt(
        self, job: Job, status: JobStatus, session: WorkerSession | None = None, error: JobError | None = None
    ) -> None:
        attempt = job.live_attempt
        if attempt is not None and attempt.finished_at is None:
            attempt.status = status
            attempt.finished_at = self.clock()
            attempt.error = error
            attempt.progress, attempt.message, attempt.step = job.progress, job.message, job.step
        holder = session or self.sessions.get(job.worker_id)
        if holder is not None and holder.jobs.get(job.id) == job.attempt:
            holder.drop(job)
        job.stop_request = None
        for kind in (TimerKind.HEARTBEAT, TimerKind.EXECUTION, TimerKind.TAKEOVER, TimerKind.CANCEL):
            self.timers.disarm(kind, job.id)
        deadlines = job.deadlines
        deadlines.heartbeat = deadlines.execution = deadlines.takeover = None

    def _end(
        self,
        job: Job,
        status: JobStatus,
        *,
        actor: str = "engine",
        reason: str = "",
        error: JobError | None = None,
    ) -> None:
        """Finish the job for good (a terminal status): its locks go, its timers go."""
        if status is JobStatus.COMPLETED and job.status is JobStatus.TIMED_OUT:
            # A result is an update that came before the second deadline: back to RUNNING first, since
            # the state machine has no TIMED_OUT -> COMPLETED (checked before anything else changes).
            self._back_to_running(job, reason="its result arrived before the takeover deadline", actor=actor)
        self.registry.check(job, status)
        if job.status in ACTIVE_STATUSES:
            self._finish_attempt(job, status, error=error)
        self.queues.remove(job.id)
        self.timers.disarm(TimerKind.START, job.id)
        self.timers.disarm(TimerKind.WAKE, job.id)
        job.deadlines.start = job.deadlines.wake = None
        if error is not None:
            job.error = error
        give_back_locks = self._let_go_of_locks(job)
        self._log_index.pop(job.id, None)
        self.registry.transition(job, status, actor=actor, reason=reason)
        give_back_locks()

    def _fail(self, job: Job, error: JobError, *, actor: str = "engine") -> None:
        """A failed attempt: DELAYED for another attempt if the retry policy allows, else FAILED."""
        policy = self._retry_policy(job)
        failures = job.failures + 1
        if policy is not None and not job.cancel_requested and policy.allows_retry(failures, error):
            self.registry.check(job, JobStatus.DELAYED)
            delay = policy.delay_before(failures)
            self._finish_attempt(job, JobStatus.FAILED, error=error)
            give_back_locks = self._let_go_of_locks(job)
            _clear_attempt_fields(job)
            job.error = error
            job.next_mode = ExecutionMode.RETRY
            job.deadlines.wake = self.clock() + delay
            self.registry.transition(
                job,
                JobStatus.DELAYED,
                actor=actor,
                reason=f"attempt {job.attempt} failed ({error.kind.name}: {error.message[:200]}); "
                f"attempt {failures + 1} of {policy.max_attempts} in {delay:g}s",
            )
            give_back_locks()
            self.timers.arm(TimerKind.WAKE, job.id, job.deadlines.wake)
            return
        self._end(
            job,
            JobStatus.FAILED,
            actor=actor,
            reason=f"{error.kind.name}: {error.message[:200]}",
            error=error,
        )

    def _request_stop(self, job: Job, reason: str, *, error: JobError | None = None) -> None:
        """Tell the job's worker to stop it (the execution timeout passed). The job keeps its locks and
        its slot on the worker until the worker confirms that the executor stopped, or its session is
        declared dead; only then does it end as decided here (``_finish_stop``)."""
        now = self.clock()
        job.stop_request = StopRequest(reason, error, "engine", now)
        self.registry.record(job, JobEventType.CANCEL_REQUESTED, reason=reason)
        session = self._holder(job)
        if session is not None:
            attempt = job.attempt
            self.writer.after_commit(lambda: session.send(CancelOut(job.id, attempt, reason)))
        self.timers.arm(TimerKind.CANCEL, job.id, now + self.config.cancel_grace)

    def _decide_cancel(self, job: Job, reason: str, actor: str) -> None:
        """An operator's cancel of a running job: CANCELLED once its executor has stopped. When an
        execution timeout already decided it (KILLED), that stands; the cancel then rules out a retry."""
        if job.stop_request is None:
            job.stop_request = StopRequest(reason, None, actor, self.clock())

    def _finish_stop(self, job: Job, *, actor: str, how: str = "") -> None:
        """The job's executor stopped (or its worker is gone for good, or an admin let go of it): end it
        as decided when the stop was requested. Only now do its locks pass on and a retry get queued."""
        stop = job.stop_request
        if stop is None:
            raise AssertionError(f"job {job.id} is not being stopped")
        if stop.error is None:
            self._end(
                job, JobStatus.CANCELLED, actor=actor, reason=f"{stop.reason} ({how})" if how else stop.reason
            )
        else:
            message = f"{stop.error.message}; {how}" if how else stop.error.message
            self._fail(job, replace(stop.error, message=message), actor=actor)
        log.info("job %s stopped (%s): %s", job.id, stop.outcome, how or "its executor stopped")
        self._schedule_dispatch()

    def _time_out(self, job: Job, now: float, *, reason: str) -> None:
        """RUNNING -> TIMED_OUT; the second deadline starts."""
        job.deadlines.heartbeat = None
        self.timers.disarm(TimerKind.HEARTBEAT, job.id)
        job.deadlines.takeover = now + self._takeover_timeout(job)
        self.registry.transition(job, JobStatus.TIMED_OUT, reason=reason)
        self.timers.arm(TimerKind.TAKEOVER, job.id, job.deadlines.takeover)

    def _set_start_deadline(self, job: Job, now: float) -> None:
        start = self._timeouts(job).start
        job.deadlines.start = now + start.duration if start is not None else None

    def _arm_start(self, job: Job) -> None:
        if job.deadlines.start is not None:
            self.timers.arm(TimerKind.START, job.id, job.deadlines.start)

    def _heard_from(self, job: Job) -> None:
        now = self.clock()
        job.heartbeat_at = now
        heartbeat = self._timeouts(job).heartbeat
        if heartbeat is not None:
            # The timer stays where it is; when it fires it sees the later deadline and re-arms.
            job.deadlines.heartbeat = now + heartbeat
            if self.timers.due(TimerKind.HEARTBEAT, job.id) is None:
                self.timers.arm(TimerKind.HEARTBEAT, job.id, job.deadlines.heartbeat)

    def _back_to_running(self, job: Job, *, reason: str, actor: str) -> None:
        self.timers.disarm(TimerKind.TAKEOVER, job.id)
        job.deadlines.takeover = None
        self._heard_from(job)
        self.registry.transition(job, JobStatus.RUNNING, actor=actor, reason=reason)

    # -- provided by the other parts of the engine ----------------------------------------------

    def _dispatch(self) -> None:
        raise NotImplementedError

    def _send_assignment(self, session: WorkerSession, job: Job, attempt: int) -> None:
        raise NotImplementedError

    async def _on_timer(self, kind: str, key: str) -> None:
        raise NotImplementedError

    def _check_submit(self, spec: SubmitSpec) -> list[LockRequest]:
        raise NotImplementedError

    def _create(self, spec: SubmitSpec, locks: list[LockRequest], actor: str) -> Job:
        raise NotImplementedError


def _clear_attempt_fields(job: Job) -> None:
    """Clear what belongs to the attempt that ended (its ``attempts[]`` entry keeps it): between
    attempts and in a new one, the job never shows an earlier attempt's worker, outcome or report."""
    job.worker_id = ""
    job.error = None
    job.result = None
    job.progress = 0
    job.message = ""
    job.step = ""


def _lock_map(locks: Iterable[LockRequest]) -> dict[str, LockMode]:
    return {lock.resource: lock.mode for lock in locks}


def _status_name(value: int) -> str:
    try:
        return JobStatus(value).name
    except ValueError:
        return f"unknown status {value}"


def _nothing() -> None:
    return None
