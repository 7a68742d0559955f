"""What each job deadline does when it passes: start timeouts, the two heartbeat deadlines, execution
timeouts, retry backoffs and cancel grace. (External lock TTLs are ``ExternalLocks``'.)

A timer only says "look at this job now": each handler re-reads the job and does nothing when the
deadline has moved or no longer applies.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from jobwarden.contract import (
    ACTIVE_STATUSES,
    ErrorKind,
    ExecutionMode,
    JobStatus,
    StartTimeoutAction,
)

from .dispatch import Dispatcher
from .errors import (
    InvalidArgument,
)
from .flow import FlowPart, JobFlow
from .jobs import Jobs
from .model import (
    Job,
    JobError,
    WorkflowRunRequest,
)
from .sessions import (
    CancelOut,
    WorkerSession,
)
from .timers import TimerHandler, TimerKind
from .validation import SubmitSpec

__all__ = ["DeadlineHandlers"]

log = logging.getLogger("jobwarden.engine")


class DeadlineHandlers(FlowPart):
    """What happens when a job's deadline passes: one timer handler per kind, registered on the
    timers when this part is made."""

    def __init__(self, flow: JobFlow, dispatcher: Dispatcher, jobs: Jobs) -> None:
        super().__init__(flow)
        self.dispatcher = dispatcher
        self.jobs = jobs
        #: starts a work order for a start timeout whose run request names a workflow (the workflow
        #: runner connects itself): (the timed-out job, the request, the correlation id)
        self.start_workflow: Callable[[Job, WorkflowRunRequest, str], None] | None = None
        for kind, handler in (
            (TimerKind.START, self._on_start_timeout),
            (TimerKind.HEARTBEAT, self._on_heartbeat_timeout),
            (TimerKind.TAKEOVER, self._on_takeover_timeout),
            (TimerKind.EXECUTION, self._on_execution_timeout),
            (TimerKind.WAKE, self._on_wake),
            (TimerKind.CANCEL, self._on_cancel_timeout),
        ):
            self.timers.on(kind, self._for_job(handler))

    def _for_job(self, handler: Callable[[Job, float], None]) -> TimerHandler:
        """A timer handler that finds the job its key names (and does nothing once the job ended or
        the engine stopped), then lets ``handler`` decide."""
        flow = self.flow
        jobs = self.registry.jobs
        clock = self.clock

        def fire(job_id: str) -> None:
            if not flow.running:
                return
            job = jobs.get(job_id)
            if job is not None:
                handler(job, clock())

        return fire

    def _not_yet(self, kind: str, job: Job, deadline: float | None, now: float) -> bool:
        """True (and re-armed) when the deadline moved later since the timer was set."""
        if deadline is None:
            return True
        if deadline > now + 0.001:
            self.timers.arm(kind, job.id, deadline)
            return True
        return False

    def _on_wake(self, job: Job, now: float) -> None:
        if job.status is not JobStatus.DELAYED or self._not_yet(TimerKind.WAKE, job, job.deadlines.wake, now):
            return
        job.deadlines.wake = None
        self.flow.set_start_deadline(job, now)
        reason = "retry backoff over" if job.next_mode is ExecutionMode.RETRY else "its time came"
        self.registry.transition(job, JobStatus.QUEUED, reason=reason)
        self.flow.arm_start(job)
        self.dispatcher.job_ready(job)

    def _on_start_timeout(self, job: Job, now: float) -> None:
        if job.status not in (JobStatus.QUEUED, JobStatus.WAITING_FOR_LOCK):
            return
        if self._not_yet(TimerKind.START, job, job.deadlines.start, now):
            return
        start = self.flow.timeouts(job).start
        job.deadlines.start = None
        if start is None:
            return
        if start.run_request is not None and start.run_request.workflow is not None:
            if self.start_workflow is None:
                log.error(
                    "start timeout of job %s names a workflow, but no workflow runner is connected", job.id
                )
            else:
                self.start_workflow(job, start.run_request.workflow, start.run_request.correlation_id)
        elif start.run_request is not None:
            self._submit_run_request(
                job, start.run_request.action, start.run_request.input, start.run_request.correlation_id
            )
        waited = f"not started within {start.duration:g}s"
        if start.action is StartTimeoutAction.NONE:
            self.registry.touch(job)
            return
        if start.action is StartTimeoutAction.RETRY and job.start_retries < start.retry_count:
            delay = start.retry_delay(job.start_retries)
            job.start_retries += 1
            self.dispatcher.job_unready(job.id)
            give_back_locks = self.flow.let_go_of_locks(job)
            job.deadlines.wake = now + delay
            self.registry.transition(
                job,
                JobStatus.DELAYED,
                reason=f"{waited}: re-queued in {delay:g}s "
                f"(start retry {job.start_retries} of {start.retry_count})",
            )
            give_back_locks()
            self.timers.arm(TimerKind.WAKE, job.id, job.deadlines.wake)
            return
        spent = f" and {start.retry_count} start retries" if start.action is StartTimeoutAction.RETRY else ""
        error = JobError(ErrorKind.START_TIMEOUT, f"{waited}{spent}", retryable=False)
        self.flow.end(job, JobStatus.FAILED, reason=f"START_TIMEOUT: {error.message}", error=error)

    def _submit_run_request(
        self, job: Job, action: str, job_input: dict[str, Any], correlation_id: str
    ) -> None:
        spec = SubmitSpec(
            action=action,
            input=job_input,
            correlation_id=correlation_id or job.id,
            labels={"jobwarden.start_timeout_of": job.id},
        )
        try:
            locks = self.jobs.check_submit(spec)
        except InvalidArgument as error:
            log.error("start timeout run request of job %s refused: %s", job.id, error.message)
            return
        self.jobs.create(spec, locks, actor=f"start-timeout:{job.id}")

    def _on_heartbeat_timeout(self, job: Job, now: float) -> None:
        if job.status is not JobStatus.RUNNING:
            return
        if self._not_yet(TimerKind.HEARTBEAT, job, job.deadlines.heartbeat, now):
            return
        if job.stopping and self.dispatcher.holder(job) is not None:
            # An executor that ignores its stop says nothing, but its worker's session is alive and
            # may still be running it: only the session's death lets the job (and its locks) go.
            return
        heartbeat = self.flow.timeouts(job).heartbeat or 0.0
        self.flow.time_out(job, now, reason=f"no update for {heartbeat:g}s")

    def _on_takeover_timeout(self, job: Job, now: float) -> None:
        if job.status is not JobStatus.TIMED_OUT:
            return
        if self._not_yet(TimerKind.TAKEOVER, job, job.deadlines.takeover, now):
            return
        old = self.dispatcher.holder(job)
        if job.stop_request is not None:
            self._stopping_past_takeover(job, old)
            return
        candidates = [
            s
            for s in self.dispatcher.sessions.values()
            if s is not old
            and (spec := s.executors.get(job.action)) is not None
            and spec.supports_resume
            and s.free_for(job.action) > 0
        ]
        if candidates:
            target = max(candidates, key=lambda s: s.free_for(job.action))
            if old is not None:
                old.send(CancelOut(job.id, job.attempt, f"taken over by worker {target.name}"))
            self.flow.finish_attempt(job, JobStatus.TIMED_OUT)
            job.next_mode = ExecutionMode.RESUME
            self.dispatcher.start(job, target)
            return
        if old is not None:
            old.send(CancelOut(job.id, job.attempt, "lost: silent past the second deadline"))
        silent = self.flow.timeouts(job).heartbeat
        what = f"no update for {silent:g}s and" if silent else "its worker went away and"
        error = JobError(
            ErrorKind.LOST,
            f"{what} nobody took it over within {self.flow.takeover_timeout(job):g}s more",
        )
        self.flow.fail(job, error)
        self.dispatcher.schedule()

    def _stopping_past_takeover(self, job: Job, old: WorkerSession | None) -> None:
        """A job being stopped is never taken over: another worker would run it beside an executor
        that may not have stopped. Its worker's session is dead: it ends as decided. The session is
        alive (the job went silent before the stop was asked): it stays that session's until it stops."""
        stop = job.stop_request
        assert stop is not None
        if old is not None:
            self.flow.back_to_running(
                job,
                reason=f"its worker {old.name} is still connected: the job ends when its executor stops",
                actor="engine",
            )
            old.send(CancelOut(job.id, job.attempt, stop.reason))
            return
        self.flow.finish_stop(
            job,
            actor="engine",
            how="its worker's session was declared dead before it confirmed that the executor stopped",
        )

    def _on_execution_timeout(self, job: Job, now: float) -> None:
        if job.status not in ACTIVE_STATUSES or job.stop_request is not None:
            return
        if self._not_yet(TimerKind.EXECUTION, job, job.deadlines.execution, now):
            return
        limit = self.flow.timeouts(job).execution or 0.0
        job.deadlines.execution = None
        self.flow.request_stop(
            job,
            f"execution timeout of {limit:g}s passed",
            error=JobError(
                ErrorKind.KILLED, f"the execution timeout of {limit:g}s passed; the job was cancelled"
            ),
        )

    def _on_cancel_timeout(self, job: Job, now: float) -> None:
        """The worker has not confirmed the stop within cancel_grace. While its session lives the job
        (and its locks) stays: the executor may still be writing. Say so, and ask again."""
        stop = job.stop_request
        session = self.dispatcher.holder(job)
        if stop is None or not job.stopping or session is None:
            return
        grace = self.config.cancel_grace
        reason = (
            f"the worker has not confirmed within {grace:g}s that the executor stopped; "
            "the job's locks stay held until it stops or its worker's session is declared dead"
        )
        log.warning("job %s (%s): %s", job.id, stop.reason, reason)
        self.registry.record(job, reason=reason)
        session.send(CancelOut(job.id, job.attempt, stop.reason))
