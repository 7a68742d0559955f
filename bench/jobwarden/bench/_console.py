"""``console``: the console's CPU while it follows 10,000 running jobs updated 1,000 times a second.

Both the load and the console run through ``python -m jobwarden.tui.bench`` in processes of their
own, so the engine's process never imports the console."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import signal
import sys
from dataclasses import asdict

from jobwarden.contract import JobStatus

from ._procs import Profiler, open_log, profiling, run_json_command
from ._progress import Progress
from ._results import ScenarioResult, ScenarioUnavailable, Target
from ._sizes import ConsoleSizes
from ._target import EngineUnderTest

__all__ = ["CONSOLE_CPU_TARGET", "run_console"]

#: the issue's target: the console below half a core at 1,000 events/s
CONSOLE_CPU_TARGET = 50.0
#: the action jobwarden.tui.bench's load generator submits
_LOAD_ACTION = "console-bench"


def _console_installed() -> bool:
    # find_spec of the top packages only: nothing of the console is imported here.
    return (
        importlib.util.find_spec("textual") is not None
        and importlib.util.find_spec("jobwarden.tui") is not None
    )


async def run_console(
    target: EngineUnderTest,
    sizes: ConsoleSizes,
    progress: Progress,
    profiler: Profiler | None = None,
) -> ScenarioResult:
    if not _console_installed():
        raise ScenarioUnavailable("console needs the console installed: pip install 'jobwarden[tui]'")
    result = ScenarioResult("console", asdict(sizes))
    log = open_log(target.workdir / "console-load.log")
    try:
        load = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "jobwarden.tui.bench", "--engine", target.address, "--load",
            "--jobs", str(sizes.jobs), "--rate", str(sizes.rate),
            "--seconds", str(sizes.seconds + sizes.warmup + 300), "--json",
            stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
        )  # fmt: skip
    finally:
        log.close()
    try:
        progress.phase(f"the load takes {sizes.jobs:,} jobs", total=sizes.jobs)

        async def all_running() -> bool:
            if load.returncode is not None:
                raise RuntimeError(f"the console load generator exited with {load.returncode}")
            running = await target.count(_LOAD_ACTION, JobStatus.RUNNING)
            progress.update(running)
            return running >= sizes.jobs

        await target.wait_until(all_running, timeout=300, interval=0.1, what="the load's jobs to run")
        progress.phase(f"console headless: {sizes.warmup:g}s to settle, {sizes.seconds:g}s measured")
        async with profiling(profiler):
            meter = target.cpu_meter()
            if meter is not None:
                meter.start()
            measured = await run_json_command(
                [sys.executable, "-m", "jobwarden.tui.bench", "--engine", target.address,
                 "--seconds", str(sizes.seconds), "--warmup", str(sizes.warmup), "--json"],
                timeout=sizes.seconds + sizes.warmup + 240,
                env={"TEXTUAL": ""},
            )  # fmt: skip
            cpu = meter.stop() if meter is not None else None
    finally:
        if load.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                load.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(load.wait(), 10)
            except TimeoutError:
                load.kill()
                await load.wait()
    result.add(
        "console CPU",
        measured["cpu_percent"],
        "%",
        target=Target(CONSOLE_CPU_TARGET, at_most=True),
        note="the console's process, headless, 100% = one core",
    )
    result.add("events applied", measured["events_per_second"], "events/s", note=f"offered {sizes.rate:g}/s")
    result.add("jobs in its table", measured["rows_kept"], "jobs")
    result.add("flush p99", measured["flush_ms_p99"], "ms", note="one batch of changes drawn")
    result.add("event-loop lag p99", measured["loop_lag_ms_p99"], "ms", note="how late a 50 ms timer fired")
    result.add("key press", measured["key_ms_max"], "ms", note="slowest cursor move, press -> handled")
    result.add("load time", measured["load_seconds"], "s", note="start -> snapshot loaded and live")
    if cpu is not None:
        result.add("engine CPU meanwhile", cpu.percent, "%", note="100% = one core")
    result.details["console"] = measured
    result.details["cores"] = os.cpu_count()
    return result
