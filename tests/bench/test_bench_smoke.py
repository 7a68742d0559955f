"""Smoke tests of ``jobwarden bench``: every scenario runs with tiny sizes against a real engine,
real worker and client processes, and reports figures of the expected shape. No timing is asserted:
speed is measured by the bench, never by the tests."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from jobwarden.bench import (
    ConsoleSizes,
    DepthSizes,
    FanoutSizes,
    LatencySizes,
    LocksSizes,
    ScenarioResult,
    ScenarioUnavailable,
    TimersSizes,
    WorkflowSizes,
    run_scenario,
)
from jobwarden.bench._target import BenchSetup
from jobwarden.sdk.cli import main

pytestmark = pytest.mark.timeout(120)


def names(result: ScenarioResult) -> set[str]:
    return {m.name for m in result.measures}


def assert_shape(result: ScenarioResult, scenario: str) -> None:
    assert result.scenario == scenario
    assert result.conditions["cores"] >= 1
    assert result.conditions["python"]
    assert "engine" in result.conditions
    document = result.to_json()
    json.dumps(document)  # every figure is plain JSON
    assert document["measures"], "a scenario reports figures"
    for measure in document["measures"]:
        assert set(measure) == {"name", "value", "unit", "target", "met", "note"}


def run_cli(*args: str, timeout: float = 100) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobwarden.sdk.cli", "bench", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_throughput_from_the_command_line_as_json(tmp_path: Path) -> None:
    saved = tmp_path / "throughput.json"
    done = run_cli(
        "throughput", "--jobs", "150", "--workers", "1", "--capacity", "20", "--batch", "50", "--json",
        "--save", str(saved),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert json.loads(saved.read_text()) == document
    assert document["scenario"] == "throughput"
    assert document["sizes"] == {"jobs": 150, "workers": 1, "capacity": 20, "batch": 50, "inflight": 2}
    measures = {m["name"]: m for m in document["measures"]}
    assert measures["completed"]["value"] == 150
    assert measures["end to end"]["value"] > 0
    assert measures["end to end"]["target"] == {"limit": 3000.0, "at_most": False}
    assert measures["end to end"]["met"] in (True, False)
    assert document["details"]["commits"] >= 1
    assert "event loop" in document["details"]["engine_threads_cpu_percent"]
    assert "SQLite" in document["conditions"]["engine"]


async def test_latency() -> None:
    result = await run_scenario("latency", LatencySizes(rate=60, seconds=1.5, warmup=0.2))
    assert_shape(result, "latency")
    assert {"submit→start p99", "submit→complete p99", "SubmitJob answered p99"} <= names(result)
    assert result.details["submitted"] == 90
    assert result.details["completed"] == 90
    assert result.details["missing_worker_stamps"] == 0
    assert result.value("submit→start p50") <= result.value("submit→start p99")


async def test_fanout_every_watcher_gets_every_event() -> None:
    result = await run_scenario("fanout", FanoutSizes(watchers=3, watcher_processes=2, jobs=100, workers=1))
    assert_shape(result, "fanout")
    assert result.value("watchers with every event") == 3
    # submitted, running, completed: at least one event each
    assert result.details["events_expected_per_watcher"] >= 200
    assert result.details["events_delivered"] == 3 * result.details["events_expected_per_watcher"]
    assert result.value("streams cut (slow reader)") == 0


async def test_locks() -> None:
    result = await run_scenario("locks", LocksSizes(jobs=120, resources=2, workers=1, capacity=10, sample=20))
    assert_shape(result, "locks")
    assert result.value("completed") == 120
    assert 0 <= result.value("jobs that waited for a lock") <= 100
    assert result.details["created_to_running_ms"]["count"] == 20


async def test_timers() -> None:
    result = await run_scenario("timers", TimersSizes(timers=200, window=1.0))
    assert_shape(result, "timers")
    assert result.value("pending at once") == 200
    assert result.details["fired"] >= 200
    assert not math.isnan(result.value("lateness p99"))


async def test_timers_need_an_engine_the_bench_started() -> None:
    with pytest.raises(ScenarioUnavailable, match="without --engine"):
        await run_scenario("timers", TimersSizes(timers=10), BenchSetup(engine="127.0.0.1:1"))


async def test_depth_grows_the_store_between_measures() -> None:
    result = await run_scenario("depth", DepthSizes(stored=[0, 1500], jobs=100, workers=1, capacity=50))
    assert_shape(result, "depth")
    levels = result.details["levels"]
    assert [level["stored"] for level in levels] == [0, 1500]
    assert levels[1]["seed_seconds"] > 0
    assert "dispatch at 1,500 vs 0 stored" in names(result)


@pytest.mark.skipif(importlib.util.find_spec("textual") is None, reason="the console is not installed")
async def test_console() -> None:
    result = await run_scenario("console", ConsoleSizes(jobs=100, rate=50, seconds=2, warmup=0.5))
    assert_shape(result, "console")
    assert result.value("jobs in its table") >= 100
    assert result.value("console CPU") >= 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["throughput", "--jobs", "0"], "--jobs must be positive"),
        (["locks", "--exclusive", "1.5"], "--exclusive must be between 0 and 1"),
        (["timers", "--start-share", "0.8", "--wake-share", "0.5"], "must not be more than 1"),
        (["timers", "--engine", "127.0.0.1:1"], "without --engine"),
        (["depth", "--engine", "127.0.0.1:1"], "without --engine"),
    ],
)
def test_bad_sizes_are_refused_with_a_clear_message(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", *args, "--no-progress"]) == 2
    out, err = capsys.readouterr()
    assert message in err
    assert out == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["depth", "--stored", "0,lots"], "not a comma-separated list"),
        (["nosuch"], "invalid choice"),
        (["latency", "--rate", "fast"], "invalid float value"),
    ],
)
def test_malformed_arguments_are_usage_errors(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


async def test_workflow() -> None:
    sizes = WorkflowSizes(
        runs=6, steps=3, inflight=2, jobs=60, workers=1, capacity=20, fanout_steps=12, celery_chains=0
    )
    result = await run_scenario("workflow", sizes, BenchSetup(progress=False))
    assert_shape(result, "workflow")
    assert {
        "linear runs",
        "linear steps",
        "runs completed",
        "engine CPU per step",
        "step cost / job cost",
        "fan-out/fan-in run",
        "fan-out/fan-in completed",
    } <= names(result)
    assert result.value("runs completed") == 6
    assert result.value("linear steps") > 0
    assert result.value("fan-out/fan-in completed") == 1.0
    assert result.details["fanout"]["completed_steps"] == 12
    assert math.isfinite(result.value("step cost / job cost"))
    assert result.details["celery"] == {"skipped": "--celery-chains 0"}


CELERY_DIR = Path(__file__).resolve().parents[2] / "bench" / "celery"


async def test_workflow_with_celery_chains_in_the_same_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(CELERY_DIR))
    from celery_compare import redis_problem

    if (problem := redis_problem("127.0.0.1", 6379)) is not None:
        pytest.skip(f"the Celery side needs Redis: {problem}")
    sizes = WorkflowSizes(
        runs=4, steps=2, inflight=2, jobs=20, workers=1, capacity=10, fanout_steps=4, celery_chains=3
    )
    result = await run_scenario("workflow", sizes, BenchSetup(progress=False))
    celery = result.details["celery"]
    assert "skipped" not in celery, celery
    assert (celery["chains"], celery["length"]) == (3, 2)
    assert result.value("Celery chains") > 0
    assert math.isfinite(result.value("jobwarden / Celery"))
