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
    lock_templates = [{ resource = "asset:{input.asset_id}", mode = "EXCLUSIVE" }]

    [actions.transcode.timeouts]
    heartbeat = "30s"
    takeover = "60s"
    execution = "2h"

    [actions.transcode.timeouts.start]
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

An ``[actions.NAME]`` table is the API's ``ActionConfig`` message with its field names, as
``jobwarden actions get NAME --json`` prints it (that output, written as TOML, means the same here);
it is read through the same conversion and checks as ``SetActionConfig``. Enum values may drop their
prefix (``EXCLUSIVE`` for ``LOCK_MODE_EXCLUSIVE``). The names of earlier releases (``OLD_NAMES``) are
still read, with a warning.
"""

from __future__ import annotations

import logging
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from jobwarden import wire
from jobwarden.contract import Limits
from jobwarden.v1 import job_pb2

from .api.convert import action_config_from_proto
from .core import ActionConfig, ActionConfigs, EngineConfig, InvalidArgument
from .core.validation import check_duration

__all__ = ["OLD_NAMES", "FileConfig", "action_from_table", "load_config", "parse_duration"]

log = logging.getLogger("jobwarden.server.config")


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


def _check_keys(table: dict[str, Any], allowed: set[str], what: str) -> None:
    unknown = set(table) - allowed
    if unknown:
        raise InvalidArgument(f"{what}: unknown setting(s) {', '.join(sorted(unknown))}")


# TOML gives typed values; a value of the wrong type is named here rather than coerced
# (int(2.7) is 2) or left to fail later with a bare KeyError or TypeError.


def _table(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidArgument(f"{what} must be a table, got {value!r}")
    return value


def _int(table: dict[str, Any], key: str, what: str, default: int, high: int = 10_000_000) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"{what}.{key}: expected a whole number, got {value!r}")
    if not 0 <= value <= high:
        raise InvalidArgument(f"{what}.{key} must be between 0 and {high}, got {value}")
    return value


def _str(table: dict[str, Any], key: str, what: str, default: str) -> str:
    value = table.get(key, default)
    if not isinstance(value, str):
        raise InvalidArgument(f"{what}.{key}: expected a string, got {value!r}")
    return value


# -- [actions.NAME]: the ActionConfig message, spelt as `jobwarden actions get NAME --json` prints it --

#: What this file called a setting before it took the API's spelling, and the API's path for it. Read
#: for one more release, with a warning, so that no operator's file stops working without notice.
OLD_NAMES: dict[str, tuple[str, ...]] = {
    "heartbeat_timeout": ("timeouts", "heartbeat"),
    "takeover_timeout": ("timeouts", "takeover"),
    "execution_timeout": ("timeouts", "execution"),
    "start_timeout": ("timeouts", "start"),
    "locks": ("lock_templates",),
}


def _renamed(table: dict[str, Any], what: str) -> dict[str, Any]:
    """``table`` with the old names moved to their ActionConfig paths, each one warned about."""
    table = dict(table)
    for old, path in OLD_NAMES.items():
        if old not in table:
            continue
        new = ".".join(path)
        parent = table
        for name in path[:-1]:
            parent[name] = dict(_table(parent.get(name, {}), f"{what}.{name}"))
            parent = parent[name]
        if path[-1] in parent:
            raise InvalidArgument(f"{what}.{old} and {what}.{new} are the same setting: give only {new}")
        parent[path[-1]] = table.pop(old)
        log.warning(
            "config file: %s.%s is an old name, read for this release only: write %s.%s (the spelling "
            "of the API and of `jobwarden actions get --json`)",
            what,
            old,
            what,
            new,
        )
    return table


def _json_fields(table: Any, message: Descriptor, what: str) -> dict[str, Any]:
    """A TOML table as the proto3 JSON of ``message``: human durations ("5m", 30) become JSON's
    ("300s"), enum values may drop their prefix ("EXCLUSIVE" for LOCK_MODE_EXCLUSIVE, any case).
    Scalars are checked for their TOML type here; ranges and the rest are ``json_format``'s."""
    table = _table(table, what)
    fields = message.fields_by_name
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise InvalidArgument(f"{what}: unknown setting(s) {', '.join(unknown)} (known: {', '.join(fields)})")
    document: dict[str, Any] = {}
    for name, value in table.items():
        field = fields[name]
        where = f"{what}.{name}"
        if field.is_repeated:
            if not isinstance(value, list):
                raise InvalidArgument(f"{where} must be a list, got {value!r}")
            document[name] = [_json_value(field, item, f"{where}[{i}]") for i, item in enumerate(value)]
        else:
            document[name] = _json_value(field, value, where)
    return document


def _json_value(field: FieldDescriptor, value: Any, what: str) -> Any:
    if field.message_type is not None:
        kind = field.message_type.full_name
        if kind == "google.protobuf.Duration":
            return _json_duration(value, what)
        if kind == "google.protobuf.Struct":
            return value
        return _json_fields(value, field.message_type, what)
    if field.enum_type is not None and isinstance(value, str):
        return _json_enum(field.enum_type, value, what)
    _check_scalar_type(field, value, what)
    return value


_WHOLE_NUMBERS = {
    FieldDescriptor.CPPTYPE_INT32,
    FieldDescriptor.CPPTYPE_INT64,
    FieldDescriptor.CPPTYPE_UINT32,
    FieldDescriptor.CPPTYPE_UINT64,
}
_NUMBERS = {FieldDescriptor.CPPTYPE_DOUBLE, FieldDescriptor.CPPTYPE_FLOAT}


def _check_scalar_type(field: FieldDescriptor, value: Any, what: str) -> None:
    """TOML values are typed: a string where the message has a number (JSON's mapping takes "3" for
    3) or a number where it has a string is a mistake in the file, named as such."""
    kind = field.cpp_type
    if kind == FieldDescriptor.CPPTYPE_STRING and not isinstance(value, str):
        raise InvalidArgument(f"{what}: expected a string, got {value!r}")
    if kind == FieldDescriptor.CPPTYPE_BOOL and not isinstance(value, bool):
        raise InvalidArgument(f"{what}: expected true or false, got {value!r}")
    if kind in _WHOLE_NUMBERS and (isinstance(value, bool) or not isinstance(value, int)):
        raise InvalidArgument(f"{what}: expected a whole number, got {value!r}")
    if kind in _NUMBERS and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise InvalidArgument(f"{what}: expected a number, got {value!r}")


def _json_duration(value: Any, what: str) -> str:
    seconds = parse_duration(value, what)
    try:
        return wire.duration(seconds).ToJsonString()
    except ValueError:
        raise InvalidArgument(
            f"{what} of {seconds:g}s is absurd (more than {Limits.MAX_DURATION_SECONDS}s)"
        ) from None


def _json_enum(enum: EnumDescriptor, value: str, what: str) -> str:
    prefix = enum.values_by_number[0].name.removesuffix("UNSPECIFIED")
    name = value.strip().upper()
    for candidate in (name, prefix + name):
        if candidate in enum.values_by_name and enum.values_by_name[candidate].number != 0:
            return candidate
    names = " | ".join(v.name.removeprefix(prefix) for v in enum.values if v.number != 0)
    raise InvalidArgument(f"{what}: unknown value {value!r} ({names})")


_FAILED_FIELD = re.compile(r"Failed to parse (\w+) field: ")
_AT_PATH = re.compile(r" at ActionConfig(\S*?)\.*$")


def _parse_error(error: json_format.ParseError, what: str) -> str:
    """json_format's 'Failed to parse a field: Failed to parse b field: X at ActionConfig.a.b..' as
    'actions.NAME.a.b: X'."""
    text = " ".join(str(error).split())
    fields = _FAILED_FIELD.findall(text)
    detail = _FAILED_FIELD.sub("", text)
    at = _AT_PATH.search(detail)
    if at:
        path, detail = at.group(1), detail[: at.start()]
    else:
        path = "".join(f".{name}" for name in fields)
    return f"{what}{path}: {detail.rstrip('.')}"


def _exclusive_by_default(table: dict[str, Any]) -> dict[str, Any]:
    """A lock template without a mode is EXCLUSIVE, as with ``actions set --lock`` (and in earlier
    releases of this file); the message itself has no default."""
    templates = table.get("lock_templates")
    if not isinstance(templates, list):
        return table
    filled = [
        {**item, "mode": "EXCLUSIVE"} if isinstance(item, dict) and "mode" not in item else item
        for item in templates
    ]
    return {**table, "lock_templates": filled}


def action_from_table(action: str, table: Any) -> ActionConfig:
    """An ``[actions.NAME]`` table as the engine's ActionConfig, read the way SetActionConfig reads
    one: the proto message, the API's conversion, the engine's checks. InvalidArgument names the
    setting by its path in the file."""
    what = f"actions.{action}"
    table = _renamed(_table(table, what), what)
    if table.get("action", action) != action:
        raise InvalidArgument(
            f"{what}.action is {table['action']!r}: a table configures the action it is named after"
        )
    table = _exclusive_by_default(table)
    message = job_pb2.ActionConfig()
    try:
        json_format.ParseDict(_json_fields(table, message.DESCRIPTOR, what), message)
    except json_format.ParseError as error:
        raise InvalidArgument(_parse_error(error, what)) from None
    message.action = action
    try:
        config = action_config_from_proto(message)
    except InvalidArgument as error:
        # The conversion names fields from the ActionConfig down ("timeouts.start.duration").
        raise InvalidArgument(f"{what}.{error.message}") from None
    ActionConfigs.validate(config)
    return config


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
            "engine_id",
            "advertise",
            "lease_duration",
            "lease_renew_interval",
            "lease_margin",
            "standby_poll_interval",
        },
        "engine",
    )
    config = EngineConfig()
    if "db" in engine_table:
        config.db_url = _str(engine_table, "db", "engine", config.db_url)
    for name in ("heartbeat_interval", "default_takeover_timeout", "cancel_grace", "commit_timeout"):
        if name in engine_table:
            seconds = parse_duration(engine_table[name], f"engine.{name}")
            # A zero heartbeat interval would declare every worker dead at once.
            check_duration(
                seconds, f"engine.{name}", allow_zero=name in ("default_takeover_timeout", "cancel_grace")
            )
            setattr(config, name, seconds)
    for name in ("engine_id", "advertise"):
        if name in engine_table:
            setattr(config, name, _str(engine_table, name, "engine", ""))
    for name in ("lease_duration", "lease_renew_interval", "lease_margin", "standby_poll_interval"):
        if name in engine_table:
            seconds = parse_duration(engine_table[name], f"engine.{name}")
            check_duration(seconds, f"engine.{name}", allow_zero=name == "lease_margin")
            setattr(config, name, seconds)
    problem = config.check_store() or config.check_lease()
    if problem:
        raise InvalidArgument(f"engine: {problem}")
    actions = _table(data.get("actions", {}), "actions")
    config.actions = [action_from_table(name, table) for name, table in actions.items()]
    return FileConfig(
        engine=config,
        host=_str(engine_table, "host", "engine", "127.0.0.1"),
        port=_int(engine_table, "port", "engine", 50051, high=65535),
    )
