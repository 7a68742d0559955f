"""Each scenario's sizes, with the defaults of a single run and the smaller ones ``all`` uses to fit
every scenario in under ten minutes on two cores."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "SIZES",
    "AllSizes",
    "ConsoleSizes",
    "DepthSizes",
    "FailoverSizes",
    "FanoutSizes",
    "FloorSizes",
    "LatencySizes",
    "LocksSizes",
    "Sizes",
    "ThroughputSizes",
    "TimersSizes",
    "WorkflowSizes",
]


@dataclass(slots=True)
class ThroughputSizes:
    #: no-op jobs submitted
    jobs: int = 20_000
    #: worker processes
    workers: int = 2
    #: jobs each worker runs at once
    capacity: int = 100
    #: jobs per SubmitJobs call
    batch: int = 1000
    #: SubmitJobs calls in flight at once
    inflight: int = 2


@dataclass(slots=True)
class FloorSizes:
    #: unary calls to the bare echo server
    calls: int = 20_000
    #: calls (echo) and SubmitJob calls (jobwarden) in flight at once
    inflight: int = 64
    #: jobs submitted one SubmitJob each
    jobs: int = 10_000
    workers: int = 2
    capacity: int = 100
    #: echo then jobwarden, this many times in turn
    rounds: int = 1


@dataclass(slots=True)
class LatencySizes:
    #: jobs submitted per second, one SubmitJob call each
    rate: float = 500.0
    seconds: float = 10.0
    workers: int = 1
    capacity: int = 100
    #: the first seconds are not counted (connections and caches warming up)
    warmup: float = 1.0


@dataclass(slots=True)
class FanoutSizes:
    #: WatchJobs streams, each on its own connection
    watchers: int = 100
    #: processes the watchers are spread over
    watcher_processes: int = 4
    jobs: int = 10_000
    workers: int = 2
    capacity: int = 100
    batch: int = 1000


@dataclass(slots=True)
class LocksSizes:
    jobs: int = 5_000
    #: distinct resources the jobs contend on
    resources: int = 4
    #: share of lock requests that are EXCLUSIVE (the rest SHARED)
    exclusive: float = 0.3
    #: share of jobs that ask for a second resource
    second: float = 0.3
    workers: int = 2
    capacity: int = 50
    #: jobs whose history is read afterwards for their waiting time
    sample: int = 300


@dataclass(slots=True)
class TimersSizes:
    #: pending deadlines armed before any fires
    timers: int = 100_000
    #: how many of them fire, spread evenly over ``window`` seconds (the rest stay pending)
    fire: int = 10_000
    window: float = 10.0
    #: shares of start timeouts and of run_at/backoff wake-ups; heartbeat deadlines take the rest
    start_share: float = 0.6
    wake_share: float = 0.3
    batch: int = 1000


@dataclass(slots=True)
class DepthSizes:
    #: jobs already stored before each measure (finished ones, seeded straight into the tables)
    stored: list[int] = field(default_factory=lambda: [0, 100_000, 1_000_000])
    #: jobs submitted (then dispatched) at each depth
    jobs: int = 20_000
    workers: int = 2
    capacity: int = 100
    batch: int = 1000


@dataclass(slots=True)
class ConsoleSizes:
    #: running jobs the console follows
    jobs: int = 10_000
    #: job updates per second
    rate: float = 1000.0
    #: seconds measured, after ``warmup`` seconds of settling
    seconds: float = 20.0
    warmup: float = 5.0


@dataclass(slots=True)
class WorkflowSizes:
    #: runs of the linear workflow, started one StartWorkflow each
    runs: int = 1000
    #: no-op steps in the linear workflow
    steps: int = 10
    #: StartWorkflow calls in flight at once
    inflight: int = 16
    #: single no-op jobs run first, the cost a step is compared with
    jobs: int = 3000
    workers: int = 2
    capacity: int = 100
    #: steps of the fan-out/fan-in run: a first step, the parallel ones, and a join
    fanout_steps: int = 1000
    #: Celery chains (of ``steps`` no-op tasks) run in the same run for comparison; 0: none
    celery_chains: int = 100


@dataclass(slots=True)
class FailoverSizes:
    #: engines on the one PostgreSQL
    engines: int = 3
    #: SIGKILLs of the leader, one after the other
    kills: int = 5
    #: jobs submitted per second, throughout
    rate: float = 50.0
    workers: int = 1
    capacity: int = 20
    #: seconds (on average) between a new leader's start and the next kill
    settle: float = 2.0


#: each scenario's sizes
SIZES: dict[str, type[Any]] = {
    "throughput": ThroughputSizes,
    "latency": LatencySizes,
    "fanout": FanoutSizes,
    "floor": FloorSizes,
    "locks": LocksSizes,
    "timers": TimersSizes,
    "depth": DepthSizes,
    "console": ConsoleSizes,
    "workflow": WorkflowSizes,
    "failover": FailoverSizes,
}

#: any scenario's sizes
Sizes = (
    ThroughputSizes
    | FloorSizes
    | LatencySizes
    | FanoutSizes
    | LocksSizes
    | TimersSizes
    | DepthSizes
    | ConsoleSizes
    | WorkflowSizes
    | FailoverSizes
)


@dataclass(slots=True)
class AllSizes:
    """The sizes ``all`` runs each scenario with (chosen to fit in under ten minutes here)."""

    throughput: ThroughputSizes = field(default_factory=ThroughputSizes)
    floor: FloorSizes = field(default_factory=FloorSizes)
    latency: LatencySizes = field(default_factory=LatencySizes)
    fanout: FanoutSizes = field(default_factory=lambda: FanoutSizes(jobs=5_000))
    locks: LocksSizes = field(default_factory=LocksSizes)
    timers: TimersSizes = field(default_factory=TimersSizes)
    depth: DepthSizes = field(default_factory=DepthSizes)
    console: ConsoleSizes = field(default_factory=ConsoleSizes)
    workflow: WorkflowSizes = field(default_factory=lambda: WorkflowSizes(runs=200, celery_chains=50))
    failover: FailoverSizes = field(default_factory=FailoverSizes)

    def of(self, scenario: str) -> Sizes:
        value: Sizes = getattr(self, scenario)
        return value
