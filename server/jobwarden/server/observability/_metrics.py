"""The engine's Prometheus metrics, in a registry of their own.

Figures that describe the engine's state now (jobs by status and action, queue depth, workers and
free capacity, watchers, timers, lock waiters) are read from the engine when ``/metrics`` is scraped,
in the event loop, so they always match the engine's registry. Figures about what happened (how long
jobs waited to start and ran, how long store commits took, status changes) are counted as it happens.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from jobwarden.contract import ACTIVE_STATUSES, JobEventType, JobStatus
from jobwarden.server.core import Engine, EngineRole, Event
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["EngineMetrics"]

#: seconds: from a few milliseconds (a job started at once) to hours (a long queue)
_WAIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400)
_RUN_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 1800, 3600, 14400, 86400)
_COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)


class EngineMetrics:
    """Every metric of one engine. ``registry`` is what ``/metrics`` serves.

    ``refusals`` maps a kind of refusal ("auth", "limits", "decoding") to a callable giving counts by
    gRPC code.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        registry: CollectorRegistry | None = None,
        refusals: Mapping[str, Callable[[], Mapping[str, int]]] | None = None,
    ) -> None:
        self.engine = engine
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.refusals = dict(refusals or {})
        self.transitions = Counter(
            "jobwarden_job_transitions",
            "Jobs that entered a status (a submit counts as entering its first status)",
            ["action", "status"],
            registry=self.registry,
        )
        self.start_latency = Histogram(
            "jobwarden_job_start_latency_seconds",
            "From submit to the first start of a job",
            ["action"],
            buckets=_WAIT_BUCKETS,
            registry=self.registry,
        )
        self.run_time = Histogram(
            "jobwarden_job_run_seconds",
            "Running time of an attempt, observed when it ends, by how it ended",
            ["action", "status"],
            buckets=_RUN_BUCKETS,
            registry=self.registry,
        )
        self.commit_latency = Histogram(
            "jobwarden_store_commit_seconds",
            "Time of one group commit to the store (successful ones)",
            buckets=_COMMIT_BUCKETS,
            registry=self.registry,
        )
        self.commit_failures = Counter(
            "jobwarden_store_commit_failures",
            "Store commits that failed (and were retried)",
            registry=self.registry,
        )
        #: several engines on one PostgreSQL: role changes and lease renewals
        self.leadership_changes = Counter(
            "jobwarden_leadership_changes",
            "Times this engine entered a role (leader: it took over; fenced: it lost the lease)",
            ["role"],
            registry=self.registry,
        )
        self.lease_renewal = Histogram(
            "jobwarden_lease_renewal_seconds",
            "Time of one renewal of the leader's lease (successful or not)",
            buckets=_COMMIT_BUCKETS,
            registry=self.registry,
        )
        self.lease_renewal_failures = Counter(
            "jobwarden_lease_renewal_failures",
            "Renewals of the leader's lease that failed (an error, or the lease was taken)",
            registry=self.registry,
        )
        leadership = engine.leadership
        if leadership is not None:
            # Changes before the metrics existed (an engine may take the lease as it starts).
            for role in EngineRole:
                self.leadership_changes.labels(role.name.lower()).inc(leadership.stats.changes[role])
            leadership.observe_roles(self.on_role)
            leadership.observe_renewals(self.on_renewal)
        self.registry.register(_StateCollector(self))

    # -- what happened ------------------------------------------------------------------------------

    def on_events(self, events: Iterable[Event]) -> None:
        """Committed events, in order (called in the event loop)."""
        for ev in events:
            if ev.type not in (JobEventType.SUBMITTED, JobEventType.STATUS_CHANGED):
                continue
            snapshot = ev.snapshot
            action = snapshot["action"]
            status = JobStatus(snapshot["status"])
            self.transitions.labels(action, status.name).inc()
            previous = ev.previous_status
            if status is JobStatus.RUNNING and previous is JobStatus.QUEUED and snapshot.get("attempt") == 1:
                started = snapshot.get("started_at") or ev.time
                self.start_latency.labels(action).observe(max(0.0, started - snapshot["created_at"]))
            if previous in ACTIVE_STATUSES and status not in ACTIVE_STATUSES:
                attempts = snapshot.get("attempts") or ()
                if attempts:
                    last = attempts[-1]
                    ended = last.get("finished_at") or ev.time
                    self.run_time.labels(action, status.name).observe(max(0.0, ended - last["started_at"]))

    def on_role(self, role: EngineRole, epoch: int, reason: str) -> None:
        self.leadership_changes.labels(role.name.lower()).inc()

    def on_renewal(self, seconds: float, ok: bool) -> None:
        self.lease_renewal.observe(seconds)
        if not ok:
            self.lease_renewal_failures.inc()

    def on_commit(self, seconds: float, ok: bool) -> None:
        """One store write (called in the writer's thread)."""
        if ok:
            self.commit_latency.observe(seconds)
        else:
            self.commit_failures.inc()


class _StateCollector(Collector):
    """The engine's state at scrape time. Scrapes run in the event loop (see ``MetricsServer``)."""

    def __init__(self, metrics: EngineMetrics) -> None:
        self.metrics = metrics

    def describe(self) -> Iterator[Any]:
        return iter(())

    def collect(self) -> Iterator[Any]:
        engine = self.metrics.engine
        jobs = GaugeMetricFamily("jobwarden_jobs", "Jobs by action and status", labels=["action", "status"])
        for (action, status), count in sorted(engine.registry.counts.items()):
            if count:
                jobs.add_metric([action, status.name], count)
        yield jobs
        stats = engine.stats()
        depth = GaugeMetricFamily(
            "jobwarden_queue_depth", "Jobs ready to run, waiting for a worker", labels=["action"]
        )
        free = GaugeMetricFamily(
            "jobwarden_worker_free_capacity", "Free slots for an action across its workers", labels=["action"]
        )
        serving = GaugeMetricFamily(
            "jobwarden_action_workers", "Connected workers serving an action", labels=["action"]
        )
        paused = GaugeMetricFamily(
            "jobwarden_action_paused", "1 when dispatch of an action is paused", labels=["action"]
        )
        for view in stats.actions:
            depth.add_metric([view.action], engine.queues.size(view.action))
            free.add_metric([view.action], view.free_capacity)
            serving.add_metric([view.action], view.workers)
            paused.add_metric([view.action], 1 if view.paused else 0)
        yield depth
        yield free
        yield serving
        yield paused
        sessions = list(engine.sessions.values())
        yield GaugeMetricFamily("jobwarden_workers", "Connected workers", value=len(sessions))
        yield GaugeMetricFamily(
            "jobwarden_worker_capacity",
            "Capacity of the connected workers, in jobs",
            value=sum(s.capacity for s in sessions),
        )
        yield GaugeMetricFamily(
            "jobwarden_worker_jobs",
            "Jobs held by connected workers",
            value=sum(len(s.jobs) for s in sessions),
        )
        yield GaugeMetricFamily("jobwarden_watchers", "Open WatchJobs streams", value=stats.watchers)
        yield GaugeMetricFamily("jobwarden_timers", "Armed deadline timers", value=engine.timers.pending)
        yield GaugeMetricFamily(
            "jobwarden_lock_waiters", "Holders waiting for locks", value=engine.locks.waiter_count()
        )
        yield GaugeMetricFamily(
            "jobwarden_lock_holders",
            "Lock holdings (resource and holder pairs)",
            value=sum(len(view.holders) for view in engine.locks.view()),
        )
        yield GaugeMetricFamily(
            "jobwarden_event_sequence", "The newest committed event sequence", value=engine.bus.head
        )
        yield GaugeMetricFamily(
            "jobwarden_store_healthy", "1 while store writes succeed", value=1 if engine.writer.healthy else 0
        )
        commits = CounterMetricFamily("jobwarden_store_commits", "Group commits done (empty ones included)")
        commits.add_metric([], engine.writer.stats.commits)
        yield commits
        rows = CounterMetricFamily("jobwarden_store_rows", "Rows written by group commits")
        rows.add_metric([], engine.writer.stats.rows)
        yield rows
        leadership = engine.leadership
        yield GaugeMetricFamily(
            "jobwarden_engine_leader",
            "1 while this engine leads (takes writes and workers), 0 on a standby",
            value=1 if engine.is_leader else 0,
        )
        yield GaugeMetricFamily(
            "jobwarden_leader_epoch",
            "The lease's epoch: this engine's while it leads, the last one it saw otherwise",
            value=leadership.epoch if leadership is not None else 1,
        )
        yield GaugeMetricFamily(
            "jobwarden_engine_start_time_seconds", "When the engine started", value=engine.started_at
        )
        yield GaugeMetricFamily(
            "jobwarden_engine_uptime_seconds",
            "Seconds since the engine started",
            value=max(0.0, time.time() - engine.started_at),
        )
        refusals = CounterMetricFamily(
            "jobwarden_refusals", "Calls refused before the servicer ran", labels=["by", "code"]
        )
        for by, counts in sorted(self.metrics.refusals.items()):
            for code, count in sorted(counts().items()):
                refusals.add_metric([by, code], count)
        yield refusals
