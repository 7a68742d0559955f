"""The console's copy of the job table: plain rows in a dict, and the ids changed since the last flush.

The feed writes here as events arrive; the screens read from here a few times a second. Nothing
in this module knows about Textual or gRPC channels, so it is tested on its own.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from jobwarden.contract import TERMINAL_STATUSES, ErrorKind, JobStatus, LockMode
from jobwarden.v1 import job_pb2

from ._format import seconds, status_of

Clock = Callable[[], float]

#: seconds of history kept for the throughput sparkline
THROUGHPUT_WINDOW = 60


@dataclass(slots=True)
class JobRow:
    """What the jobs table shows of one job, copied out of a ``Job`` message."""

    id: str
    action: str
    status: JobStatus
    progress: int
    message: str
    attempt: int
    worker_id: str
    created_at: float
    started_at: float
    finished_at: float
    updated_at: float
    locks: tuple[tuple[str, LockMode], ...]
    locks_held: bool
    cancel_requested: bool
    step: str
    error_kind: ErrorKind | None
    error_message: str
    status_reason: str
    correlation_id: str
    labels: tuple[tuple[str, str], ...]
    sequence: int

    @classmethod
    def from_proto(cls, job: job_pb2.Job) -> JobRow:
        status = status_of(job.status) or JobStatus.QUEUED
        kind: ErrorKind | None = None
        if job.error.kind:
            try:
                kind = ErrorKind(job.error.kind)
            except ValueError:
                kind = None
        locks = []
        for lock in job.locks:
            try:
                mode = LockMode(lock.mode)
            except ValueError:
                mode = LockMode.EXCLUSIVE
            locks.append((lock.resource, mode))
        return cls(
            id=job.id,
            action=job.action,
            status=status,
            progress=job.progress,
            message=job.message,
            attempt=job.attempt,
            worker_id=job.worker_id,
            created_at=seconds(job.created_at),
            started_at=seconds(job.started_at),
            finished_at=seconds(job.finished_at),
            updated_at=seconds(job.updated_at),
            locks=tuple(locks),
            locks_held=job.locks_held,
            cancel_requested=job.cancel_requested,
            step=job.step,
            error_kind=kind,
            error_message=job.error.message,
            status_reason=job.status_reason,
            correlation_id=job.correlation_id,
            labels=tuple(sorted(job.labels.items())),
            sequence=job.sequence,
        )

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    def search_text(self) -> str:
        """Everything the text filter looks in, lower-cased."""
        parts = [
            self.id,
            self.action,
            self.message,
            self.worker_id,
            self.correlation_id,
            self.error_message,
            self.step,
            self.status_reason,
            *(f"{key}={value}" for key, value in self.labels),
            *(resource for resource, _ in self.locks),
        ]
        return "\n".join(parts).lower()


class JobStore:
    """Every job the console keeps: all unfinished ones and the most recent finished ones.

    ``apply`` takes stream events in order and ignores any that is not newer than what the row
    already reflects (``Job.sequence``), so a snapshot and a replay that overlap agree. Changed ids
    collect in ``dirty`` until ``take_dirty``; an evicted id is dirty too (it is no longer in
    ``jobs``).
    """

    def __init__(self, *, keep_finished: int = 1000, clock: Clock) -> None:
        self.jobs: dict[str, JobRow] = {}
        self.dirty: set[str] = set()
        #: the last event sequence applied (or the snapshot's): the feed resumes after it
        self.sequence = 0
        #: bumped by ``load``: a view rebuilds from scratch instead of applying ``dirty``
        self.generation = 0
        self.keep_finished = keep_finished
        self.events_applied = 0
        self._finished: set[str] = set()
        self._clock = clock
        #: (second, jobs finished in it), oldest first
        self._throughput: deque[tuple[int, int]] = deque(maxlen=THROUGHPUT_WINDOW + 1)

    def __len__(self) -> int:
        return len(self.jobs)

    def load(self, jobs: Iterable[job_pb2.Job], sequence: int) -> None:
        """Replace everything with a snapshot whose events up to ``sequence`` are reflected."""
        self.jobs.clear()
        self._finished.clear()
        self.dirty.clear()
        for job in jobs:
            self._put(JobRow.from_proto(job))
        self.sequence = sequence
        self.generation += 1
        self.trim()
        self.dirty.clear()

    def add_history(self, jobs: Iterable[job_pb2.Job]) -> int:
        """Add older finished jobs paged from the server; they are kept (``keep_finished`` grows)."""
        added = 0
        for job in jobs:
            if job.id in self.jobs:
                continue
            row = JobRow.from_proto(job)
            self._put(row)
            self.dirty.add(row.id)
            added += 1
        self.keep_finished += added
        return added

    def apply(self, events: Iterable[job_pb2.JobEvent]) -> int:
        """Apply stream events; returns how many changed a row (the others were stale)."""
        applied = 0
        finished = 0
        for event in events:
            if event.sequence > self.sequence:
                self.sequence = event.sequence
            current = self.jobs.get(event.job_id)
            if current is not None and event.sequence <= current.sequence:
                continue
            row = JobRow.from_proto(event.job)
            if not row.id:
                row.id = event.job_id
            # An event's job may be older than its event only if the engine says so; trust the event.
            row.sequence = max(row.sequence, event.sequence)
            if row.terminal and (current is None or not current.terminal):
                finished += 1
            self._put(row)
            self.dirty.add(row.id)
            applied += 1
        self.events_applied += applied
        if finished:
            self._count_finished(finished)
        return applied

    def take_dirty(self) -> set[str]:
        dirty, self.dirty = self.dirty, set()
        return dirty

    def trim(self) -> int:
        """Evict the oldest finished jobs beyond ``keep_finished``; returns how many went.

        It waits for a tenth more than the limit before evicting, so a steady stream of finishing
        jobs does not sort the finished set on every flush.
        """
        excess = len(self._finished) - self.keep_finished
        if excess <= 0 or excess < max(1, self.keep_finished // 10):
            return 0
        jobs = self.jobs
        oldest = sorted(self._finished, key=lambda job_id: _finish_key(jobs[job_id]))[:excess]
        for job_id in oldest:
            del jobs[job_id]
            self._finished.discard(job_id)
            self.dirty.add(job_id)
        return len(oldest)

    def throughput(self, seconds: int = THROUGHPUT_WINDOW) -> list[int]:
        """Jobs finished in each of the last ``seconds`` whole seconds, oldest first."""
        now = int(self._clock())
        counts = dict(self._throughput)
        return [counts.get(second, 0) for second in range(now - seconds + 1, now + 1)]

    def finished_last_minute(self) -> int:
        return sum(self.throughput(THROUGHPUT_WINDOW))

    def _put(self, row: JobRow) -> None:
        self.jobs[row.id] = row
        if row.terminal:
            self._finished.add(row.id)
        else:
            self._finished.discard(row.id)

    def _count_finished(self, count: int) -> None:
        second = int(self._clock())
        if self._throughput and self._throughput[-1][0] == second:
            self._throughput[-1] = (second, self._throughput[-1][1] + count)
        else:
            self._throughput.append((second, count))


def _finish_key(row: JobRow) -> tuple[float, str]:
    return (row.finished_at or row.updated_at or row.created_at, row.id)
