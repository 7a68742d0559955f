"""What the console costs: run it headless against an engine and measure its CPU and its latency.

``measure_console_cpu(address, seconds)`` starts the console in a process of its own (so nothing
else is counted), lets it load and settle, then measures for ``seconds``: the process CPU, the
events applied per second, how long each flush took, how late the event loop ran, and how long a
key press took to be handled. ``generate_load`` makes the load the issue asks for (10,000 running
jobs, 1,000 updates a second) with a worker written on the raw stubs.

From a shell::

    python -m jobwarden.tui.bench --engine 127.0.0.1:50051 --seconds 20
    python -m jobwarden.tui.bench --engine 127.0.0.1:50051 --load --jobs 10000 --rate 1000 --seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

__all__ = ["generate_load", "measure_console_cpu"]


def measure_console_cpu(
    address: str,
    seconds: float = 20.0,
    *,
    warmup: float = 5.0,
    size: tuple[int, int] = (200, 50),
    sort: str = "NEWEST",
    timeout: float | None = None,
) -> dict[str, Any]:
    """Run the console headless against ``address`` in a subprocess and report what it cost.

    The console first loads its snapshot and goes live, then settles for ``warmup`` seconds;
    then for ``seconds`` it is measured. ``sort`` names a ``SortOrder`` (PROGRESS re-sorts on
    almost every update: the worst case). The result's keys:

    - ``cpu_percent``: CPU of the console's process (all threads) over wall time, 100 = one core
    - ``cpu_seconds``, ``wall_seconds``
    - ``events_per_second``: stream events the console applied
    - ``rows_kept``, ``rows_shown``: jobs in its store, and in its table
    - ``flush_ms_mean``, ``flush_ms_p99``, ``flush_ms_max``: time to draw one batch of changes
    - ``loop_lag_ms_p99``, ``loop_lag_ms_max``: how late a 50 ms timer fired (input waits as long)
    - ``key_ms_mean``, ``key_ms_max``: a cursor key press, from press to handled
    - ``load_seconds``: from start to the first snapshot loaded and live
    """
    command = [
        sys.executable,
        "-m",
        "jobwarden.tui.bench",
        "--engine",
        address,
        "--seconds",
        str(seconds),
        "--warmup",
        str(warmup),
        "--size",
        f"{size[0]}x{size[1]}",
        "--sort",
        sort,
        "--json",
    ]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=timeout or seconds + warmup + 180,
        check=False,
        env={**os.environ, "TEXTUAL": ""},
    )
    if done.returncode != 0:
        raise RuntimeError(f"console benchmark failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"console benchmark printed no result: {done.stdout[-2000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


async def _measure(
    address: str, seconds: float, warmup: float, size: tuple[int, int], sort: str
) -> dict[str, Any]:
    from ._app import ConsoleApp
    from ._feed import LinkState
    from ._filter import SortOrder

    started = time.perf_counter()
    app = ConsoleApp(address)
    app.sort = SortOrder[sort.upper()]
    async with app.run_test(headless=True, size=size) as pilot:
        deadline = time.monotonic() + 120
        while app._feed is None or app.feed.status().state is not LinkState.LIVE:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the console did not go live: {app.feed.status()}")
            await asyncio.sleep(0.1)
        load_seconds = time.perf_counter() - started
        await asyncio.sleep(warmup)

        lags: list[float] = []
        stop = asyncio.Event()

        async def sample_lag() -> None:
            while not stop.is_set():
                before = time.perf_counter()
                await asyncio.sleep(0.05)
                lags.append(max(0.0, time.perf_counter() - before - 0.05))

        sampler = asyncio.create_task(sample_lag())
        flushes_before = len(app.flush_times)
        events_before = app.store.events_applied
        cpu_before = time.process_time()
        wall_before = time.perf_counter()
        keys: list[float] = []
        end = wall_before + seconds
        while time.perf_counter() < end:
            await asyncio.sleep(min(1.0, max(0.0, end - time.perf_counter())))
            if time.perf_counter() < end:
                press = time.perf_counter()
                await pilot.press("down")
                keys.append(time.perf_counter() - press)
        cpu = time.process_time() - cpu_before
        wall = time.perf_counter() - wall_before
        events = app.store.events_applied - events_before
        stop.set()
        await sampler
        flushes = list(app.flush_times)[flushes_before - len(app.flush_times) :] if app.flush_times else []
        flushes = flushes or [0.0]
        return {
            "cpu_percent": round(100 * cpu / wall, 1),
            "cpu_seconds": round(cpu, 2),
            "wall_seconds": round(wall, 2),
            "events_per_second": round(events / wall, 1),
            "rows_kept": len(app.store),
            "rows_shown": app.jobs_screen.table.row_count,
            "flush_ms_mean": round(1000 * statistics.fmean(flushes), 2),
            "flush_ms_p99": round(1000 * _percentile(flushes, 0.99), 2),
            "flush_ms_max": round(1000 * max(flushes), 2),
            "flushes": len(flushes),
            "loop_lag_ms_p99": round(1000 * _percentile(lags or [0.0], 0.99), 1),
            "loop_lag_ms_max": round(1000 * max(lags or [0.0]), 1),
            "key_ms_mean": round(1000 * statistics.fmean(keys or [0.0]), 1),
            "key_ms_max": round(1000 * max(keys or [0.0]), 1),
            "load_seconds": round(load_seconds, 2),
        }


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def generate_load(
    address: str,
    *,
    jobs: int = 10_000,
    rate: float = 1000.0,
    seconds: float = 60.0,
    action: str = "console-bench",
) -> dict[str, Any]:
    """Submit ``jobs`` jobs, take them all with one raw worker and send ``rate`` progress updates
    a second (round robin) for ``seconds``; returns how many updates went out."""
    import grpc.aio
    from google.protobuf.duration_pb2 import Duration
    from jobwarden.contract import Limits
    from jobwarden.v1 import (
        executor_service_pb2,
        executor_service_pb2_grpc,
        job_pb2,
        job_service_pb2,
        job_service_pb2_grpc,
    )

    options = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]
    async with grpc.aio.insecure_channel(address, options=options) as channel:
        stub = job_service_pb2_grpc.JobServiceStub(channel)
        # No heartbeat deadline for the bench jobs: they run for as long as the bench does.
        await stub.SetActionConfig(
            job_service_pb2.SetActionConfigRequest(config=job_pb2.ActionConfig(action=action))
        )
        batch = Limits.MAX_BATCH_SUBMIT // 10
        for start in range(0, jobs, batch):
            count = min(batch, jobs - start)
            await stub.SubmitJobs(
                job_service_pb2.SubmitJobsRequest(
                    jobs=[job_service_pb2.SubmitJobRequest(action=action) for _ in range(count)]
                )
            )

        outgoing: asyncio.Queue[executor_service_pb2.ConnectRequest] = asyncio.Queue()

        async def requests() -> AsyncIterator[executor_service_pb2.ConnectRequest]:
            while True:
                yield await outgoing.get()

        executors = executor_service_pb2_grpc.ExecutorServiceStub(channel)
        call = executors.Connect(requests())
        outgoing.put_nowait(
            executor_service_pb2.ConnectRequest(
                register=executor_service_pb2.Register(
                    worker_name="console-bench",
                    executors=[executor_service_pb2.ExecutorSpec(action=action)],
                    capacity=jobs,
                )
            )
        )
        held: list[tuple[str, int]] = []
        all_held = asyncio.Event()
        heartbeat = Duration(seconds=5)

        async def read() -> None:
            nonlocal heartbeat
            async for message in call:
                kind = message.WhichOneof("message")
                if kind == "registered":
                    heartbeat = message.registered.heartbeat_interval
                elif kind == "assignment":
                    held.append((message.assignment.job_id, message.assignment.attempt))
                elif kind == "assignments":
                    held.extend((a.job_id, a.attempt) for a in message.assignments.assignments)
                if len(held) >= jobs:
                    all_held.set()

        reader = asyncio.create_task(read())
        # Go on with what was assigned if not all of it came; the result says how many.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_held.wait(), timeout=120)
        sent = 0
        tick = 0.05
        per_tick = max(1, round(rate * tick))
        beat_every = max(0.5, heartbeat.ToTimedelta().total_seconds() / 2)
        next_beat = time.monotonic()
        started = time.monotonic()
        position = 0
        while time.monotonic() - started < seconds and held:
            updates = []
            for _ in range(per_tick):
                job_id, attempt = held[position % len(held)]
                position += 1
                updates.append(
                    executor_service_pb2.JobUpdate(
                        job_id=job_id, attempt=attempt, progress=position % 100, message=f"update {position}"
                    )
                )
            outgoing.put_nowait(
                executor_service_pb2.ConnectRequest(
                    job_updates=executor_service_pb2.JobUpdates(updates=updates)
                )
            )
            sent += len(updates)
            if time.monotonic() >= next_beat:
                outgoing.put_nowait(
                    executor_service_pb2.ConnectRequest(heartbeat=executor_service_pb2.Heartbeat())
                )
                next_beat = time.monotonic() + beat_every
            target = started + (sent / rate)
            await asyncio.sleep(max(0.0, target - time.monotonic()))
        elapsed = time.monotonic() - started
        call.cancel()
        reader.cancel()
        return {"jobs_held": len(held), "updates_sent": sent, "updates_per_second": round(sent / elapsed, 1)}


def _sort_orders() -> list[Any]:
    from ._filter import SortOrder

    return list(SortOrder)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobwarden.tui.bench", description=__doc__)
    parser.add_argument("--engine", required=True, metavar="HOST:PORT")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--size", default="200x50", help="terminal COLUMNSxROWS (default 200x50)")
    parser.add_argument("--sort", default="NEWEST", choices=[order.name for order in _sort_orders()])
    parser.add_argument("--json", action="store_true", help="print the result as one JSON line")
    parser.add_argument("--load", action="store_true", help="generate load instead of measuring")
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=1000.0, help="updates per second (with --load)")
    args = parser.parse_args(argv)
    if args.load:
        result = asyncio.run(generate_load(args.engine, jobs=args.jobs, rate=args.rate, seconds=args.seconds))
    else:
        columns, _, rows = args.size.partition("x")
        size = (int(columns), int(rows))
        result = asyncio.run(_measure(args.engine, args.seconds, args.warmup, size, args.sort))
    print(json.dumps(result) if args.json else "\n".join(f"{key}: {value}" for key, value in result.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
