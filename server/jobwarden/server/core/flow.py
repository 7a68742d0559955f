"""The job flow every part of the engine shares: starting and ending attempts, failing with
retries, taking and giving back locks, arming deadlines, asking a job to stop.

``JobFlow`` holds the state those steps change (the registry, the lock table, the timers, the writer,
the action configurations) and nothing about how jobs reach workers: it tells the dispatcher that a
job is ready (or no longer is) through the narrow ``Dispatch`` interface, which ``Dispatcher``
implements and connects when it is made.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, Protocol, TypeVar

from jobwarden.contract import (
    ACTIVE_STATUSES,
    ExecutionMode,
    JobEventType,
    JobStatus,
    LockMode,
)
from msgspec.structs import replace

from .configs import ActionConfigs
from .errors import EngineStopping, StoreUnavailable
from .locks import Grant, LockTable
from .model import (
    Attempt,
    Job,
    JobError,
    LockRequest,
    RetryPolicy,
    StopRequest,
    Timeouts,
)
from .registry import Registry
from .sessions import CancelOut, WorkerSession
from .store_api import JobStore
from .timers import TimerKind, Timers
from .values import EngineConfig
from .writer import Writer

__all__ = [
    "RECOVERY_PAGE",
    "Dispatch",
    "FlowPart",
    "JobFlow",
    "clear_attempt_fields",
    "lock_map",
    "status_name",
]

log = logging.getLogger("jobwarden.engine")
P = ParamSpec("P")
T = TypeVar("T")
#: rows a page when a new leader loads its backlog: each page is a sign of progress that keeps its
#: lease (about 0.1 s for 5,000 jobs on PostgreSQL, mostly decoding them; the streamed query's
#: transaction must not sit idle between pages for idle_in_transaction_session_timeout, a lease)
RECOVERY_PAGE = 5_000


Row = TypeVar("Row")


class Dispatch(Protocol):
    """What the flow asks of the part that hands jobs to workers (``Dispatcher``)."""

    def job_ready(self, job: Job, *, urgent: bool = False) -> None:
        """``job`` is QUEUED: queue it (urgent first; a job holding its locks is urgent) and dispatch soon."""

    def job_unready(self, job_id: str) -> None:
        """The job left QUEUED without starting: take it off its queue."""

    def schedule(self) -> None:
        """Capacity, locks or limits may have freed up: dispatch soon."""

    def holder(self, job: Job) -> WorkerSession | None:
        """The session holding the job's live attempt, if any."""


class _NoDispatch:
    """The flow before a dispatcher is connected: nothing to hand a job to."""

    def job_ready(self, job: Job, *, urgent: bool = False) -> None:
        raise RuntimeError(f"job {job.id} is ready but no dispatcher is connected to the flow")

    def job_unready(self, job_id: str) -> None:
        return None

    def schedule(self) -> None:
        return None

    def holder(self, job: Job) -> WorkerSession | None:
        return None


class JobFlow:
    """The steps of a job's life that every part takes, and the state they change."""

    def __init__(
        self,
        config: EngineConfig,
        *,
        store: JobStore,
        writer: Writer,
        registry: Registry,
        locks: LockTable,
        timers: Timers,
        configs: ActionConfigs,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.clock = clock
        self.store = store
        self.writer = writer
        self.registry = registry
        self.locks = locks
        self.timers = timers
        self.configs = configs
        #: the part that hands ready jobs to workers (``Dispatcher`` connects itself)
        self.dispatch: Dispatch = _NoDispatch()
        #: False until the engine has recovered and serves, and again once it stops
        self.running = False
        #: the last log line index of each job whose executor logged (made by ``WorkerProtocol``)
        self.log_index: dict[str, int] = {}
        self._readers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="jobwarden-reader")
        self._external_grant: Callable[[str], bool] | None = None
        self._ended_hooks: list[Callable[[Job], None]] = []

    def use_dispatch(self, dispatch: Dispatch) -> None:
        """Tell ``dispatch`` from now on when a job is ready (the dispatcher calls this once)."""
        self.dispatch = dispatch

    def on_external_grant(self, wake: Callable[[str], bool]) -> None:
        """Call ``wake(holder)`` when the locks an external holder waits for are granted; it returns
        False when nobody waits for them any more (they are then given back at once)."""
        self._external_grant = wake

    def on_job_ended(self, callback: Callable[[Job], None]) -> None:
        """Call ``callback(job)`` right after a job's terminal transition (``end``), in the same turn of
        the event loop: what it changes joins the batch that holds the job's terminal status, so a
        crash keeps both or neither (the workflow runner advances a run this way)."""
        self._ended_hooks.append(callback)

    def job_ended(self, job: Job) -> None:
        """Tell the ``on_job_ended`` callbacks that ``job`` reached a terminal status (``end`` does;
        a part that makes a job terminal another way, a REJECTED submit, calls this itself)."""
        for callback in self._ended_hooks:
            callback(job)

    def check_running(self) -> None:
        if not self.running:
            raise EngineStopping("the engine is not running")

    async def read(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a blocking store read in a reader thread; ``StoreUnavailable`` while the database
        cannot be reached."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._readers, lambda: fn(*args, **kwargs))
        except self.store.unavailable_errors as error:
            reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
            raise StoreUnavailable(f"the database cannot be read now: {reason}") from error

    async def read_pages(
        self, pages: Callable[[int], Iterator[list[Row]]], progress: Callable[[], None]
    ) -> list[Row]:
        """Every row of ``pages(size)``, read in a reader thread, each page told to ``progress`` as
        it comes: a backlog of 200,000 jobs takes longer to read than a lease, and the lease renews
        on progress (leadership.py)."""
        loop = asyncio.get_running_loop()

        def read_all() -> list[Row]:
            rows: list[Row] = []
            for page in pages(RECOVERY_PAGE):
                rows.extend(page)
                loop.call_soon_threadsafe(progress)
            return rows

        return await self.read(read_all)

    def close_readers(self) -> None:
        self._readers.shutdown(wait=False, cancel_futures=True)

    def timeouts(self, job: Job) -> Timeouts:
        return job.timeouts.over(self.configs.get(job.action).timeouts)

    def takeover_timeout(self, job: Job) -> float:
        takeover = self.timeouts(job).takeover
        return self.config.default_takeover_timeout if takeover is None else takeover

    def retry_policy(self, job: Job) -> RetryPolicy | None:
        return job.retry_policy or self.configs.get(job.action).retry_policy

    def start_attempt(self, job: Job, session: WorkerSession) -> None:
        """A new attempt of ``job`` on ``session`` (QUEUED or TIMED_OUT -> RUNNING). Sending it to the
        worker once committed is the dispatcher's (``Dispatcher.start``)."""
        now = self.clock()
        mode = job.next_mode
        clear_attempt_fields(job)
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
        timeouts = self.timeouts(job)
        if timeouts.heartbeat is not None:
            deadlines.heartbeat = now + timeouts.heartbeat
            self.timers.arm(TimerKind.HEARTBEAT, job.id, deadlines.heartbeat)
        if timeouts.execution is not None:
            deadlines.execution = now + timeouts.execution
            self.timers.arm(TimerKind.EXECUTION, job.id, deadlines.execution)
        session.hold(job)
        self.registry.transition(job, JobStatus.RUNNING, reason=_START_REASONS[mode])

    def take_locks(self, job: Job) -> bool:
        """All of the job's locks now, or WAITING_FOR_LOCK in FIFO order."""
        if self.locks.acquire(job.id, lock_map(job.locks), now=self.clock(), job_id=job.id):
            self.locks_taken(job)
            return True
        self.registry.transition(job, JobStatus.WAITING_FOR_LOCK, reason=self.blocking_reason(job))
        return False

    def blocking_reason(self, job: Job) -> str:
        busy = []
        for lock in job.locks:
            holders = self.locks.holders_of(lock.resource)
            if holders:
                busy.append(f"{lock.resource} ({', '.join(h.holder for h in holders[:3])})")
        return "waiting for " + (", ".join(busy[:5]) if busy else "earlier waiters")

    def locks_taken(self, job: Job) -> None:
        job.locks_held = True
        self.persist_holdings(job.id)

    def persist_holdings(self, holder: str) -> None:
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

    def let_go_of_locks(self, job: Job) -> Callable[[], None]:
        """Mark the job as holding (and awaiting) no lock, and return the step that gives them back.
        Call that step after the job's own status change: the event that hands a lock on to a waiter
        must come after the one that freed it, or a reader of the events sees two holders at once."""
        if job.locks_held:
            job.locks_held = False
            return lambda: self._release_locks_of_job(job.id)
        if self.locks.is_waiting(job.id):
            return lambda: self.handle_grants(self.locks.withdraw(job.id))
        return _nothing

    def _release_locks_of_job(self, job_id: str) -> None:
        self.release_locks_of(job_id)

    def release_locks_of(self, holder: str, resources: Iterable[str] | None = None) -> int:
        released, grants = self.locks.release(holder, resources)
        for resource in released:
            self.writer.lock_removed(resource, holder)
        self.handle_grants(grants)
        return len(released)

    def handle_grants(self, grants: list[Grant]) -> None:
        for grant in grants:
            if grant.job_id is None:
                # An external holder waiting in AcquireLock: it persists and arms its TTL when it wakes.
                wake = self._external_grant
                if wake is None or not wake(grant.holder):
                    self.release_locks_of(grant.holder)
                continue
            job = self.registry.jobs.get(grant.job_id)
            if job is None or job.status is not JobStatus.WAITING_FOR_LOCK:
                # Cannot happen: a job leaving WAITING_FOR_LOCK withdraws. Never keep a lock for nobody.
                self.locks.release(grant.holder)
                continue
            self.locks_taken(job)
            self.registry.transition(job, JobStatus.QUEUED, reason="its locks were granted")
            self.dispatch.job_ready(job, urgent=True)
        if grants:
            self.dispatch.schedule()

    def finish_attempt(
        self, job: Job, status: JobStatus, session: WorkerSession | None = None, error: JobError | None = None
    ) -> None:
        attempt = job.live_attempt
        if attempt is not None and attempt.finished_at is None:
            attempt.status = status
            attempt.finished_at = self.clock()
            attempt.error = error
            attempt.progress, attempt.message, attempt.step = job.progress, job.message, job.step
        holder = session or self.dispatch.holder(job)
        if holder is not None and holder.jobs.get(job.id) == job.attempt:
            holder.drop(job)
        job.stop_request = None
        for kind in (TimerKind.HEARTBEAT, TimerKind.EXECUTION, TimerKind.TAKEOVER, TimerKind.CANCEL):
            self.timers.disarm(kind, job.id)
        deadlines = job.deadlines
        deadlines.heartbeat = deadlines.execution = deadlines.takeover = None

    def end(
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
            self.back_to_running(job, reason="its result arrived before the takeover deadline", actor=actor)
        self.registry.check(job, status)
        if job.status in ACTIVE_STATUSES:
            self.finish_attempt(job, status, error=error)
        self.dispatch.job_unready(job.id)
        self.timers.disarm(TimerKind.START, job.id)
        self.timers.disarm(TimerKind.WAKE, job.id)
        job.deadlines.start = job.deadlines.wake = None
        if error is not None:
            job.error = error
        give_back_locks = self.let_go_of_locks(job)
        self.log_index.pop(job.id, None)
        self.registry.transition(job, status, actor=actor, reason=reason)
        give_back_locks()
        if self._ended_hooks:
            self.job_ended(job)

    def fail(self, job: Job, error: JobError, *, actor: str = "engine") -> None:
        """A failed attempt: DELAYED for another attempt if the retry policy allows, else FAILED."""
        policy = self.retry_policy(job)
        failures = job.failures + 1
        if policy is not None and not job.cancel_requested and policy.allows_retry(failures, error):
            self.registry.check(job, JobStatus.DELAYED)
            delay = policy.delay_before(failures)
            self.finish_attempt(job, JobStatus.FAILED, error=error)
            give_back_locks = self.let_go_of_locks(job)
            clear_attempt_fields(job)
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
        self.end(
            job,
            JobStatus.FAILED,
            actor=actor,
            reason=f"{error.kind.name}: {error.message[:200]}",
            error=error,
        )

    def request_stop(self, job: Job, reason: str, *, error: JobError | None = None) -> None:
        """Tell the job's worker to stop it (the execution timeout passed). The job keeps its locks and
        its slot on the worker until the worker confirms that the executor stopped, or its session is
        declared dead; only then does it end as decided here (``finish_stop``)."""
        now = self.clock()
        job.stop_request = StopRequest(reason, error, "engine", now)
        self.registry.record(job, JobEventType.CANCEL_REQUESTED, reason=reason)
        session = self.dispatch.holder(job)
        if session is not None:
            attempt = job.attempt
            self.writer.after_commit(lambda: session.send(CancelOut(job.id, attempt, reason)))
        self.timers.arm(TimerKind.CANCEL, job.id, now + self.config.cancel_grace)

    def decide_cancel(self, job: Job, reason: str, actor: str) -> None:
        """An operator's cancel of a running job: CANCELLED once its executor has stopped. When an
        execution timeout already decided it (KILLED), that stands; the cancel then rules out a retry."""
        if job.stop_request is None:
            job.stop_request = StopRequest(reason, None, actor, self.clock())

    def finish_stop(self, job: Job, *, actor: str, how: str = "") -> None:
        """The job's executor stopped (or its worker is gone for good, or an admin let go of it): end it
        as decided when the stop was requested. Only now do its locks pass on and a retry get queued."""
        stop = job.stop_request
        if stop is None:
            raise AssertionError(f"job {job.id} is not being stopped")
        if stop.error is None:
            self.end(
                job, JobStatus.CANCELLED, actor=actor, reason=f"{stop.reason} ({how})" if how else stop.reason
            )
        else:
            message = f"{stop.error.message}; {how}" if how else stop.error.message
            self.fail(job, replace(stop.error, message=message), actor=actor)
        log.info("job %s stopped (%s): %s", job.id, stop.outcome, how or "its executor stopped")
        self.dispatch.schedule()

    def time_out(self, job: Job, now: float, *, reason: str) -> None:
        """RUNNING -> TIMED_OUT; the second deadline starts."""
        job.deadlines.heartbeat = None
        self.timers.disarm(TimerKind.HEARTBEAT, job.id)
        job.deadlines.takeover = now + self.takeover_timeout(job)
        self.registry.transition(job, JobStatus.TIMED_OUT, reason=reason)
        self.timers.arm(TimerKind.TAKEOVER, job.id, job.deadlines.takeover)

    def set_start_deadline(self, job: Job, now: float) -> None:
        start = self.timeouts(job).start
        job.deadlines.start = now + start.duration if start is not None else None

    def arm_start(self, job: Job) -> None:
        if job.deadlines.start is not None:
            self.timers.arm(TimerKind.START, job.id, job.deadlines.start)

    def heard_from(self, job: Job) -> None:
        now = self.clock()
        job.heartbeat_at = now
        heartbeat = self.timeouts(job).heartbeat
        if heartbeat is not None:
            # The timer stays where it is; when it fires it sees the later deadline and re-arms.
            job.deadlines.heartbeat = now + heartbeat
            if self.timers.due(TimerKind.HEARTBEAT, job.id) is None:
                self.timers.arm(TimerKind.HEARTBEAT, job.id, job.deadlines.heartbeat)

    def back_to_running(self, job: Job, *, reason: str, actor: str) -> None:
        self.timers.disarm(TimerKind.TAKEOVER, job.id)
        job.deadlines.takeover = None
        self.heard_from(job)
        self.registry.transition(job, JobStatus.RUNNING, actor=actor, reason=reason)


class FlowPart:
    """A part of the engine that works through the flow (``Jobs``, ``WorkerProtocol``, ...): the flow,
    and what of it every part uses, bound once on the part (``self.registry``, not
    ``self.flow.registry``: one attribute read less on the hot path)."""

    def __init__(self, flow: JobFlow) -> None:
        self.flow = flow
        self.config = flow.config
        self.clock = flow.clock
        self.registry = flow.registry
        self.writer = flow.writer
        self.timers = flow.timers
        self.store = flow.store
        self.read = flow.read


_START_REASONS = {
    ExecutionMode.EXECUTE: "",
    ExecutionMode.RESUME: "resumed on another worker",
    ExecutionMode.RETRY: "a new attempt",
}


def clear_attempt_fields(job: Job) -> None:
    """Clear what belongs to the attempt that ended (its ``attempts[]`` entry keeps it): between
    attempts and in a new one, the job never shows an earlier attempt's worker, outcome or report."""
    job.worker_id = ""
    job.error = None
    job.result = None
    job.progress = 0
    job.message = ""
    job.step = ""


def lock_map(locks: Iterable[LockRequest]) -> dict[str, LockMode]:
    return {lock.resource: lock.mode for lock in locks}


def status_name(value: int) -> str:
    try:
        return JobStatus(value).name
    except ValueError:
        return f"unknown status {value}"


def _nothing() -> None:
    return None
