"""JSON values to and from ``google.protobuf.Struct``, fast enough for the per-job hot path."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf import duration_pb2, struct_pb2, timestamp_pb2
from jobwarden.contract import Limits

__all__ = [
    "VALUE_KEY",
    "check_depth",
    "dict_to_struct",
    "duration",
    "from_timestamp",
    "normalize_object",
    "struct_to_dict",
    "timestamp",
]

#: the key that wraps a JSON value that is not an object (``{"value": 3}``)
VALUE_KEY = "value"

JsonObject = dict[str, Any]

_MAX_DOUBLE_INT = int(sys.float_info.max)
#: the longest duration a ``timedelta`` (and so a ``Duration`` built from one) can hold
_MAX_DURATION_SECONDS = timedelta.max.days * 86400


def _value_to_python(value: struct_pb2.Value) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return value.string_value
    if kind == "number_value":
        number = value.number_value
        # JSON has one number type; give integers back as int, as json.loads would.
        if number.is_integer() and abs(number) < 2**53:
            return int(number)
        return number
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return struct_to_dict(value.struct_value)
    if kind == "list_value":
        return [_value_to_python(item) for item in value.list_value.values]
    return None


def struct_to_dict(struct: struct_pb2.Struct) -> JsonObject:
    """A ``Struct`` as a plain dict (integral numbers as ``int``)."""
    return {key: _value_to_python(value) for key, value in struct.fields.items()}


def dict_to_struct(
    data: Mapping[str, Any] | None, struct: struct_pb2.Struct | None = None
) -> struct_pb2.Struct:
    """A JSON object as a ``Struct``; raises ``TypeError``/``ValueError`` for what JSON cannot hold."""
    target = struct if struct is not None else struct_pb2.Struct()
    if data:
        target.update(data)
    return target


def check_depth(value: Any, what: str) -> None:
    """``ValueError`` naming where ``value`` nests objects and lists deeper than the engine takes
    (``Limits.MAX_PAYLOAD_DEPTH``), so the call is not even sent."""
    stack: list[tuple[Any, str, int]] = [(value, what, 1)]
    while stack:
        item, path, depth = stack.pop()
        if depth > Limits.MAX_PAYLOAD_DEPTH:
            raise _too_deep(path)
        pairs = item.items() if isinstance(item, Mapping) else enumerate(item)
        for key, child in pairs:
            if isinstance(child, Mapping | list | tuple):
                where = f"{path}[{key}]" if isinstance(item, list | tuple) else f"{path}.{key}"
                stack.append((child, where, depth + 1))


def _too_deep(path: str) -> ValueError:
    where = path if len(path) <= 200 else path[:200] + "…"
    return ValueError(
        f"{where} nests objects and lists deeper than {Limits.MAX_PAYLOAD_DEPTH} levels, "
        "more than the engine takes"
    )


def _check_json(value: Any, path: str, depth: int = 1) -> Any:
    """``value`` if JSON can hold it (tuples become lists), else a ``TypeError`` naming where (or a
    ``ValueError`` where it nests too deep)."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{path} is {value!r}, which JSON cannot hold")
        return value
    if depth > Limits.MAX_PAYLOAD_DEPTH and isinstance(value, Mapping | list | tuple):
        raise _too_deep(path)
    if isinstance(value, int):
        # The wire holds JSON numbers as doubles: beyond them an integer cannot be sent at all.
        if abs(value) > _MAX_DOUBLE_INT:
            raise ValueError(f"{path} is an integer too large for a JSON number (a double)")
        return value
    if isinstance(value, Mapping):
        out: JsonObject = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(
                    f"{path} has a key {key!r} of type {type(key).__name__}; JSON keys are strings"
                )
            out[key] = _check_json(item, f"{path}.{key}", depth + 1)
        return out
    if isinstance(value, list | tuple):
        return [_check_json(item, f"{path}[{index}]", depth + 1) for index, item in enumerate(value)]
    raise TypeError(f"{path} is a {type(value).__name__} ({value!r:.80}), which is not JSON-serializable")


def normalize_object(value: Any, what: str = "the result") -> JsonObject | None:
    """A JSON object for ``value``: dicts as they are, other JSON values as ``{"value": ...}``.

    Raises ``TypeError`` or ``ValueError`` naming the offending part when JSON cannot hold it.
    """
    if value is None:
        return None
    checked = _check_json(value, what)
    if isinstance(checked, dict):
        return checked
    return {VALUE_KEY: checked}


def encode_variable(value: Any) -> str:
    """A context variable as the string the engine stores (JSON for anything but a string)."""
    if isinstance(value, str):
        return value
    return json.dumps(_check_json(value, "the variable"), separators=(",", ":"))


def timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment if moment.tzinfo else moment.replace(tzinfo=UTC))
    return stamp


def from_timestamp(stamp: timestamp_pb2.Timestamp) -> datetime | None:
    """The moment a ``Timestamp`` holds (UTC), or None when it is unset."""
    if stamp.seconds == 0 and stamp.nanos == 0:
        return None
    return stamp.ToDatetime(tzinfo=UTC)


def duration(seconds: float | timedelta) -> duration_pb2.Duration:
    """A ``Duration``; ``ValueError`` for NaN, an infinity, or more seconds than a duration can hold."""
    value = duration_pb2.Duration()
    if isinstance(seconds, timedelta):
        value.FromTimedelta(seconds)
        return value
    if not math.isfinite(seconds) or abs(seconds) >= _MAX_DURATION_SECONDS:
        raise ValueError(f"{seconds!r} seconds is not a duration (at most {_MAX_DURATION_SECONDS})")
    value.FromTimedelta(timedelta(seconds=seconds))
    return value
