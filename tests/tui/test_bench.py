"""The console benchmark runs end to end on a small load (the figures themselves are not asserted)."""

from __future__ import annotations

import asyncio

from jobwarden.tui.bench import generate_load, measure_console_cpu

from tests.conftest import EngineHandle


async def test_measure_console_cpu_reports_what_the_console_applied(engine: EngineHandle) -> None:
    load = asyncio.create_task(generate_load(engine.address, jobs=40, rate=100, seconds=7))
    result = await asyncio.to_thread(measure_console_cpu, engine.address, 3.0, warmup=1.0, size=(120, 30))
    sent = await load
    assert sent["jobs_held"] == 40
    assert result["rows_kept"] == 40
    assert result["events_per_second"] > 0
    assert result["cpu_seconds"] > 0
    assert {"flush_ms_p99", "loop_lag_ms_p99", "key_ms_mean"} <= result.keys()
