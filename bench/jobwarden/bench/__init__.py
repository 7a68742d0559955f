"""``jobwarden bench``: measure a jobwarden deployment on this machine.

Scenarios (``SCENARIOS``): ``throughput``, ``latency``, ``fanout``, ``locks``, ``timers``, ``depth``,
``console`` and ``workflow``. Each starts a fresh engine in this process (SQLite with
``synchronous=FULL`` in a temp dir, unless ``BenchSetup.db`` or ``BenchSetup.engine`` says
otherwise); workers and clients run in processes of their own so the engine's process is measured
alone::

    result = await run_scenario("throughput", ThroughputSizes(jobs=5000))
    print(result.value("end to end"))

This package's top level stays light: worker and client processes import its submodules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._results import Measure, ScenarioResult, ScenarioUnavailable, Target
from ._sizes import (
    ConsoleSizes,
    DepthSizes,
    FanoutSizes,
    LatencySizes,
    LocksSizes,
    ThroughputSizes,
    TimersSizes,
    WorkflowSizes,
)

if TYPE_CHECKING:
    from ._progress import Progress
    from ._target import BenchSetup

__all__ = [
    "SCENARIOS",
    "ConsoleSizes",
    "DepthSizes",
    "FanoutSizes",
    "LatencySizes",
    "LocksSizes",
    "Measure",
    "ScenarioResult",
    "ScenarioUnavailable",
    "Target",
    "ThroughputSizes",
    "TimersSizes",
    "WorkflowSizes",
    "run_scenario",
]

#: every scenario, in the order ``jobwarden bench all`` runs them
SCENARIOS: tuple[str, ...] = (
    "throughput",
    "latency",
    "fanout",
    "locks",
    "timers",
    "depth",
    "console",
    "workflow",
)


async def run_scenario(
    scenario: str,
    sizes: Any = None,
    setup: BenchSetup | None = None,
    progress: Progress | None = None,
) -> ScenarioResult:
    """Run one scenario (``sizes`` of its kind, or its defaults) and return what it measured.

    Raises ``ScenarioUnavailable`` when it cannot run in ``setup`` (e.g. ``timers`` against an engine
    the bench did not start, ``console`` without the console installed)."""
    from ._runner import run_scenario as run

    return await run(scenario, sizes, setup, progress)
