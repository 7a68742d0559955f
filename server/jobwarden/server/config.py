"""The engine's configuration file (TOML), e.g. ``jobwarden.toml``::

    [engine]
    db = "sqlite:///jobwarden.db"
    host = "127.0.0.1"
    port = 50051
    heartbeat_interval = "5s"
    default_takeover_timeout = "60s"

    [actions.transcode]
    max_running = 4
    max_queued = 1000
    heartbeat_timeout = "30s"
    takeover_timeout = "60s"
    execution_timeout = "2h"
    locks = [{ resource = "asset:{input.asset_id}", mode = "EXCLUSIVE" }]

    [actions.transcode.start_timeout]
    duration = "5m"
    action = "RETRY"            # FAIL | RETRY | NONE
    retry_interval = "10s"
    retry_backoff_exponential = true
    retry_count = 3
    run_request = { action = "alert", input = { reason = "transcode did not start" } }

    [actions.transcode.retry_policy]
    max_attempts = 3
    initial_interval = "1s"
    backoff_coefficient = 2.0
    max_interval = "1m"
    non_retryable_kinds = ["JOB_ERROR"]

Durations are numbers of seconds or strings such as ``250ms``, ``30s``, ``5m``, ``2h``, ``1d``.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobwarden.contract import ErrorKind, LockMode, StartTimeoutAction

from .core import (
    ActionConfig,
    EngineConfig,
    InvalidArgument,
    LockRequest,
    RetryPolicy,
    RunRequest,
    StartTimeout,
    Timeouts,
)

__all__ = ["FileConfig", "load_config", "parse_duration"]

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


@dataclass(slots=True)
class FileConfig:
    engine: EngineConfig
    host: str = "127.0.0.1"
    port: int = 50051
    extra: dict[str, Any] = field(default_factory=dict)


def parse_duration(value: Any, what: str) -> float:
    if isinstance(value, bool):
        raise InvalidArgument(f"{what}: expected a duration, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION_RE.match(value)):
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    else:
        raise InvalidArgument(f'{what}: {value!r} is not a duration (e.g. 30, "250ms", "5m", "2h")')
    if seconds < 0:
        raise InvalidArgument(f"{what} must not be negative")
    return seconds


def _enum(enum: Any, value: Any, what: str) -> Any:
    try:
        return enum[str(value).upper()]
    except KeyError:
        names = " | ".join(m.name for m in enum)
        raise InvalidArgument(f"{what}: unknown value {value!r} ({names})") from None


def _check_keys(table: dict[str, Any], allowed: set[str], what: str) -> None:
    unknown = set(table) - allowed
    if unknown:
        raise InvalidArgument(f"{what}: unknown setting(s) {', '.join(sorted(unknown))}")


def action_from_table(action: str, table: dict[str, Any]) -> ActionConfig:
    what = f"actions.{action}"
    _check_keys(
        table,
        {
            "max_running",
            "max_queued",
            "heartbeat_timeout",
            "takeover_timeout",
            "execution_timeout",
            "locks",
            "start_timeout",
            "retry_policy",
            "paused",
        },
        what,
    )
    start = None
    if "start_timeout" in table:
        st = table["start_timeout"]
        _check_keys(
            st,
            {
                "duration",
                "action",
                "retry_interval",
                "retry_backoff_exponential",
                "retry_count",
                "run_request",
            },
            f"{what}.start_timeout",
        )
        run_request = None
        if "run_request" in st:
            rr = st["run_request"]
            run_request = RunRequest(
                action=rr["action"], input=rr.get("input", {}), correlation_id=rr.get("correlation_id", "")
            )
        start = StartTimeout(
            duration=parse_duration(st["duration"], f"{what}.start_timeout.duration"),
            action=_enum(StartTimeoutAction, st.get("action", "FAIL"), f"{what}.start_timeout.action"),
            retry_interval=parse_duration(
                st.get("retry_interval", 0), f"{what}.start_timeout.retry_interval"
            ),
            retry_backoff_exponential=bool(st.get("retry_backoff_exponential", False)),
            retry_count=int(st.get("retry_count", 0)),
            run_request=run_request,
        )
    retry_policy = None
    if "retry_policy" in table:
        rp = table["retry_policy"]
        _check_keys(
            rp,
            {
                "max_attempts",
                "initial_interval",
                "backoff_coefficient",
                "max_interval",
                "non_retryable_kinds",
            },
            f"{what}.retry_policy",
        )
        retry_policy = RetryPolicy(
            max_attempts=int(rp.get("max_attempts", 1)),
            initial_interval=parse_duration(
                rp.get("initial_interval", 1), f"{what}.retry_policy.initial_interval"
            ),
            backoff_coefficient=float(rp.get("backoff_coefficient", 2.0)),
            max_interval=parse_duration(rp.get("max_interval", 0), f"{what}.retry_policy.max_interval"),
            non_retryable_kinds=frozenset(
                _enum(ErrorKind, k, f"{what}.retry_policy.non_retryable_kinds")
                for k in rp.get("non_retryable_kinds", [])
            ),
        )

    def optional(name: str) -> float | None:
        return parse_duration(table[name], f"{what}.{name}") if name in table else None

    return ActionConfig(
        action=action,
        timeouts=Timeouts(
            start=start,
            heartbeat=optional("heartbeat_timeout"),
            takeover=optional("takeover_timeout"),
            execution=optional("execution_timeout"),
        ),
        retry_policy=retry_policy,
        max_running=int(table.get("max_running", 0)),
        max_queued=int(table.get("max_queued", 0)),
        lock_templates=[
            LockRequest(
                lock["resource"], _enum(LockMode, lock.get("mode", "EXCLUSIVE"), f"{what}.locks.mode")
            )
            for lock in table.get("locks", [])
        ],
        paused=bool(table.get("paused", False)),
    )


def load_config(path: str | Path) -> FileConfig:
    """Read a config file; InvalidArgument names the first thing wrong in it."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise InvalidArgument(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as error:
        raise InvalidArgument(f"config file {path} is not valid TOML: {error}") from None
    _check_keys(data, {"engine", "actions"}, str(path))
    engine_table = data.get("engine", {})
    _check_keys(
        engine_table,
        {
            "db",
            "host",
            "port",
            "heartbeat_interval",
            "default_takeover_timeout",
            "cancel_grace",
            "commit_timeout",
        },
        "engine",
    )
    config = EngineConfig()
    if "db" in engine_table:
        config.db_url = str(engine_table["db"])
    for name in ("heartbeat_interval", "default_takeover_timeout", "cancel_grace", "commit_timeout"):
        if name in engine_table:
            setattr(config, name, parse_duration(engine_table[name], f"engine.{name}"))
    try:
        config.actions = [action_from_table(name, table) for name, table in data.get("actions", {}).items()]
    except (KeyError, TypeError, ValueError) as error:
        raise InvalidArgument(f"config file {path}: {type(error).__name__}: {error}") from None
    return FileConfig(
        engine=config,
        host=str(engine_table.get("host", "127.0.0.1")),
        port=int(engine_table.get("port", 50051)),
    )
