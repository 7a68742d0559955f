"""``depth``: submit and dispatch rates with 0, 100k and 1M jobs already in the store. The store
grows from one depth to the next (finished jobs seeded straight into the tables) and the engine is
restarted on it each time, so start-up time at each depth is measured too."""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from jobwarden.contract import JobStatus

from ._procs import Agent, Profiler, profiling
from ._progress import Progress
from ._results import ScenarioResult, Target
from ._seed import seed_finished_jobs, stored_jobs
from ._sizes import DepthSizes
from ._target import start_engine, stop_engine
from ._workload import new_action, running_workers

__all__ = ["DISPATCH_RATIO_TARGET", "run_depth"]

#: the issue's target: dispatch at the deepest store within 20% of the empty store
DISPATCH_RATIO_TARGET = 80.0


async def _one_depth(
    db_url: str, workdir: Path, sizes: DepthSizes, progress: Progress, profiler: Profiler | None
) -> dict[str, Any]:
    started = time.perf_counter()
    target = await start_engine(db_url, workdir)
    startup = time.perf_counter() - started
    try:
        action = new_action("depth")
        await target.set_paused(action, True)
        async with running_workers(
            target, action, count=sizes.workers, capacity=sizes.capacity, progress=progress
        ):
            progress.phase(f"submitting {sizes.jobs:,} jobs (dispatch paused)")
            agent = await Agent(
                "submit",
                {"engine": target.address, "action": action, "jobs": sizes.jobs, "batch": sizes.batch},
            ).start()
            submitted = await agent.result()
            await target.wait_until(
                lambda: _at_least(target, action, JobStatus.QUEUED, sizes.jobs),
                timeout=120,
                what="the jobs to be queued",
            )
            async with profiling(profiler):
                progress.phase(f"dispatching {sizes.jobs:,} jobs", total=sizes.jobs)
                resumed = time.time()
                await target.set_paused(action, False)

                async def finished() -> bool:
                    done = await target.count(action, JobStatus.COMPLETED, JobStatus.FAILED)
                    progress.update(done)
                    return done >= sizes.jobs

                last = await target.wait_until(finished, timeout=600, what="the jobs to finish")
    finally:
        await stop_engine(target)
    return {
        "startup_seconds": startup,
        "submit_rate": submitted["rate"],
        "dispatch_rate": sizes.jobs / (last - resumed),
    }


async def _at_least(target: Any, action: str, status: JobStatus, count: int) -> bool:
    return bool(await target.count(action, status) >= count)


async def run_depth(
    db_url: str,
    workdir: Path,
    sizes: DepthSizes,
    progress: Progress,
    profiler: Profiler | None = None,
) -> ScenarioResult:
    result = ScenarioResult("depth", asdict(sizes))
    loop = asyncio.get_running_loop()
    levels: list[dict[str, Any]] = []
    for depth in sorted(sizes.stored):
        have = await asyncio.to_thread(stored_jobs, db_url)
        seeded = 0.0
        if depth > have:
            progress.phase(f"seeding {depth - have:,} finished jobs", total=depth - have)

            def advance(done: int) -> None:
                loop.call_soon_threadsafe(progress.update, done)

            seeded = await asyncio.to_thread(seed_finished_jobs, db_url, depth - have, on_progress=advance)
            have = depth
        figures = await _one_depth(db_url, workdir, sizes, progress, profiler)
        levels.append({"stored": have, "seed_seconds": round(seeded, 3), **figures})
    base = levels[0]["dispatch_rate"] if levels else 0.0
    for level in levels:
        label = f"{level['stored']:,} stored"
        result.add(f"submit, {label}", level["submit_rate"], "jobs/s", note="dispatch paused, batches of "
                   f"{sizes.batch}")  # fmt: skip
        result.add(f"dispatch, {label}", level["dispatch_rate"], "jobs/s", note="queued -> COMPLETED, "
                   f"{sizes.workers} workers x {sizes.capacity}")  # fmt: skip
        result.add(f"engine start-up, {label}", level["startup_seconds"], "s")
    if len(levels) > 1 and base > 0:
        deepest = levels[-1]
        result.add(
            f"dispatch at {deepest['stored']:,} vs {levels[0]['stored']:,} stored",
            100.0 * deepest["dispatch_rate"] / base,
            "%",
            target=Target(DISPATCH_RATIO_TARGET),
            note="must stay within 20% of the emptier store",
        )
    result.details["levels"] = levels
    return result
