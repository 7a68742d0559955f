"""The client commands of ``jobwarden`` as a user runs them: real processes, a real engine."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from jobwarden.contract import JobStatus
from jobwarden.sdk import JobClient

from .conftest import HERE, JOBWARDEN, ROOT, WorkerProcess, wait_status, wait_until

Workers = Callable[..., WorkerProcess]


async def jobwarden(*args: str, stdin: str | None = None, cwd: Path = HERE) -> tuple[int, str, str]:
    """Run ``jobwarden ARGS`` without blocking the engine that runs in this event loop."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    process = await asyncio.create_subprocess_exec(
        JOBWARDEN,
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=cwd,
        env=env,
    )
    out, err = await asyncio.wait_for(process.communicate(stdin.encode() if stdin else None), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_submit_wait_get_jobs_events_and_logs(
    engine: object, client: JobClient, workers: Workers, tmp_path: Path
) -> None:
    address = engine.address  # type: ignore[attr-defined]
    worker = workers()
    await worker.connected(client)
    gate = tmp_path / "gate"
    gate.touch()
    payload = tmp_path / "input.json"
    payload.write_text(json.dumps({"gate": str(gate), "numbers": [4, 5]}))
    code, out, err = await jobwarden(
        "submit", "sdk-sync", "--input", f"@{payload}", "--label", "team=media", "--priority", "3",
        "--wait", "--engine", address,
    )  # fmt: skip
    assert code == 0, err
    assert "status:      COMPLETED" in out
    assert '"sum": 9' in out
    job_id = out.split("\n", 1)[0].split()[-1]

    code, out, _ = await jobwarden("jobs", "--engine", address, "--label", "team=media")
    assert code == 0
    header, row = out.splitlines()[:2]
    assert header.split()[:3] == ["ID", "ACTION", "STATUS"]
    assert row.split()[:4] == [job_id, "sdk-sync", "COMPLETED", "100%"]

    code, out, _ = await jobwarden("jobs", "--engine", address, "--status", "completed", "--json")
    assert code == 0
    assert [job["id"] for job in json.loads(out)] == [job_id]

    code, out, _ = await jobwarden("get", job_id, "--engine", address, "--json")
    result = json.loads(out)["result"]
    assert result == {"first": {"tid": "thread"}, "second": 2, "sum": 9}
    assert isinstance(result["sum"], int), "integers stay integers in JSON (Struct numbers are doubles)"

    code, out, _ = await jobwarden("events", job_id, "--engine", address)
    assert code == 0
    assert "SUBMITTED" in out.splitlines()[0]
    assert "COMPLETED" in out.splitlines()[-1]

    code, out, _ = await jobwarden("logs", job_id, "--engine", address)
    assert code == 0
    assert "waiting for the gate" in out


async def test_logs_follow_until_the_job_ends(
    engine: object, client: JobClient, workers: Workers, tmp_path: Path
) -> None:
    address = engine.address  # type: ignore[attr-defined]
    worker = workers()
    await worker.connected(client)
    gate = tmp_path / "gate"
    job = await client.submit("sdk-sync", {"gate": str(gate)})
    follow = asyncio.create_task(jobwarden("logs", job.id, "--follow", "--engine", address))
    await wait_until(lambda: client.logs(job.id), what="the first log line")
    assert not follow.done()
    gate.touch()
    code, out, _ = await asyncio.wait_for(follow, 60)
    assert code == 0
    assert "waiting for the gate" in out


async def test_cancel_retry_and_the_engines_refusals(engine: object, client: JobClient) -> None:
    address = engine.address  # type: ignore[attr-defined]
    code, out, _ = await jobwarden("submit", "nobody-serves-this", "--engine", address, "--json")
    assert code == 0
    job_id = json.loads(out)["id"]

    code, out, _ = await jobwarden("cancel", job_id, "--reason", "test", "--engine", address)
    assert (code, out.split()) == (0, [job_id, "CANCELLED"])
    code, out, _ = await jobwarden("events", job_id, "--engine", address)
    assert "(test)  by anonymous@" in out.splitlines()[-1], "the audit trail names who cancelled"
    code, _, err = await jobwarden("cancel", job_id, "--engine", address)
    assert code == 1
    assert err.startswith("jobwarden cancel: ")
    assert JobStatus((await client.get(job_id)).status) is JobStatus.CANCELLED

    code, out, _ = await jobwarden("retry", job_id, "--engine", address)
    assert code == 0
    assert "QUEUED" in out

    # A job for an action no worker serves: stats say so.
    code, out, _ = await jobwarden("stats", "--engine", address)
    assert code == 0
    assert "waiting with no worker: nobody-serves-this" in out

    code, _, err = await jobwarden("get", "01900000-0000-7000-8000-000000000000", "--engine", address)
    assert code == 1
    assert "01900000-0000-7000-8000-000000000000" in err


async def test_watch_tails_the_stream(engine: object, client: JobClient) -> None:
    address = engine.address  # type: ignore[attr-defined]
    env = {**os.environ}
    process = await asyncio.create_subprocess_exec(
        JOBWARDEN, "watch", "--after", "0", "--json", "--engine", address,
        stdout=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    try:
        job = await client.submit("tailed", {"x": 1})
        await client.cancel(job.id)
        assert process.stdout is not None
        seen: list[dict[str, Any]] = []
        while len(seen) < 2:
            line = await asyncio.wait_for(process.stdout.readline(), 30)
            assert line, "watch ended"
            seen.append(json.loads(line))
        assert [event["job_id"] for event in seen] == [job.id, job.id]
        assert seen[1]["job"]["status"] == "JOB_STATUS_CANCELLED"
    finally:
        process.terminate()
        await process.wait()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["submit", "a", "--input", "{not json"], "the input from --input is not valid JSON"),
        (["submit", "a", "--input", "[1, 2]"], "the input must be a JSON object"),
        (
            ["submit", "a", "--input", '{"a": ' + "[" * 20 + "]" * 20 + "}"],
            "the input.a" + "[0]" * 19 + " nests objects and lists deeper than 20 levels, more than the "
            "engine takes (from --input)",
        ),
        (
            ["submit", "a", "--input", '{"a": ' + "[" * 5000 + "]" * 5000 + "}"],
            "the input from --input nests objects and lists deeper than the engine takes (at most 20 levels)",
        ),
        (["submit", "a", "--input", "@/nonexistent.json"], "cannot read the input file"),
        (["submit", "a", "--label", "novalue"], "a label is KEY=VALUE"),
        (["submit", "a", "--lock", "asset:1:READ"], "unknown lock mode 'READ' in 'asset:1:READ'"),
        (["submit", "a", "--run-at", "tomorrow"], "--run-at takes an ISO 8601 time"),
        (["jobs", "--status", "DONE"], "unknown status 'DONE'"),
        (["jobs", "--engine", "nohost"], "engine address must be HOST:PORT"),
        (["worker", "no_such_module:X"], "cannot import module 'no_such_module'"),
        (["worker", "sdk_executors"], "the worker target must be MODULE:ATTR"),
        (["worker", "sdk_executors:Missing"], "module 'sdk_executors' has no attribute 'Missing'"),
        (["worker", "sdk_executors:trace"], "not an Executor subclass"),
        (["worker", "sdk_executors:NoAction"], "has no action"),
        (["worker", "sdk_executors:ALL", "--capacity", "0"], "capacity must be an int from 1"),
    ],
)
async def test_usage_errors_exit_2_with_a_clear_message(args: list[str], fragment: str) -> None:
    code, _, err = (
        await jobwarden(*args, "--engine", "127.0.0.1:1", cwd=HERE)
        if "--engine" not in args
        else (await jobwarden(*args, cwd=HERE))
    )
    assert code == 2, err
    assert fragment in err
    assert "Traceback" not in err


async def test_help_on_every_command() -> None:
    commands = (
        "submit",
        "jobs",
        "get",
        "cancel",
        "retry",
        "events",
        "logs",
        "watch",
        "worker",
        "workers",
        "stats",
    )
    answers = await asyncio.gather(*(jobwarden(command, "--help") for command in commands))
    for command, (code, out, _) in zip(commands, answers, strict=True):
        assert code == 0, command
        assert f"usage: jobwarden {command}" in out
        assert "--engine" in out


async def test_a_worker_against_an_engine_that_is_down(tmp_path: Path) -> None:
    code, _, err = await jobwarden(
        "worker", "sdk_executors:ALL", "--engine", "127.0.0.1:1", "--connect-timeout", "1", cwd=HERE
    )
    assert code == 1
    assert "cannot reach the engine at 127.0.0.1:1 (gave up after 1s)" in err

    # Without a connect timeout it keeps trying, saying why, until stopped.
    keeps_trying = WorkerProcess("127.0.0.1:1", tmp_path / "down.log")
    try:
        await wait_until(lambda: "cannot reach the engine at 127.0.0.1:1" in keeps_trying.output(), within=30)
        assert keeps_trying.process.poll() is None
        keeps_trying.signal(15)
        assert await keeps_trying.exited() == 0
    finally:
        keeps_trying.close()


async def test_the_example_executor(engine: object, client: JobClient, workers: Workers) -> None:
    worker = workers("--capacity", "4", target="transcode:Transcode", cwd=ROOT / "examples")
    await worker.connected(client)
    config = await wait_until(
        lambda: _lock_templates(client, "transcode"), what="the example's lock template on its action"
    )
    assert config == ["asset:{input.asset_id}"]
    first = await client.submit(
        "transcode", {"asset_id": 42, "formats": ["720p", "480p"], "seconds_per_format": 0.1}
    )
    second = await client.submit(
        "transcode", {"asset_id": 42, "formats": ["audio"], "seconds_per_format": 0.1}
    )
    bad = await client.submit("transcode", {"asset_id": 43, "formats": ["8k"]})
    done = await wait_status(client, first.id)
    assert JobStatus(done.status) is JobStatus.COMPLETED, done.error
    assert done.job_variables["published_url"] == "https://cdn.example.com/assets/42/"
    assert [lock.resource for lock in done.locks] == ["asset:42"]
    assert [step.name for step in done.checkpoint.completed_steps] == ["download", "transcode", "publish"]
    assert JobStatus((await wait_status(client, second.id)).status) is JobStatus.COMPLETED
    failed = await wait_status(client, bad.id)
    assert failed.error.message == "unknown format(s): 8k"
    # The two jobs on asset 42 never ran at once: the exclusive lock kept them apart.
    assert done.finished_at.ToDatetime() <= (await client.get(second.id)).started_at.ToDatetime() or (
        (await client.get(second.id)).finished_at.ToDatetime() <= done.started_at.ToDatetime()
    )


async def _lock_templates(client: JobClient, action: str) -> list[str] | None:
    try:
        config = await client.get_action_config(action)
    except Exception:
        return None
    return [lock.resource for lock in config.lock_templates] or None
