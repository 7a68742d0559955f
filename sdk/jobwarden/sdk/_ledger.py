"""What a worker holds and owes the engine: its running jobs, the results the engine has not
acknowledged yet, and the outbox that carries what its jobs report."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Unpack

from jobwarden.sdk._context import JobContext
from jobwarden.sdk._hosting import Hosted
from jobwarden.sdk._outbox import JobKey, JobUpdateFields, Outbox
from jobwarden.v1 import executor_service_pb2 as pb

__all__ = ["Job", "Ledger"]


@dataclass(slots=True, eq=False)
class Job:
    """One attempt running on this worker."""

    key: JobKey
    hosted: Hosted
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


class Ledger:
    """The worker's jobs and what it still has to tell the engine about them.

    It is also the reporter of every ``JobContext``: a report about a job this worker no longer holds
    is dropped (a log line still goes out while the job's result is unacknowledged).
    """

    def __init__(self) -> None:
        #: the attempts running here, by job id
        self.running: dict[str, Job] = {}
        #: finished results the engine has not acknowledged: still this worker's to deliver
        self.unacked: dict[JobKey, pb.JobResult] = {}
        #: jobs whose result the engine refused as malformed, now reported as a failure instead
        self.fallbacks: set[JobKey] = set()
        self.outbox = Outbox()
        #: takes no new jobs
        self.draining = False
        #: the number of jobs finished by this worker (completed, failed or cancelled)
        self.finished_jobs = 0
        # asyncio.Event binds to a loop on first use, so these may be made outside one.
        #: the outbox has something to send
        self.wake = asyncio.Event()
        #: everything queued has been written to the stream
        self.flushed = asyncio.Event()
        #: no job running and no result unacknowledged
        self.idle = asyncio.Event()

    def kick(self) -> None:
        """Wake the session's writer."""
        self.flushed.clear()
        self.wake.set()

    def send_result(self, result: pb.JobResult, *, counted: bool = True) -> None:
        """Queue a result and keep it until the engine acknowledges it."""
        self.unacked[(result.job_id, result.attempt)] = result
        self.idle.clear()
        self.outbox.result(result)
        if counted:
            self.finished_jobs += 1
        self.kick()

    def drop_result(self, key: JobKey) -> None:
        """The engine has settled this result (acknowledged, refused or rejected): stop resending it."""
        self.unacked.pop(key, None)
        self.fallbacks.discard(key)

    def add(self, job: Job) -> None:
        self.running[job.key[0]] = job
        self.idle.clear()
        job.hosted.running += 1

    def forget(self, job: Job) -> bool:
        """Stop tracking ``job``; False when it was already forgotten."""
        if self.running.get(job.key[0]) is not job:
            return False
        del self.running[job.key[0]]
        job.hosted.running -= 1
        if job.grace is not None:
            job.grace.cancel()
        return True

    def check_idle(self) -> None:
        if not self.running and not self.unacked:
            self.idle.set()

    def holds(self, ctx: JobContext) -> bool:
        job = self.running.get(ctx.job_id)
        return job is not None and job.ctx is ctx

    # -- the reporter interface of JobContext -----------------------------------------------------
    def report_update(self, ctx: JobContext, **fields: Unpack[JobUpdateFields]) -> None:
        if not self.holds(ctx):
            return
        finished_at = datetime.now(UTC) if fields.get("completed_step") else None
        self.outbox.update((ctx.job_id, ctx.attempt), finished_at=finished_at, **fields)
        self.kick()

    def report_log(self, ctx: JobContext, level: str, message: str, time: datetime) -> None:
        if not self.holds(ctx) and (ctx.job_id, ctx.attempt) not in self.unacked:
            return
        self.outbox.log((ctx.job_id, ctx.attempt), level, message, time)
        self.kick()

    def report_heartbeat(self, ctx: JobContext, extend_execution: timedelta | None) -> None:
        if not self.holds(ctx):
            return
        self.outbox.heartbeat((ctx.job_id, ctx.attempt), extend_execution)
        self.kick()
