"""``jobwarden actions list|get|set|pause|resume`` as a user runs it: a real process against a real
engine. Exit 0 done, 1 the engine refused (or is unreachable), 2 a bad command line; a refused change
leaves the configuration as it was."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from google.protobuf import json_format
from jobwarden.contract import ErrorKind, LockMode, StartTimeoutAction
from jobwarden.v1 import job_pb2

from tests.config.test_action_config import full_config, get_config, set_config
from tests.conftest import EngineHandle, Stubs
from tests.support import RawWorker, free_port
from tests.timers.helpers import seconds, submit


async def cli(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "jobwarden.sdk.cli",
        "actions",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_set_get_pause_resume_list(engine: EngineHandle, stubs: Stubs) -> None:
    at = ("--engine", engine.address)
    code, out, err = await cli(
        "set",
        "transcode",
        *at,
        "--max-running=4",
        "--max-queued=1000",
        "--heartbeat-timeout=30s",
        "--takeover-timeout=1m",
        "--execution-timeout=2h",
        "--start-timeout=5m",
        "--start-action=retry",
        "--start-retry-interval=10s",
        "--start-retry-count=3",
        "--start-retry-exponential",
        "--run-request=alert",
        '--run-request-input={"reason": "late"}',
        "--run-request-correlation-id=ops",
        "--max-attempts=3",
        "--initial-interval=1s",
        "--backoff-coefficient=1.5",
        "--max-interval=1m",
        "--non-retryable=JOB_ERROR",
        "--lock=asset:{input.asset_id}",
        "--lock=farm:shared",
    )
    assert (code, err) == (0, "")
    assert "start_timeout      5m, then RETRY after 10s, doubling, 3 times, then FAIL" in out
    assert "retry_policy       3 attempts, backoff 1s x1.5 up to 1m; never retried: JOB_ERROR" in out
    assert "locks              asset:{input.asset_id} EXCLUSIVE, farm SHARED" in out
    assert await get_config(stubs, "transcode") == full_config(), "the CLI wrote what the RPC test writes"

    code, out, _ = await cli("get", "transcode", *at, "--json")
    assert code == 0
    parsed = json_format.ParseDict(json.loads(out), job_pb2.ActionConfig())
    assert parsed == full_config()

    code, out, _ = await cli("pause", "transcode", *at)
    assert (code, out.strip()) == (0, "transcode: paused (jobs keep queueing; running ones go on)")
    assert (await get_config(stubs, "transcode")).paused
    await submit(stubs, "transcode", {"asset_id": 1})
    worker = await RawWorker(engine.address, ["transcode"]).connect()
    # Each CLI call is a new Python process (seconds on a loaded machine): without heartbeats the engine
    # would rightly take the silent raw worker for dead before the resume below.
    async with worker.beating():
        code, out, _ = await cli("list", *at)
        assert code == 0
        header, row = out.strip().splitlines()
        assert header.split() == [
            "ACTION",
            "STATE",
            "MAX_RUNNING",
            "MAX_QUEUED",
            "WAITING",
            "RUNNING",
            "WORKERS",
            "FREE",
        ]
        assert row.split() == ["transcode", "paused", "4", "1000", "1", "0", "1", "1"]

        # A partial set changes only what it names, and keeps the pause.
        code, out, _ = await cli("set", "transcode", *at, "--max-running=2", "--heartbeat-timeout=none")
        assert code == 0
        expected = full_config()
        expected.max_running = 2
        expected.paused = True
        expected.timeouts.ClearField("heartbeat")
        assert await get_config(stubs, "transcode") == expected

        code, out, _ = await cli("resume", "transcode", *at)
        assert (code, out.strip()) == (0, "transcode: dispatching again")
        assert (await worker.next_assignment()).job.action == "transcode"
    await worker.close()


async def test_clearing_settings(engine: EngineHandle, stubs: Stubs) -> None:
    await set_config(stubs, full_config())
    code, _, err = await cli(
        "set",
        "transcode",
        "--engine",
        engine.address,
        "--max-attempts=0",
        "--no-locks",
        "--start-timeout=none",
    )
    assert (code, err) == (0, "")
    config = await get_config(stubs, "transcode")
    assert not config.HasField("retry_policy")
    assert not config.lock_templates
    assert not config.timeouts.HasField("start")
    assert config.max_running == 4


async def test_from_file_round_trip(engine: EngineHandle, stubs: Stubs, tmp_path: Path) -> None:
    await set_config(stubs, full_config())
    code, out, _ = await cli("get", "transcode", "--engine", engine.address, "--json")
    path = tmp_path / "transcode.json"
    path.write_text(out.replace('"max_queued": 1000', '"max_queued": 5'))
    code, _, err = await cli(
        "set", "transcode", "--engine", engine.address, "--from-file", str(path), "--max-running=9"
    )
    assert (code, err) == (0, "")
    config = await get_config(stubs, "transcode")
    assert (config.max_running, config.max_queued) == (9, 5)
    assert seconds(config.timeouts.start.duration) == 300
    assert config.timeouts.start.action == StartTimeoutAction.RETRY
    assert list(config.retry_policy.non_retryable_kinds) == [ErrorKind.JOB_ERROR]
    assert [t.mode for t in config.lock_templates] == [LockMode.EXCLUSIVE, LockMode.SHARED]


async def test_refusals_change_nothing(engine: EngineHandle, stubs: Stubs, tmp_path: Path) -> None:
    await set_config(stubs, full_config())
    at = ("--engine", engine.address)
    other = tmp_path / "other.json"
    other.write_text('{"action": "other"}')
    garbage = tmp_path / "garbage.json"
    garbage.write_text('{"bogus": 1}')
    cases = [
        # The engine refuses: exit 1 with its message.
        (("--initial-interval=2m",), 1, "initial_interval 120s exceeds max_interval 60s"),
        (("--lock=asset:{asset_id}",), 1, "must name a field of the input"),
        (("--execution-timeout=100000d",), 1, "is absurd"),
        (("--backoff-coefficient=0.5",), 1, "backoff_coefficient must be between 1 and 100"),
        # The command line is wrong: exit 2, the engine is not asked.
        (("--heartbeat-timeout=-5s",), 2, "--heartbeat-timeout: '-5s' is not a duration"),
        (("--heartbeat-timeout=soon",), 2, "is not a duration"),
        (("--max-running=-1",), 2, "invalid count"),
        (("--start-action=PANIC",), 2, "invalid start action"),
        (("--non-retryable=OOPS",), 2, "invalid error kind"),
        (("--lock=asset:1:WRITE", "--no-locks"), 2, "--lock and --no-locks together"),
        (("--run-request-input=[1]",), 2, "must be a JSON object"),
        (("--max-attempts=0", "--initial-interval=1s"), 2, "removes the retry policy"),
        (("--start-timeout=none", "--start-action=FAIL"), 2, "removes the start timeout"),
        (("--from-file", str(other)), 2, "configures 'other', not 'transcode'"),
        (("--from-file", str(garbage)), 2, "is not a JSON ActionConfig"),
        (("--from-file", str(tmp_path / "missing.json")), 2, "cannot read"),
        ((), 2, "nothing to change"),
    ]
    for extra, expected_code, words in cases:
        code, out, err = await cli("set", "transcode", *at, *extra)
        assert code == expected_code, (extra, err)
        assert words in err, (extra, err)
        assert err.strip().splitlines()[-1].startswith("jobwarden actions set: ")
        assert "Traceback" not in err
        assert out == ""
        assert await get_config(stubs, "transcode") == full_config(), extra
    code, _, err = await cli("set", "fresh", *at, "--start-action=NONE")
    assert (code, "fresh has no start timeout yet") == (2, err.split(": ", 1)[1].split(":")[0])


async def test_bad_action_and_unreachable_engine(engine: EngineHandle) -> None:
    code, _, err = await cli("pause", "bad name", "--engine", engine.address)
    assert code == 1
    assert "is not a valid action name" in err
    code, _, err = await cli("get", "transcode", "--engine", f"127.0.0.1:{free_port()}")
    assert code == 1
    assert "cannot reach the engine at 127.0.0.1:" in err
    code, _, err = await cli("list", "--engine", "no-port")
    assert code == 2
    assert "engine address must be HOST:PORT" in err
    code, _, err = await cli("list", "--engine", engine.address)
    assert code == 0
    assert "no actions yet" in err
