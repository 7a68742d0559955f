"""The no-op workload the throughput-like scenarios share: worker processes connect, a client
process submits N jobs in batches, and the bench waits for the last one to finish."""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from jobwarden.contract import TERMINAL_STATUSES, JobStatus

from ._procs import Agent, Profiler, WorkerGroup, profiling
from ._progress import NullProgress, Progress
from ._stats import CpuUse, GcMeter, MachineMeter
from ._target import EngineUnderTest

__all__ = [
    "EngineMeter",
    "Submission",
    "WorkerPool",
    "WorkloadFigures",
    "new_action",
    "run_noop_jobs",
    "run_workload",
    "running_workers",
]


def new_action(scenario: str) -> str:
    """An action of this run's own, so that counts on a shared engine are this run's alone."""
    return f"bench-{scenario}-{secrets.token_hex(3)}"


class EngineMeter:
    """From ``start()`` to ``stop()``: the engine's CPU and its group commits (when it runs in this
    process), and how busy the whole machine was."""

    def __init__(self, target: EngineUnderTest) -> None:
        self._target = target
        self._cpu = target.cpu_meter()
        self._machine = MachineMeter()
        self._writes: tuple[int, int, float] | None = None

    def start(self) -> None:
        self._writes = self._target.writer_stats()
        self._machine.start()
        if self._cpu is not None:
            self._cpu.start()

    def stop(self) -> tuple[CpuUse | None, float, tuple[int, int, float] | None]:
        """(the engine's CPU use, the machine's busy percent, (commits, rows, commit seconds) since
        ``start()``); None for what is not measured here."""
        cpu = self._cpu.stop() if self._cpu is not None else None
        busy = self._machine.stop()
        before, after = self._writes, self._target.writer_stats()
        if before is None or after is None:
            return cpu, busy, None
        return cpu, busy, (after[0] - before[0], after[1] - before[1], after[2] - before[2])


@dataclass(slots=True)
class WorkloadFigures:
    jobs: int
    first_send: float
    last_ack: float
    last_done: float
    completed: int
    submit: dict[str, Any]
    cpu: CpuUse | None = None
    #: CPU seconds the worker processes and the client process spent during the run
    workers_cpu: float = 0.0
    client_cpu: float = 0.0
    #: how busy the whole machine was (all processes, other users' too), percent of all cores
    machine_busy: float = float("nan")
    #: the engine process's garbage collections during the run (when the engine runs here)
    gc: dict[str, float] = field(default_factory=dict)
    commits: int = 0
    committed_rows: int = 0
    commit_seconds: float = 0.0
    sample: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return self.last_done - self.first_send

    @property
    def rate(self) -> float:
        """Jobs per second from the first submit to the last job finished."""
        return self.jobs / self.seconds if self.seconds > 0 else 0.0

    def cpu_per_job(self) -> dict[str, float]:
        """CPU microseconds per job in each process kind (the engine only when it runs here)."""
        jobs = max(self.jobs, 1)
        out = {
            "workers": round(1e6 * self.workers_cpu / jobs, 1),
            "client": round(1e6 * self.client_cpu / jobs, 1),
        }
        if self.cpu is not None:
            out["engine"] = round(1e6 * self.cpu.cpu_seconds / jobs, 1)
        return out

    @property
    def submit_rate(self) -> float:
        return self.jobs / (self.last_ack - self.first_send) if self.last_ack > self.first_send else 0.0

    def details(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "jobs": self.jobs,
            "completed": self.completed,
            "seconds": round(self.seconds, 3),
            "submit_seconds": round(self.last_ack - self.first_send, 3),
            "submit_batch_seconds": self.submit.get("batch_seconds"),
        }
        if self.cpu is not None:
            out["engine_cpu_percent"] = round(self.cpu.percent, 1)
            out["engine_threads_cpu_percent"] = self.cpu.thread_percent()
        out["cpu_us_per_job"] = self.cpu_per_job()
        if self.gc:
            out["engine_gc"] = self.gc
        out["machine_busy_percent"] = round(self.machine_busy, 1)
        if self.commits:
            out["commits"] = self.commits
            out["rows_per_commit"] = round(self.committed_rows / self.commits, 1)
            out["commit_ms_mean"] = round(1000 * self.commit_seconds / self.commits, 2)
            out["store_busy_percent"] = round(100 * self.commit_seconds / max(self.seconds, 1e-9), 1)
        return out


@contextlib.asynccontextmanager
async def running_workers(
    target: EngineUnderTest,
    action: str,
    *,
    count: int,
    capacity: int,
    executor: str = "Noop",
    stamps: Any = None,
    progress: Progress | None = None,
) -> AsyncIterator[WorkerGroup]:
    """``count`` worker processes for ``action``, all registered before the block starts, and stopped
    when it ends (however it ends)."""
    progress = progress or NullProgress()
    group = WorkerGroup(
        target.address,
        action,
        count=count,
        capacity=capacity,
        workdir=target.workdir,
        executor=executor,
        stamps=stamps,
    )
    progress.phase(f"starting {count} worker process(es)", total=count)
    try:
        await group.start()

        async def registered() -> bool:
            if (failure := group.failed()) is not None:
                raise RuntimeError(failure)
            connected = await target.workers_for(action)
            progress.update(connected)
            return connected >= count

        await target.wait_until(registered, timeout=90, interval=0.05, what=f"{count} workers to register")
        yield group
    finally:
        await group.stop()


@dataclass(slots=True, frozen=True)
class Submission:
    """What the client process submits: ``jobs`` no-op jobs in ``SubmitJobs`` calls of ``batch``
    (``SubmitJob`` each when it is 1), ``inflight`` calls at once; with lock requests when ``locks``
    says how (``resources``, ``exclusive``, ``second``); ``sample`` job ids kept for a later look."""

    jobs: int
    batch: int = 1000
    inflight: int = 2
    locks: dict[str, Any] | None = None
    sample: int = 0


class WorkerPool(Protocol):
    """The sizes of a scenario's worker processes."""

    workers: int
    capacity: int


async def run_noop_jobs(
    target: EngineUnderTest,
    scenario: str,
    pool: WorkerPool,
    submission: Submission,
    progress: Progress,
    profiler: Profiler | None = None,
) -> WorkloadFigures:
    """The throughput-like run: ``pool.workers`` worker processes for an action of this run's own,
    ``submission`` through them (``run_workload``), and the workers stopped after."""
    action = new_action(scenario)
    async with running_workers(
        target, action, count=pool.workers, capacity=pool.capacity, progress=progress
    ) as workers:
        return await run_workload(
            target, action, submission, progress=progress, profiler=profiler, workers=workers
        )


async def run_workload(
    target: EngineUnderTest,
    action: str,
    submission: Submission,
    *,
    progress: Progress | None = None,
    profiler: Profiler | None = None,
    workers: WorkerGroup | None = None,
    timeout: float = 600.0,
) -> WorkloadFigures:
    """Submit ``submission`` as jobs of ``action`` from a client process (workers must be connected
    already) and wait until every one has finished. Measures the engine's CPU when it runs in this
    process."""
    progress = progress or NullProgress()
    jobs = submission.jobs
    spec = {"engine": target.address, "action": action, **asdict(submission)}
    progress.phase(f"starting the client process ({jobs:,} jobs)")
    agent = Agent("submit", spec)
    await agent.start()
    async with profiling(profiler):
        meter = EngineMeter(target)
        workers_before = workers.cpu_seconds() if workers is not None else 0.0
        collector = GcMeter() if target.in_process else None
        if collector is not None:
            collector.start()
        meter.start()
        progress.phase(f"{jobs:,} jobs: submitted -> finished", total=jobs)
        terminal = tuple(TERMINAL_STATUSES)

        async def finished() -> bool:
            done = await target.count(action, *terminal)
            progress.update(done)
            return done >= jobs

        try:
            # Every 50 ms, not 10: each poll is a GetStats call served by (and counted in) the
            # engine's process; at 100 a second they cost the engine about a tenth of a core. The
            # end-to-end time is then up to 50 ms long, under 1% of a run.
            last_done = await target.wait_until(
                finished, timeout=timeout, interval=0.05, what=f"{jobs} jobs to finish"
            )
        except BaseException:
            await agent.kill()
            raise
    cpu, machine_busy, writes = meter.stop()
    gc_figures = collector.stop() if collector is not None else {}
    workers_cpu = workers.cpu_seconds() - workers_before if workers is not None else 0.0
    submitted = await agent.result()
    completed = await target.count(action, JobStatus.COMPLETED)
    figures = WorkloadFigures(
        jobs=submitted["jobs"],
        first_send=submitted["first_send"],
        last_ack=submitted["last_ack"],
        last_done=last_done,
        completed=completed,
        submit=submitted,
        cpu=cpu,
        workers_cpu=workers_cpu,
        client_cpu=submitted.get("cpu_seconds", 0.0),
        machine_busy=machine_busy,
        gc=gc_figures,
        sample=submitted.get("sample", []),
    )
    if writes is not None:
        figures.commits, figures.committed_rows, figures.commit_seconds = writes
    return figures


def elapsed(since: float) -> float:
    return time.time() - since
