"""Running scenarios: a fresh engine for each (unless one is given), the machine's conditions noted,
py-spy attached when asked."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from . import SCENARIOS
from ._conditions import machine_conditions
from ._console import run_console
from ._depth import run_depth
from ._failover import run_failover
from ._fanout import run_fanout
from ._floor import run_floor
from ._latency import run_latency
from ._locks import run_locks
from ._procs import Profiler
from ._progress import NullProgress, Progress
from ._results import ScenarioResult, ScenarioUnavailable
from ._sizes import SIZES, AllSizes, DepthSizes, FailoverSizes, Sizes
from ._target import BenchSetup, EngineUnderTest, engine_under_test, scenario_workdir
from ._throughput import run_throughput
from ._timers import run_timers
from ._workflows import run_workflow

__all__ = ["SCENARIOS", "AllSizes", "run_all", "run_scenario"]

_Runner = Callable[[EngineUnderTest, Any, Progress, Profiler | None], Awaitable[ScenarioResult]]

#: the scenarios that run against one engine (depth restarts its own)
_ENGINE_SCENARIOS: dict[str, _Runner] = {
    "throughput": run_throughput,
    "floor": run_floor,
    "latency": run_latency,
    "fanout": run_fanout,
    "locks": run_locks,
    "timers": run_timers,
    "console": run_console,
    "workflow": run_workflow,
}

#: the scenarios that start engines of their own (depth restarts one, failover kills them), and
#: why they cannot measure the running engine ``--engine`` names
_OWN_ENGINES: dict[str, str] = {
    "depth": "depth seeds the store and restarts the engine on it: run it without --engine "
    "(with --db it grows that database)",
    "failover": "failover starts its own engines and kills them: run it without --engine, with "
    "--db postgresql+psycopg://... (an empty database of its own)",
}


def default_sizes(scenario: str) -> Sizes:
    if scenario not in SIZES:
        raise ValueError(f"unknown scenario {scenario!r} (one of {', '.join(SCENARIOS)})")
    sizes: Sizes = SIZES[scenario]()
    return sizes


def _profile_path(setup: BenchSetup, scenario: str, several: bool) -> Path | None:
    if setup.profile is None:
        return None
    if not several:
        return setup.profile
    return setup.profile.with_name(f"{setup.profile.stem}-{scenario}{setup.profile.suffix}")


async def run_scenario(
    scenario: str,
    sizes: Sizes | None = None,
    setup: BenchSetup | None = None,
    progress: Progress | None = None,
    *,
    several: bool = False,
) -> ScenarioResult:
    """Run one scenario and return what it measured. ``ScenarioUnavailable`` when it cannot run
    here (e.g. ``timers`` against an engine it did not start, ``console`` without the console)."""
    setup = setup or BenchSetup()
    progress = progress or NullProgress()
    sizes = sizes if sizes is not None else default_sizes(scenario)
    profile = _profile_path(setup, scenario, several)
    profiler = Profiler(profile, gil=setup.profile_gil) if profile is not None else None
    conditions = machine_conditions()
    started = time.perf_counter()
    if setup.engine and scenario in _OWN_ENGINES:
        raise ScenarioUnavailable(_OWN_ENGINES[scenario])
    if scenario == "depth":
        assert isinstance(sizes, DepthSizes)
        result = await _run_depth(sizes, setup, progress, profiler, conditions)
    elif scenario == "failover":
        assert isinstance(sizes, FailoverSizes)
        result = await _run_failover(sizes, setup, progress, conditions)
    else:
        if scenario not in _ENGINE_SCENARIOS:
            raise ValueError(f"unknown scenario {scenario!r} (one of {', '.join(SCENARIOS)})")
        runner = _ENGINE_SCENARIOS[scenario]
        async with engine_under_test(setup, scenario) as target:
            conditions["engine"] = target.describe()
            result = await runner(target, sizes, progress, profiler)
    with contextlib.suppress(OSError):
        conditions["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    result.conditions = conditions
    result.seconds = time.perf_counter() - started
    if profile is not None:
        result.details["profile"] = str(profile)
    return result


async def _run_depth(
    sizes: DepthSizes,
    setup: BenchSetup,
    progress: Progress,
    profiler: Profiler | None,
    conditions: dict[str, Any],
) -> ScenarioResult:
    with scenario_workdir(setup, "depth") as workdir:
        db_url = setup.db or f"sqlite:///{workdir / 'bench.db'}"
        if db_url.startswith("sqlite"):
            conditions["engine"] = (
                "engine in the bench's process; SQLite (WAL, synchronous=FULL) in a temp dir"
            )
        else:
            conditions["engine"] = "engine in the bench's process; the --db database (grown by the seed)"
        return await run_depth(db_url, workdir, sizes, progress, profiler)


async def _run_failover(
    sizes: FailoverSizes, setup: BenchSetup, progress: Progress, conditions: dict[str, Any]
) -> ScenarioResult:
    with scenario_workdir(setup, "failover") as workdir:
        conditions["engine"] = (
            f"{sizes.engines} engines (jobwarden serve) in processes of their own on the --db PostgreSQL"
        )
        return await run_failover(setup.db or "", workdir, sizes, progress)


async def run_all(
    sizes: AllSizes | None = None,
    setup: BenchSetup | None = None,
    progress: Progress | None = None,
    *,
    skip: frozenset[str] = frozenset(),
    on_result: Callable[[ScenarioResult], None] | None = None,
) -> list[ScenarioResult]:
    """Every scenario in turn; one that cannot run here is recorded as skipped, with why."""
    sizes = sizes or AllSizes()
    results = []
    for scenario in SCENARIOS:
        if scenario in skip:
            continue
        try:
            result = await run_scenario(scenario, sizes.of(scenario), setup, progress, several=True)
        except ScenarioUnavailable as error:
            result = ScenarioResult(scenario, {}, details={"skipped": str(error)})
            if progress is not None:
                progress.note(f"{scenario}: skipped: {error}")
        except (RuntimeError, TimeoutError, OSError) as error:
            # One scenario failing (e.g. the engine refusing work under load) is a finding; the
            # others still run.
            result = ScenarioResult(scenario, {}, details={"failed": f"{type(error).__name__}: {error}"})
            if progress is not None:
                progress.note(f"{scenario}: failed: {error}")
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results
