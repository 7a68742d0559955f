"""``throughput``: N no-op jobs through W worker processes; jobs/s from the first submit to the last
COMPLETED, and the rate the submits alone were accepted at."""

from __future__ import annotations

import os
from dataclasses import asdict

from ._procs import Profiler
from ._progress import Progress
from ._results import ScenarioResult, Target
from ._sizes import ThroughputSizes
from ._target import EngineUnderTest
from ._workload import Submission, run_noop_jobs

__all__ = ["THROUGHPUT_TARGET", "run_throughput"]

#: the issue's target: jobs/s end to end on this machine, SQLite, every acknowledged job durable
THROUGHPUT_TARGET = 3000.0


async def run_throughput(
    target: EngineUnderTest,
    sizes: ThroughputSizes,
    progress: Progress,
    profiler: Profiler | None = None,
) -> ScenarioResult:
    result = ScenarioResult("throughput", asdict(sizes))
    submission = Submission(sizes.jobs, batch=sizes.batch, inflight=sizes.inflight)
    figures = await run_noop_jobs(target, "throughput", sizes, submission, progress, profiler)
    result.add(
        "end to end",
        figures.rate,
        "jobs/s",
        target=Target(THROUGHPUT_TARGET),
        note="first submit sent -> last job COMPLETED",
    )
    result.add(
        "submits accepted",
        figures.submit_rate,
        "jobs/s",
        note=(
            f"SubmitJob of 1, {sizes.inflight} in flight, while workers drain"
            if sizes.batch == 1
            else f"SubmitJobs of {sizes.batch}, {sizes.inflight} in flight, while workers drain"
        ),
    )
    result.add("completed", figures.completed, "jobs", note=f"of {figures.jobs} submitted")
    if figures.cpu is not None:
        threads = ", ".join(f"{name} {share:g}%" for name, share in figures.cpu.thread_percent().items())
        result.add("engine CPU", figures.cpu.percent, "%", note=f"100% = one core: {threads}")
    per_job = figures.cpu_per_job()
    result.add(
        "CPU per job",
        sum(per_job.values()),
        "µs",
        note=", ".join(f"{kind} {us:,.0f}" for kind, us in per_job.items()),
    )
    if figures.gc:
        result.add(
            "longest GC pause",
            figures.gc["gen2_ms_max"],
            "ms",
            note=f"engine process: {figures.gc['gen2_count']:g} full collections, "
            f"{figures.gc['gen2_ms_total']:g} ms in all; {figures.gc['gen0_count']:g} young ones",
        )
    result.add(
        "machine busy",
        figures.machine_busy,
        "%",
        note=f"all {os.cpu_count()} cores, every process (other users' too)",
    )
    result.details.update(figures.details())
    return result
