"""The job API: submit, read, list, cancel, retry, stats and watch. What ``JobService`` calls (through
the ``Engine`` façade), and what another part calls to make a job (``check_submit`` then ``create``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from jobwarden.contract import (
    OPERATOR_RETRYABLE_STATUSES,
    TERMINAL_STATUSES,
    WAITING_STATUSES,
    ExecutionMode,
    JobEventType,
    JobStatus,
    Limits,
)

from .dispatch import Dispatcher
from .errors import FailedPrecondition, InvalidArgument, InvalidTransition, JobNotFound, NotFound
from .events import EventBus, EventFilter, Subscription
from .flow import FlowPart, JobFlow, clear_attempt_fields
from .ids import id_abbreviation, new_job_id, parse_job_id
from .model import Event, Job, LockRequest, LogLine
from .sessions import CancelOut
from .store import JobQuery
from .timers import TimerKind
from .validation import (
    SubmitSpec,
    check_action,
    check_duration,
    check_lock_requests,
    check_payload,
    check_retry_policy,
    check_string,
    check_string_map,
    check_timeouts,
    check_trace_context,
    expand_lock_templates,
)
from .values import ActionStatsView, StatsView

#: a job as it was at one moment (``Job.to_dict()``): what a change answers with
JobSnapshot = dict[str, Any]

__all__ = ["JobSnapshot", "Jobs"]


class Jobs(FlowPart):
    """Jobs as callers see them: made, read, steered and watched."""

    def __init__(self, flow: JobFlow, dispatcher: Dispatcher, bus: EventBus) -> None:
        super().__init__(flow)
        self.dispatcher = dispatcher
        self.bus = bus
        self.sessions = dispatcher.sessions

    async def submit(
        self, specs: Sequence[SubmitSpec], *, actor: str = "api"
    ) -> list[tuple[JobSnapshot, bool]]:
        """Submit jobs in one commit. Returns each job and whether it was a duplicate (idempotency key).
        Every spec is checked first: one bad spec refuses the whole batch, and nothing changes."""
        self.flow.check_running()
        if not specs:
            raise InvalidArgument("no jobs to submit")
        if len(specs) > Limits.MAX_BATCH_SUBMIT:
            raise InvalidArgument(
                f"{len(specs)} jobs in one batch, at most {Limits.MAX_BATCH_SUBMIT} allowed"
            )
        checked = []
        for index, spec in enumerate(specs):
            try:
                checked.append(self.check_submit(spec))
            except InvalidArgument as error:
                prefix = f"jobs[{index}]: " if len(specs) > 1 else ""
                raise InvalidArgument(prefix + error.message) from None
        unknown_keys = [
            s.idempotency_key
            for s in specs
            if s.idempotency_key and s.idempotency_key not in self.registry.keys
        ]
        stored = await self.read(self.store.jobs_by_idempotency_key, unknown_keys) if unknown_keys else {}
        self.flow.check_running()
        # Every key is checked before anything is made: one reused key refuses the whole batch.
        first_of_key: dict[str, tuple[int, SubmitSpec, list[LockRequest]]] = {}
        for index, (spec, locks) in enumerate(zip(specs, checked, strict=True)):
            key = spec.idempotency_key
            if not key:
                continue
            # Memory first: a concurrent submit with this key may have registered it while we read.
            existing = self.registry.by_key(key) or stored.get(key)
            prefix = f"jobs[{index}]: " if len(specs) > 1 else ""
            if existing is not None:
                _refuse_reused_key(key, spec, locks, existing, prefix)
            elif key in first_of_key:
                first_index, first_spec, first_locks = first_of_key[key]
                differ = _request_differences(spec, locks, _spec_as_job(first_spec, first_locks))
                if differ:
                    raise FailedPrecondition(
                        f"{prefix}idempotency_key {key!r} is also used by jobs[{first_index}] of this "
                        f"batch with a different request ({', '.join(differ)} differ); nothing was submitted"
                    )
            else:
                first_of_key[key] = (index, spec, locks)
        results: list[tuple[JobSnapshot, bool]] = []
        for spec, locks in zip(specs, checked, strict=True):
            key = spec.idempotency_key
            if key:
                existing = self.registry.by_key(key) or stored.get(key)
                if existing is not None:
                    results.append((existing.snapshot(), True))
                    continue
            results.append((self.create(spec, locks, actor).snapshot(), False))
        await self.writer.flush()
        return results

    def check_submit(self, spec: SubmitSpec) -> list[LockRequest]:
        check_action(spec.action)
        check_payload(spec.input, "input")
        if not -Limits.MAX_PRIORITY <= spec.priority <= Limits.MAX_PRIORITY:
            raise InvalidArgument(
                f"priority must be between -{Limits.MAX_PRIORITY} and {Limits.MAX_PRIORITY}"
            )
        check_string_map(
            spec.labels,
            "labels",
            Limits.MAX_LABELS,
            Limits.MAX_LABEL_KEY_LENGTH,
            Limits.MAX_LABEL_VALUE_LENGTH,
        )
        for key in spec.labels:
            if "=" in key or "\n" in key or "\n" in spec.labels[key]:
                raise InvalidArgument(f"labels: key {key!r} (or its value) has '=' or a line break")
        check_string_map(
            spec.workflow_variables,
            "workflow_variables",
            Limits.MAX_VARIABLES,
            Limits.MAX_VARIABLE_KEY_LENGTH,
            Limits.MAX_VARIABLE_VALUE_LENGTH,
        )
        check_string(spec.correlation_id, "correlation_id")
        check_string(spec.idempotency_key, "idempotency_key")
        check_trace_context(spec.trace_context)
        check_timeouts(spec.timeouts)
        if spec.retry_policy is not None:
            check_retry_policy(spec.retry_policy)
        if spec.run_at is not None:
            check_duration(abs(spec.run_at - self.clock()), "run_at (distance from now)", allow_zero=True)
        requested = list(spec.locks)
        templates = self.flow.configs.get(spec.action).lock_templates
        if templates:
            requested += expand_lock_templates(templates, spec.input)
        return check_lock_requests(requested)

    def create(self, spec: SubmitSpec, locks: list[LockRequest], actor: str) -> Job:
        now = self.clock()
        job = Job(
            id=new_job_id(),
            action=spec.action,
            status=JobStatus.QUEUED,
            input=spec.input,
            created_at=now,
            updated_at=now,
            priority=spec.priority,
            labels=dict(spec.labels),
            locks=locks,
            correlation_id=spec.correlation_id,
            idempotency_key=spec.idempotency_key,
            run_at=spec.run_at,
            timeouts=spec.timeouts,
            retry_policy=spec.retry_policy,
            workflow_variables=dict(spec.workflow_variables),
            trace_context=dict(spec.trace_context),
            workflow_run_id=spec.workflow_run_id,
            workflow_step=spec.workflow_step,
            work_order_id=spec.work_order_id,
        )
        config = self.flow.configs.get(spec.action)
        reason = ""
        if config.max_queued and self.registry.waiting(spec.action) >= config.max_queued:
            job.status = JobStatus.REJECTED
            job.finished_at = now
            reason = (
                f"the run limit was reached: {spec.action} already has {config.max_queued} jobs waiting "
                "(max_queued)"
            )
            job.status_reason = reason
        elif spec.run_at is not None and spec.run_at > now:
            job.status = JobStatus.DELAYED
            job.deadlines.wake = spec.run_at
            reason = "run_at is in the future"
            job.status_reason = reason
        else:
            self.flow.set_start_deadline(job, now)
        self.registry.add(job, actor=actor, reason=reason)
        if job.status is JobStatus.QUEUED:
            self.flow.arm_start(job)
            self.dispatcher.job_ready(job)
        elif job.status is JobStatus.DELAYED and job.deadlines.wake is not None:
            self.timers.arm(TimerKind.WAKE, job.id, job.deadlines.wake)
        return job

    async def get_job(self, job_id: str) -> Job:
        """The job as committed: a change still on its way to the store is waited for (one group
        commit at most), so a reader never sees a state that a crash could take back."""
        job_id = await self.resolve_job_id(job_id)
        job = self.registry.get(job_id)
        if job is None:
            job = await self.read(self.store.get_job, job_id)
        elif job.sequence > self.bus.head:
            await self.writer.flush()
        if job is None:
            raise JobNotFound(job_id)
        return job

    async def resolve_job_id(self, text: str) -> str:
        """The full id ``text`` names: itself, or the one job whose id starts or ends with it (people
        copy the console's last 8 characters); InvalidArgument when several do, JobNotFound when none."""
        part = id_abbreviation(text)
        if part is None:
            return parse_job_id(text)
        # Every acknowledged job is in the store once what is pending is written.
        await self.writer.flush()
        shown = 5
        found = await self.read(self.store.job_ids_abbreviated, part, shown + 1)
        if not found:
            raise NotFound(f"no job id starts or ends with {text!r}", job_id=text)
        if len(found) > 1:
            listed = ", ".join(found[:shown]) + (", ..." if len(found) > shown else "")
            many = f"{shown} or more" if len(found) > shown else str(len(found))
            raise InvalidArgument(f"job id {text!r} is ambiguous: it matches {many} jobs: {listed}")
        return str(found[0])

    async def list_jobs(self, query: JobQuery) -> tuple[list[Job], str, int]:
        """A page of jobs, newest first; the next page token ('' on the last page); the head sequence
        the page reflects."""
        if query.page_size < 0 or query.page_size > Limits.MAX_PAGE_SIZE:
            raise InvalidArgument(f"page_size must be between 0 and {Limits.MAX_PAGE_SIZE}")
        page_size = query.page_size or Limits.DEFAULT_PAGE_SIZE
        if query.before_id:
            try:
                query.before_id = parse_job_id(query.before_id)
            except InvalidArgument:
                raise InvalidArgument("malformed page_token") from None
        if query.action:
            check_action(query.action)
        check_string(query.text, "text")
        check_string(query.label, "label")
        head = self.bus.head
        query.page_size = page_size + 1
        jobs = await self.read(self.store.list_jobs, query)
        next_token = ""
        if len(jobs) > page_size:
            jobs = jobs[:page_size]
            next_token = jobs[-1].id
        return jobs, next_token, head

    async def job_events(self, job_id: str) -> list[Event]:
        job = await self.get_job(job_id)
        return await self.read(self.store.job_events, job.id)

    async def events_between(
        self, after: int, up_to: int, limit: int, job_ids: Sequence[str] = ()
    ) -> list[Event]:
        return await self.read(self.store.events_between, after, up_to, limit, job_ids)

    async def job_logs(self, job_id: str, after_index: int, limit: int) -> list[LogLine]:
        job = await self.get_job(job_id)
        if after_index < 0:
            raise InvalidArgument("after_index must not be negative")
        if limit < 0 or limit > 10_000:
            raise InvalidArgument("limit must be between 0 and 10000")
        return await self.read(self.store.job_logs, job.id, after_index, limit or 1000)

    async def cancel(self, job_id: str, *, reason: str = "", actor: str = "api") -> JobSnapshot:
        """Cancel a waiting job at once; ask the worker of a running one (CANCELLED when it confirms).
        A second cancel while the first waits for the worker is refused, and changes nothing."""
        self.flow.check_running()
        check_string(reason, "reason", Limits.MAX_MESSAGE_LENGTH)
        job = await self.get_job(job_id)
        reason = reason or f"cancelled by {actor}"
        if job.status in TERMINAL_STATUSES:
            raise InvalidTransition(
                f"job {job.id} is already {job.status.name}; only an unfinished job can be cancelled",
                job_id=job.id,
            )
        if job.cancel_requested and job.status not in WAITING_STATUSES:
            raise InvalidTransition(await self._cancel_pending(job), job_id=job.id)
        self.cancel_unfinished(job, reason=reason, actor=actor)
        snapshot = job.snapshot()
        await self.writer.flush()
        return snapshot

    def cancel_unfinished(self, job: Job, *, reason: str, actor: str) -> None:
        """Cancel an unfinished job: a waiting one at once, a running one through its worker
        (CANCELLED when it confirms). A running job whose cancel was already asked is left as it is."""
        if job.status in WAITING_STATUSES:
            self.flow.end(job, JobStatus.CANCELLED, reason=reason, actor=actor)
        elif not job.cancel_requested:
            job.cancel_requested = True
            job.status_reason = reason
            self.flow.decide_cancel(job, reason, actor)
            self.registry.record(job, JobEventType.CANCEL_REQUESTED, actor=actor, reason=reason)
            session = self.dispatcher.holder(job)
            if session is not None:
                attempt = job.attempt
                self.writer.after_commit(lambda: session.send(CancelOut(job.id, attempt, reason)))
            self.timers.arm(TimerKind.CANCEL, job.id, self.clock() + self.config.cancel_grace)

    async def _cancel_pending(self, job: Job) -> str:
        """Why a second cancel of ``job`` is refused: who asked first, and when (from its history)."""
        events = await self.read(self.store.job_events, job.id)
        asked = next((ev for ev in reversed(events) if ev.type is JobEventType.CANCEL_REQUESTED), None)
        by = ""
        if asked is not None:
            when = datetime.fromtimestamp(asked.time, UTC).isoformat(timespec="seconds")
            by = f" by {asked.actor} at {when}" + (f" ({asked.reason})" if asked.reason else "")
        return (
            f"job {job.id} is {job.status.name} and its cancel was already requested{by}; the engine "
            "waits for its worker to confirm that the executor stopped (or for the worker's session to "
            "be declared dead); nothing changed"
        )

    async def retry(
        self, job_id: str, *, from_step: str = "", reason: str = "", actor: str = "api"
    ) -> JobSnapshot:
        """A new attempt of a FAILED or CANCELLED job, from its last checkpoint or from ``from_step``."""
        self.flow.check_running()
        check_string(reason, "reason", Limits.MAX_MESSAGE_LENGTH)
        check_string(from_step, "from_step", Limits.MAX_STEP_NAME_LENGTH)
        job = await self.get_job(job_id)
        if job.status not in OPERATOR_RETRYABLE_STATUSES:
            raise InvalidTransition(
                f"job {job.id} is {job.status.name}; only FAILED or CANCELLED jobs can be retried",
                job_id=job.id,
            )
        if from_step and not job.checkpoint.has_step(from_step):
            finished = ", ".join(s.name for s in job.checkpoint.completed_steps) or "none"
            raise InvalidArgument(
                f"job {job.id} has no finished step {from_step!r} (finished steps: {finished})", job_id=job.id
            )
        if from_step:
            job.checkpoint = job.checkpoint.truncated_before(from_step)
        job.next_mode = ExecutionMode.RETRY
        job.cancel_requested = False
        clear_attempt_fields(job)
        job.start_retries = 0
        job.finished_at = None
        self.flow.set_start_deadline(job, self.clock())
        what = f"from step {from_step!r}" if from_step else "from the last checkpoint"
        self.registry.transition(
            job, JobStatus.QUEUED, actor=actor, reason=reason or f"retried by {actor} {what}"
        )
        self.flow.arm_start(job)
        self.dispatcher.job_ready(job)
        snapshot = job.snapshot()
        await self.writer.flush()
        return snapshot

    def stats(self) -> StatsView:
        counts = self._committed_counts()
        statuses: dict[JobStatus, int] = {}
        per_action: dict[str, dict[JobStatus, int]] = {}
        for (action, status), count in counts.items():
            if count:
                statuses[status] = statuses.get(status, 0) + count
                per_action.setdefault(action, {})[status] = count
        actions = set(per_action) | set(self.flow.configs.stored)
        for session in self.sessions.values():
            actions |= set(session.executors)
        views = []
        without_workers = []
        for action in sorted(actions):
            serving = [s for s in self.sessions.values() if action in s.executors]
            action_counts = per_action.get(action, {})
            config = self.flow.configs.get(action)
            views.append(
                ActionStatsView(
                    action=action,
                    counts=action_counts,
                    paused=config.paused,
                    workers=len(serving),
                    free_capacity=sum(s.free_for(action) for s in serving),
                    max_running=config.max_running,
                )
            )
            waiting = sum(action_counts.get(s, 0) for s in (JobStatus.QUEUED, JobStatus.WAITING_FOR_LOCK))
            if waiting and not serving:
                without_workers.append(action)
        return StatsView(
            statuses=statuses,
            actions=views,
            running=statuses.get(JobStatus.RUNNING, 0),
            queued=statuses.get(JobStatus.QUEUED, 0),
            throughput=self.registry.throughput(),
            actions_without_workers=without_workers,
            head_sequence=self.bus.head,
            workers=len(self.sessions),
            watchers=len(self.bus.subscribers()),
        )

    def _committed_counts(self) -> Counter[tuple[str, JobStatus]]:
        """The registry's counts less the changes whose events are not published yet.

        The registry counts a change when it numbers its event; ``head_sequence`` is the last
        event published. Without this, a client that seeds its counts from ``GetStats`` and then
        follows ``WatchJobs`` from the head would count a change in flight twice.
        """
        counts = Counter(self.registry.counts)
        for ev in self.writer.uncommitted_events():
            action, status = ev.snapshot["action"], JobStatus(ev.snapshot["status"])
            if ev.type is JobEventType.SUBMITTED:
                counts[(action, status)] -= 1
            elif ev.previous_status is not None and ev.previous_status is not status:
                counts[(action, status)] -= 1
                counts[(action, ev.previous_status)] += 1
        return counts

    def subscribe(
        self,
        event_filter: EventFilter | None = None,
        *,
        peer: str = "",
        on_cut: Callable[[], None] | None = None,
    ) -> Subscription:
        return self.bus.subscribe(event_filter, peer=peer, on_cut=on_cut)


def _request_differences(spec: SubmitSpec, locks: list[LockRequest], job: Job) -> list[str]:
    """The fields that define a job in which ``spec`` (with its checked ``locks``) differs from
    ``job``: what makes a reused idempotency key a different request. Compared as the store keeps
    them (``to_dict``), so a job read back after a restart compares like one in memory."""
    fields = {
        "action": (spec.action, job.action),
        "input": (spec.input, job.input),
        "priority": (spec.priority, job.priority),
        "labels": (spec.labels, job.labels),
        "locks": (_lock_set(locks), _lock_set(job.locks)),
        "correlation_id": (spec.correlation_id, job.correlation_id),
        "run_at": (spec.run_at, job.run_at),
        "timeouts": (spec.timeouts.to_dict(), job.timeouts.to_dict()),
        "retry_policy": (
            spec.retry_policy.to_dict() if spec.retry_policy else None,
            job.retry_policy.to_dict() if job.retry_policy else None,
        ),
        "workflow_variables": (spec.workflow_variables, job.workflow_variables),
    }
    return [name for name, (asked, first) in fields.items() if asked != first]


def _lock_set(locks: Sequence[LockRequest]) -> set[tuple[str, int]]:
    return {(lock.resource, int(lock.mode)) for lock in locks}


def _spec_as_job(spec: SubmitSpec, locks: list[LockRequest]) -> Job:
    """A job made of ``spec``, only to compare another spec of the same batch with it."""
    return Job(
        id="",
        action=spec.action,
        status=JobStatus.QUEUED,
        input=spec.input,
        created_at=0.0,
        updated_at=0.0,
        priority=spec.priority,
        labels=spec.labels,
        locks=locks,
        correlation_id=spec.correlation_id,
        run_at=spec.run_at,
        timeouts=spec.timeouts,
        retry_policy=spec.retry_policy,
        workflow_variables=spec.workflow_variables,
    )


def _refuse_reused_key(
    key: str, spec: SubmitSpec, locks: list[LockRequest], existing: Job, prefix: str
) -> None:
    """FailedPrecondition when ``spec`` is not the request that made ``existing`` under ``key``."""
    differ = _request_differences(spec, locks, existing)
    if differ:
        raise FailedPrecondition(
            f"{prefix}idempotency_key {key!r} was already used for job {existing.id} with a different "
            f"request ({', '.join(differ)} differ); send the same request to get that job back, or use "
            "a new key; nothing was submitted",
            job_id=existing.id,
        )
