"""The bench's pure parts: percentiles, targets, rendering, seeded ids, the all-scenario sizes."""

from __future__ import annotations

import io
import math
import os
import time
from pathlib import Path

from jobwarden.bench import SCENARIOS, Measure, ScenarioResult, Target
from jobwarden.bench._fanout import _split
from jobwarden.bench._render import markdown, print_results, print_summary
from jobwarden.bench._runner import AllSizes
from jobwarden.bench._seed import seed_finished_jobs, stored_jobs
from jobwarden.bench._stats import CpuMeter, percentiles
from jobwarden.server.core.ids import new_job_id
from jobwarden.server.core.store import Store
from rich.console import Console


def test_percentiles() -> None:
    values = [float(v) for v in range(1, 101)]
    summary = percentiles(values, scale=1000)
    assert summary == {"count": 100, "p50": 51000.0, "p90": 91000.0, "p99": 100000.0, "max": 100000.0}
    empty = percentiles([])
    assert empty["count"] == 0
    assert math.isnan(empty["p99"])


def test_targets() -> None:
    assert Target(3000).met(3000)
    assert not Target(3000).met(2999)
    assert Target(10, at_most=True).met(9.5)
    assert not Target(10, at_most=True).met(10.5)
    assert Measure("x", 5, "ms", Target(10, at_most=True)).met is True
    assert Measure("x", 5, "ms").met is None
    assert Target(10, at_most=True).describe("ms") == "≤ 10 ms"


def test_rendering_shows_values_targets_and_conditions() -> None:
    result = ScenarioResult("throughput", {"jobs": 20_000})
    result.add("end to end", 2500.4, "jobs/s", target=Target(3000), note="first submit -> last COMPLETED")
    result.add("lag", float("nan"), "ms")
    result.conditions = {"cores": 2, "cpu": "Xeon", "python": "3.11.7", "load_average": [1.0, 2.0, 3.0]}
    out = io.StringIO()
    console = Console(file=out, width=200, color_system=None)
    print_results([result], console)
    print_summary([result], console)
    text = out.getvalue()
    assert "2,500 jobs/s" in text
    assert "≥ 3,000 jobs/s" in text
    assert "no" in text
    assert "n/a" in text
    assert "2 cores (Xeon)" in text
    assert "jobs=20_000" in text


def test_markdown_has_a_table_per_scenario_and_the_targets() -> None:
    ok = ScenarioResult("throughput", {"jobs": 100})
    ok.add("end to end", 3500.0, "jobs/s", target=Target(3000), note="first submit -> last COMPLETED")
    ok.add("engine CPU", 90.0, "%")
    ok.conditions = {"cores": 2, "cpu": "Xeon", "python": "3.11.7", "load_average": [1.0, 1.0, 1.0]}
    failed = ScenarioResult("locks", {}, details={"failed": "RuntimeError: the store did not commit"})
    text = markdown([ok, failed])
    assert "| end to end | 3,500 jobs/s | ≥ 3,000 jobs/s | yes | first submit -> last COMPLETED |" in text
    assert "| engine CPU | 90 % |  |  |  |" in text
    assert "**locks**: failed: RuntimeError: the store did not commit" in text
    assert "| throughput | end to end | 3,500 jobs/s | ≥ 3,000 jobs/s | yes |" in text


def test_split_spreads_watchers_over_processes() -> None:
    assert _split(100, 4) == [25, 25, 25, 25]
    assert _split(10, 4) == [3, 3, 2, 2]
    assert _split(2, 4) == [1, 1]


def test_all_covers_every_scenario() -> None:
    sizes = AllSizes()
    for scenario in SCENARIOS:
        assert sizes.of(scenario) is not None
    assert sizes.timers.timers == 100_000
    assert sizes.depth.stored == [0, 100_000, 1_000_000]
    assert sizes.fanout.watchers == 100


def test_seeded_jobs_are_older_than_new_ones_and_finished(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'seed.db'}"
    seed_finished_jobs(url, 300, batch=128)
    seed_finished_jobs(url, 200)
    assert stored_jobs(url) == 500
    store = Store(url)
    try:
        assert store.load_unfinished_jobs() == []
        assert store.max_sequence() == 500
        newest = new_job_id()
        ids = [job_id for job_id in _ids(store)]
        assert len(set(ids)) == 500
        assert max(ids) < newest
        job = store.get_job(ids[0])
        assert job is not None
        assert job.status.name == "COMPLETED"
    finally:
        store.close()


def _ids(store: Store) -> list[str]:
    from jobwarden.server.core.store import jobs_t
    from sqlalchemy import select

    with store.engine.connect() as conn:
        return [row[0] for row in conn.execute(select(jobs_t.c.id))]


def test_cpu_meter_counts_this_process() -> None:
    meter = CpuMeter()
    meter.start()
    # /proc charges threads in whole clock ticks: burn several ticks' worth of this thread's own CPU
    # time (not a fixed amount of work, which a fast or lucky run finishes inside one tick).
    tick = 1 / (os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100)
    spent_from = time.thread_time()
    while time.thread_time() - spent_from < 5 * tick:
        sum(i * i for i in range(10_000))
    use = meter.stop()
    assert use.cpu_seconds > 0
    assert use.wall_seconds > 0
    assert "event loop" in use.threads
