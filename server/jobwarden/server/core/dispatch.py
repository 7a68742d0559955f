"""Dispatch: the ready queues, the connected workers' sessions, and handing ready jobs to workers
with free capacity. ``JobFlow`` tells the dispatcher when a job is ready (``Dispatch``); the
dispatcher starts the attempt through the flow and sends the assignment once it is committed.
"""

from __future__ import annotations

import asyncio

from jobwarden.contract import ACTIVE_STATUSES, JobStatus

from .flow import JobFlow
from .model import Job
from .queues import ReadyQueues
from .sessions import AssignmentOut, WorkerSession

__all__ = ["Dispatcher"]


class Dispatcher:
    """Ready jobs, worker sessions, and assignment: never beyond a worker's capacity, an executor's
    max_concurrency or an action's max_running."""

    def __init__(self, flow: JobFlow, queues: ReadyQueues | None = None) -> None:
        self.flow = flow
        self.queues = queues or ReadyQueues()
        #: worker id -> its live session
        self.sessions: dict[str, WorkerSession] = {}
        self._scheduled = False
        # Read on every pass of the dispatch loop: looked up once here.
        self._registry = flow.registry
        self._action_config = flow.configs.get
        flow.use_dispatch(self)

    # -- what the flow tells the dispatcher (``flow.Dispatch``) ------------------------------------

    def job_ready(self, job: Job, *, urgent: bool = False) -> None:
        self.queues.push(job, urgent=urgent or job.locks_held)
        self.schedule()

    def job_unready(self, job_id: str) -> None:
        self.queues.remove(job_id)

    def schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.dispatch)

    def holder(self, job: Job) -> WorkerSession | None:
        session = self.sessions.get(job.worker_id)
        if session is not None and session.jobs.get(job.id) == job.attempt:
            return session
        return None

    # -- assignment ------------------------------------------------------------------------------

    def dispatch(self) -> None:
        """Hand ready jobs to workers with free capacity: never beyond a worker's capacity, an executor's
        max_concurrency or an action's max_running."""
        self._scheduled = False
        flow = self.flow
        if not flow.running:
            return
        queues = self.queues
        registry = self._registry
        for action in queues.actions():
            config = self._action_config(action)
            if config.paused:
                continue
            serving = [s for s in self.sessions.values() if action in s.executors]
            if not serving:
                continue
            while queues.size(action):
                if config.max_running and registry.active(action) >= config.max_running:
                    break
                session = max(serving, key=lambda s: s.free_for(action))
                if session.free_for(action) <= 0:
                    break
                job_id = queues.pop(action)
                if job_id is None:
                    break
                job = registry.jobs.get(job_id)
                if job is None or job.status is not JobStatus.QUEUED:
                    continue
                if job.locks and not job.locks_held and not flow.take_locks(job):
                    continue
                self.start(job, session)

    def start(self, job: Job, session: WorkerSession) -> None:
        """A new attempt of ``job`` on ``session``; its assignment is sent once that is committed."""
        self.flow.start_attempt(job, session)
        attempt = job.attempt
        self.flow.writer.after_commit(lambda: self.send_assignment(session, job, attempt))

    def send_assignment(self, session: WorkerSession, job: Job, attempt: int) -> None:
        # The job may have been cancelled, taken over or finished while the commit ran.
        if job.attempt != attempt or session.jobs.get(job.id) != attempt or job.status not in ACTIVE_STATUSES:
            return
        session.send(AssignmentOut(job.snapshot(), attempt, job.mode, job.deadlines))
