"""The benchmark scripts gathered in jobwarden.bench run from their new home (no figure is asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def run_module(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], capture_output=True, text=True, timeout=300, check=False
    )


def test_the_timer_table_measures_the_timers_and_an_engine_core_through_public_names() -> None:
    done = run_module(
        "jobwarden.bench.timer_table", "--timers", "200", "--spread", "0.5", "--jobs", "50",
        "--duration", "0.5", "--paced", "40", "--paced-fires", "20", "--rate", "100",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    # Each fire's lateness comes from the timer table's own record, wrapped around the engine's handler.
    assert "50 jobs FAILED(START_TIMEOUT), written" in done.stdout
    assert "lateness of all 50:" in done.stdout
    assert "20 woke DELAYED -> QUEUED, written; lateness of all 20:" in done.stdout


def test_the_profile_summary_sums_a_raw_profile(tmp_path: Path) -> None:
    profile = tmp_path / "raw.txt"
    profile.write_text(
        "thread (0x1): MainThread;run (asyncio/events.py:80);GetStats (job_service.py:205) 3\n"
        "thread (0x1): MainThread;run (asyncio/events.py:80);write (store.py:200) 1\n"
    )
    done = run_module("jobwarden.bench.profile_summary", str(profile), "--top", "5")
    assert done.returncode == 0, done.stderr
    assert "GetStats" in done.stdout


def test_the_profile_summary_says_when_the_file_is_missing(tmp_path: Path) -> None:
    done = run_module("jobwarden.bench.profile_summary", str(tmp_path / "nowhere.txt"))
    assert done.returncode == 2
    assert "does not exist" in done.stderr
    assert done.stdout == ""
