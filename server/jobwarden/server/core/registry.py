"""The job registry in memory, and the state machine: every change of a job goes through here.

``transition`` is the one place a status changes: it checks ``jobwarden.contract.TRANSITIONS``
(raising InvalidTransition, with nothing changed, when the change is not allowed), stamps the job,
counts it, numbers an event and hands both to the writer. ``record`` does the same for changes that
keep the status (progress, steps, variables, a cancel request).

Unfinished jobs live here; finished ones stay in a bounded cache for quick reads and are otherwise
read from the store.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable

from jobwarden.contract import (
    ACTIVE_STATUSES,
    TERMINAL_STATUSES,
    WAITING_STATUSES,
    JobEventType,
    JobStatus,
    can_transition,
)

from .errors import InvalidTransition
from .model import Event, Job
from .writer import Writer

__all__ = ["Registry"]


class Registry:
    def __init__(
        self,
        writer: Writer,
        *,
        sequence: int,
        finished_cache_size: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.writer = writer
        self.sequence = sequence
        self.clock = clock
        #: every unfinished job
        self.jobs: dict[str, Job] = {}
        self._finished: OrderedDict[str, Job] = OrderedDict()
        self._finished_cache_size = finished_cache_size
        #: idempotency key -> job id, for every job in memory
        self.keys: dict[str, str] = {}
        #: (action, status) -> jobs, over the whole store
        self.counts: Counter[tuple[str, JobStatus]] = Counter()
        #: finish times over the last minute, for throughput
        self._finishes: deque[float] = deque()

    # -- reads ------------------------------------------------------------------------------------

    def get(self, job_id: str) -> Job | None:
        job = self.jobs.get(job_id)
        if job is None:
            job = self._finished.get(job_id)
        return job

    def by_key(self, key: str) -> Job | None:
        job_id = self.keys.get(key)
        return self.get(job_id) if job_id else None

    def count(self, action: str, statuses: frozenset[JobStatus]) -> int:
        return sum(self.counts[(action, s)] for s in statuses)

    def active(self, action: str) -> int:
        """Jobs of ``action`` RUNNING or TIMED_OUT: what ``max_running`` caps."""
        return self.count(action, ACTIVE_STATUSES)

    def waiting(self, action: str) -> int:
        """Jobs of ``action`` QUEUED, DELAYED or WAITING_FOR_LOCK: what ``max_queued`` caps."""
        return self.count(action, WAITING_STATUSES)

    def throughput(self) -> float:
        """Jobs finished per second over the last minute."""
        self._trim_finishes(self.clock())
        return len(self._finishes) / 60.0

    # -- changes ----------------------------------------------------------------------------------

    def load(self, job: Job) -> None:
        """Put back an unfinished job read from the store (no event: nothing changed)."""
        self.jobs[job.id] = job
        if job.idempotency_key:
            self.keys[job.idempotency_key] = job.id

    def add(self, job: Job, *, actor: str, reason: str = "") -> Event:
        """A new job, in its first status (checked against the state machine)."""
        if not can_transition(None, job.status):
            raise InvalidTransition(f"a job cannot start out {job.status.name}", job_id=job.id)
        if job.status in TERMINAL_STATUSES:
            self._remember_finished(job)
        else:
            self.jobs[job.id] = job
        if job.idempotency_key:
            self.keys[job.idempotency_key] = job.id
        self.counts[(job.action, job.status)] += 1
        self.writer.job_added(job)
        return self._event(job, JobEventType.SUBMITTED, None, actor, reason)

    def check(self, job: Job, target: JobStatus) -> None:
        """InvalidTransition unless the state machine allows ``job`` to become ``target``: callers that
        change several things check first, so a refusal leaves the job as it was."""
        if not can_transition(job.status, target):
            raise InvalidTransition(
                f"job {job.id} is {job.status.name}; it cannot become {target.name}", job_id=job.id
            )

    def transition(self, job: Job, target: JobStatus, *, actor: str = "engine", reason: str = "") -> Event:
        """Move ``job`` to ``target``; InvalidTransition (and no change at all) if it is not allowed."""
        current = job.status
        self.check(job, target)
        now = self.clock()
        job.status = target
        job.updated_at = now
        job.status_reason = reason
        self.counts[(job.action, current)] -= 1
        self.counts[(job.action, target)] += 1
        if target in TERMINAL_STATUSES:
            job.finished_at = now
            self.jobs.pop(job.id, None)
            self._remember_finished(job)
            self._finishes.append(now)
            self._trim_finishes(now)
        elif current in TERMINAL_STATUSES:
            # An operator retry brings a finished job back (from the cache, or read from the store).
            self._finished.pop(job.id, None)
            self.jobs[job.id] = job
            if job.idempotency_key:
                self.keys[job.idempotency_key] = job.id
        self.writer.job_changed(job)
        return self._event(job, JobEventType.STATUS_CHANGED, current, actor, reason)

    def record(
        self,
        job: Job,
        event_type: JobEventType = JobEventType.UPDATED,
        *,
        actor: str = "engine",
        reason: str = "",
    ) -> Event:
        """A change that keeps the status."""
        job.updated_at = self.clock()
        self.writer.job_changed(job)
        return self._event(job, event_type, None, actor, reason)

    def touch(self, job: Job) -> None:
        """Persist a change that is not worth an event (deadlines moved, heartbeat time)."""
        job.touched()
        self.writer.job_changed(job)

    # -- internals --------------------------------------------------------------------------------

    def _event(
        self, job: Job, event_type: JobEventType, previous: JobStatus | None, actor: str, reason: str
    ) -> Event:
        self.sequence += 1
        job.sequence = self.sequence
        ev = Event(
            sequence=self.sequence,
            job_id=job.id,
            type=event_type,
            time=job.updated_at,
            snapshot=job.to_dict(payloads=False),
            previous_status=previous,
            actor=actor,
            reason=reason,
        )
        job.remember(ev)
        self.writer.event(ev)
        return ev

    def _remember_finished(self, job: Job) -> None:
        self._finished[job.id] = job
        self._finished.move_to_end(job.id)
        while len(self._finished) > self._finished_cache_size:
            _, old = self._finished.popitem(last=False)
            if old.idempotency_key and self.keys.get(old.idempotency_key) == old.id:
                del self.keys[old.idempotency_key]

    def _trim_finishes(self, now: float) -> None:
        while self._finishes and self._finishes[0] < now - 60.0:
            self._finishes.popleft()
