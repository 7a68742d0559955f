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

Durations are numbers of seconds or strings such as ``250ms``, ``30s``, ``5m``, ``2h``, ``1h30m``,
``1d`` (read by ``jobwarden.wire.parse_duration``).
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobwarden import wire
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
from .core.validation import check_duration

__all__ = ["FileConfig", "load_config", "parse_duration"]


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
    elif isinstance(value, str):
        try:
            seconds = wire.parse_duration(value)
        except ValueError as error:
            raise InvalidArgument(f"{what}: {error}") from None
    else:
        raise InvalidArgument(f'{what}: expected a duration (e.g. 30, "5m"), got {value!r}')
    if not math.isfinite(seconds):
        raise InvalidArgument(f"{what} must be a finite duration")
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


# TOML gives typed values; a value of the wrong type is named here rather than coerced
# (bool("false") is True, int(2.7) is 2) or left to fail later with a bare KeyError or TypeError.


def _table(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidArgument(f"{what} must be a table, got {value!r}")
    return value


def _required(table: dict[str, Any], key: str, what: str) -> Any:
    if key not in table:
        raise InvalidArgument(f"{what}.{key} is required")
    return table[key]


def _int(table: dict[str, Any], key: str, what: str, default: int, high: int = 10_000_000) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"{what}.{key}: expected a whole number, got {value!r}")
    if not 0 <= value <= high:
        raise InvalidArgument(f"{what}.{key} must be between 0 and {high}, got {value}")
    return value


def _bool(table: dict[str, Any], key: str, what: str) -> bool:
    value = table.get(key, False)
    if not isinstance(value, bool):
        raise InvalidArgument(f"{what}.{key}: expected true or false, got {value!r}")
    return value


def _str(table: dict[str, Any], key: str, what: str, default: str | None = None) -> str:
    value = table.get(key, default) if default is not None else _required(table, key, what)
    if not isinstance(value, str):
        raise InvalidArgument(f"{what}.{key}: expected a string, got {value!r}")
    return value


def _list(table: dict[str, Any], key: str, what: str) -> list[Any]:
    value = table.get(key, [])
    if not isinstance(value, list):
        raise InvalidArgument(f"{what}.{key} must be a list, got {value!r}")
    return value


def action_from_table(action: str, table: dict[str, Any]) -> ActionConfig:
    what = f"actions.{action}"
    table = _table(table, what)
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
        where = f"{what}.start_timeout"
        st = _table(table["start_timeout"], where)
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
            where,
        )
        run_request = None
        if "run_request" in st:
            rr = _table(st["run_request"], f"{where}.run_request")
            _check_keys(rr, {"action", "input", "correlation_id"}, f"{where}.run_request")
            run_request = RunRequest(
                action=_str(rr, "action", f"{where}.run_request"),
                input=_table(rr.get("input", {}), f"{where}.run_request.input"),
                correlation_id=_str(rr, "correlation_id", f"{where}.run_request", ""),
            )
        start = StartTimeout(
            duration=parse_duration(_required(st, "duration", where), f"{where}.duration"),
            action=_enum(StartTimeoutAction, st.get("action", "FAIL"), f"{where}.action"),
            retry_interval=parse_duration(st.get("retry_interval", 0), f"{where}.retry_interval"),
            retry_backoff_exponential=_bool(st, "retry_backoff_exponential", where),
            retry_count=_int(st, "retry_count", where, 0),
            run_request=run_request,
        )
    retry_policy = None
    if "retry_policy" in table:
        where = f"{what}.retry_policy"
        rp = _table(table["retry_policy"], where)
        _check_keys(
            rp,
            {
                "max_attempts",
                "initial_interval",
                "backoff_coefficient",
                "max_interval",
                "non_retryable_kinds",
            },
            where,
        )
        coefficient = rp.get("backoff_coefficient", 2.0)
        if isinstance(coefficient, bool) or not isinstance(coefficient, int | float):
            raise InvalidArgument(f"{where}.backoff_coefficient: expected a number, got {coefficient!r}")
        retry_policy = RetryPolicy(
            max_attempts=_int(rp, "max_attempts", where, 1),
            initial_interval=parse_duration(rp.get("initial_interval", 1), f"{where}.initial_interval"),
            backoff_coefficient=float(coefficient),
            max_interval=parse_duration(rp.get("max_interval", 0), f"{where}.max_interval"),
            non_retryable_kinds=frozenset(
                _enum(ErrorKind, k, f"{where}.non_retryable_kinds")
                for k in _list(rp, "non_retryable_kinds", where)
            ),
        )

    def optional(name: str) -> float | None:
        return parse_duration(table[name], f"{what}.{name}") if name in table else None

    locks = []
    for index, item in enumerate(_list(table, "locks", what)):
        where = f"{what}.locks[{index}]"
        entry = _table(item, where)
        _check_keys(entry, {"resource", "mode"}, where)
        locks.append(
            LockRequest(
                _str(entry, "resource", where), _enum(LockMode, entry.get("mode", "EXCLUSIVE"), where)
            )
        )
    return ActionConfig(
        action=action,
        timeouts=Timeouts(
            start=start,
            heartbeat=optional("heartbeat_timeout"),
            takeover=optional("takeover_timeout"),
            execution=optional("execution_timeout"),
        ),
        retry_policy=retry_policy,
        max_running=_int(table, "max_running", what, 0),
        max_queued=_int(table, "max_queued", what, 0),
        lock_templates=locks,
        paused=_bool(table, "paused", what),
    )


def load_config(path: str | Path) -> FileConfig:
    """Read a config file; InvalidArgument names the first thing wrong in it."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise InvalidArgument(f"config file {path} does not exist") from None
    except OSError as error:
        raise InvalidArgument(f"config file {path} cannot be read: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise InvalidArgument(f"config file {path} is not valid TOML: {error}") from None
    try:
        return _from_data(data)
    except InvalidArgument as error:
        raise InvalidArgument(f"config file {path}: {error.message}") from None


def _from_data(data: dict[str, Any]) -> FileConfig:
    _check_keys(data, {"engine", "actions"}, "the top level")
    engine_table = _table(data.get("engine", {}), "engine")
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
        config.db_url = _str(engine_table, "db", "engine")
    for name in ("heartbeat_interval", "default_takeover_timeout", "cancel_grace", "commit_timeout"):
        if name in engine_table:
            seconds = parse_duration(engine_table[name], f"engine.{name}")
            # A zero heartbeat interval would declare every worker dead at once.
            check_duration(
                seconds, f"engine.{name}", allow_zero=name in ("default_takeover_timeout", "cancel_grace")
            )
            setattr(config, name, seconds)
    actions = _table(data.get("actions", {}), "actions")
    config.actions = [action_from_table(name, table) for name, table in actions.items()]
    return FileConfig(
        engine=config,
        host=_str(engine_table, "host", "engine", "127.0.0.1"),
        port=_int(engine_table, "port", "engine", 50051, high=65535),
    )
