"""``timers``: T deadlines pending at once (start timeouts, run_at/backoff wake-ups and heartbeat
deadlines of running jobs), armed through the API; the memory they take, how fast they are armed,
and how late they fire (the engine's own record of each fire, so it needs an engine the bench
started)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import asdict

from ._procs import Agent, Profiler, profiling
from ._progress import Progress
from ._results import ScenarioResult, ScenarioUnavailable, Target
from ._sizes import TimersSizes
from ._stats import GcMeter, MachineMeter, percentiles, rss_bytes
from ._target import EngineUnderTest
from ._workload import new_action, running_workers

__all__ = ["LATENESS_P99_TARGET_MS", "run_timers"]

#: the issue's target: p99 firing lateness with 100,000 timers pending
LATENESS_P99_TARGET_MS = 50.0


async def run_timers(
    target: EngineUnderTest,
    sizes: TimersSizes,
    progress: Progress,
    profiler: Profiler | None = None,
) -> ScenarioResult:
    timers = target.timers
    if timers is None:
        raise ScenarioUnavailable(
            "timers reads the engine's timer records in process: run it without --engine"
        )
    result = ScenarioResult("timers", asdict(sizes))
    action = new_action("timers")
    heartbeat_action = f"{action}-hb"
    starts = round(sizes.timers * sizes.start_share)
    wakes = round(sizes.timers * sizes.wake_share)
    heartbeats = sizes.timers - starts - wakes
    # Heartbeat deadlines belong to running jobs: a Hang worker holds them until the scenario ends.
    hang_workers = (
        running_workers(
            target, heartbeat_action, count=1, capacity=heartbeats + 10, executor="Hang", progress=progress
        )
        if heartbeats
        else contextlib.nullcontext()
    )
    async with hang_workers:
        base_pending = timers.pending
        base_fired = timers.fired
        rss_before = rss_bytes()
        fire = min(sizes.fire, sizes.timers)
        # The firing deadlines are sent last; their window opens ``lead`` seconds after the first of
        # them is sent, time enough to arm them all even on a slow submit path.
        lead = 1.0 + fire / 1500.0
        spec = {
            "engine": target.address,
            "action": action,
            "jobs": sizes.timers,
            "batch": sizes.batch,
            "inflight": 2,
            "timers": {
                "fire": fire,
                "lead": lead,
                "window": sizes.window,
                "far": 3600.0,
                "start_share": sizes.start_share,
                "wake_share": sizes.wake_share,
                "heartbeat_action": heartbeat_action,
            },
        }
        progress.phase("starting the client process")
        agent = await Agent("submit", spec).start()
        timers.lateness.clear()
        timers.record_lateness = True
        progress.phase(f"arming {sizes.timers:,} deadlines", total=sizes.timers)
        peak = 0

        async def all_armed() -> bool:
            nonlocal peak
            pending = timers.pending - base_pending
            peak = max(peak, pending)
            progress.update(pending)
            return pending >= sizes.timers or timers.fired > base_fired

        try:
            all_armed_at = await target.wait_until(
                all_armed, timeout=sizes.timers / 200 + 60, what="the deadlines to be armed"
            )
            submitted = await agent.result()
        except BaseException:
            await agent.kill()
            raise
        rss_armed = rss_bytes()
        arm_seconds = all_armed_at - submitted["first_send"]
        fire_from = submitted["fire_origin"] + lead
        async with profiling(profiler):
            progress.phase(f"waiting for the first deadline ({max(0.0, fire_from - time.time()):.0f}s)")
            await asyncio.sleep(max(0.0, fire_from - time.time()))
            meter = target.cpu_meter()
            if meter is not None:
                meter.start()
            machine = MachineMeter()
            machine.start()
            collector = GcMeter()
            collector.start()
            progress.phase(f"{fire:,} deadlines firing over {sizes.window:g}s", total=fire)

            async def all_fired() -> bool:
                fired = timers.fired - base_fired
                progress.update(fired)
                return fired >= fire

            try:
                await target.wait_until(all_fired, timeout=sizes.window + 300, what="the deadlines to fire")
            finally:
                timers.record_lateness = False
        cpu = meter.stop() if meter is not None else None
        machine_busy = machine.stop()
        gc_figures = collector.stop()
        lateness = percentiles(timers.lateness, 1000)
    kinds = f"{starts:,} start timeouts, {wakes:,} run_at/backoff, {heartbeats:,} heartbeat"
    result.add("pending at once", peak, "deadlines", note=kinds)
    result.add(
        "arming rate",
        sizes.timers / arm_seconds if arm_seconds > 0 else 0.0,
        "deadlines/s",
        note="first submit -> all armed; each is a job submitted through SubmitJobs",
    )
    result.add(
        "memory per pending deadline",
        (rss_armed - rss_before) / max(peak, 1),
        "bytes",
        note="engine process RSS growth / deadlines; includes each deadline's job",
    )
    result.add(
        "firing rate",
        fire / sizes.window,
        "fires/s",
        note=f"{fire:,} deadlines spread over {sizes.window:g}s, the others still pending",
    )
    result.add("lateness p50", lateness["p50"], "ms", note="fire time - deadline, engine's record")
    result.add("lateness p99", lateness["p99"], "ms", target=Target(LATENESS_P99_TARGET_MS, at_most=True))
    result.add("lateness max", lateness["max"], "ms")
    if cpu is not None:
        result.add("engine CPU while firing", cpu.percent, "%", note="100% = one core")
    result.add(
        "longest GC pause while firing",
        gc_figures["gen2_ms_max"],
        "ms",
        note=f"engine process: {gc_figures['gen2_count']:g} full collections, "
        f"{gc_figures['gen2_ms_total']:g} ms in all",
    )
    result.add("machine busy while firing", machine_busy, "%", note="every process, other users' too")
    result.details.update(
        {
            "lateness_ms": lateness,
            "engine_gc": gc_figures,
            "fired": len(timers.lateness),
            "rss_before_mb": round(rss_before / 2**20, 1),
            "rss_armed_mb": round(rss_armed / 2**20, 1),
            "arm_seconds": round(arm_seconds, 2),
            "submit_rate": submitted["rate"],
        }
    )
    if cpu is not None:
        result.details["engine_threads_cpu_percent"] = cpu.thread_percent()
    return result
