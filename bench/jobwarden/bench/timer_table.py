"""How many pending deadlines the engine holds, how fast it arms them, and how late they fire.

Run it by hand and read the figures (``jobwarden bench timers`` measures timers through the API).

    .venv/bin/python -m jobwarden.bench.timer_table                # both parts, 100,000 each
    .venv/bin/python -m jobwarden.bench.timer_table --timers 20000 --jobs 0

Part 1 arms ``--timers`` deadlines on ``jobwarden.server.core.Timers`` directly (APScheduler 3,
one date-trigger timer each, async callbacks), in deadline order and in random order, then lets them
fire; it also measures disarming. Part 2 submits ``--jobs`` jobs with a start timeout (action FAIL)
to a real engine core over a SQLite file, so each fire is a full state change (event, write), and
measures the same while the engine holds them all: their deadlines come due at the submit rate, a
burst. Part 3 holds ``--paced`` DELAYED jobs and lets ``--paced-fires`` of them come due at ``--rate``
per second, for the lateness at a pace the engine keeps up with.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import random
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import apscheduler
from jobwarden.contract import JobStatus, StartTimeoutAction
from jobwarden.server.core import (
    Engine,
    EngineConfig,
    StartTimeout,
    SubmitSpec,
    Timeouts,
    TimerKind,
    Timers,
)


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def percentiles(values: list[float]) -> str:
    if not values:
        return "no fires"
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return (
        f"lateness p50 {at(0.50):.1f} ms, p99 {at(0.99):.1f} ms, max {ordered[-1] * 1000:.1f} ms, "
        f"mean {statistics.fmean(ordered) * 1000:.1f} ms"
    )


@dataclass
class FireLog:
    """When each timer fired, against its deadline (``deadlines`` maps key -> POSIX time)."""

    deadlines: dict[str, float] = field(default_factory=dict)
    lateness: list[tuple[float, float]] = field(default_factory=list)
    count: int = 0
    first: float = 0.0
    last: float = 0.0

    def on_fire(self, key: str) -> None:
        now = time.perf_counter()
        if not self.count:
            self.first = now
        self.last = now
        self.count += 1
        at = self.deadlines.get(key)
        if at is not None:
            self.lateness.append((at, time.time() - at))

    def report(self, settled_after: float) -> str:
        """Lateness of every fire, and of those due after ``settled_after`` (arming was over)."""
        every = [late for _, late in self.lateness]
        settled = [late for at, late in self.lateness if at >= settled_after]
        return (
            f"all {len(every):,}: {percentiles(every)}\n"
            f"      due after arming ended ({len(settled):,}): {percentiles(settled)}"
        )


async def raw_timers(n: int, order: str, spread: float) -> None:
    log = FireLog()
    timers = Timers()
    timers.on("start", log.on_fire)
    timers.start()
    gc.collect()
    before = rss_mb()
    # Deadlines start after the arming is expected to end; fires due before it ended are reported apart.
    lead = 2.0 + n / 5_000
    t0 = time.time() + lead
    deadlines = [t0 + spread * i / n for i in range(n)]
    if order == "random":
        random.Random(1).shuffle(deadlines)
    log.deadlines = {f"job-{i}": at for i, at in enumerate(deadlines)}
    began = time.perf_counter()
    for i, at in enumerate(deadlines):
        timers.arm("start", f"job-{i}", at)
    armed_in = time.perf_counter() - began
    # APScheduler queues one wakeup per add_job: let them drain before measuring what is held.
    await asyncio.sleep(0)
    drained_in = time.perf_counter() - began
    armed_at = time.time()
    held = timers.pending
    memory = rss_mb() - before
    while log.count < n:
        await asyncio.sleep(0.05)
        if time.time() > t0 + spread + 120:
            break
    fire_span = log.last - log.first
    print(
        f"  timers, {order} order: armed {n:,} in {armed_in:.2f}s ({n / armed_in:,.0f}/s; "
        f"{drained_in:.2f}s with the scheduler's wakeups), held {held:,} pending, "
        f"+{memory:.0f} MB RSS ({memory * 1e6 / n:,.0f} B each)"
        + ("  [arming overran the first deadline]" if armed_at > t0 else "")
    )
    print(
        f"    fired {log.count:,} over {fire_span:.2f}s ({log.count / max(fire_span, 1e-9):,.0f}/s, "
        f"deadlines spread over {spread:g}s), lateness of {log.report(armed_at)}"
    )
    timers.stop()


async def disarm_rate(n: int) -> None:
    timers = Timers()
    timers.on("start", FireLog().on_fire)
    timers.start()
    far = time.time() + 3600
    for i in range(n):
        timers.arm("start", f"job-{i}", far + i / 1000)
    await asyncio.sleep(0)
    order = list(range(n))
    random.Random(2).shuffle(order)
    sample = order[: min(n, 20_000)]
    began = time.perf_counter()
    for i in sample:
        timers.disarm("start", f"job-{i}")
    took = time.perf_counter() - began
    await asyncio.sleep(0)
    print(
        f"  disarm (a job starts) with {n:,} pending: {len(sample):,} in {took:.2f}s "
        f"({len(sample) / took:,.0f}/s, {took / len(sample) * 1e6:.0f} µs each)"
    )
    timers.stop()


def record_fires(timers: Timers, kind: str) -> FireLog:
    """From now on, each fire of ``kind`` (a ``TimerKind``) first notes its deadline and lateness in
    the returned log, from the timer table's own record (``Timers.lateness``, appended just before
    the handler runs, turned on here), then runs the engine's handler as before."""
    handler = timers.handler(kind)
    assert handler is not None
    log = FireLog()
    timers.lateness.clear()
    timers.record_lateness = True

    def on_fire(key: str) -> None:
        late = timers.lateness[-1]
        log.lateness.append((time.time() - late, late))
        handler(key)

    timers.on(kind, on_fire, replace=True)
    return log


def committed(engine: Engine, action: str, statuses: frozenset[JobStatus]) -> int:
    """Committed jobs of ``action`` in ``statuses``, as GetStats counts them (``Engine.stats()``)."""
    view = next((v for v in engine.stats().actions if v.action == action), None)
    return sum(view.counts.get(s, 0) for s in statuses) if view is not None else 0


async def through_the_engine(n: int, duration: float, workdir: Path) -> None:
    engine = Engine.from_config(EngineConfig(db_url=f"sqlite:///{workdir / 'bench.db'}"))
    await engine.start()
    batch = 5_000
    # The same submits without a timeout, for what arming a deadline adds to a submit.
    plain = min(n, 20_000)
    began = time.perf_counter()
    for offset in range(0, plain, batch):
        await engine.submit([SubmitSpec(action="plain", input={"i": offset + i}) for i in range(batch)])
    plain_in = time.perf_counter() - began
    print(f"  engine: {plain:,} jobs without a timeout submitted at {plain / plain_in:,.0f}/s (baseline)")
    gc.collect()
    before = rss_mb()
    timeouts = Timeouts(start=StartTimeout(duration=duration, action=StartTimeoutAction.FAIL))
    began = time.perf_counter()
    first_deadline = time.time() + duration
    for offset in range(0, n, batch):
        specs = [
            SubmitSpec(action="bench", input={"i": offset + i}, timeouts=timeouts)
            for i in range(min(batch, n - offset))
        ]
        await engine.submit(specs)
    submitted_in = time.perf_counter() - began
    submitted_at = time.time()
    held = engine.timers.pending
    memory = rss_mb() - before
    log = record_fires(engine.timers, TimerKind.START)
    print(
        f"  engine: submitted {n:,} jobs with a {duration:g}s start timeout in {submitted_in:.2f}s "
        f"({n / submitted_in:,.0f}/s, batches of {batch:,}, each committed), held {held:,} pending "
        f"timers, +{memory:.0f} MB RSS for jobs and timers ({memory * 1e6 / n:,.0f} B each)"
        + (f"  [{n - held:,} fired while submitting]" if time.time() > first_deadline else "")
    )
    fire_began = time.perf_counter()
    queued = frozenset({JobStatus.QUEUED})
    # Polling a counter on purpose: an Event set from the engine would change what is measured.
    while committed(engine, "bench", queued) and time.perf_counter() - fire_began < 600:  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    await engine.writer.flush()
    fire_span = time.perf_counter() - fire_began
    engine.timers.record_lateness = False
    failed = committed(engine, "bench", frozenset({JobStatus.FAILED}))
    print(
        f"    {failed:,} jobs FAILED(START_TIMEOUT), written, {fire_span:.2f}s after the last submit "
        f"(deadlines arrive at the submit rate); lateness of {log.report(submitted_at)}"
    )
    await engine.stop()


async def paced_wakes(n: int, fires: int, rate: float, workdir: Path) -> None:
    """``n`` DELAYED jobs held at once; ``fires`` of them due at ``rate`` per second (the rest far in the
    future, as ballast), so lateness is measured at a pace the engine keeps up with."""
    engine = Engine.from_config(EngineConfig(db_url=f"sqlite:///{workdir / 'paced.db'}"))
    await engine.start()
    t0 = time.time() + 5.0 + n / 2_500
    far = time.time() + 3600
    run_ats = [t0 + i / rate if i < fires else far + i for i in range(n)]
    random.Random(3).shuffle(run_ats)
    began = time.perf_counter()
    for offset in range(0, n, 5_000):
        await engine.submit(
            [SubmitSpec(action="paced", run_at=at) for at in run_ats[offset : offset + 5_000]]
        )
    submitted_in = time.perf_counter() - began
    submitted_at = time.time()
    held = engine.timers.pending
    log = record_fires(engine.timers, TimerKind.WAKE)
    print(
        f"  engine, paced: {n:,} DELAYED jobs (run_at) submitted in {submitted_in:.2f}s, held {held:,} "
        f"pending timers; {fires:,} of them due at {rate:,.0f}/s"
        + ("  [submitting overran the first run_at]" if submitted_at > t0 else "")
    )
    queued = frozenset({JobStatus.QUEUED})
    deadline = time.perf_counter() + fires / rate + 600
    while committed(engine, "paced", queued) < fires and time.perf_counter() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    await engine.writer.flush()
    engine.timers.record_lateness = False
    print(
        f"    {len(log.lateness):,} woke DELAYED -> QUEUED, written; lateness of {log.report(submitted_at)}"
    )
    await engine.stop()


def machine() -> str:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{os.cpu_count()} CPUs ({model}), load average {load}; Python {platform.python_version()}, "
        f"APScheduler {apscheduler.__version__}, {platform.system()} {platform.release()}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--timers", type=int, default=100_000, help="deadlines armed on Timers directly (0: skip)"
    )
    parser.add_argument("--jobs", type=int, default=100_000, help="jobs with start timeouts (0: skip)")
    parser.add_argument("--spread", type=float, default=5.0, help="seconds the raw deadlines are spread over")
    parser.add_argument("--duration", type=float, default=0.0, help="start timeout (default: from --jobs)")
    parser.add_argument(
        "--paced", type=int, default=100_000, help="DELAYED jobs held for the paced part (0: skip)"
    )
    parser.add_argument("--paced-fires", type=int, default=20_000, help="how many of them come due")
    parser.add_argument("--rate", type=float, default=1_000.0, help="fires per second in the paced part")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    if args.timers:
        await raw_timers(args.timers, "deadline", args.spread)
        await raw_timers(args.timers, "random", args.spread)
        await disarm_rate(args.timers)
    if args.jobs:
        with tempfile.TemporaryDirectory() as tmp:
            duration = args.duration or 5.0 + args.jobs / 3_000
            await through_the_engine(args.jobs, duration, Path(tmp))
    if args.paced:
        with tempfile.TemporaryDirectory() as tmp:
            await paced_wakes(args.paced, min(args.paced_fires, args.paced), args.rate, Path(tmp))
    print(f"machine after: {machine()}")


if __name__ == "__main__":
    asyncio.run(main())
