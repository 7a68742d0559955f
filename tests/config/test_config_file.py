"""The engine's TOML config file: every section read into the engine, and every kind of bad file
refused with one clear line naming the file and the setting (``jobwarden serve`` exits 2)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import grpc
import pytest
from jobwarden.contract import ErrorKind, LockMode, StartTimeoutAction
from jobwarden.server import config as config_module
from jobwarden.server.api.convert import action_config_from_proto, action_config_to_proto
from jobwarden.server.config import OLD_NAMES, load_config, parse_duration
from jobwarden.server.core import InvalidArgument
from jobwarden.v1 import job_service_pb2 as js
from jobwarden.v1 import job_service_pb2_grpc
from jobwarden.wire import message_json

from tests.config.test_action_config import full_config, get_config, set_config
from tests.config.test_actions_cli import cli
from tests.conftest import EngineHandle, Stubs
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
paused = true
lock_templates = [
  { resource = "asset:{input.asset_id}", mode = "EXCLUSIVE" },
  { resource = "farm", mode = "LOCK_MODE_SHARED" },
]

[actions.transcode.timeouts]
heartbeat = "30s"
takeover = "1m"
execution = "2h"

[actions.transcode.timeouts.start]
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
timeouts = { execution = 20 }
"""

#: FULL in the names of earlier releases (config.OLD_NAMES), still read for one release.
FULL_OLD_NAMES = """
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


def test_a_lock_template_without_a_mode_is_exclusive(tmp_path: Path) -> None:
    loaded = load_config(write(tmp_path, '[actions.t]\nlock_templates = [{ resource = "farm" }]\n'))
    assert [(lk.resource, lk.mode) for lk in loaded.engine.actions[0].lock_templates] == [
        ("farm", LockMode.EXCLUSIVE)
    ]


@pytest.mark.parametrize("doc", ["README.md", "docs/timers-and-locks.md"])
def test_the_examples_in_the_docs_are_valid_and_current(
    tmp_path: Path, doc: str, caplog: pytest.LogCaptureFixture
) -> None:
    text = (Path(__file__).parents[2] / doc).read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```toml\n")[1:]]
    examples = [b for b in blocks if "[actions." in b]
    assert examples
    with caplog.at_level(logging.WARNING, logger="jobwarden.server.config"):
        for example in examples:
            assert load_config(write(tmp_path, example)).engine.actions
    assert not caplog.records, "the docs use no old name"


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
    (
        "unknown timeout",
        '[actions.t.timeouts]\nheartbeat_timeout = "5s"\n',
        "actions.t.timeouts: unknown setting(s) heartbeat_timeout (known: start, heartbeat,",
    ),
    (
        "bad duration",
        '[actions.t.timeouts]\nheartbeat = "soon"\n',
        "actions.t.timeouts.heartbeat: 'soon' is not a duration",
    ),
    (
        "bad duration, old name",
        '[actions.t]\nheartbeat_timeout = "soon"\n',
        "actions.t.timeouts.heartbeat: 'soon' is not a duration",
    ),
    ("negative duration", "[actions.t.timeouts]\nheartbeat = -5\n", "heartbeat must not be negative"),
    ("minus in a string", '[actions.t.timeouts]\nheartbeat = "-5s"\n', "is not a duration"),
    ("infinite duration", "[actions.t.timeouts]\nexecution = inf\n", "must be a finite duration"),
    ("boolean duration", "[actions.t.timeouts]\nexecution = true\n", "expected a duration"),
    (
        "duration beyond a Duration",
        "[actions.t.timeouts]\nexecution = 1e15\n",
        "actions.t.timeouts.execution of 1e+15s is absurd",
    ),
    (
        "zero heartbeat interval",
        '[engine]\nheartbeat_interval = "0s"\n',
        "heartbeat_interval must be positive",
    ),
    ("absurd engine duration", '[engine]\ncommit_timeout = "100000d"\n', "absurd"),
    ("port not a number", '[engine]\nport = "abc"\n', "engine.port: expected a whole number"),
    ("port out of range", "[engine]\nport = 99999\n", "engine.port must be between 0 and 65535"),
    (
        "fractional limit",
        "[actions.t]\nmax_running = 2.5\n",
        "actions.t.max_running: expected a whole number, got 2.5",
    ),
    ("limit beyond int32", "[actions.t]\nmax_running = 1099511627776\n", "actions.t.max_running: Value out"),
    (
        "limit as a string",
        "[actions.t]\nmax_running = '3'\n",
        "actions.t.max_running: expected a whole number",
    ),
    ("boolean limit", "[actions.t]\nmax_running = true\n", "actions.t.max_running: expected a whole number"),
    (
        "resource not a string",
        "[actions.t]\nlock_templates = [{ resource = 3 }]\n",
        "actions.t.lock_templates[0].resource: expected a string, got 3",
    ),
    (
        "a date in a run request's input",
        "[actions.t.timeouts.start]\nduration = 1\n"
        "run_request = { action = 'a', input = { at = 1979-05-27 } }\n",
        "actions.t.timeouts.start.run_request.input.at: Value 1979-05-27 has unexpected type",
    ),
    ("negative limit", "[actions.t]\nmax_queued = -1\n", "actions.t.max_queued must be between 0"),
    (
        "string boolean",
        '[actions.t]\npaused = "false"\n',
        "actions.t.paused: expected true or false, got 'false'",
    ),
    (
        "unknown lock mode",
        '[actions.t]\nlock_templates = [{ resource = "a", mode = "WRITE" }]\n',
        "actions.t.lock_templates[0].mode: unknown value 'WRITE' (SHARED | EXCLUSIVE)",
    ),
    (
        "unknown lock setting",
        '[actions.t]\nlock_templates = [{ resource = "a", kind = "WRITE" }]\n',
        "actions.t.lock_templates[0]: unknown setting(s) kind",
    ),
    (
        "lock without resource",
        '[actions.t]\nlock_templates = [{ mode = "SHARED" }]\n',
        "actions.t.lock_templates: a lock request has an empty resource",
    ),
    (
        "locks not a list",
        '[actions.t]\nlock_templates = "asset"\n',
        "actions.t.lock_templates must be a list",
    ),
    ("old locks not a list", '[actions.t]\nlocks = "asset"\n', "actions.t.lock_templates must be a list"),
    (
        "lock not a table",
        '[actions.t]\nlock_templates = ["asset"]\n',
        "actions.t.lock_templates[0] must be a table",
    ),
    (
        "start timeout without duration",
        '[actions.t.timeouts.start]\naction = "FAIL"\n',
        "actions.t.timeouts.start.duration is required",
    ),
    (
        "unknown start action",
        '[actions.t.timeouts.start]\nduration = 1\naction = "PANIC"\n',
        "actions.t.timeouts.start.action: unknown value 'PANIC' (FAIL | RETRY | NONE)",
    ),
    (
        "run request without action",
        "[actions.t.timeouts.start]\nduration = 1\nrun_request = { input = {} }\n",
        "actions.t.timeouts.start.run_request.action is required",
    ),
    (
        "run request input not a table",
        "[actions.t.timeouts.start]\nduration = 1\nrun_request = { action = 'a', input = 3 }\n",
        "actions.t.timeouts.start.run_request.input: Struct must be in a dict",
    ),
    (
        "unknown error kind",
        '[actions.t.retry_policy]\nnon_retryable_kinds = ["OOPS"]\n',
        "actions.t.retry_policy.non_retryable_kinds[0]: unknown value 'OOPS' (JOB_ERROR |",
    ),
    (
        "coefficient not a number",
        '[actions.t.retry_policy]\nbackoff_coefficient = "x"\n',
        "actions.t.retry_policy.backoff_coefficient: expected a number, got 'x'",
    ),
    ("timeouts not a table", "[actions.t]\ntimeouts = 3\n", "actions.t.timeouts must be a table"),
    ("actions not a table", "actions = 3\n", "actions must be a table"),
    ("action not a table", "[actions]\nt = 3\n", "actions.t must be a table"),
    (
        "another action's name",
        '[actions.t]\naction = "u"\n',
        "actions.t.action is 'u': a table configures the action it is named after",
    ),
    (
        "old and new name together",
        '[actions.t]\nheartbeat_timeout = "5s"\ntimeouts = { heartbeat = "6s" }\n',
        "actions.t.heartbeat_timeout and actions.t.timeouts.heartbeat are the same setting",
    ),
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
        # The same rules as SetActionConfig, checked before the engine opens anything.
        (
            '[actions.t.retry_policy]\ninitial_interval = "10s"\nmax_interval = "5s"\n',
            "initial_interval 10s exceeds max_interval 5s",
        ),
        (
            '[actions.t.timeouts]\nheartbeat = "100000d"\n',
            "actions.t.timeouts.heartbeat of 8.64e+09s is absurd",
        ),
        (
            '[actions.t]\nlock_templates = [{ resource = "asset:{asset_id}" }]\n',
            "must name a field of the input",
        ),
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


# -- one spelling: the ActionConfig message's, in TOML as in JSON ---------------------------------------


def toml_value(value: object) -> str:
    """A JSON value (as `actions get --json` prints it) written as TOML: inline tables and arrays."""
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{key} = {toml_value(item)}" for key, item in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    return json.dumps(value)


def as_toml_table(action: str, document: dict[str, object]) -> str:
    return f"[actions.{action}]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in document.items())


async def test_actions_get_json_pasted_as_toml_means_the_same(
    tmp_path: Path, engine: EngineHandle, stubs: Stubs
) -> None:
    await set_config(stubs, full_config())
    code, out, err = await cli("get", "transcode", "--engine", engine.address, "--json")
    assert (code, err) == (0, "")
    document = json.loads(out)
    assert document["timeouts"]["heartbeat"] == "30s", "JSON durations are proto3 JSON strings"
    loaded = load_config(write(tmp_path, as_toml_table("transcode", document)))
    (config,) = loaded.engine.actions
    assert action_config_to_proto(config) == full_config()
    assert config.to_dict() == action_config_from_proto(full_config()).to_dict()


async def test_the_same_config_as_toml_and_through_actions_set(
    tmp_path: Path, engine: EngineHandle, stubs: Stubs
) -> None:
    loaded = load_config(write(tmp_path, FULL))
    from_toml = next(c for c in loaded.engine.actions if c.action == "transcode")
    as_json = tmp_path / "transcode.json"
    as_json.write_text(json.dumps(message_json(action_config_to_proto(from_toml))))
    code, _, err = await cli("set", "transcode", "--engine", engine.address, "--from-file", str(as_json))
    assert (code, err) == (0, "")
    assert await get_config(stubs, "transcode") == action_config_to_proto(from_toml)
    assert engine.core.action_config("transcode").to_dict() == from_toml.to_dict()


def test_old_names_still_work_and_warn(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    new = load_config(
        write(tmp_path, FULL.split("[actions.transcode]", 1)[1].join(["[actions.transcode]", ""]))
    )
    with caplog.at_level(logging.WARNING, logger="jobwarden.server.config"):
        old = load_config(write(tmp_path, FULL_OLD_NAMES, "old.toml"))
    assert [c.to_dict() for c in old.engine.actions] == [c.to_dict() for c in new.engine.actions]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    for old_name, path in OLD_NAMES.items():
        assert any(
            f"actions.transcode.{old_name} is an old name" in w
            and f"write actions.transcode.{'.'.join(path)}" in w
            for w in warnings
        ), old_name
    assert any("actions.thumbnail.execution_timeout" in w for w in warnings)
    assert len(warnings) == len(OLD_NAMES) + 1


def test_the_new_names_do_not_warn(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="jobwarden.server.config"):
        load_config(write(tmp_path, FULL))
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_serve_warns_of_an_old_name_at_start(tmp_path: Path) -> None:
    path = write(tmp_path, '[actions.t]\nheartbeat_timeout = "30s"\n')
    log = tmp_path / "engine.log"
    with EngineProcess(f"sqlite:///{tmp_path / 'j.db'}", extra_args=("--config", str(path)), log_path=log):
        text = log.read_text()
    assert "WARNING" in text
    assert "actions.t.heartbeat_timeout is an old name" in text
    assert "write actions.t.timeouts.heartbeat" in text


async def test_a_file_with_one_bad_action_configures_none(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'j.db'}"
    path = write(
        tmp_path,
        "[actions.good]\nmax_running = 2\n"
        '[actions.bad.retry_policy]\ninitial_interval = "10s"\nmax_interval = "5s"\n',
    )
    done = serve("--config", str(path), "--db", db, cwd=tmp_path)
    assert done.returncode == 2
    assert "actions.bad.retry_policy: initial_interval 10s exceeds max_interval 5s" in done.stderr
    with EngineProcess(db) as process:
        async with grpc.aio.insecure_channel(process.address) as channel:
            jobs = job_service_pb2_grpc.JobServiceStub(channel)
            listed = await jobs.ListActions(js.ListActionsRequest())
            assert [c.action for c in listed.configs] == []
