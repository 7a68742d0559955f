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

import asyncio
import difflib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import TypeVar

import msgspec
from jobwarden.contract import ACTIVE_STATUSES, JobStatus, LockMode

from .configs import ActionConfigs
from .deadlines import DeadlineHandlers
from .dispatch import Dispatcher
from .errors import Fenced, InvalidArgument, NotFound, NotLeader
from .events import EventBus
from .external_locks import ExternalLocks
from .flow import RECOVERY_PAGE, JobFlow, lock_map
from .jobs import Jobs, JobSnapshot
from .leadership import (
    EngineMember,
    EngineRole,
    EventTail,
    LeaderLease,
    Leadership,
    LeadershipSettings,
    SingleEngineLock,
    TailedEvent,
    default_engine_id,
)
from .locks import LockTable
from .model import ActionConfig, Event
from .registry import Registry
from .store import Store
from .store_api import JobStore
from .timers import TimerKind, Timers
from .validation import check_action
from .values import (
    ActionStatsView,
    EngineConfig,
    JobResultIn,
    JobUpdateIn,
    Registration,
    StatsView,
    sqlite_path,
)
from .worker_protocol import WorkerProtocol
from .workflow_runner import WorkflowRunner
from .workflows.runs import WorkflowEvent
from .writer import CommitReport, Writer

__all__ = [
    "ActionStatsView",
    "ClusterView",
    "Engine",
    "EngineConfig",
    "JobResultIn",
    "JobSnapshot",
    "JobUpdateIn",
    "Registration",
    "StatsView",
]

log = logging.getLogger("jobwarden.engine")
T = TypeVar("T")


@dataclass(slots=True, frozen=True)
class ClusterView:
    """The engines on one store as one of them sees it (ListEngines)."""

    #: the engine that answered
    engine_id: str
    #: the leader first, then the others by id
    engines: list[EngineMember]
    leader_id: str
    leader_address: str
    epoch: int


def _version() -> str:
    try:
        return metadata.version("jobwarden")
    except metadata.PackageNotFoundError:
        return ""


class Engine:
    """The engine: life cycle, configuration, and the job, worker and lock API of its parts."""

    def __init__(
        self,
        config: EngineConfig,
        store: JobStore,
        *,
        clock: Callable[[], float] = time.time,
        leadership: Leadership | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        #: the database (read in reader threads, written by ``writer``)
        self.store = store
        #: several engines on one PostgreSQL: who leads (None: the one engine on its store)
        self.leadership = leadership
        #: committed events to watchers; kept across leadership changes, so a watch survives them
        self.bus = EventBus(0, max_pending=config.watch_max_pending)
        #: the writer's observers (metrics, logs, traces), kept for every writer the engine makes
        self._commit_observers: list[Callable[[CommitReport], None]] = []
        self._tail: EventTail | None = None
        self._single: SingleEngineLock | None = None
        self.started_at = 0.0
        self._make_parts()

    def _make_parts(self) -> None:
        """Make the parts afresh: at construction, and when leadership changes (a standby keeps no
        job state of its own; a new leader recovers it from the store)."""
        config, store, clock = self.config, self.store, self.clock
        leadership = self.leadership
        self.writer = Writer(
            store,
            self.bus.publish,
            caller_timeout=config.commit_timeout,
            observers=self._commit_observers,
            guard=leadership.check_acting if leadership is not None else None,
            on_fenced=self._on_fenced if leadership is not None else None,
        )
        self.registry = Registry(
            self.writer, sequence=self.bus.head, finished_cache_size=config.finished_cache_size, clock=clock
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
    def from_config(
        cls, config: EngineConfig, *, clock: Callable[[], float] = time.time, address: str = ""
    ) -> Engine:
        """An engine on the store ``config.db_url`` names; on PostgreSQL, one of several that share
        it (one leads; ``address`` is where clients reach this one)."""
        if config.db_url.startswith("sqlite"):
            return cls(config, Store(config.db_url), clock=clock)
        problem = config.check_lease()
        if problem:
            raise InvalidArgument(problem)
        store = Store(config.db_url, idle_in_transaction_timeout=config.lease_duration)
        lease = LeaderLease(config.db_url, lease_seconds=config.lease_duration)
        settings = LeadershipSettings(
            engine_id=config.engine_id or default_engine_id(),
            address=config.advertise or address,
            lease_seconds=config.lease_duration,
            renew_interval=config.lease_renew_interval,
            poll_interval=config.standby_poll_interval,
            margin=config.lease_margin,
            version=_version(),
        )
        return cls(config, store, clock=clock, leadership=Leadership(lease, settings))

    @property
    def running(self) -> bool:
        return self.flow.running

    # -- leadership -----------------------------------------------------------------------------------

    @property
    def engine_id(self) -> str:
        return self.leadership.engine_id if self.leadership is not None else "engine"

    @property
    def role(self) -> EngineRole:
        if self.leadership is None:
            return EngineRole.LEADER if self.running else EngineRole.STANDBY
        return self.leadership.role

    @property
    def is_leader(self) -> bool:
        """Whether this engine takes writes now (the one engine on its store always does)."""
        return self.running and (self.leadership is None or self.leadership.is_leader)

    def set_address(self, address: str) -> None:
        """Where clients reach this engine (known once its port is bound; --advertise wins)."""
        if self.leadership is not None and not self.config.advertise:
            self.leadership.settings.address = address

    def not_leader(self) -> NotLeader:
        """The refusal of a call that changes state, made to a standby (cluster_service.proto)."""
        leadership = self.leadership
        address = leadership.leader_address() if leadership is not None else ""
        if leadership is not None and leadership.is_leader:
            # Holds the lease, still recovering (a large backlog takes seconds): not a standby.
            return NotLeader(
                f"engine {self.engine_id} is taking over as the leader (it is recovering the jobs the "
                "store holds); try again in a moment",
                leader_address=address,
            )
        leader = address or "unknown (no engine holds the lease now; try again shortly)"
        return NotLeader(
            f"engine {self.engine_id} is a standby; the leader is {leader}", leader_address=address
        )

    async def cluster(self) -> ClusterView:
        """The engines sharing this store, the leader first (ListEngines)."""
        if self.leadership is None:
            me = EngineMember(
                engine_id=self.engine_id,
                address="",
                role=EngineRole.LEADER,
                epoch=1,
                started_at=self.started_at,
                seen_at=self.clock(),
                version=_version(),
            )
            return ClusterView(self.engine_id, [me], self.engine_id, "", 1)
        leadership = self.leadership
        lease, members = await leadership.run_sql(leadership.lease.members)
        held = lease.held
        return ClusterView(
            engine_id=self.engine_id,
            engines=members,
            leader_id=(lease.leader_id or "") if held else "",
            leader_address=lease.address if held else "",
            epoch=lease.epoch,
        )

    # -- life cycle -----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the store. The one engine on its store (SQLite, a single PostgreSQL engine) recovers
        every unfinished job, re-arms every deadline and starts serving; one of several on PostgreSQL
        leads (the same) if it wins the lease, else follows as a standby until it does."""
        self.started_at = self.clock()
        if self.leadership is None:
            path = sqlite_path(getattr(self.store, "url", ""))
            if path is not None:
                self._single = SingleEngineLock(path)
                self._single.acquire()
            try:
                await self.flow.read(self.store.create_schema)
                await self._lead()
            except BaseException:
                self._release_single()
                raise
            return
        await self.leadership.start(self._promote, self._demote, self.store.create_schema)
        if not self.leadership.is_leader:
            await self._follow()

    async def _lead(self) -> None:
        async def read(fn: Callable[[], T]) -> T:
            answer = await self.flow.read(fn)
            self._note_progress()  # each answered read keeps a new leader's lease (leadership.py)
            return answer

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
        await self.workflows.recover(self._note_progress)
        self.timers.start()
        self.flow.running = True
        self.protocol.start()
        await self.writer.flush()
        self.dispatcher.schedule()

    async def _follow(self) -> None:
        """Serve reads as a standby: counts and configs from the store, events from its tail (which
        keeps trying while the database is away)."""
        leadership = self.leadership
        assert leadership is not None
        self._tail = EventTail(
            leadership.lease,
            self.events_between_any,
            self._tailed,
            leadership.run_sql,
            head=self.bus.head,
            poll_interval=max(leadership.settings.poll_interval, 0.1) * 2,
            prepare=self._standby_snapshot,
            refresh=self._standby_configs,
        )
        self._tail.start()

    async def _standby_configs(self) -> None:
        """The action configs again: a pause, a limit or a timeout the leader stored is no event, and
        a standby's reads (ListActions, GetActionConfig, the console) show it within a second."""
        self.configs.load_all(await self.flow.read(self.store.load_action_configs))

    async def _standby_snapshot(self, tail: EventTail) -> None:
        assert self.leadership is not None
        head, counts = await self.leadership.run_sql(self.leadership.lease.counts_at_head)
        for config in await self.flow.read(self.store.load_action_configs):
            self.configs.load(config)
        tail.counts = {(action, JobStatus(status)): count for action, status, count in counts}
        tail.counted_through = head
        self.registry.counts.clear()
        self.registry.counts.update(tail.counts)

    async def caught_up(self, sequence: int, timeout: float = 2.0) -> bool:
        """Whether this engine has seen every event up to ``sequence``; a standby waits up to
        ``timeout`` for its tail (a client that read ``sequence`` from the leader, then came here)."""
        deadline = time.monotonic() + timeout
        while self.registry.sequence < sequence:
            if self.is_leader or time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    async def events_between_any(self, after: int, up_to: int, limit: int) -> list[TailedEvent]:
        """The first ``limit`` job and workflow events after ``after``, merged in sequence order
        (both tables share one sequence: a standby's tail must read both to see no gap)."""
        jobs = await self.flow.read(self.store.events_between, after, up_to, limit)
        workflows = await self.flow.read(self.store.workflow_events_between, after, up_to, limit)
        merged: list[TailedEvent] = sorted([*jobs, *workflows], key=lambda ev: ev.sequence)
        return merged[:limit]

    def _tailed(self, events: list[TailedEvent]) -> None:
        self.bus.publish(
            [ev for ev in events if isinstance(ev, Event)],
            [ev for ev in events if isinstance(ev, WorkflowEvent)],
        )
        self.registry.sequence = self.bus.head
        if self._tail is not None:
            self.registry.counts.clear()
            self.registry.counts.update(self._tail.counts)

    async def _promote(self, epoch: int) -> None:
        """Won the lease: catch up with what the last leader committed, then recover and lead."""
        tail, self._tail = self._tail, None
        if tail is not None:
            await tail.stop()
            await tail.catch_up(self._note_progress)
        self._drop_parts()
        self._make_parts()
        setattr(self.store, "fence_epoch", epoch)  # noqa: B010 (only SqlStore fences)
        await self._lead()

    async def _demote(self, reason: str) -> None:
        """Lost the lease (fenced, or it ran out): stop acknowledging, close worker streams, drop the
        job state, and follow as a standby."""
        setattr(self.store, "fence_epoch", None)  # noqa: B010
        self._drop_parts(reason)
        self._make_parts()
        await self._follow()

    def _drop_parts(self, reason: str = "") -> None:
        error = Fenced(
            f"engine {self.engine_id} stopped leading ({reason or 'a leadership change'}); nothing more "
            "of its is acknowledged"
        )
        self.flow.running = False
        self.protocol.stop()
        self.external_locks.stop()
        self.timers.stop()
        self.writer.abandon(error)
        self.flow.close_readers()

    def _on_fenced(self, error: Fenced) -> None:
        # From the writer's task: depose in a task of its own (it replaces that writer).
        if self.leadership is not None:
            asyncio.get_running_loop().create_task(self.leadership.fenced(error.message))

    async def stop(self) -> None:
        """Stop serving: close worker sessions and watchers, write what is pending, close the store.
        Running jobs stay RUNNING in the store; the next start (or leader) turns them TIMED_OUT."""
        if self._tail is not None:
            await self._tail.stop()
            self._tail = None
        if self.flow.running:
            self.flow.running = False
            self.protocol.stop()
            self.external_locks.stop()
            self.bus.close_all()
            self.timers.stop()
            await self.writer.close()
        else:
            self.bus.close_all()
            self.writer.abandon(Fenced("the engine stopped"))
        if self.leadership is not None:
            await self.leadership.stop()
        self.flow.close_readers()
        self.store.close()
        self._release_single()

    def _release_single(self) -> None:
        if self._single is not None:
            self._single.release()
            self._single = None

    async def _recover(self) -> None:
        now = self.clock()
        lock_rows = await self.flow.read(self.store.load_locks)
        self._note_progress()
        for row in lock_rows:
            self.locks.restore(
                row.holder,
                row.resource,
                LockMode(row.mode),
                job_id=row.job_id,
                since=row.since,
                expires_at=row.expires_at,
            )
        jobs = await self.flow.read_pages(self.store.unfinished_job_pages, self._note_progress)
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
        for done, job in enumerate(jobs, 1):
            if done % RECOVERY_PAGE == 0:
                # Let the lease see progress, and renew (it runs in this loop).
                self._note_progress()
                await asyncio.sleep(0)
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

    def _note_progress(self) -> None:
        if self.leadership is not None:
            self.leadership.note_progress()

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
        config = msgspec.structs.replace(current, paused=paused)
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
