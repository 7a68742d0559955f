"""The engine: its parts made and joined, its life cycle, and the API the servicers call.

Everything runs in one asyncio event loop, so no state here needs a lock. Durable writes go through
the group-committing ``Writer``; a caller that must not be answered before its change is durable
awaits ``writer.flush()``. Messages to workers and events to watchers leave only after the batch that
holds their change has committed.

The parts (docs/architecture.md draws them): ``JobFlow`` (flow.py) the steps every job takes and the
state they change; ``Dispatcher`` (dispatch.py) the ready queues, the sessions and assignment;
``WorkerProtocol`` (worker_protocol.py) what workers send; ``DeadlineHandlers`` (deadlines.py) what
each job deadline does; ``ExternalLocks`` (external_locks.py) LockService's holders; ``Jobs``
(jobs.py) the job API. Each takes its collaborators when it is made; this façade makes them, starts
and stops them, recovers what the store holds, and lends the servicers the parts' public methods.
"""

from __future__ import annotations

import difflib
import logging
import time
from collections.abc import Callable

from jobwarden.contract import ACTIVE_STATUSES, JobStatus, LockMode

from .configs import ActionConfigs
from .deadlines import DeadlineHandlers
from .dispatch import Dispatcher
from .errors import NotFound
from .events import EventBus
from .external_locks import ExternalLocks
from .flow import JobFlow, lock_map
from .jobs import Jobs, JobSnapshot
from .locks import LockTable
from .model import ActionConfig
from .registry import Registry
from .store import Store
from .store_api import JobStore
from .timers import TimerKind, Timers
from .validation import check_action
from .values import ActionStatsView, EngineConfig, JobResultIn, JobUpdateIn, Registration, StatsView
from .worker_protocol import WorkerProtocol
from .workflow_runner import WorkflowRunner
from .writer import Writer

__all__ = [
    "ActionStatsView",
    "Engine",
    "EngineConfig",
    "JobResultIn",
    "JobSnapshot",
    "JobUpdateIn",
    "Registration",
    "StatsView",
]

log = logging.getLogger("jobwarden.engine")


class Engine:
    """The engine: life cycle, configuration, and the job, worker and lock API of its parts."""

    def __init__(
        self, config: EngineConfig, store: JobStore, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.config = config
        self.clock = clock
        #: the database (read in reader threads, written by ``writer``)
        self.store = store
        #: changes made in memory, stamped with sequences from where the store stands (set at start)
        self.bus = EventBus(0, max_pending=config.watch_max_pending)
        self.writer = Writer(store, self.bus.publish, caller_timeout=config.commit_timeout)
        self.registry = Registry(
            self.writer, sequence=0, finished_cache_size=config.finished_cache_size, clock=clock
        )
        self.locks = LockTable()
        self.timers = Timers()
        self.configs = ActionConfigs(self.writer)
        # The parts, each given what it works with.
        self.flow = JobFlow(
            config,
            store=store,
            writer=self.writer,
            registry=self.registry,
            locks=self.locks,
            timers=self.timers,
            configs=self.configs,
            clock=clock,
        )
        self.dispatcher = Dispatcher(self.flow)
        self.protocol = WorkerProtocol(self.flow, self.dispatcher)
        self.jobs = Jobs(self.flow, self.dispatcher, self.bus)
        self.deadlines = DeadlineHandlers(self.flow, self.dispatcher, self.jobs)
        self.external_locks = ExternalLocks(self.flow)
        self.workflows = WorkflowRunner(self.flow, self.jobs, self.deadlines)
        #: the ready queues and the worker sessions (the dispatcher's)
        self.queues = self.dispatcher.queues
        self.sessions = self.dispatcher.sessions
        self.started_at = 0.0
        # What the servicers call, lent from the part that does it (bound once: no extra call per
        # message on the hot path).
        self.action_config = self.configs.get
        jobs = self.jobs
        self.submit = jobs.submit
        self.get_job = jobs.get_job
        self.resolve_job_id = jobs.resolve_job_id
        self.list_jobs = jobs.list_jobs
        self.job_events = jobs.job_events
        self.events_between = jobs.events_between
        self.job_logs = jobs.job_logs
        self.cancel = jobs.cancel
        self.retry = jobs.retry
        self.stats = jobs.stats
        self.subscribe = jobs.subscribe
        protocol = self.protocol
        self.register = protocol.register
        self.disconnect = protocol.disconnect
        self.worker_update = protocol.worker_update
        self.worker_result = protocol.worker_result
        self.worker_logs = protocol.worker_logs
        self.worker_heartbeat = protocol.worker_heartbeat
        self.worker_cancel_ack = protocol.worker_cancel_ack
        self.worker_release = protocol.worker_release
        self.workers = protocol.workers
        external = self.external_locks
        self.acquire_locks = external.acquire_locks
        self.release_locks = external.release_locks
        self.list_locks = external.list_locks
        self.lock_holder_note = external.lock_holder_note
        self.force_release_job_locks = external.force_release_job_locks
        workflows = self.workflows
        self.put_workflow = workflows.put_definition
        self.get_workflow = workflows.get_definition
        self.list_workflows = workflows.list_definitions
        self.start_workflow = workflows.start
        self.get_work_order = workflows.get_order
        self.work_order_runs = workflows.runs_of
        self.list_work_orders = workflows.list_orders
        self.get_workflow_run = workflows.get_run
        self.retry_work_order = workflows.retry
        self.cancel_workflow_run = workflows.cancel
        self.workflow_events_between = workflows.events_between
        self.resolve_workflow_id = workflows.resolve_id

    @classmethod
    def from_config(cls, config: EngineConfig, *, clock: Callable[[], float] = time.time) -> Engine:
        """An engine on the store ``config.db_url`` names."""
        return cls(config, Store(config.db_url), clock=clock)

    @property
    def running(self) -> bool:
        return self.flow.running

    async def start(self) -> None:
        """Open the store, recover every unfinished job, re-arm every deadline, and start serving."""
        read = self.flow.read
        await read(self.store.create_schema)
        head = await read(self.store.max_sequence)
        self.bus.head = head
        self.registry.sequence = head
        self.writer.start()
        for action, status, count in await read(self.store.status_counts):
            self.registry.counts[(action, JobStatus(status))] = count
        for config in await read(self.store.load_action_configs):
            self.configs.load(config)
        for config in self.config.actions:
            self.configs.put(config)
        await read(self.store.mark_all_workers_disconnected)
        await self._recover()
        await self.workflows.recover()
        self.timers.start()
        self.flow.running = True
        self.started_at = self.clock()
        self.protocol.start()
        await self.writer.flush()
        self.dispatcher.schedule()

    async def stop(self) -> None:
        """Stop serving: close worker sessions and watchers, write what is pending, close the store.
        Running jobs stay RUNNING in the store; the next start turns them TIMED_OUT."""
        if not self.flow.running:
            return
        self.flow.running = False
        self.protocol.stop()
        self.external_locks.stop()
        self.bus.close_all()
        self.timers.stop()
        await self.writer.close()
        self.flow.close_readers()
        self.store.close()

    async def _recover(self) -> None:
        now = self.clock()
        lock_rows = await self.flow.read(self.store.load_locks)
        for row in lock_rows:
            self.locks.restore(
                row.holder,
                row.resource,
                LockMode(row.mode),
                job_id=row.job_id,
                since=row.since,
                expires_at=row.expires_at,
            )
        jobs = await self.flow.read(self.store.load_unfinished_jobs)
        for job in jobs:
            self.registry.load(job)
        for row in lock_rows:
            if row.job_id is not None and row.job_id not in self.registry.jobs:
                # A finished job's lock can only be left by a bug; never let it block others.
                log.warning("releasing lock %s left by finished job %s", row.resource, row.job_id)
                self.flow.release_locks_of(row.holder)
            elif row.job_id is None and row.expires_at is not None:
                self.external_locks.restore_ttl(row.holder, row.expires_at)
        waiting = sorted(
            (j for j in jobs if j.status is JobStatus.WAITING_FOR_LOCK), key=lambda j: (j.queue_order, j.id)
        )
        for job in jobs:
            job.locks_held = self.locks.holds(job.id)
            deadlines = job.deadlines
            if job.status is JobStatus.RUNNING:
                self.registry.transition(job, JobStatus.TIMED_OUT, reason="the engine restarted while it ran")
                deadlines.heartbeat = None
                deadlines.takeover = now + self.flow.takeover_timeout(job)
                self.timers.arm(TimerKind.TAKEOVER, job.id, deadlines.takeover)
            elif job.status is JobStatus.TIMED_OUT:
                deadlines.takeover = deadlines.takeover or now + self.flow.takeover_timeout(job)
                self.timers.arm(TimerKind.TAKEOVER, job.id, deadlines.takeover)
            elif job.status is JobStatus.QUEUED:
                self.dispatcher.queues.push(job, urgent=job.locks_held)
            elif job.status is JobStatus.DELAYED:
                wake = deadlines.wake or job.run_at or now
                self.timers.arm(TimerKind.WAKE, job.id, wake)
            if job.status in ACTIVE_STATUSES:
                if deadlines.execution is not None:
                    self.timers.arm(TimerKind.EXECUTION, job.id, deadlines.execution)
                if job.cancel_requested and job.stop_request is None:
                    # Written by an engine from before stop requests were kept.
                    self.flow.decide_cancel(job, job.status_reason or "cancel requested", "engine")
                if job.stop_request is not None:
                    self.timers.arm(TimerKind.CANCEL, job.id, now + self.config.cancel_grace)
            if job.status in (JobStatus.QUEUED, JobStatus.WAITING_FOR_LOCK) and deadlines.start is not None:
                self.timers.arm(TimerKind.START, job.id, deadlines.start)
        for job in waiting:
            if self.locks.acquire(job.id, lock_map(job.locks), now=now, job_id=job.id):
                self.flow.locks_taken(job)
                self.registry.transition(job, JobStatus.QUEUED, reason="its locks were granted")
                self.dispatcher.queues.push(job, urgent=True)

    def action_configs(self) -> list[ActionConfig]:
        return self.configs.all()

    async def set_action_config(self, config: ActionConfig, *, actor: str = "api") -> ActionConfig:
        self.flow.check_running()
        old = self.configs.put(config, actor=actor)
        await self.writer.flush()
        if old is not None and (old.paused != config.paused or old.max_running != config.max_running):
            self.dispatcher.schedule()
        return config

    async def set_paused(
        self, action: str, paused: bool, *, actor: str = "api", create_if_unknown: bool = False
    ) -> ActionConfig:
        """Pause or resume ``action``; NotFound (nothing stored) for an action the engine does not
        know, unless ``create_if_unknown`` asks to configure it ahead of its first job or worker."""
        check_action(action)
        if not create_if_unknown and not self._knows_action(action):
            raise self._unknown_action(action)
        current = self.action_config(action)
        config = ActionConfig.from_dict({**current.to_dict(), "paused": paused})
        result = await self.set_action_config(config, actor=actor)
        self.dispatcher.schedule()
        return result

    def known_actions(self) -> set[str]:
        """Actions with a stored configuration, with jobs in the store, or served by a connected worker."""
        known = set(self.configs.stored)
        known.update(action for (action, _), count in self.registry.counts.items() if count > 0)
        for session in self.sessions.values():
            known.update(session.executors)
        return known

    def _knows_action(self, action: str) -> bool:
        if action in self.configs.stored or any(action in s.executors for s in self.sessions.values()):
            return True
        return any(self.registry.counts[(action, status)] > 0 for status in JobStatus)

    def _unknown_action(self, action: str) -> NotFound:
        known = sorted(self.known_actions())
        close = difflib.get_close_matches(action, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        listed = ", ".join(known[:20]) + (f" and {len(known) - 20} more" if len(known) > 20 else "")
        return NotFound(
            f"no action {action!r}: no job, worker or config has named it; known actions: "
            f"{listed or 'none'}{hint} (to configure it ahead of its first job, pass "
            "create_if_unknown: jobwarden actions pause NAME --create)"
        )
