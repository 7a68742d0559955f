"""The workflow commands of ``jobwarden`` as a user runs them: the real CLI in its own process, a real
engine, the media-publish example's executors in a real worker process."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from jobwarden.sdk import JobClient

from .conftest import JOBWARDEN, ROOT, WorkerProcess
from .test_sdk_cli import jobwarden

Workers = Callable[..., WorkerProcess]
EXAMPLE = str(ROOT / "examples" / "workflows" / "media-publish.toml")
EXAMPLE_YAML = str(ROOT / "examples" / "workflows" / "media-publish.yaml")


@pytest.fixture
async def media_worker(
    engine: Any, client: JobClient, workers: Workers, monkeypatch: pytest.MonkeyPatch
) -> WorkerProcess:
    monkeypatch.setenv("MEDIA_STEP_SECONDS", "0.02")
    worker = workers("--capacity", "8", target="examples.workflows.media_executors:EXECUTORS", cwd=ROOT)
    await worker.connected(client)
    return worker


def order_id_of(started_line: str) -> str:
    """The work order's id: the first word of `start`'s (or `retry`'s) line."""
    return started_line.split()[0]


async def test_apply_list_show(engine: Any) -> None:
    address = engine.address
    code, out, err = await jobwarden("workflows", "apply", EXAMPLE, "--engine", address)
    assert code == 0, err
    assert out.strip() == f"media-publish  version 1  created  ({EXAMPLE})"
    # The YAML file says the same: the engine stores no new version.
    code, out, err = await jobwarden("workflows", "apply", EXAMPLE_YAML, "--engine", address)
    assert code == 0, err
    assert "version 1  unchanged" in out

    code, out, _ = await jobwarden("workflows", "list", "--engine", address)
    assert code == 0
    header, row = out.splitlines()[:2]
    assert header.split()[:3] == ["NAME", "VERSION", "STEPS"]
    assert row.split()[:3] == ["media-publish", "1", "7"]

    code, out, _ = await jobwarden("workflows", "show", "media-publish", "--engine", address)
    assert code == 0
    assert "version:     1" in out
    assert "failure → notify if context.notify_on_failure == 'yes'" in out
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert "action media.package" in lines["package"]
    assert " all " in lines["package"]

    code, out, _ = await jobwarden("workflows", "show", "media-publish", "--json", "--engine", address)
    assert code == 0
    document = json.loads(out)
    assert [step["name"] for step in document["steps"]][:2] == ["ingest", "transcode_1080p"]

    code, _, err = await jobwarden(
        "workflows", "show", "media-publish", "--version", "9", "--engine", address
    )
    assert code == 1
    assert err.startswith("jobwarden workflows show: ")


async def test_start_wait_failure_retry_from_a_step_orders_and_order(
    engine: Any, client: JobClient, media_worker: WorkerProcess
) -> None:
    address = engine.address
    assert (await jobwarden("workflows", "apply", EXAMPLE, "--engine", address))[0] == 0

    # A handled failure: publish fails once, its failure edge runs notify, the run COMPLETED.
    code, out, err = await jobwarden(
        "start", "media-publish", "--input", '{"asset_id": 42}', "--context", "flaky_publish=yes",
        "--wait", "--engine", address,
    )  # fmt: skip
    assert code == 0, err + out
    assert re.search(r"publish +FAILED: .*the CDN refused asset 42", err), err
    steps = {line.split()[0]: line.split()[1] for line in out.splitlines()[1:] if line.startswith("  ")}
    assert steps["publish"] == "FAILED"
    assert steps["notify"] == "COMPLETED"
    assert steps["package"] == "COMPLETED"
    order = err.splitlines()[0].split()[0]

    # Rerun from publish: upstream results reused (their executors not called again), publish passes.
    code, out, err = await jobwarden(
        "order", "retry", order, "--from", "publish", "--wait", "--engine", address
    )
    assert code == 0, err + out
    assert out.splitlines()[0].split()[:4] == ["run", "2", out.split()[2], "COMPLETED"]
    assert "rerun from publish" in out.splitlines()[0]
    rows = {line.split()[0]: line for line in out.splitlines()[1:] if line.startswith("  ")}
    assert "reused from run" in rows["ingest"]
    assert "reused from run" in rows["transcode_480p"]
    assert rows["publish"].split()[1] == "COMPLETED"
    assert "reused" not in rows["publish"]

    # An unhandled failure: the run FAILED, naming the step; the join is SKIPPED.
    code, out, err = await jobwarden(
        "start", "media-publish", "--input", '{"asset_id": 7}', "--context", "broken_rendition=480p",
        "--wait", "--engine", address,
    )  # fmt: skip
    assert code == 1, err + out
    assert "FAILED" in out.splitlines()[0]
    assert "error: step 'transcode_480p' failed: the 480p encoder crashed" in out, out
    assert out.count("the 480p encoder crashed") == 2, "once for the run, once in the step's row"
    rows = {
        line.split()[0]: line.split()[1]
        for line in out.splitlines()
        if line.startswith("  ") and "error" not in line
    }
    assert rows["package"] == "SKIPPED"
    failed_order = err.splitlines()[0].split()[0]

    code, out, _ = await jobwarden("orders", "--engine", address)
    assert code == 0
    listed = [line.split() for line in out.splitlines()[1:]]
    assert [(row[0], row[3], row[4]) for row in listed] == [
        (failed_order, "FAILED", "1"),
        (order, "COMPLETED", "2"),
    ]
    code, out, _ = await jobwarden("orders", "--status", "failed", "--json", "--engine", address)
    assert [item["id"] for item in json.loads(out)] == [failed_order]

    code, out, _ = await jobwarden("order", order, "--engine", address)
    assert code == 0
    assert f"work order:  {order}" in out
    assert "runs:        2" in out
    assert "run 1  " in out
    assert "run 2  " in out
    code, out, _ = await jobwarden("order", order[-8:], "--json", "--engine", address)
    assert code == 0
    document = json.loads(out)
    assert document["order"]["id"] == order
    assert [run["number"] for run in document["runs"]] == [1, 2]

    # The step's job names its run and step.
    run_two = document["runs"][1]
    publish = next(step for step in run_two["steps"] if step["name"] == "publish")
    job = await client.get(publish["job_id"])
    assert (job.workflow_run_id, job.workflow_step, job.work_order_id) == (run_two["id"], "publish", order)
    code, out, _ = await jobwarden("get", job.id, "--engine", address)
    assert f"in run:      {run_two['id']} step publish (work order {order})" in out


async def test_watch_workflows_follows_one_order_step_by_step(engine: Any, tmp_path: Path) -> None:
    """`jobwarden watch --order ID` (an abbreviated id) prints that order's events alone, a line each,
    from its creation to its run's end; job filters with --workflows are refused, saying why."""
    address = engine.address
    definition = tmp_path / "pause.toml"
    definition.write_text(
        "name = 'pause'\n[[steps]]\nname = 'nap'\ndelay = '50ms'\non_success = ['nap2']\n"
        "[[steps]]\nname = 'nap2'\ndelay = '50ms'\n"
    )
    assert (await jobwarden("workflows", "apply", str(definition), "--engine", address))[0] == 0
    code, out, err = await jobwarden("start", "pause", "--engine", address)
    assert code == 0, err
    order = order_id_of(out)
    code, out, err = await jobwarden("start", "pause", "--engine", address)  # another order, not shown
    assert code == 0, err
    other = order_id_of(out)
    process = await asyncio.create_subprocess_exec(
        JOBWARDEN, "watch", "--order", order[-12:], "--after", "0", "--engine", address,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    lines: list[str] = []
    try:
        assert process.stdout is not None
        while not lines or not lines[-1].endswith("->COMPLETED (every step ended)"):
            line = await asyncio.wait_for(process.stdout.readline(), 30)
            assert line, "watch ended"
            lines.append(line.decode().rstrip())
    finally:
        process.terminate()
        await process.wait()
    assert all(order in line and other not in line for line in lines), lines
    kinds = [line.split()[6] for line in lines]
    assert kinds[:2] == ["ORDER_CREATED", "RUN_STARTED"]
    assert any(re.search(r"STEP_CHANGED +nap2: \w+->COMPLETED", line) for line in lines), lines
    assert "RUN_STATUS_CHANGED RUNNING->DELAYED (a step waits)" in "\n".join(lines)

    code, out, err = await jobwarden("watch", "--workflows", "--status", "RUNNING", "--engine", address)
    assert (code, out) == (2, "")
    assert "--status, --action and --job filter job events; they do not go with --workflows" in err
    code, out, err = await jobwarden("watch", "--order", "0193abcd-0000", "--engine", address)
    assert code == 1
    assert err.startswith("jobwarden watch: ")
    assert "Traceback" not in err


async def test_cancel_a_running_order(engine: Any, tmp_path: Path) -> None:
    address = engine.address
    definition = tmp_path / "slow.toml"
    definition.write_text("name = 'slow'\n[[steps]]\nname = 'nap'\ndelay = '1h'\n")
    assert (await jobwarden("workflows", "apply", str(definition), "--engine", address))[0] == 0
    code, out, err = await jobwarden("start", "slow", "--engine", address)
    assert code == 0, err
    order = order_id_of(out)
    assert "DELAYED" in out or "RUNNING" in out

    code, out, err = await jobwarden("order", "cancel", order, "--reason", "not today", "--engine", address)
    assert code == 0, err
    assert out.split()[-1] == "CANCELLED"
    code, out, err = await jobwarden("order", "cancel", order, "--engine", address)
    assert code == 1
    assert err.startswith("jobwarden order: ")
    code, out, _ = await jobwarden("order", order, "--engine", address)
    assert "status:      CANCELLED" in out
    assert "nap" in out


async def test_bad_files_and_command_lines_change_nothing(engine: Any, tmp_path: Path) -> None:
    address = engine.address
    good = tmp_path / "good.toml"
    good.write_text("name = 'good'\n[[steps]]\nname = 'a'\naction = 'x'\n")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = 'bad'\n[[steps]]\nname = 'a'\naction = 'x'\ntimeouts = { heartbeat = 'soon' }\n")
    code, out, err = await jobwarden("workflows", "apply", str(good), str(bad), "--engine", address)
    assert code == 2
    assert out == ""
    assert err.strip() == (
        f"jobwarden workflows apply: {bad}: step 'a': timeouts.heartbeat: 'soon' is not a duration "
        "(e.g. 30, 250ms, 30s, 5m, 2h, 1h30m, 1d); nothing was applied"
    )
    assert "Traceback" not in err

    cycle = tmp_path / "cycle.toml"
    cycle.write_text(
        "name = 'cycle'\n[[steps]]\nname = 'a'\naction = 'x'\non_success = ['b']\n"
        "[[steps]]\nname = 'b'\naction = 'x'\non_success = ['a']\n"
    )
    code, out, err = await jobwarden("workflows", "apply", str(good), str(cycle), "--engine", address)
    assert code == 1
    assert err.startswith(f"jobwarden workflows apply: {cycle}: ")
    assert f"({good} applied before it)" in err
    code, out, _ = await jobwarden("workflows", "list", "--json", "--engine", address)
    assert [d["name"] for d in json.loads(out)] == ["good"]

    for args, message in [
        (("start", "good", "--input", "[1]"), "the input must be a JSON object"),
        (("start", "good", "--input", "{nope"), "is not valid JSON"),
        (("start", "good", "--context", "novalue"), "a context variable is KEY=VALUE"),
        (("orders", "--status", "sideways"), "unknown run status 'sideways'"),
        (("order", "retry"), "takes one work order id"),
        (
            ("order", "0193abcd", "--from", "a"),
            "--from, --latest and --wait go with `jobwarden order retry ID`",
        ),
        (("workflows", "apply", str(tmp_path / "none.yaml")), "cannot read the file"),
    ]:
        code, out, err = await jobwarden(*args, "--engine", address)
        assert code == 2, (args, err)
        assert message in err, (args, err)
        assert "Traceback" not in err

    code, _, err = await jobwarden("start", "no-such-flow", "--engine", address)
    assert code == 1
    assert err.startswith("jobwarden start: ")
    code, _, err = await jobwarden("order", "retry", "0193abcd-0000", "--engine", address)
    assert code == 1
    assert err.startswith("jobwarden order: ")
    code, out, _ = await jobwarden("orders", "--json", "--engine", address)
    assert json.loads(out) == []


async def test_the_python_example_puts_starts_and_follows_its_run(
    engine: Any, media_worker: WorkerProcess
) -> None:
    env = {**os.environ, "JOBWARDEN_ENGINE": engine.address}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "examples.workflows.media_publish", "5",
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 90)
    assert process.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    assert lines[0] == "media-publish version 1 (new)"
    assert re.fullmatch(
        r"  publish +COMPLETED", next(line for line in lines if "publish" in line and "COMPLETED" in line)
    )
    assert lines[-1].endswith(": COMPLETED")
