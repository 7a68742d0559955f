"""The engine's TOML config file: every section read into the engine, and every kind of bad file
refused with one clear line naming the file and the setting (``jobwarden serve`` exits 2)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import grpc
import pytest
from jobwarden.contract import ErrorKind, LockMode, StartTimeoutAction
from jobwarden.server import config as config_module
from jobwarden.server.config import load_config, parse_duration
from jobwarden.server.core import InvalidArgument
from jobwarden.v1 import job_service_pb2 as js
from jobwarden.v1 import job_service_pb2_grpc

from tests.support import EngineProcess
from tests.timers.helpers import seconds

FULL = """
[engine]
db = "sqlite:///elsewhere.db"
host = "0.0.0.0"
port = 6000
heartbeat_interval = "2s"
default_takeover_timeout = "90s"
cancel_grace = "15s"
commit_timeout = 4

[actions.transcode]
max_running = 4
max_queued = 1000
heartbeat_timeout = "30s"
takeover_timeout = "1m"
execution_timeout = "2h"
paused = true
locks = [{ resource = "asset:{input.asset_id}", mode = "EXCLUSIVE" }, { resource = "farm", mode = "shared" }]

[actions.transcode.start_timeout]
duration = "5m"
action = "RETRY"
retry_interval = "250ms"
retry_backoff_exponential = true
retry_count = 3
run_request = { action = "alert", input = { reason = "late" }, correlation_id = "ops" }

[actions.transcode.retry_policy]
max_attempts = 3
initial_interval = "1s"
backoff_coefficient = 1.5
max_interval = "1m"
non_retryable_kinds = ["JOB_ERROR", "start_timeout"]

[actions.thumbnail]
execution_timeout = 20
"""


def write(tmp_path: Path, text: str, name: str = "jobwarden.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_every_section_is_read(tmp_path: Path) -> None:
    loaded = load_config(write(tmp_path, FULL))
    engine = loaded.engine
    assert (engine.db_url, loaded.host, loaded.port) == ("sqlite:///elsewhere.db", "0.0.0.0", 6000)
    assert (engine.heartbeat_interval, engine.default_takeover_timeout) == (2.0, 90.0)
    assert (engine.cancel_grace, engine.commit_timeout) == (15.0, 4.0)
    transcode, thumbnail = engine.actions
    assert transcode.action == "transcode"
    assert (transcode.max_running, transcode.max_queued, transcode.paused) == (4, 1000, True)
    t = transcode.timeouts
    assert (t.heartbeat, t.takeover, t.execution) == (30.0, 60.0, 7200.0)
    assert t.start is not None
    assert (t.start.duration, t.start.action) == (300.0, StartTimeoutAction.RETRY)
    assert (t.start.retry_interval, t.start.retry_backoff_exponential, t.start.retry_count) == (0.25, True, 3)
    assert t.start.run_request is not None
    assert (t.start.run_request.action, t.start.run_request.input) == ("alert", {"reason": "late"})
    assert t.start.run_request.correlation_id == "ops"
    policy = transcode.retry_policy
    assert policy is not None
    assert (policy.max_attempts, policy.initial_interval, policy.backoff_coefficient) == (3, 1.0, 1.5)
    assert policy.max_interval == 60.0
    assert policy.non_retryable_kinds == {ErrorKind.JOB_ERROR, ErrorKind.START_TIMEOUT}
    assert [(lk.resource, lk.mode) for lk in transcode.lock_templates] == [
        ("asset:{input.asset_id}", LockMode.EXCLUSIVE),
        ("farm", LockMode.SHARED),
    ]
    assert thumbnail.timeouts.execution == 20.0
    assert thumbnail.retry_policy is None
    assert thumbnail.timeouts.start is None


def test_the_documented_example_is_valid(tmp_path: Path) -> None:
    doc = config_module.__doc__ or ""
    example = doc.split("::", 1)[1].split("Durations are", 1)[0]
    loaded = load_config(write(tmp_path, example))
    assert [a.action for a in loaded.engine.actions] == ["transcode"]


def test_an_empty_file_is_the_defaults(tmp_path: Path) -> None:
    loaded = load_config(write(tmp_path, ""))
    assert loaded.engine.actions == []
    assert loaded.port == 50051


@pytest.mark.parametrize(
    ("text", "seconds"),
    [(30, 30.0), (0.5, 0.5), ("250ms", 0.25), ("30s", 30.0), ("5m", 300.0), ("2h", 7200.0), ("1d", 86400.0)],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text, "x") == seconds


BAD = [
    ("not toml", "[engine\n", "is not valid TOML"),
    ("unknown section", "[workers]\n", "the top level: unknown setting(s) workers"),
    ("unknown engine key", "[engine]\nthreads = 4\n", "engine: unknown setting(s) threads"),
    ("unknown action key", "[actions.t]\nmax_runing = 4\n", "actions.t: unknown setting(s) max_runing"),
    ("bad duration", '[actions.t]\nheartbeat_timeout = "soon"\n', "'soon' is not a duration"),
    ("negative duration", "[actions.t]\nheartbeat_timeout = -5\n", "must not be negative"),
    ("minus in a string", '[actions.t]\nheartbeat_timeout = "-5s"\n', "is not a duration"),
    ("infinite duration", "[actions.t]\nexecution_timeout = inf\n", "must be a finite duration"),
    ("boolean duration", "[actions.t]\nexecution_timeout = true\n", "expected a duration"),
    (
        "zero heartbeat interval",
        '[engine]\nheartbeat_interval = "0s"\n',
        "heartbeat_interval must be positive",
    ),
    ("absurd engine duration", '[engine]\ncommit_timeout = "100000d"\n', "absurd"),
    ("port not a number", '[engine]\nport = "abc"\n', "engine.port: expected a whole number"),
    ("port out of range", "[engine]\nport = 99999\n", "engine.port must be between 0 and 65535"),
    ("fractional limit", "[actions.t]\nmax_running = 2.5\n", "max_running: expected a whole number"),
    ("negative limit", "[actions.t]\nmax_queued = -1\n", "max_queued must be between 0"),
    ("string boolean", '[actions.t]\npaused = "false"\n', "paused: expected true or false"),
    (
        "unknown lock mode",
        '[actions.t]\nlocks = [{ resource = "a", mode = "WRITE" }]\n',
        "unknown value 'WRITE'",
    ),
    (
        "lock without resource",
        '[actions.t]\nlocks = [{ mode = "SHARED" }]\n',
        "locks[0].resource is required",
    ),
    ("locks not a list", '[actions.t]\nlocks = "asset"\n', "actions.t.locks must be a list"),
    (
        "start timeout without duration",
        '[actions.t.start_timeout]\naction = "FAIL"\n',
        "duration is required",
    ),
    ("unknown start action", '[actions.t.start_timeout]\nduration = 1\naction = "PANIC"\n', "'PANIC'"),
    (
        "run request without action",
        "[actions.t.start_timeout]\nduration = 1\nrun_request = { input = {} }\n",
        "run_request.action is required",
    ),
    ("unknown error kind", '[actions.t.retry_policy]\nnon_retryable_kinds = ["OOPS"]\n', "'OOPS'"),
    ("actions not a table", "actions = 3\n", "actions must be a table"),
    ("action not a table", "[actions]\nt = 3\n", "actions.t must be a table"),
]


@pytest.mark.parametrize(("text", "words"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_files_name_what_is_wrong(tmp_path: Path, text: str, words: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(InvalidArgument) as refused:
        load_config(path)
    assert str(path) in refused.value.message
    assert words in refused.value.message


def test_a_missing_or_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="does not exist"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(InvalidArgument, match="cannot be read"):
        load_config(tmp_path)


def serve(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobwarden.sdk.cli", "serve", "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[actions.t]\nmax_runing = 1\n", "actions.t: unknown setting(s) max_runing"),
        # Checked when the engine starts: the same rules as SetActionConfig.
        (
            '[actions.t.retry_policy]\ninitial_interval = "10s"\nmax_interval = "5s"\n',
            "initial_interval 10s exceeds max_interval 5s",
        ),
        ('[actions.t]\nheartbeat_timeout = "100000d"\n', "is absurd"),
        ('[actions.t]\nlocks = [{ resource = "asset:{asset_id}" }]\n', "must name a field of the input"),
        ('[actions."bad name"]\nmax_running = 1\n', "is not a valid action name"),
    ],
)
def test_serve_refuses_a_bad_file_with_one_line(tmp_path: Path, text: str, words: str) -> None:
    path = write(tmp_path, text)
    done = serve("--config", str(path), "--db", f"sqlite:///{tmp_path / 'x.db'}", cwd=tmp_path)
    assert done.returncode == 2
    assert words in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("jobwarden serve: ")


async def test_serve_with_a_config_file_applies_it(tmp_path: Path) -> None:
    text = FULL.replace("port = 6000\n", "").replace('host = "0.0.0.0"\n', "")
    path = write(tmp_path, text.replace("sqlite:///elsewhere.db", f"sqlite:///{tmp_path / 'elsewhere.db'}"))
    with EngineProcess(f"sqlite:///{tmp_path / 'j.db'}", extra_args=("--config", str(path))) as process:
        async with grpc.aio.insecure_channel(process.address) as channel:
            jobs = job_service_pb2_grpc.JobServiceStub(channel)
            got = (await jobs.GetActionConfig(js.GetActionConfigRequest(action="transcode"))).config
            assert (got.max_running, got.max_queued, got.paused) == (4, 1000, True)
            assert seconds(got.timeouts.heartbeat) == 30
            assert seconds(got.timeouts.start.retry_interval) == 0.25
            assert got.timeouts.start.run_request.action == "alert"
            assert got.retry_policy.max_attempts == 3
            assert [t.resource for t in got.lock_templates] == ["asset:{input.asset_id}", "farm"]
            listed = await jobs.ListActions(js.ListActionsRequest())
            assert [c.action for c in listed.configs] == ["thumbnail", "transcode"]
    # --db wins over the file's [engine] db.
    assert (tmp_path / "j.db").exists()
    assert not (tmp_path / "elsewhere.db").exists()
