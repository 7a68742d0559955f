"""What the SDK checks before a value goes on the wire: JSON it can hold, depth, the ``{"value": ...}``
wrapping of results. The conversions themselves (Struct, Timestamp, Duration) are ``jobwarden.wire``."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping
from typing import Any

from jobwarden.contract import Limits

__all__ = ["VALUE_KEY", "check_depth", "check_input", "encode_variable", "normalize_object"]

#: the key that wraps a JSON value that is not an object (``{"value": 3}``)
VALUE_KEY = "value"

JsonObject = dict[str, Any]

_MAX_DOUBLE_INT = int(sys.float_info.max)


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


def check_input(value: Any, whose: str) -> None:
    """Refuse a request's ``input`` the wire cannot hold: ``TypeError`` for one that is not a JSON
    object (the message says ``whose`` input: ``"a job's"``) or holds what JSON cannot, ``ValueError``
    for one that nests too deep. None and ``{}`` are no input."""
    if value is not None and not isinstance(value, Mapping):
        raise TypeError(f"{whose} input must be a JSON object (a dict), got {type(value).__name__}")
    if value:
        _check_json(value, "input")


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
