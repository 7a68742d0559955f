"""What a new user runs into with the ``jobwarden`` client commands (issue 15): real processes, a real
engine. No bad input ends in a traceback; each refusal says what is wrong and changes nothing."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from jobwarden.contract import JobStatus, Limits, LockMode
from jobwarden.sdk import InvalidRequest, JobClient

from .conftest import HERE, JOBWARDEN, WorkerProcess, wait_status, wait_until
from .test_sdk_cli import jobwarden

Workers = Callable[..., WorkerProcess]

HUGE_INTEGER = "1" + "0" * 400


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["submit", "a", "--priority", "99999999999"], "priority must be between -1000000 and 1000000"),
        (["submit", "a", "--priority=-2147483649"], "priority must be between -1000000 and 1000000"),
        (["submit", "a", "--max-attempts", "99999999999"], "retry_policy.max_attempts must be between 1"),
        (["submit", "a", "--run-at", "+99999999999d"], "--run-at +99999999999d: too far in the future"),
        (["submit", "a", "--input", '{"a": NaN}'], "NaN is not a JSON number"),
        (["submit", "a", "--input", '{"a": [Infinity]}'], "Infinity is not a JSON number"),
        (["submit", "a", "--input", '{"a": 1e400}'], "input.a is inf, which JSON cannot hold"),
        (["submit", "a", "--input", f'{{"a": {HUGE_INTEGER}}}'], "input.a is an integer too large"),
        (["submit", "a", "--lock", "asset:1:WRITE"], "unknown lock mode 'WRITE' in 'asset:1:WRITE'"),
        (["watch", "--after", "99999999999999999999"], "invalid event sequence"),
        (["worker", "sdk_executors:ALL", "--drain-timeout", "nan"], "invalid number of seconds"),
        (["worker", "sdk_executors:ALL", "--connect-timeout", "inf"], "invalid number of seconds"),
        (["worker", "sdk_executors:ALL", "--cancel-grace", "-1"], "invalid number of seconds"),
        (["worker", "sdk_executors:ALL", "--log-level", "LOUD"], "invalid choice: 'LOUD'"),
        (["actions", "set", "a", "--max-running", "99999999999"], "invalid count"),
        (["actions", "set", "a", "--heartbeat-timeout", "99999999999999d"], "is far longer than the engine"),
        (
            ["actions", "set", "a", "--start-timeout", "5s", "--start-retry-count", "99999999999"],
            "invalid count",
        ),
        (
            [
                "actions",
                "set",
                "a",
                "--run-request",
                "b",
                "--start-timeout",
                "5s",
                "--run-request-input",
                '{"x": NaN}',
            ],
            "--run-request-input is not valid JSON: NaN",
        ),
    ],
)
async def test_bad_numbers_are_refused_without_a_traceback(
    engine: object, client: JobClient, args: list[str], fragment: str
) -> None:
    code, out, err = await jobwarden(*args, "--engine", engine.address)  # type: ignore[attr-defined]
    assert code == 2, err
    assert fragment in err
    assert "Traceback" not in err
    assert out == ""
    assert not (await client.list()).jobs, "nothing was submitted"
    assert not (await client.list_actions()).configs, "nothing was configured"


async def test_a_priority_in_range_but_over_the_limit_is_the_engines_refusal(
    engine: object, client: JobClient
) -> None:
    code, _, err = await jobwarden("submit", "a", "--priority", "1000001", "--engine", engine.address)  # type: ignore[attr-defined]
    assert (code, err.strip()) == (1, "jobwarden submit: priority must be between -1000000 and 1000000")
    assert not (await client.list()).jobs


async def test_an_input_too_large_for_a_message_is_refused_before_sending(
    engine: object, client: JobClient, tmp_path: Path
) -> None:
    address = engine.address  # type: ignore[attr-defined]
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"blob": "x" * (Limits.MAX_MESSAGE_BYTES + 1000)}))
    code, _, err = await jobwarden("submit", "a", "--input", f"@{big}", "--engine", address)
    assert code == 1
    assert f"over the {Limits.MAX_MESSAGE_BYTES} bytes a message to the engine may hold" in err
    assert "nothing was sent" in err
    assert "CLIENT: Sent message larger than max" not in err
    # Between the payload limit and the message limit the engine answers, as clearly.
    medium = tmp_path / "medium.json"
    medium.write_text(json.dumps({"blob": "x" * (Limits.MAX_PAYLOAD_BYTES + 1000)}))
    code, _, err = await jobwarden("submit", "a", "--input", f"@{medium}", "--engine", address)
    assert code == 1
    assert f"over the limit of {Limits.MAX_PAYLOAD_BYTES}" in err
    assert not (await client.list()).jobs

    # SDK users get the same check.
    with pytest.raises(InvalidRequest, match="nothing was sent"):
        await client.submit("a", {"blob": "x" * (Limits.MAX_MESSAGE_BYTES + 1000)})
    with pytest.raises(InvalidRequest, match="split it"):
        await client.submit_many(
            [{"action": "a", "input": {"blob": "x" * (Limits.MAX_PAYLOAD_BYTES - 100)}}] * 9
        )
    assert not (await client.list()).jobs


async def test_submit_warns_when_no_worker_serves_the_action(
    engine: object, client: JobClient, workers: Workers
) -> None:
    address = engine.address  # type: ignore[attr-defined]
    await workers().connected(client)
    code, out, err = await jobwarden("submit", "sdk-synk", "--engine", address)
    assert code == 0, err
    job_id, status, action = out.split()
    assert (status, action) == ("QUEUED", "sdk-synk"), "the job is submitted all the same"
    assert err.startswith("jobwarden submit: warning: no connected worker serves 'sdk-synk'")
    assert "no 'sdk-synk' job has ever completed on this engine" in err
    assert "(did you mean 'sdk-sync'?)" in err
    assert JobStatus((await client.get(job_id)).status) is JobStatus.QUEUED

    code, _, err = await jobwarden("submit", "sdk-noop", "--engine", address)
    assert (code, err) == (0, ""), "a served action gets no warning"


async def test_wait_says_what_the_job_waits_for(
    engine: object, client: JobClient, workers: Workers, tmp_path: Path
) -> None:
    address = engine.address  # type: ignore[attr-defined]
    gate = tmp_path / "gate"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    process = await asyncio.create_subprocess_exec(
        JOBWARDEN, "submit", "sdk-sync", "--input", json.dumps({"gate": str(gate)}), "--wait",
        "--engine", address, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    assert process.stderr is not None
    assert process.stdout is not None
    try:
        seen = await _read_until(process.stderr, "QUEUED: no connected worker serves 'sdk-sync'")
        job_id = seen[-1].split()[0]
        await workers().connected(client)
        await _read_until(process.stderr, f"{job_id}  RUNNING: on worker ")
        gate.touch()
        code = await asyncio.wait_for(process.wait(), 60)
        out = (await process.stdout.read()).decode()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert code == 0
    assert "status:      COMPLETED" in out


async def _read_until(stream: asyncio.StreamReader, text: str) -> list[str]:
    lines: list[str] = []
    while not lines or text not in lines[-1]:
        line = await asyncio.wait_for(stream.readline(), 60)
        assert line, f"the stream ended before {text!r}: {lines}"
        lines.append(line.decode())
    return lines


async def test_abbreviated_job_ids(engine: object, client: JobClient) -> None:
    address = engine.address  # type: ignore[attr-defined]
    first, second = await _two_jobs_sharing_a_prefix(client)
    prefix = _common_start(first, second)

    code, out, err = await jobwarden("get", second[-8:], "--engine", address)
    assert code == 0, err
    assert out.splitlines()[0] == f"id:          {second}"
    code, out, _ = await jobwarden("get", second[: len(prefix) + 1].upper(), "--engine", address)
    assert (code, out.splitlines()[0]) == (0, f"id:          {second}"), "a unique start will do too"

    code, _, err = await jobwarden("cancel", prefix, "--engine", address)
    assert code == 1
    assert f"job id {prefix!r} is ambiguous: it matches 2 jobs: {second}, {first}" in err
    code, _, err = await jobwarden("get", second[-4:], "--engine", address)
    assert code == 1
    assert "is too short: give the whole id, or at least 8 of its first or last characters" in err
    code, _, err = await jobwarden("events", "ffffffff-f", "--engine", address)
    assert (code, err.strip()) == (1, "jobwarden events: no job id starts or ends with 'ffffffff-f'")
    for job_id in (first, second):
        assert JobStatus((await client.get(job_id)).status) is JobStatus.QUEUED, "nothing changed"

    code, out, _ = await jobwarden("cancel", first[-8:], "--engine", address)
    assert (code, out.split()) == (0, [first, "CANCELLED"])
    code, out, _ = await jobwarden("retry", first[-8:], "--engine", address)
    assert (code, out.strip()) == (0, f"{first}  QUEUED for attempt 1")
    code, out, _ = await jobwarden("events", first[-8:], "--engine", address)
    assert code == 0
    assert [line.split()[2] for line in out.splitlines()] == [first] * 3
    code, _, err = await jobwarden("logs", first[-8:], "--engine", address)
    assert (code, err) == (0, "")
    # The API takes them too, for clients in any language.
    assert (await client.get(first[-8:])).id == first
    events = client.watch(after_sequence=0, job_ids=[first[-8:]])
    assert (await anext(events)).job_id == first
    await events.aclose()


def _common_start(first: str, second: str) -> str:
    length = next((i for i, (a, b) in enumerate(zip(first, second, strict=True)) if a != b), len(first))
    return first[:length]


async def _two_jobs_sharing_a_prefix(client: JobClient) -> tuple[str, str]:
    # UUIDv7s made together share their first 8 characters (the time), unless a 65 s boundary
    # falls between the two; then try again.
    for _ in range(3):
        first = (await client.submit("nobody-serves-this")).id
        second = (await client.submit("nobody-serves-this")).id
        if len(_common_start(first, second)) >= 8:
            return first, second
    raise AssertionError("three pairs of ids made together had no prefix of 8 in common")


async def test_retry_prints_the_attempt_to_come(engine: object, client: JobClient, workers: Workers) -> None:
    await workers().connected(client)
    job = await client.submit("sdk-refuse")
    failed = await wait_status(client, job.id, JobStatus.FAILED)
    assert failed.attempt == 1
    code, out, err = await jobwarden("retry", job.id, "--engine", engine.address)  # type: ignore[attr-defined]
    assert code == 0, err
    assert out.strip() == f"{job.id}  QUEUED for attempt 2"
    again = await wait_status(client, job.id, JobStatus.FAILED)
    assert again.attempt == 2, "what it printed came true"


async def test_json_keeps_integers(engine: object, client: JobClient) -> None:
    job = await client.submit("a", {"asset_id": 42, "ratio": 1.5, "sizes": [720, 480], "big": 2**40})
    code, out, _ = await jobwarden("get", job.id, "--json", "--engine", engine.address)  # type: ignore[attr-defined]
    assert code == 0
    data = json.loads(out)["input"]
    assert data == {"asset_id": 42, "ratio": 1.5, "sizes": [720, 480], "big": 2**40}
    assert [type(data[key]) for key in ("asset_id", "ratio", "big")] == [int, float, int]
    assert '"asset_id": 42,' in out
    code, out, _ = await jobwarden("jobs", "--json", "--engine", engine.address)  # type: ignore[attr-defined]
    assert json.loads(out)[0]["input"]["asset_id"] == 42
    assert '"asset_id": 42.0' not in out


async def test_lock_modes(engine: object, client: JobClient) -> None:
    address = engine.address  # type: ignore[attr-defined]
    code, out, err = await jobwarden(
        "submit", "a", "--lock", "asset:1:shared", "--lock", "asset:2:WRITE:EXCLUSIVE", "--lock", "farm",
        "--json", "--engine", address,
    )  # fmt: skip
    assert code == 0, err
    job = await client.get(json.loads(out)["id"])
    assert [(lock.resource, LockMode(lock.mode)) for lock in job.locks] == [
        ("asset:1", LockMode.SHARED),
        ("asset:2:WRITE", LockMode.EXCLUSIVE),
        ("farm", LockMode.EXCLUSIVE),
    ]
    code, out, _ = await jobwarden("submit", "--help")
    assert "only a last :SHARED or :EXCLUSIVE (any case) is a mode" in " ".join(out.split())


async def test_an_unreachable_engine_suggests_serve() -> None:
    code, _, err = await jobwarden("get", "01900000-0000-7000-8000-000000000000", "--engine", "127.0.0.1:1")
    assert code == 1
    assert "cannot reach the engine at 127.0.0.1:1" in err
    assert "Start one with `jobwarden serve`" in err


async def test_ctrl_c_on_a_worker_says_it_drains(
    engine: object, client: JobClient, workers: Workers, tmp_path: Path
) -> None:
    worker = workers()
    await worker.connected(client)
    gate = tmp_path / "gate"
    job = await client.submit("sdk-sync", {"gate": str(gate)})
    await wait_until(lambda: client.logs(job.id), what="the job to run")
    worker.signal(signal.SIGINT)
    await wait_until(lambda: "again stops at once" in worker.output(), what="the drain notice")
    output = worker.output()
    assert f"draining: takes no new jobs; waiting up to 30s for 1 running job(s): {job.id}" in output
    assert "Ctrl+C: draining; Ctrl+C again stops at once" in output
    gate.touch()
    assert await worker.exited() == 0
    assert JobStatus((await client.get(job.id)).status) is JobStatus.COMPLETED
    assert "stopped after 1 job(s)" in worker.output()


async def test_a_second_ctrl_c_stops_the_worker_at_once(
    engine: object, client: JobClient, workers: Workers, tmp_path: Path
) -> None:
    worker = workers()
    await worker.connected(client)
    job = await client.submit("sdk-sync", {"gate": str(tmp_path / "never")})
    await wait_until(lambda: client.logs(job.id), what="the job to run")
    worker.signal(signal.SIGINT)
    await wait_until(lambda: "again stops at once" in worker.output(), what="the drain notice")
    worker.signal(signal.SIGINT)
    assert await worker.exited() == 0
    assert "Ctrl+C again: stopping now; the engine times out its 1 running job(s)" in worker.output()
    assert JobStatus((await client.get(job.id)).status) is not JobStatus.COMPLETED


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["demo", "--port", "99999"], "a port is 0 to 65535, got 99999"),
        (["demo", "--rate", "nan"], "jobs per second must be a number above 0, got nan"),
        (["demo", "--rate", "0"], "jobs per second must be a number above 0, got 0"),
    ],
)
async def test_bad_demo_options_start_nothing(args: list[str], fragment: str) -> None:
    code, out, err = await jobwarden(*args)
    assert (code, out) == (2, "")
    assert fragment in err
    assert "Traceback" not in err
