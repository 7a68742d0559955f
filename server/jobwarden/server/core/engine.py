"""The engine: the registry, the lock table, the timers, the workers and the store, driven together.

Everything runs in one asyncio event loop, so no state here needs a lock. Durable writes go through
the group-committing ``Writer``; a caller that must not be answered before its change is durable
awaits ``writer.flush()``. Messages to workers and events to watchers leave only after the batch that
holds their change has committed.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

from jobwarden.contract import (
    ACTIVE_STATUSES,
    OPERATOR_RETRYABLE_STATUSES,
    TERMINAL_STATUSES,
    WAITING_STATUSES,
    ErrorKind,
    ExecutionMode,
    JobEventType,
    JobStatus,
    Limits,
    LockMode,
    StartTimeoutAction,
)

from .errors import (
    EngineStopping,
    FailedPrecondition,
    InvalidArgument,
    InvalidTransition,
    JobNotFound,
    StaleAttempt,
)
from .events import EventBus, EventFilter, Subscription
from .ids import new_job_id, parse_job_id
from .locks import Grant, LockHolding, LockTable, ResourceView
from .model import (
    ActionConfig,
    Attempt,
    Checkpoint,
    CompletedStep,
    Event,
    Job,
    JobError,
    LockRequest,
    LogLine,
    RetryPolicy,
    Timeouts,
)
from .queues import ReadyQueues
from .registry import Registry
from .sessions import (
    AssignmentOut,
    CancelOut,
    ExecutorSpec,
    RefusalOut,
    RegisteredOut,
    ResultAckOut,
    WorkerSession,
)
from .store import JobQuery, Store, dumps
from .timers import TimerKind, Timers
from .validation import (
    SubmitSpec,
    check_action,
    check_duration,
    check_lock_requests,
    check_payload,
    check_retry_policy,
    check_string,
    check_string_map,
    check_template,
    check_timeouts,
    expand_lock_templates,
)
from .writer import Writer

__all__ = [
    "ActionStatsView",
    "Engine",
    "EngineConfig",
    "JobResultIn",
    "JobUpdateIn",
    "Registration",
    "StatsView",
]

log = logging.getLogger("jobwarden.engine")

P = ParamSpec("P")
T = TypeVar("T")


@dataclass(slots=True)
class EngineConfig:
    db_url: str = "sqlite:///jobwarden.db"
    #: how often workers must send a heartbeat; a session silent for ``session_timeout_intervals`` of
    #: these is dead
    heartbeat_interval: float = 5.0
    session_timeout_intervals: float = 3.0
    #: the second deadline when neither the job nor its action sets one
    default_takeover_timeout: float = 60.0
    #: how long a running job may take to confirm a cancel before it is CANCELLED anyway
    cancel_grace: float = 30.0
    #: events a watcher may fall behind before its stream is cut
    watch_max_pending: int = 50_000
    finished_cache_size: int = 10_000
    #: how long a caller waits for a commit before it is told the store is unavailable
    commit_timeout: float = 10.0
    #: action configurations from the config file; they replace stored ones at start
    actions: list[ActionConfig] = field(default_factory=list)


@dataclass(slots=True)
class Registration:
    worker_name: str
    executors: list[ExecutorSpec]
    capacity: int
    labels: dict[str, str] = field(default_factory=dict)
    running_jobs: list[tuple[str, int]] = field(default_factory=list)
    worker_id: str = ""
    peer: str = ""


@dataclass(slots=True)
class JobUpdateIn:
    job_id: str
    attempt: int
    progress: int | None = None
    message: str | None = None
    step: str | None = None
    #: (name, data) of a step that finished
    completed_step: tuple[str, dict[str, Any]] | None = None
    job_variables: dict[str, str] = field(default_factory=dict)
    workflow_variables: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class JobResultIn:
    job_id: str
    attempt: int
    status: int
    result: dict[str, Any] | None = None
    job_variables: dict[str, str] = field(default_factory=dict)
    workflow_variables: dict[str, str] = field(default_factory=dict)
    error: JobError | None = None
    #: raw error kind number from the wire, checked here
    error_kind: int = 0


@dataclass(slots=True)
class ActionStatsView:
    action: str
    counts: dict[JobStatus, int]
    paused: bool
    workers: int
    free_capacity: int
    max_running: int


@dataclass(slots=True)
class StatsView:
    statuses: dict[JobStatus, int]
    actions: list[ActionStatsView]
    running: int
    queued: int
    throughput: float
    actions_without_workers: list[str]
    head_sequence: int
    workers: int
    watchers: int


_WORKER_ERROR_KINDS = frozenset({ErrorKind.JOB_ERROR, ErrorKind.CRASHED})


class Engine:
    def __init__(self, config: EngineConfig | None = None, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config or EngineConfig()
        self.clock = clock
        self.store = Store(self.config.db_url)
        self.locks = LockTable()
        self.queues = ReadyQueues()
        self.timers = Timers(self._on_timer)
        self.sessions: dict[str, WorkerSession] = {}
        self._configs: dict[str, ActionConfig] = {}
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

    # == life cycle ===============================================================================

    async def start(self) -> None:
        """Open the store, recover every unfinished job, re-arm every deadline, and start serving."""
        await self._read(self.store.create_schema)
        head = await self._read(self.store.max_sequence)
        self.bus = EventBus(head, max_pending=self.config.watch_max_pending)
        self.writer = Writer(self.store, self.bus.publish, caller_timeout=self.config.commit_timeout)
        self.writer.start()
        self.registry = Registry(
            self.writer, sequence=head, finished_cache_size=self.config.finished_cache_size, clock=self.clock
        )
        for action, status, count in await self._read(self.store.status_counts):
            self.registry.counts[(action, JobStatus(status))] = count
        for config in await self._read(self.store.load_action_configs):
            self._configs[config.action] = config
        for config in self.config.actions:
            self._validate_action_config(config)
            self._configs[config.action] = config
            self.writer.action_config({"action": config.action, "doc": dumps(config.to_dict())})
        await self._read(self.store.mark_all_workers_disconnected)
        await self._recover()
        self.timers.start()
        self._running = True
        self.started_at = self.clock()
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_sessions(), name="jobwarden-sweeper")
        await self.writer.flush()
        self._schedule_dispatch()

    async def stop(self) -> None:
        """Stop serving: close worker sessions and watchers, write what is pending, close the store.
        Running jobs stay RUNNING in the store; the next start turns them TIMED_OUT."""
        if not self._running:
            return
        self._running = False
        if self._sweeper is not None:
            self._sweeper.cancel()
        for session in list(self.sessions.values()):
            session.close()
        self.sessions.clear()
        for future in self._lock_waiters.values():
            if not future.done():
                future.set_exception(EngineStopping("the engine is stopping"))
        self.bus.close_all()
        self.timers.stop()
        await self.writer.close()
        self._readers.shutdown(wait=False, cancel_futures=True)
        self.store.close()

    async def _recover(self) -> None:
        now = self.clock()
        for row in await self._read(self.store.load_locks):
            self.locks.restore(
                row.holder, row.resource, LockMode(row.mode), job_id=row.job_id, since=row.since,
                expires_at=row.expires_at,
            )
        jobs = await self._read(self.store.load_unfinished_jobs)
        for job in jobs:
            self.registry.load(job)
        for row in await self._read(self.store.load_locks):
            if row.job_id is not None and row.job_id not in self.registry.jobs:
                # A finished job's lock can only be left by a bug; never let it block others.
                log.warning("releasing lock %s left by finished job %s", row.resource, row.job_id)
                self._release_locks_of(row.holder)
            elif row.job_id is None and row.expires_at is not None:
                self._lock_ttls[row.holder] = row.expires_at
                self.timers.arm(TimerKind.LOCK_TTL, row.holder, row.expires_at)
        waiting = sorted(
            (j for j in jobs if j.status is JobStatus.WAITING_FOR_LOCK), key=lambda j: (j.queue_order, j.id)
        )
        for job in jobs:
            job.locks_held = self.locks.holds(job.id)
            deadlines = job.deadlines
            if job.status is JobStatus.RUNNING:
                self.registry.transition(job, JobStatus.TIMED_OUT, reason="the engine restarted while it ran")
                deadlines.heartbeat = None
                deadlines.takeover = now + self._takeover_timeout(job)
                self.timers.arm(TimerKind.TAKEOVER, job.id, deadlines.takeover)
            elif job.status is JobStatus.TIMED_OUT:
                deadlines.takeover = deadlines.takeover or now + self._takeover_timeout(job)
                self.timers.arm(TimerKind.TAKEOVER, job.id, deadlines.takeover)
            elif job.status is JobStatus.QUEUED:
                self.queues.push(job, urgent=job.locks_held)
            elif job.status is JobStatus.DELAYED:
                wake = deadlines.wake or job.run_at or now
                self.timers.arm(TimerKind.WAKE, job.id, wake)
            if job.status in ACTIVE_STATUSES:
                if deadlines.execution is not None:
                    self.timers.arm(TimerKind.EXECUTION, job.id, deadlines.execution)
                if job.cancel_requested:
                    self.timers.arm(TimerKind.CANCEL, job.id, now + self.config.cancel_grace)
            if job.status in (JobStatus.QUEUED, JobStatus.WAITING_FOR_LOCK) and deadlines.start is not None:
                self.timers.arm(TimerKind.START, job.id, deadlines.start)
        for job in waiting:
            if self.locks.acquire(job.id, _lock_map(job.locks), now=now, job_id=job.id):
                self._locks_taken(job)
                self.registry.transition(job, JobStatus.QUEUED, reason="its locks were granted")
                self.queues.push(job, urgent=True)

    def _check_running(self) -> None:
        if not self._running:
            raise EngineStopping("the engine is not running")

    async def _read(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a blocking store read in a reader thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, lambda: fn(*args, **kwargs))

    # == configuration ============================================================================

    def action_config(self, action: str) -> ActionConfig:
        return self._configs.get(action) or ActionConfig(action=action)

    def action_configs(self) -> list[ActionConfig]:
        return [self._configs[a] for a in sorted(self._configs)]

    async def set_action_config(self, config: ActionConfig, *, actor: str = "api") -> ActionConfig:
        self._check_running()
        self._validate_action_config(config)
        old = self._configs.get(config.action)
        self._configs[config.action] = config
        self.writer.action_config({"action": config.action, "doc": dumps(config.to_dict())})
        log.info("action %s configured by %s: %s", config.action, actor, config.to_dict())
        await self.writer.flush()
        if old is not None and (old.paused != config.paused or old.max_running != config.max_running):
            self._schedule_dispatch()
        return config

    async def set_paused(self, action: str, paused: bool, *, actor: str = "api") -> ActionConfig:
        check_action(action)
        current = self.action_config(action)
        config = ActionConfig.from_dict({**current.to_dict(), "paused": paused})
        result = await self.set_action_config(config, actor=actor)
        self._schedule_dispatch()
        return result

    def _validate_action_config(self, config: ActionConfig) -> None:
        check_action(config.action)
        check_timeouts(config.timeouts, f"actions.{config.action}.timeouts")
        if config.retry_policy is not None:
            check_retry_policy(config.retry_policy, f"actions.{config.action}.retry_policy")
        for name, value in (("max_running", config.max_running), ("max_queued", config.max_queued)):
            if value < 0 or value > 10_000_000:
                raise InvalidArgument(f"actions.{config.action}.{name} must be between 0 and 10000000")
        check_lock_requests(
            [(t.resource, int(t.mode)) for t in config.lock_templates], f"actions.{config.action}.lock_templates"
        )
        for template in config.lock_templates:
            check_template(template.resource)

    def _timeouts(self, job: Job) -> Timeouts:
        return job.timeouts.over(self.action_config(job.action).timeouts)

    def _takeover_timeout(self, job: Job) -> float:
        takeover = self._timeouts(job).takeover
        return self.config.default_takeover_timeout if takeover is None else takeover

    def _retry_policy(self, job: Job) -> RetryPolicy | None:
        return job.retry_policy or self.action_config(job.action).retry_policy

    # == jobs: submit, read, cancel, retry ========================================================

    async def submit(self, specs: Sequence[SubmitSpec], *, actor: str = "api") -> list[tuple[Job, bool]]:
        """Submit jobs in one commit. Returns each job and whether it was a duplicate (idempotency key).
        Every spec is checked first: one bad spec refuses the whole batch, and nothing changes."""
        self._check_running()
        if not specs:
            raise InvalidArgument("no jobs to submit")
        if len(specs) > Limits.MAX_BATCH_SUBMIT:
            raise InvalidArgument(f"{len(specs)} jobs in one batch, at most {Limits.MAX_BATCH_SUBMIT} allowed")
        checked = []
        for index, spec in enumerate(specs):
            try:
                checked.append(self._check_submit(spec))
            except InvalidArgument as error:
                prefix = f"jobs[{index}]: " if len(specs) > 1 else ""
                raise InvalidArgument(prefix + error.message) from None
        unknown_keys = [
            s.idempotency_key for s in specs if s.idempotency_key and s.idempotency_key not in self.registry.keys
        ]
        stored = await self._read(self.store.jobs_by_idempotency_key, unknown_keys) if unknown_keys else {}
        self._check_running()
        results: list[tuple[Job, bool]] = []
        for spec, locks in zip(specs, checked, strict=True):
            key = spec.idempotency_key
            if key:
                # Memory first: a concurrent submit with this key may have registered it while we read.
                existing = self.registry.by_key(key) or stored.get(key)
                if existing is not None:
                    results.append((existing, True))
                    continue
            results.append((self._create(spec, locks, actor), False))
        await self.writer.flush()
        return results

    def _check_submit(self, spec: SubmitSpec) -> list[LockRequest]:
        check_action(spec.action)
        check_payload(spec.input, "input")
        if not -Limits.MAX_PRIORITY <= spec.priority <= Limits.MAX_PRIORITY:
            raise InvalidArgument(f"priority must be between -{Limits.MAX_PRIORITY} and {Limits.MAX_PRIORITY}")
        check_string_map(
            spec.labels, "labels", Limits.MAX_LABELS, Limits.MAX_LABEL_KEY_LENGTH, Limits.MAX_LABEL_VALUE_LENGTH
        )
        for key in spec.labels:
            if "=" in key or "\n" in key or "\n" in spec.labels[key]:
                raise InvalidArgument(f"labels: key {key!r} (or its value) has '=' or a line break")
        check_string_map(
            spec.workflow_variables, "workflow_variables", Limits.MAX_VARIABLES, Limits.MAX_VARIABLE_KEY_LENGTH,
            Limits.MAX_VARIABLE_VALUE_LENGTH,
        )
        check_string(spec.correlation_id, "correlation_id")
        check_string(spec.idempotency_key, "idempotency_key")
        check_timeouts(spec.timeouts)
        if spec.retry_policy is not None:
            check_retry_policy(spec.retry_policy)
        if spec.run_at is not None:
            check_duration(abs(spec.run_at - self.clock()), "run_at (distance from now)", allow_zero=True)
        requested = list(spec.locks)
        templates = self.action_config(spec.action).lock_templates
        if templates:
            requested += expand_lock_templates(templates, spec.input)
        return check_lock_requests(requested)

    def _create(self, spec: SubmitSpec, locks: list[LockRequest], actor: str) -> Job:
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
        )
        config = self.action_config(spec.action)
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
            self._set_start_deadline(job, now)
        self.registry.add(job, actor=actor, reason=reason)
        if job.status is JobStatus.QUEUED:
            self._arm_start(job)
            self._enqueue(job)
        elif job.status is JobStatus.DELAYED and job.deadlines.wake is not None:
            self.timers.arm(TimerKind.WAKE, job.id, job.deadlines.wake)
        return job

    async def get_job(self, job_id: str) -> Job:
        job_id = parse_job_id(job_id)
        job = self.registry.get(job_id)
        if job is None:
            job = await self._read(self.store.get_job, job_id)
        if job is None:
            raise JobNotFound(job_id)
        return job

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
        jobs = await self._read(self.store.list_jobs, query)
        next_token = ""
        if len(jobs) > page_size:
            jobs = jobs[:page_size]
            next_token = jobs[-1].id
        return jobs, next_token, head

    async def job_events(self, job_id: str) -> list[Event]:
        job = await self.get_job(job_id)
        return await self._read(self.store.job_events, job.id)

    async def events_between(self, after: int, up_to: int, limit: int, job_ids: Sequence[str] = ()) -> list[Event]:
        return await self._read(self.store.events_between, after, up_to, limit, job_ids)

    async def job_logs(self, job_id: str, after_index: int, limit: int) -> list[LogLine]:
        job = await self.get_job(job_id)
        if after_index < 0:
            raise InvalidArgument("after_index must not be negative")
        if limit < 0 or limit > 10_000:
            raise InvalidArgument("limit must be between 0 and 10000")
        return await self._read(self.store.job_logs, job.id, after_index, limit or 1000)

    async def cancel(self, job_id: str, *, reason: str = "", actor: str = "api") -> Job:
        """Cancel a waiting job at once; ask the worker of a running one (CANCELLED when it confirms)."""
        self._check_running()
        check_string(reason, "reason", Limits.MAX_MESSAGE_LENGTH)
        job = await self.get_job(job_id)
        reason = reason or f"cancelled by {actor}"
        if job.status in TERMINAL_STATUSES:
            raise InvalidTransition(
                f"job {job.id} is already {job.status.name}; only an unfinished job can be cancelled",
                job_id=job.id,
            )
        if job.status in WAITING_STATUSES:
            self._end(job, JobStatus.CANCELLED, reason=reason, actor=actor)
        elif not job.cancel_requested:
            job.cancel_requested = True
            self.registry.record(job, JobEventType.CANCEL_REQUESTED, actor=actor, reason=reason)
            job.status_reason = reason
            session = self._holder(job)
            if session is not None:
                attempt = job.attempt
                self.writer.after_commit(lambda: session.send(CancelOut(job.id, attempt, reason)))
            self.timers.arm(TimerKind.CANCEL, job.id, self.clock() + self.config.cancel_grace)
        await self.writer.flush()
        return job

    async def retry(self, job_id: str, *, from_step: str = "", reason: str = "", actor: str = "api") -> Job:
        """A new attempt of a FAILED or CANCELLED job, from its last checkpoint or from ``from_step``."""
        self._check_running()
        check_string(reason, "reason", Limits.MAX_MESSAGE_LENGTH)
        check_string(from_step, "from_step", Limits.MAX_STEP_NAME_LENGTH)
        job = await self.get_job(job_id)
        if job.status not in OPERATOR_RETRYABLE_STATUSES:
            raise InvalidTransition(
                f"job {job.id} is {job.status.name}; only FAILED or CANCELLED jobs can be retried", job_id=job.id
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
        job.error = None
        job.result = None
        job.progress = 0
        job.step = ""
        job.start_retries = 0
        job.finished_at = None
        self._set_start_deadline(job, self.clock())
        what = f"from step {from_step!r}" if from_step else "from the last checkpoint"
        self.registry.transition(job, JobStatus.QUEUED, actor=actor, reason=reason or f"retried by {actor} {what}")
        self._arm_start(job)
        self._enqueue(job)
        await self.writer.flush()
        return job

    # == stats ====================================================================================

    def stats(self) -> StatsView:
        counts = self.registry.counts
        statuses: dict[JobStatus, int] = {}
        per_action: dict[str, dict[JobStatus, int]] = {}
        for (action, status), count in counts.items():
            if count:
                statuses[status] = statuses.get(status, 0) + count
                per_action.setdefault(action, {})[status] = count
        actions = set(per_action) | set(self._configs)
        for session in self.sessions.values():
            actions |= set(session.executors)
        views = []
        without_workers = []
        for action in sorted(actions):
            serving = [s for s in self.sessions.values() if action in s.executors]
            action_counts = per_action.get(action, {})
            config = self.action_config(action)
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

    # == events ===================================================================================

    def subscribe(self, event_filter: EventFilter | None = None, *, peer: str = "") -> Subscription:
        return self.bus.subscribe(event_filter, peer=peer)

    # == workers ==================================================================================

    def register(self, reg: Registration) -> WorkerSession:
        """Open a worker session. Re-attaches the jobs it reports still running when they are still
        its own; the rest it must stop (``rejected`` in the answer)."""
        self._check_running()
        self._check_registration(reg)
        now = self.clock()
        worker_id = reg.worker_id or f"w-{uuid.uuid4().hex[:12]}"
        old = self.sessions.get(worker_id)
        if old is not None:
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
                self._back_to_running(job, reason=f"worker {session.name} reconnected", actor=f"worker:{worker_id}")
            resumed.append((job_id, attempt))
            if job.cancel_requested:
                cancel = CancelOut(job.id, attempt, job.status_reason or "cancel requested")
                self.writer.after_commit(lambda cancel=cancel: session.send(cancel))
        session.send(RegisteredOut(worker_id, self.config.heartbeat_interval, resumed, rejected))
        self._persist_worker(session, connected=True)
        log.info(
            "worker %s (%s) connected: actions %s, capacity %d, %d jobs resumed",
            session.name, worker_id, ",".join(session.executors), session.capacity, len(resumed),
        )
        self._schedule_dispatch()
        return session

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
            reg.labels, "register: labels", Limits.MAX_LABELS, Limits.MAX_LABEL_KEY_LENGTH,
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
                self._time_out(job, now, reason=f"worker {session.name} disconnected ({reason})")
        if self._running:
            self._persist_worker(session, connected=False)
        log.info("worker %s (%s) disconnected: %s", session.name, session.id, reason)

    def _persist_worker(self, session: WorkerSession, *, connected: bool) -> None:
        doc = {
            "executors": [
                {"action": s.action, "supports_resume": s.supports_resume, "max_concurrency": s.max_concurrency}
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
                    f"step {name!r} already finished in job {job.id}: step names must be unique", job_id=job.id
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
            job.checkpoint = Checkpoint([*job.checkpoint.completed_steps, CompletedStep(name, data, self.clock())])
        if update.job_variables:
            job.job_variables = {**job.job_variables, **update.job_variables}
        if update.workflow_variables:
            job.workflow_variables = {**job.workflow_variables, **update.workflow_variables}
        self._heard_from(job)
        if job.status is JobStatus.TIMED_OUT:
            self._back_to_running(job, reason="an update arrived before the takeover deadline",
                                  actor=f"worker:{session.id}")
        else:
            self.registry.record(job, actor=f"worker:{session.id}")

    def _check_variables(self, job_variables: dict[str, str], workflow_variables: dict[str, str], job: Job) -> None:
        for what, values, current in (
            ("job_variables", job_variables, job.job_variables),
            ("workflow_variables", workflow_variables, job.workflow_variables),
        ):
            check_string_map(
                values, what, Limits.MAX_VARIABLES, Limits.MAX_VARIABLE_KEY_LENGTH, Limits.MAX_VARIABLE_VALUE_LENGTH
            )
            if len(set(current) | set(values)) > Limits.MAX_VARIABLES:
                raise InvalidArgument(f"{what}: the job would have more than {Limits.MAX_VARIABLES}", job_id=job.id)

    def worker_result(self, session: WorkerSession, result: JobResultIn) -> None:
        """A finished attempt. Acknowledged (ResultAck) only once committed; a stale one is refused."""
        try:
            job = self._held_job(session, result.job_id, result.attempt)
        except (StaleAttempt, JobNotFound) as error:
            session.send(ResultAckOut(result.job_id, result.attempt, False, error.message))
            return
        actor = f"worker:{session.id}"
        status = result.status
        problem = self._result_problem(result, job)
        if problem:
            # The worker cannot fix a result after the fact; failing the job with the reason beats a hung job.
            status = int(JobStatus.FAILED)
            result.error = JobError(ErrorKind.CRASHED, f"the engine refused the result: {problem}")
            result.result = None
            result.job_variables = {}
            result.workflow_variables = {}
        if result.job_variables:
            job.job_variables = {**job.job_variables, **result.job_variables}
        if result.workflow_variables:
            job.workflow_variables = {**job.workflow_variables, **result.workflow_variables}
        if status == JobStatus.COMPLETED:
            job.result = result.result or {}
            job.progress = 100
            job.error = None
            self._end(job, JobStatus.COMPLETED, actor=actor)
        elif status == JobStatus.CANCELLED:
            self._end(job, JobStatus.CANCELLED, actor=actor,
                      reason=job.status_reason if job.cancel_requested else "cancelled by the executor")
        else:
            error = result.error or JobError(ErrorKind.JOB_ERROR, "the executor reported a failure without an error")
            error.step = error.step or job.step
            self._fail(job, error, actor=actor)
        attempt = result.attempt
        self.writer.after_commit(lambda: session.send(ResultAckOut(job.id, attempt, True)))
        self._schedule_dispatch()

    def _result_problem(self, result: JobResultIn, job: Job) -> str:
        if result.status not in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED):
            return f"status must be COMPLETED, FAILED or CANCELLED, not {_status_name(result.status)}"
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
                return f"unknown error kind {result.error_kind}"
            if kind not in _WORKER_ERROR_KINDS:
                return f"a worker reports JOB_ERROR or CRASHED, not {kind.name}"
            if result.error is not None:
                result.error.kind = kind
        return ""

    async def worker_logs(self, session: WorkerSession, job_id: str, attempt: int,
                          lines: Sequence[tuple[float, str, str]]) -> None:
        job = self._held_job(session, job_id, attempt)
        if len(lines) > Limits.MAX_LOG_LINES_PER_MESSAGE:
            raise InvalidArgument(
                f"{len(lines)} log lines in one message, at most {Limits.MAX_LOG_LINES_PER_MESSAGE}", job_id=job_id
            )
        if job.id not in self._log_index:
            base = await self._read(self.store.max_log_index, job.id)
            self._log_index.setdefault(job.id, base)
        index = self._log_index[job.id]
        out = []
        for when, level, message in lines:
            index += 1
            if len(message) > Limits.MAX_LOG_LINE_LENGTH:
                message = message[: Limits.MAX_LOG_LINE_LENGTH] + " …[truncated]"
            out.append(LogLine(job.id, index, attempt, when or self.clock(), (level or "INFO")[:32], message))
        self._log_index[job.id] = index
        self.writer.log_lines(out)

    def worker_heartbeat(self, session: WorkerSession, jobs: Sequence[tuple[str, int, float | None]],
                         draining: bool) -> list[RefusalOut]:
        """Each listed job counts as an update for its heartbeat deadline; returns refusals for the rest."""
        refusals = []
        if draining and not session.draining:
            session.draining = True
            log.info("worker %s is draining", session.name)
        for job_id, attempt, extend in jobs:
            try:
                job = self._held_job(session, job_id, attempt)
            except (StaleAttempt, JobNotFound, InvalidArgument) as error:
                refusals.append(RefusalOut(job_id, attempt, error.code, error.message, "heartbeat"))
                continue
            self._heard_from(job)
            if extend is not None:
                check_duration(extend, "extend_execution")
                job.deadlines.execution = self.clock() + extend
                self.timers.arm(TimerKind.EXECUTION, job.id, job.deadlines.execution)
                self.registry.touch(job)
            if job.status is JobStatus.TIMED_OUT:
                self._back_to_running(job, reason="a heartbeat arrived before the takeover deadline",
                                      actor=f"worker:{session.id}")
        return refusals

    def worker_cancel_ack(self, session: WorkerSession, job_id: str, attempt: int) -> None:
        job = self._held_job(session, job_id, attempt)
        if not job.cancel_requested:
            raise FailedPrecondition(f"no cancel was requested for job {job_id}", job_id=job_id)
        self._end(job, JobStatus.CANCELLED, actor=f"worker:{session.id}", reason=job.status_reason)
        self._schedule_dispatch()

    def worker_release(self, session: WorkerSession, jobs: Sequence[tuple[str, int]], reason: str) -> None:
        """A draining worker hands running jobs back: they go first in the queue, as RESUME when the
        action supports it (keeping their locks), else as RETRY from the last checkpoint."""
        found = [self._held_job(session, job_id, attempt) for job_id, attempt in jobs]
        for job in found:
            spec = session.executors.get(job.action)
            self._finish_attempt(job, JobStatus.QUEUED, session)
            job.next_mode = ExecutionMode.RESUME if spec and spec.supports_resume else ExecutionMode.RETRY
            self.registry.transition(
                job, JobStatus.QUEUED, actor=f"worker:{session.id}",
                reason=f"handed back by worker {session.name}" + (f": {reason}" if reason else ""),
            )
            self.queues.push(job, urgent=True)
        self._schedule_dispatch()

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

    def _holder(self, job: Job) -> WorkerSession | None:
        session = self.sessions.get(job.worker_id)
        if session is not None and session.jobs.get(job.id) == job.attempt:
            return session
        return None

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

    # == dispatch =================================================================================

    def _enqueue(self, job: Job, *, urgent: bool = False) -> None:
        self.queues.push(job, urgent=urgent or job.locks_held)
        self._schedule_dispatch()

    def _schedule_dispatch(self) -> None:
        if not self._dispatch_scheduled:
            self._dispatch_scheduled = True
            asyncio.get_running_loop().call_soon(self._dispatch)

    def _dispatch(self) -> None:
        """Hand ready jobs to workers with free capacity: never beyond a worker's capacity, an executor's
        max_concurrency or an action's max_running."""
        self._dispatch_scheduled = False
        if not self._running:
            return
        for action in self.queues.actions():
            config = self.action_config(action)
            if config.paused:
                continue
            serving = [s for s in self.sessions.values() if action in s.executors]
            if not serving:
                continue
            while self.queues.size(action):
                if config.max_running and self.registry.active(action) >= config.max_running:
                    break
                session = max(serving, key=lambda s: s.free_for(action))
                if session.free_for(action) <= 0:
                    break
                job_id = self.queues.pop(action)
                if job_id is None:
                    break
                job = self.registry.jobs.get(job_id)
                if job is None or job.status is not JobStatus.QUEUED:
                    continue
                if job.locks and not job.locks_held and not self._take_locks(job):
                    continue
                self._start(job, session)

    def _start(self, job: Job, session: WorkerSession) -> None:
        """A new attempt of ``job`` on ``session`` (QUEUED or TIMED_OUT -> RUNNING)."""
        now = self.clock()
        mode = job.next_mode
        job.attempt += 1
        job.attempts.append(Attempt(job.attempt, JobStatus.RUNNING, session.id, mode, now))
        job.worker_id = session.id
        job.mode = mode
        job.started_at = job.started_at or now
        job.heartbeat_at = now
        job.cancel_requested = False
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

    def _send_assignment(self, session: WorkerSession, job: Job, attempt: int) -> None:
        # The job may have been cancelled, taken over or finished while the commit ran.
        if job.attempt != attempt or session.jobs.get(job.id) != attempt or job.status not in ACTIVE_STATUSES:
            return
        session.send(AssignmentOut(job.to_dict(payloads=True), attempt, job.mode, job.deadlines))

    # == locks ====================================================================================

    def _take_locks(self, job: Job) -> bool:
        """All of the job's locks now, or WAITING_FOR_LOCK in FIFO order."""
        if self.locks.acquire(job.id, _lock_map(job.locks), now=self.clock(), job_id=job.id):
            self._locks_taken(job)
            return True
        self.registry.transition(job, JobStatus.WAITING_FOR_LOCK, reason=self._blocking_reason(job))
        return False

    def _blocking_reason(self, job: Job) -> str:
        busy = []
        for view in self.locks.view():
            if view.resource in _lock_map(job.locks) and view.holders:
                busy.append(f"{view.resource} ({', '.join(h.holder for h in view.holders[:3])})")
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

    def _release_job_locks(self, job: Job) -> None:
        if job.locks_held:
            job.locks_held = False
            self._release_locks_of(job.id)
        elif self.locks.is_waiting(job.id):
            self._handle_grants(self.locks.withdraw(job.id))

    def _release_locks_of(self, holder: str, resources: Iterable[str] | None = None) -> int:
        released, grants = self.locks.release(holder, resources)
        for resource in released:
            self.writer.lock_removed(resource, holder)
        self._handle_grants(grants)
        return len(released)

    def _handle_grants(self, grants: list[Grant]) -> None:
        for grant in grants:
            if grant.job_id is None:
                self._persist_holdings(grant.holder)
                ttl = self._lock_ttls.get(grant.holder)
                if ttl is not None:
                    self.timers.arm(TimerKind.LOCK_TTL, grant.holder, ttl)
                waiter = self._lock_waiters.get(grant.holder)
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)
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

    async def acquire_locks(self, holder: str, requests: list[tuple[str, int]], ttl: float,
                            wait: float | None) -> list[tuple[str, LockHolding]]:
        """Locks for an external holder (all at once) with a TTL; waits up to ``wait`` in FIFO order."""
        self._check_running()
        if not holder or not holder.strip():
            raise InvalidArgument("holder is required")
        check_string(holder, "holder", 256)
        try:
            parse_job_id(holder)
        except InvalidArgument:
            pass
        else:
            raise InvalidArgument("holder must not be a job id: jobs take their locks through the engine")
        if not requests:
            raise InvalidArgument("at least one lock is required")
        locks = check_lock_requests(requests)
        check_duration(ttl, "ttl")
        if wait is not None:
            check_duration(wait, "wait", allow_zero=True)
        now = self.clock()
        expires_at = now + ttl
        self._lock_ttls[holder] = expires_at
        try:
            granted = self.locks.acquire(holder, _lock_map(locks), now=now, expires_at=expires_at,
                                         wait=wait is not None and wait > 0)
        except FailedPrecondition:
            self._lock_ttls.pop(holder, None) if not self.locks.holds(holder) else None
            raise
        if not granted and (wait is None or wait <= 0):
            self._lock_ttls.pop(holder, None)
            busy = [v for v in self.locks.view() if v.resource in _lock_map(locks) and (v.holders or v.waiters)]
            detail = "; ".join(
                f"{v.resource} held by {', '.join(h.holder + ' ' + h.mode.name for h in v.holders) or 'nobody'}"
                f"{f', {len(v.waiters)} waiting' if v.waiters else ''}"
                for v in busy
            )
            raise FailedPrecondition(f"the locks are not free: {detail}")
        if granted:
            self._persist_holdings(holder)
            self.timers.arm(TimerKind.LOCK_TTL, holder, expires_at)
        else:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._lock_waiters[holder] = future
            try:
                await asyncio.wait_for(asyncio.shield(future), wait)
            except TimeoutError:
                if not future.done():
                    self._lock_ttls.pop(holder, None)
                    self._handle_grants(self.locks.withdraw(holder))
                    raise FailedPrecondition(f"the locks were not granted within {wait:g}s") from None
            finally:
                self._lock_waiters.pop(holder, None)
            # Granted while waiting: the TTL runs from the grant.
            expires_at = self.clock() + ttl
            self._lock_ttls[holder] = expires_at
            for holding in self.locks.held_by(holder).values():
                holding.expires_at = expires_at
            self.timers.arm(TimerKind.LOCK_TTL, holder, expires_at)
        await self.writer.flush()
        return sorted(self.locks.held_by(holder).items())

    async def release_locks(self, holder: str, resources: Sequence[str]) -> int:
        self._check_running()
        if not holder:
            raise InvalidArgument("holder is required")
        if not self.locks.holds(holder):
            raise FailedPrecondition(f"{holder} holds no locks")
        holdings = self.locks.held_by(holder)
        if any(h.job_id is not None for h in holdings.values()):
            raise FailedPrecondition("a job's locks are released by the engine when the job ends")
        released = self._release_locks_of(holder, resources or None)
        if not self.locks.holds(holder):
            self.timers.disarm(TimerKind.LOCK_TTL, holder)
            self._lock_ttls.pop(holder, None)
        await self.writer.flush()
        return released

    def list_locks(self, prefix: str = "") -> list[ResourceView]:
        return self.locks.view(prefix)

    # == endings, failures and retries ============================================================

    def _finish_attempt(self, job: Job, status: JobStatus, session: WorkerSession | None = None,
                        error: JobError | None = None) -> None:
        attempt = job.live_attempt
        if attempt is not None and attempt.finished_at is None:
            attempt.status = status
            attempt.finished_at = self.clock()
            attempt.error = error
        holder = session or self.sessions.get(job.worker_id)
        if holder is not None and holder.jobs.get(job.id) == job.attempt:
            holder.drop(job)
        for kind in (TimerKind.HEARTBEAT, TimerKind.EXECUTION, TimerKind.TAKEOVER, TimerKind.CANCEL):
            self.timers.disarm(kind, job.id)
        deadlines = job.deadlines
        deadlines.heartbeat = deadlines.execution = deadlines.takeover = None

    def _end(self, job: Job, status: JobStatus, *, actor: str = "engine", reason: str = "",
             error: JobError | None = None) -> None:
        """Finish the job for good (a terminal status): its locks go, its timers go."""
        if job.status in ACTIVE_STATUSES:
            self._finish_attempt(job, status, error=error)
        self.queues.remove(job.id)
        self.timers.disarm(TimerKind.START, job.id)
        self.timers.disarm(TimerKind.WAKE, job.id)
        job.deadlines.start = job.deadlines.wake = None
        if error is not None:
            job.error = error
        self._release_job_locks(job)
        self._log_index.pop(job.id, None)
        self.registry.transition(job, status, actor=actor, reason=reason)

    def _fail(self, job: Job, error: JobError, *, actor: str = "engine") -> None:
        """A failed attempt: DELAYED for another attempt if the retry policy allows, else FAILED."""
        policy = self._retry_policy(job)
        failures = job.failures + 1
        if policy is not None and not job.cancel_requested and policy.allows_retry(failures, error):
            delay = policy.delay_before(failures)
            self._finish_attempt(job, JobStatus.FAILED, error=error)
            self._release_job_locks(job)
            job.error = error
            job.next_mode = ExecutionMode.RETRY
            job.deadlines.wake = self.clock() + delay
            self.registry.transition(
                job, JobStatus.DELAYED, actor=actor,
                reason=f"attempt {job.attempt} failed ({error.kind.name}: {error.message[:200]}); "
                f"attempt {failures + 1} of {policy.max_attempts} in {delay:g}s",
            )
            self.timers.arm(TimerKind.WAKE, job.id, job.deadlines.wake)
            return
        self._end(job, JobStatus.FAILED, actor=actor, reason=f"{error.kind.name}: {error.message[:200]}", error=error)

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

    # == timers ===================================================================================

    async def _on_timer(self, kind: str, key: str) -> None:
        if not self._running:
            return
        if kind == TimerKind.LOCK_TTL:
            self._on_lock_ttl(key)
            return
        job = self.registry.jobs.get(key)
        if job is None:
            return
        handler = {
            TimerKind.START: self._on_start_timeout,
            TimerKind.HEARTBEAT: self._on_heartbeat_timeout,
            TimerKind.TAKEOVER: self._on_takeover_timeout,
            TimerKind.EXECUTION: self._on_execution_timeout,
            TimerKind.WAKE: self._on_wake,
            TimerKind.CANCEL: self._on_cancel_timeout,
        }[kind]
        handler(job, self.clock())

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
        self._set_start_deadline(job, now)
        reason = "retry backoff over" if job.next_mode is ExecutionMode.RETRY else "its time came"
        self.registry.transition(job, JobStatus.QUEUED, reason=reason)
        self._arm_start(job)
        self._enqueue(job)

    def _on_start_timeout(self, job: Job, now: float) -> None:
        if job.status not in (JobStatus.QUEUED, JobStatus.WAITING_FOR_LOCK):
            return
        if self._not_yet(TimerKind.START, job, job.deadlines.start, now):
            return
        start = self._timeouts(job).start
        job.deadlines.start = None
        if start is None:
            return
        if start.run_request is not None:
            self._submit_run_request(job, start.run_request.action, start.run_request.input,
                                     start.run_request.correlation_id)
        waited = f"not started within {start.duration:g}s"
        if start.action is StartTimeoutAction.NONE:
            self.registry.touch(job)
            return
        if start.action is StartTimeoutAction.RETRY and job.start_retries < start.retry_count:
            delay = start.retry_delay(job.start_retries)
            job.start_retries += 1
            self.queues.remove(job.id)
            self._release_job_locks(job)
            job.deadlines.wake = now + delay
            self.registry.transition(
                job, JobStatus.DELAYED,
                reason=f"{waited}: re-queued in {delay:g}s (start retry {job.start_retries} of {start.retry_count})",
            )
            self.timers.arm(TimerKind.WAKE, job.id, job.deadlines.wake)
            return
        spent = f" and {start.retry_count} start retries" if start.action is StartTimeoutAction.RETRY else ""
        error = JobError(ErrorKind.START_TIMEOUT, f"{waited}{spent}", retryable=False)
        self._end(job, JobStatus.FAILED, reason=f"START_TIMEOUT: {error.message}", error=error)

    def _submit_run_request(self, job: Job, action: str, job_input: dict[str, Any], correlation_id: str) -> None:
        spec = SubmitSpec(action=action, input=job_input, correlation_id=correlation_id or job.id,
                          labels={"jobwarden.start_timeout_of": job.id})
        try:
            locks = self._check_submit(spec)
        except InvalidArgument as error:
            log.error("start timeout run request of job %s refused: %s", job.id, error.message)
            return
        self._create(spec, locks, actor=f"start-timeout:{job.id}")

    def _on_heartbeat_timeout(self, job: Job, now: float) -> None:
        if job.status is not JobStatus.RUNNING:
            return
        if self._not_yet(TimerKind.HEARTBEAT, job, job.deadlines.heartbeat, now):
            return
        heartbeat = self._timeouts(job).heartbeat or 0.0
        self._time_out(job, now, reason=f"no update for {heartbeat:g}s")

    def _on_takeover_timeout(self, job: Job, now: float) -> None:
        if job.status is not JobStatus.TIMED_OUT:
            return
        if self._not_yet(TimerKind.TAKEOVER, job, job.deadlines.takeover, now):
            return
        old = self._holder(job)
        if job.cancel_requested:
            if old is not None:
                old.send(CancelOut(job.id, job.attempt, job.status_reason))
            self._end(job, JobStatus.CANCELLED, reason=job.status_reason or "cancelled while timed out")
            self._schedule_dispatch()
            return
        candidates = [
            s for s in self.sessions.values()
            if s is not old and (spec := s.executors.get(job.action)) is not None and spec.supports_resume
            and s.free_for(job.action) > 0
        ]
        if candidates:
            target = max(candidates, key=lambda s: s.free_for(job.action))
            if old is not None:
                old.send(CancelOut(job.id, job.attempt, f"taken over by worker {target.name}"))
            self._finish_attempt(job, JobStatus.TIMED_OUT)
            job.next_mode = ExecutionMode.RESUME
            self._start(job, target)
            return
        if old is not None:
            old.send(CancelOut(job.id, job.attempt, "lost: silent past the second deadline"))
        silent = self._timeouts(job).heartbeat
        what = f"no update for {silent:g}s and" if silent else "its worker went away and"
        error = JobError(
            ErrorKind.LOST,
            f"{what} nobody took it over within {self._takeover_timeout(job):g}s more",
        )
        self._fail(job, error)
        self._schedule_dispatch()

    def _on_execution_timeout(self, job: Job, now: float) -> None:
        if job.status not in ACTIVE_STATUSES:
            return
        if self._not_yet(TimerKind.EXECUTION, job, job.deadlines.execution, now):
            return
        limit = self._timeouts(job).execution or 0.0
        session = self._holder(job)
        if session is not None:
            session.send(CancelOut(job.id, job.attempt, f"execution timeout of {limit:g}s passed"))
        self._fail(job, JobError(ErrorKind.KILLED, f"the execution timeout of {limit:g}s passed; the job was cancelled"))
        self._schedule_dispatch()

    def _on_cancel_timeout(self, job: Job, now: float) -> None:
        if job.status not in ACTIVE_STATUSES or not job.cancel_requested:
            return
        self._end(job, JobStatus.CANCELLED,
                  reason=f"{job.status_reason} (the worker did not confirm within {self.config.cancel_grace:g}s)")
        self._schedule_dispatch()

    def _on_lock_ttl(self, holder: str) -> None:
        expires_at = self._lock_ttls.get(holder)
        if expires_at is None or not self.locks.holds(holder):
            return
        if expires_at > self.clock() + 0.001:
            self.timers.arm(TimerKind.LOCK_TTL, holder, expires_at)
            return
        del self._lock_ttls[holder]
        log.info("locks of %s expired (TTL)", holder)
        self._release_locks_of(holder)


def _lock_map(locks: Iterable[LockRequest]) -> dict[str, LockMode]:
    return {lock.resource: lock.mode for lock in locks}


def _status_name(value: int) -> str:
    try:
        return JobStatus(value).name
    except ValueError:
        return f"unknown status {value}"

