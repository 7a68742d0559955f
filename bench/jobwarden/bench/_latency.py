"""``latency``: jobs submitted one by one at a steady rate; how long from the submit being sent to
the job reaching a worker (the worker notes when it got it) and to the client hearing it COMPLETED
(on its WatchJobs stream)."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict
from pathlib import Path

from ._procs import Agent, Profiler, profiling
from ._progress import Progress
from ._results import ScenarioResult, Target
from ._sizes import LatencySizes
from ._stats import percentiles
from ._target import EngineUnderTest
from ._workload import new_action, running_workers

__all__ = ["START_P99_TARGET_MS", "run_latency"]

#: the issue's target: submit -> start p99 at 500 jobs/s
START_P99_TARGET_MS = 10.0


def _read_stamps(path: Path) -> dict[str, float]:
    stamps: dict[str, float] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            job_id, _, when = line.partition(" ")
            if when:
                stamps[job_id] = float(when)
    return stamps


async def run_latency(
    target: EngineUnderTest,
    sizes: LatencySizes,
    progress: Progress,
    profiler: Profiler | None = None,
) -> ScenarioResult:
    result = ScenarioResult("latency", asdict(sizes))
    action = new_action("latency")
    stamps_path = target.workdir / f"stamps-{action}.txt"
    out = target.workdir / f"latency-{action}.json"
    async with running_workers(
        target,
        action,
        count=sizes.workers,
        capacity=sizes.capacity,
        executor="Stamp",
        stamps=stamps_path,
        progress=progress,
    ):
        spec = {
            "engine": target.address,
            "action": action,
            "rate": sizes.rate,
            "seconds": sizes.seconds,
            "out": str(out),
        }
        progress.phase("starting the client process")
        agent = await Agent("steady", spec).start()
        async with profiling(profiler):
            meter = target.cpu_meter()
            if meter is not None:
                meter.start()
            progress.phase(f"{sizes.rate:g} jobs/s for {sizes.seconds:g}s", total=sizes.seconds)
            started = time.monotonic()
            waiting = asyncio.create_task(agent.result(timeout=sizes.seconds + 180))
            while not waiting.done():
                progress.update(min(sizes.seconds, time.monotonic() - started))
                await asyncio.wait({waiting}, timeout=0.25)
            summary = waiting.result()
            cpu = meter.stop() if meter is not None else None
    records = json.loads(out.read_text())
    stamps = _read_stamps(stamps_path)
    counted_from = summary["first_send"] + sizes.warmup
    to_start: list[float] = []
    to_complete: list[float] = []
    acked: list[float] = []
    engine_dispatch: list[float] = []
    engine_total: list[float] = []
    missing_stamps = 0
    for job_id, sent, ack, done_seen, created, started_at, finished_at in records:
        if sent < counted_from:
            continue
        acked.append(ack - sent)
        if job_id in stamps:
            to_start.append(stamps[job_id] - sent)
        else:
            missing_stamps += 1
        if done_seen:
            to_complete.append(done_seen - sent)
            engine_dispatch.append(started_at - created)
            engine_total.append(finished_at - created)
    start = percentiles(to_start, 1000)
    complete = percentiles(to_complete, 1000)
    ack_ms = percentiles(acked, 1000)
    dispatch = percentiles(engine_dispatch, 1000)
    total = percentiles(engine_total, 1000)
    result.add(
        "offered rate",
        summary["offered_rate"],
        "jobs/s",
        note=f"one SubmitJob per job, open loop; first {sizes.warmup:g}s not counted",
    )
    how_start = "client sent SubmitJob -> the executor began (worker's clock, same machine)"
    result.add("submit→start p50", start["p50"], "ms", note=how_start)
    result.add("submit→start p90", start["p90"], "ms")
    result.add("submit→start p99", start["p99"], "ms", target=Target(START_P99_TARGET_MS, at_most=True))
    result.add("submit→start max", start["max"], "ms")
    how_complete = "client sent SubmitJob -> the client got COMPLETED on its WatchJobs stream"
    result.add("submit→complete p50", complete["p50"], "ms", note=how_complete)
    result.add("submit→complete p90", complete["p90"], "ms")
    result.add("submit→complete p99", complete["p99"], "ms")
    result.add("submit→complete max", complete["max"], "ms")
    result.add("SubmitJob answered p99", ack_ms["p99"], "ms", note=f"p50 {ack_ms['p50']:.1f} ms (durable)")
    result.add(
        "engine created→RUNNING p99",
        dispatch["p99"],
        "ms",
        note=f"engine's own stamps; p50 {dispatch['p50']:.1f} ms",
    )
    if cpu is not None:
        result.add("engine CPU", cpu.percent, "%", note="100% = one core")
    result.details.update(
        {
            "submitted": summary["submitted"],
            "completed": summary["completed"],
            "counted": len(to_start),
            "missing_worker_stamps": missing_stamps,
            "submit_to_start_ms": start,
            "submit_to_complete_ms": complete,
            "submit_answered_ms": ack_ms,
            "engine_created_to_running_ms": dispatch,
            "engine_created_to_finished_ms": total,
            "errors": summary.get("errors", []),
        }
    )
    if cpu is not None:
        result.details["engine_threads_cpu_percent"] = cpu.thread_percent()
    return result
