"""The console's copy of the job table: plain rows in a dict, and the ids changed since the last flush.

The feed writes here as events arrive; the screens read from here a few times a second. Nothing
in this module knows about Textual or gRPC channels, so it is tested on its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from jobwarden.contract import (
    ACTIVE_STATUSES,
    TERMINAL_STATUSES,
    WAITING_STATUSES,
    ErrorKind,
    JobEventType,
    JobStatus,
    LockMode,
)
from jobwarden.v1 import job_pb2, job_service_pb2
from jobwarden.wire import timestamp_seconds as seconds

from ._format import status_of

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

    # A job keeps the worker, step, progress and message of its last attempt after that attempt
    # ended; what follows shows only what is true of the job in its current status.

    @property
    def current_worker_id(self) -> str:
        """The worker holding the job: only while RUNNING or TIMED_OUT."""
        return self.worker_id if self.status in ACTIVE_STATUSES else ""

    @property
    def shows_progress(self) -> bool:
        """Whether the progress means anything now (not while waiting to run, nor once rejected)."""
        return self.status not in WAITING_STATUSES and self.status is not JobStatus.REJECTED

    def current_text(self) -> tuple[str, bool]:
        """What the message column says, and whether it is an error.

        Running: the step and the executor's message. Timed out: why. Waiting or finished: why it
        is in that status (the engine's reason); FAILED: the error.
        """
        status = self.status
        if status is JobStatus.FAILED and self.error_kind is not None:
            kind = self.error_kind.name
            return (f"{kind}: {self.error_message}" if self.error_message else kind), True
        if status is JobStatus.RUNNING or (status is JobStatus.TIMED_OUT and not self.status_reason):
            parts = [part for part in (f"[{self.step}]" if self.step else "", self.message) if part]
            return " ".join(parts) or self.status_reason, False
        return self.status_reason, False

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
        #: second -> jobs finished in it (by the engine's commit time), over the last window
        self._throughput: dict[int, int] = {}

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
                self._count_finished(seconds(event.time))
            self._put(row)
            self.dirty.add(row.id)
            applied += 1
        self.events_applied += applied
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
        counts = self._throughput
        return [counts.get(second, 0) for second in range(now - seconds + 1, now + 1)]

    def finished_last_minute(self) -> int:
        return sum(self.throughput(THROUGHPUT_WINDOW))

    def _put(self, row: JobRow) -> None:
        self.jobs[row.id] = row
        if row.terminal:
            self._finished.add(row.id)
        else:
            self._finished.discard(row.id)

    def _count_finished(self, committed_at: float) -> None:
        """Count a finish in the second the engine committed it, not the second it reached us: the
        events replayed after a reconnect land where they happened instead of in one spike."""
        now = int(self._clock())
        # An engine clock a little ahead of ours counts in our current second.
        second = min(int(committed_at), now) if committed_at else now
        oldest = now - THROUGHPUT_WINDOW
        if second <= oldest:
            return
        counts = self._throughput
        counts[second] = counts.get(second, 0) + 1
        if len(counts) > THROUGHPUT_WINDOW:
            for stale in [key for key in counts if key <= oldest]:
                del counts[stale]


def _finish_key(row: JobRow) -> tuple[float, str]:
    return (row.finished_at or row.updated_at or row.created_at, row.id)


def counts_by_status(entries: Iterable[job_service_pb2.StatusCount]) -> dict[JobStatus, int]:
    """``GetStats``' counts per status (unknown statuses left out)."""
    counts: dict[JobStatus, int] = {}
    for entry in entries:
        status = status_of(entry.status)
        if status is not None:
            counts[status] = entry.count
    return counts


class StatusCounts:
    """How many jobs the engine holds in each status, kept current from the event stream.

    ``seed`` starts from a ``GetStats`` answer and the head sequence it reflects; ``apply`` then
    moves one job between two statuses for each change of status (a submit adds one), skipping
    the events the seed already counted. The header shows these counts, so they move with the
    table rather than once a second.
    """

    def __init__(self) -> None:
        self._counts: dict[JobStatus, int] | None = None
        #: events up to here are in the counts already
        self._counted_through = 0
        #: the newest event sequence seen
        self.last_sequence = 0

    @property
    def ready(self) -> bool:
        return self._counts is not None

    def seed(self, counts: Mapping[JobStatus, int], head_sequence: int) -> None:
        """Start over from the engine's counts, which reflect its events up to ``head_sequence``."""
        self._counts = dict(counts)
        self._counted_through = head_sequence
        self.last_sequence = max(self.last_sequence, head_sequence)

    def resync(self, counts: Mapping[JobStatus, int], head_sequence: int) -> bool:
        """``seed``, but only when the stream is exactly at ``head_sequence`` (no event of the
        engine's answer is still on its way, nor one we applied missing from it)."""
        if head_sequence != self.last_sequence:
            return False
        self.seed(counts, head_sequence)
        return True

    def apply(self, events: Iterable[job_pb2.JobEvent]) -> None:
        counts = self._counts
        for event in events:
            sequence = event.sequence
            if sequence > self.last_sequence:
                self.last_sequence = sequence
            if counts is None or sequence <= self._counted_through:
                continue
            self._counted_through = sequence
            status = status_of(event.job.status)
            if status is None:
                continue
            if int(event.type) == JobEventType.SUBMITTED:
                counts[status] = counts.get(status, 0) + 1
                continue
            previous = status_of(event.previous_status)
            if previous is not None and previous is not status:
                counts[previous] = counts.get(previous, 0) - 1
                counts[status] = counts.get(status, 0) + 1

    def get(self) -> dict[JobStatus, int] | None:
        """The counts (never below zero), or ``None`` before the first seed."""
        if self._counts is None:
            return None
        return {status: max(0, count) for status, count in self._counts.items()}
