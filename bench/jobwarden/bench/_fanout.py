"""``fanout``: S watchers (WatchJobs streams, each on its own connection, spread over a few
processes) follow every event during a throughput run: events/s each got, how late, and whether
each got every event exactly once."""

from __future__ import annotations

import statistics
from dataclasses import asdict
from typing import Any

from ._procs import Agent, Profiler
from ._progress import Progress
from ._results import ScenarioResult, Target
from ._sizes import FanoutSizes
from ._target import EngineUnderTest
from ._workload import Submission, new_action, run_workload, running_workers

__all__ = ["LAG_P99_TARGET_MS", "run_fanout"]

#: the issue's target: p99 lag of every watcher during the throughput run
LAG_P99_TARGET_MS = 100.0


def _split(total: int, parts: int) -> list[int]:
    parts = max(1, min(parts, total))
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


async def run_fanout(
    target: EngineUnderTest,
    sizes: FanoutSizes,
    progress: Progress,
    profiler: Profiler | None = None,
) -> ScenarioResult:
    result = ScenarioResult("fanout", asdict(sizes))
    action = new_action("fanout")
    agents: list[Agent] = []
    async with running_workers(
        target, action, count=sizes.workers, capacity=sizes.capacity, progress=progress
    ) as workers:
        try:
            head = await target.head()
            already = await target.watchers()
            progress.phase(f"connecting {sizes.watchers} watchers", total=sizes.watchers)
            for count in _split(sizes.watchers, sizes.watcher_processes):
                agents.append(
                    await Agent("watch", {"engine": target.address, "streams": count, "after": head}).start()
                )

            async def subscribed() -> bool:
                watching = await target.watchers() - already
                progress.update(watching)
                return watching >= sizes.watchers

            await target.wait_until(subscribed, timeout=120, interval=0.05, what=f"{sizes.watchers} watchers")
            figures = await run_workload(
                target,
                action,
                Submission(sizes.jobs, batch=sizes.batch),
                progress=progress,
                profiler=profiler,
                workers=workers,
            )
            final = await target.head()
            progress.phase("waiting for every watcher to reach the last event")
            for agent in agents:
                await agent.send(f"stop {final}")
            reports = [await agent.result(timeout=180) for agent in agents]
        finally:
            for agent in agents:
                await agent.kill()
    streams: list[dict[str, Any]] = [s for report in reports for s in report["streams"]]
    expected = final - head
    complete = sum(1 for s in streams if s["complete"] and s["events"] == expected)
    rates = sorted(s["events_per_second"] for s in streams)
    p99s = sorted(1000 * s["lag_p99"] for s in streams)
    first = min((s["first_receipt"] for s in streams if s["first_receipt"]), default=0.0)
    last = max((s["last_receipt"] for s in streams), default=0.0)
    delivered = sum(s["events"] for s in streams)
    result.add(
        "watchers with every event",
        complete,
        f"of {len(streams)}",
        target=Target(sizes.watchers),
        note=f"{expected:,} events each, in order, no gap, no duplicate",
    )
    result.add("p99 lag, worst watcher", p99s[-1] if p99s else float("nan"), "ms",
               target=Target(LAG_P99_TARGET_MS, at_most=True),
               note="event time (engine) -> received by the watcher")  # fmt: skip
    result.add("p99 lag, median watcher", statistics.median(p99s) if p99s else float("nan"), "ms")
    result.add("max lag", 1000 * max((s["lag_max"] for s in streams), default=0.0), "ms")
    result.add("events/s per watcher, slowest", rates[0] if rates else 0.0, "events/s")
    result.add("events/s per watcher, median", statistics.median(rates) if rates else 0.0, "events/s")
    result.add(
        "events/s delivered, all watchers",
        delivered / (last - first) if last > first else 0.0,
        "events/s",
    )
    result.add(
        "streams cut (slow reader)",
        sum(s["cuts"] for s in streams),
        "",
        note="a cut stream reconnects from its last sequence",
    )
    result.add("throughput meanwhile", figures.rate, "jobs/s", note="end to end, as in `throughput`")
    if figures.gc:
        result.add(
            "longest GC pause",
            figures.gc["gen2_ms_max"],
            "ms",
            note=f"engine process: {figures.gc['gen2_count']:g} full collections",
        )
    result.add("machine busy", figures.machine_busy, "%", note="every process, other users' too")
    if figures.cpu is not None:
        result.add("engine CPU", figures.cpu.percent, "%", note="100% = one core")
    errors = [s["error"] for s in streams if s["error"]]
    result.details.update(
        {
            "events_expected_per_watcher": expected,
            "events_delivered": delivered,
            "lag_ms_pooled_per_process": [
                {k: (v * 1000 if k != "count" else v) for k, v in r["lag"].items()} for r in reports
            ],
            "stream_errors": errors[:10],
            "messages_per_watcher": statistics.median(s["messages"] for s in streams) if streams else 0,
            "watcher_processes_cpu_seconds": [round(r["cpu_seconds"], 2) for r in reports],
            "lag_ms_by_event_kind": {
                kind: {k: round(v * 1000, 1) if k != "count" else v for k, v in values.items()}
                for kind, values in reports[0]["lag_by_kind"].items()
            },
            **figures.details(),
        }
    )
    return result
