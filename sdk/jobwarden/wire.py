"""The one spelling of jobwarden's wire shapes: ``Struct``, ``Timestamp`` and ``Duration`` to and from
Python, and durations as people write them (``30``, ``250ms``, ``5m``, ``1h30m``).

The server's servicers, the SDK, the CLI and the console all convert through here, so a number, a
moment or a timeout reads the same everywhere. This module imports only protobuf's well-known types
and the standard library (no grpc, no generated stubs); the engine's domain core does not import it.

Rules kept here, and nowhere else:

* **Numbers in a Struct** are doubles on the wire. An integral one below 2**53 comes back as an
  ``int`` (what was sent, and what ``json.loads`` gives); others stay ``float``.
* **Times and durations** are rounded to the nearest nanosecond, ties to even (Python's ``round``),
  carrying into the seconds. A ``Timestamp``'s nanos are never negative (it floors); a ``Duration``'s
  nanos take the sign of its seconds (it truncates toward zero), as protobuf requires.
* **Limits** are protobuf's: a ``Duration`` holds at most ±315,576,000,000 seconds (about 10,000
  years), a ``Timestamp`` the years 1 to 9999. Beyond them, or for NaN or an infinity, the builders
  raise ``ValueError`` naming the value (``TypeError`` for what is not a number, a bool included);
  nothing is built.
* An unset ``Timestamp`` (all zero) reads as ``0.0`` seconds or as ``None`` for a datetime.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf import duration_pb2, json_format, struct_pb2, timestamp_pb2
from google.protobuf.message import Message

__all__ = [
    "MAX_DURATION_SECONDS",
    "MAX_TIMESTAMP_SECONDS",
    "MIN_TIMESTAMP_SECONDS",
    "NONE",
    "dict_to_struct",
    "duration",
    "duration_seconds",
    "format_duration",
    "integral",
    "message_json",
    "parse_duration",
    "parse_optional_duration",
    "struct_to_dict",
    "timestamp",
    "timestamp_datetime",
    "timestamp_seconds",
    "value_to_python",
]

#: the longest ``Duration`` protobuf allows, either way (10,000 years)
MAX_DURATION_SECONDS = 315_576_000_000
#: 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z, the bounds of a ``Timestamp``
MIN_TIMESTAMP_SECONDS = -62_135_596_800
MAX_TIMESTAMP_SECONDS = 253_402_300_799

#: doubles hold every integer below this exactly; beyond it an "integer" may be a rounded one
_EXACT_INTEGERS = 2**53
_NANOS = 1_000_000_000

# -- Struct and Value ------------------------------------------------------------------------------


def value_to_python(value: struct_pb2.Value) -> Any:
    """A ``Value`` as plain Python (integral numbers as ``int``)."""
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return value.string_value
    if kind == "number_value":
        number = value.number_value
        if number.is_integer() and abs(number) < _EXACT_INTEGERS:
            return int(number)
        return number
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return struct_to_dict(value.struct_value)
    if kind == "list_value":
        return [value_to_python(item) for item in value.list_value.values]
    return None


def struct_to_dict(struct: struct_pb2.Struct) -> dict[str, Any]:
    """A ``Struct`` as a plain dict (integral numbers as ``int``)."""
    return {key: value_to_python(value) for key, value in struct.fields.items()}


def dict_to_struct(
    data: Mapping[str, Any] | None, into: struct_pb2.Struct | None = None
) -> struct_pb2.Struct:
    """A JSON object as a ``Struct`` (``into`` when given, filled in place); ``TypeError`` or
    ``ValueError`` for what a Struct cannot hold."""
    target = into if into is not None else struct_pb2.Struct()
    if data:
        target.update(data)
    return target


def integral(value: Any) -> Any:
    """A JSON value with its integral doubles below 2**53 as ``int`` (as ``struct_to_dict`` gives them)."""
    if isinstance(value, float):
        return int(value) if value.is_integer() and abs(value) < _EXACT_INTEGERS else value
    if isinstance(value, dict):
        return {key: integral(item) for key, item in value.items()}
    if isinstance(value, list):
        return [integral(item) for item in value]
    return value


def message_json(message: Message) -> dict[str, Any]:
    """A message in proto3's JSON mapping (field names as in the .proto), integers kept integers:
    a Struct's ``{"asset_id": 42}`` reads 42, not 42.0; the API's own double fields read the same."""
    result: dict[str, Any] = integral(json_format.MessageToDict(message, preserving_proto_field_name=True))
    return result


# -- Timestamp and Duration --------------------------------------------------------------------------


def _seconds_and_nanos(seconds: float, *, floor: bool) -> tuple[int, int]:
    whole = math.floor(seconds) if floor else math.trunc(seconds)
    # seconds - whole is exact for a double; only the scaling to nanoseconds rounds.
    nanos = round((seconds - whole) * _NANOS)
    if abs(nanos) >= _NANOS:
        whole += 1 if nanos > 0 else -1
        nanos = 0
    return whole, nanos


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"a {what} takes a number of seconds, not {type(value).__name__} {value!r:.80}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise ValueError(f"{value!r:.80} seconds is not a {what}")
    return number


def timestamp(
    moment: float | datetime, into: timestamp_pb2.Timestamp | None = None
) -> timestamp_pb2.Timestamp:
    """A ``Timestamp`` for seconds since the epoch or a datetime (a naive one is taken as UTC),
    nearest nanosecond; ``into`` is filled in place when given."""
    if isinstance(moment, datetime):
        aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        delta = aware - datetime(1970, 1, 1, tzinfo=UTC)
        whole = delta.days * 86400 + delta.seconds
        nanos = delta.microseconds * 1000
    else:
        number = _number(moment, "timestamp")
        if not MIN_TIMESTAMP_SECONDS <= number < MAX_TIMESTAMP_SECONDS + 1:
            raise ValueError(
                f"{moment!r} seconds since 1970 is outside the years 1 to 9999 a timestamp holds"
            )
        whole, nanos = _seconds_and_nanos(number, floor=True)
    target = into if into is not None else timestamp_pb2.Timestamp()
    target.seconds = whole
    target.nanos = nanos
    return target


def timestamp_seconds(stamp: timestamp_pb2.Timestamp) -> float:
    """Seconds since the epoch; ``0.0`` for an unset timestamp."""
    return stamp.seconds + stamp.nanos / _NANOS


def timestamp_datetime(stamp: timestamp_pb2.Timestamp) -> datetime | None:
    """The moment (UTC, to the microsecond a datetime holds), or None when the timestamp is unset."""
    if stamp.seconds == 0 and stamp.nanos == 0:
        return None
    return stamp.ToDatetime(tzinfo=UTC)


def duration(seconds: float | timedelta, into: duration_pb2.Duration | None = None) -> duration_pb2.Duration:
    """A ``Duration`` for seconds or a timedelta, nearest nanosecond; ``ValueError`` for NaN, an
    infinity, or more than ``MAX_DURATION_SECONDS`` either way. ``into`` is filled in place when given."""
    if isinstance(seconds, timedelta):
        whole = seconds.days * 86400 + seconds.seconds
        nanos = seconds.microseconds * 1000
        if whole < 0 and nanos:
            # timedelta keeps its microseconds positive; a Duration's nanos share the sign of its seconds.
            whole, nanos = whole + 1, nanos - _NANOS
    else:
        number = _number(seconds, "duration")
        whole, nanos = _seconds_and_nanos(number, floor=False)
    if abs(whole) > MAX_DURATION_SECONDS or (abs(whole) == MAX_DURATION_SECONDS and nanos):
        raise ValueError(
            f"{seconds!r} seconds is not a duration (at most {MAX_DURATION_SECONDS} seconds either way)"
        )
    target = into if into is not None else duration_pb2.Duration()
    target.seconds = whole
    target.nanos = nanos
    return target


def duration_seconds(value: duration_pb2.Duration) -> float:
    return value.seconds + value.nanos / _NANOS


# -- durations as people write them ------------------------------------------------------------------

#: the words a duration may be written with, and their seconds
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)"
_BARE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*")
_PARTS = re.compile(rf"\s*(?:{_PART}\s*)+")
_ONE_PART = re.compile(_PART)
#: what ``parse_optional_duration`` reads as "no duration"
NONE = "none"
_EXAMPLES = "e.g. 30, 250ms, 30s, 5m, 2h, 1h30m, 1d"


def parse_duration(text: str) -> float:
    """Seconds from ``30`` (seconds), ``250ms``, ``30s``, ``5m``, ``2h``, ``1d`` or a sum of them
    written together (``1h30m``, ``2m 30s``). ``ValueError`` says what it takes; a duration written
    this way is never negative."""
    return _parse(text, _EXAMPLES)


def parse_optional_duration(text: str) -> float | None:
    """``parse_duration``, or None for ``none`` (any case): a setting taken away."""
    if text.strip().lower() == NONE:
        return None
    return _parse(text, f"{_EXAMPLES}, or {NONE}")


def _parse(text: str, examples: str) -> float:
    bare = _BARE.fullmatch(text)
    if bare:
        seconds = float(bare.group(1))
    elif _PARTS.fullmatch(text):
        seconds = sum(float(number) * _UNITS[unit] for number, unit in _ONE_PART.findall(text))
    else:
        raise ValueError(f"{text!r} is not a duration ({examples})")
    if not math.isfinite(seconds):
        raise ValueError(f"{text!r:.80} is too long to be a duration")
    return seconds


def format_duration(seconds: float) -> str:
    """A duration as ``parse_duration`` reads it back: in the largest unit it is a whole number of
    (``5m``, ``90m`` for 5400, ``1d``), in seconds otherwise (``1.5s``), in ms below a second."""
    if seconds and seconds < 1:
        return f"{seconds * 1000:g}ms"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"
