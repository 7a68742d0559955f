"""``locks``: no-op jobs contending on a few resources, SHARED and EXCLUSIVE mixed; jobs/s, and how
long jobs waited for their locks (read afterwards from a sample of the jobs' histories)."""

from __future__ import annotations

import asyncio
from dataclasses import asdict

from jobwarden.v1 import job_pb2

from ._procs import Profiler
from ._progress import Progress
from ._results import ScenarioResult
from ._sizes import LocksSizes
from ._stats import percentiles
from ._target import EngineUnderTest
from ._workload import Submission, run_noop_jobs

__all__ = ["run_locks"]


async def _wait_times(target: EngineUnderTest, job_ids: list[str]) -> tuple[list[float], list[float], int]:
    """(lock waits of the jobs that waited, created -> RUNNING of all, how many waited)."""
    waits: list[float] = []
    to_start: list[float] = []
    waited = 0
    limit = asyncio.Semaphore(16)

    async def one(job_id: str) -> None:
        nonlocal waited
        async with limit:
            events = await target.job_events(job_id)
        created = waiting_since = running = None
        for ev in events:
            t = ev.time.seconds + ev.time.nanos * 1e-9
            status = ev.job.status
            if created is None:
                created = t
            if status == job_pb2.JOB_STATUS_WAITING_FOR_LOCK and waiting_since is None:
                waiting_since = t
            if status == job_pb2.JOB_STATUS_RUNNING and running is None:
                running = t
        if created is None or running is None:
            return
        to_start.append(running - created)
        if waiting_since is not None:
            waited += 1
            waits.append(running - waiting_since)

    await asyncio.gather(*(one(job_id) for job_id in job_ids))
    return waits, to_start, waited


async def run_locks(
    target: EngineUnderTest,
    sizes: LocksSizes,
    progress: Progress,
    profiler: Profiler | None = None,
) -> ScenarioResult:
    result = ScenarioResult("locks", asdict(sizes))
    locks = {"resources": sizes.resources, "exclusive": sizes.exclusive, "second": sizes.second}
    submission = Submission(sizes.jobs, locks=locks, sample=sizes.sample)
    figures = await run_noop_jobs(target, "locks", sizes, submission, progress, profiler)
    progress.phase(f"reading the history of {len(figures.sample)} sampled jobs")
    waits, to_start, waited = await _wait_times(target, figures.sample)
    wait_ms = percentiles(waits, 1000)
    start_ms = percentiles(to_start, 1000)
    sampled = max(len(to_start), 1)
    result.add(
        "end to end",
        figures.rate,
        "jobs/s",
        note=f"{sizes.resources} resources, {sizes.exclusive:.0%} of requests EXCLUSIVE, "
        f"{sizes.second:.0%} of jobs ask for two",
    )
    result.add("completed", figures.completed, "jobs", note=f"of {figures.jobs}")
    result.add(
        "jobs that waited for a lock", 100.0 * waited / sampled, "%", note=f"sample of {len(to_start)}"
    )
    result.add("lock wait p50", wait_ms["p50"], "ms", note="WAITING_FOR_LOCK -> RUNNING, engine's stamps")
    result.add("lock wait p99", wait_ms["p99"], "ms")
    result.add("lock wait max", wait_ms["max"], "ms")
    result.add("created→RUNNING p50", start_ms["p50"], "ms", note="every sampled job, waiting or not")
    result.add("created→RUNNING p99", start_ms["p99"], "ms")
    if figures.cpu is not None:
        result.add("engine CPU", figures.cpu.percent, "%", note="100% = one core")
    result.details.update({"lock_wait_ms": wait_ms, "created_to_running_ms": start_ms, **figures.details()})
    return result
