"""Job ids: UUID version 7, so ids sort by creation time and "newest first" is "largest id first"."""

from __future__ import annotations

import os
import time
import uuid

from .errors import InvalidArgument

__all__ = ["new_job_id", "parse_job_id"]

_last_ms = 0
_counter = 0


def new_job_id() -> str:
    """A UUIDv7 string; ids made by one engine are strictly increasing, even within a millisecond."""
    global _last_ms, _counter
    ms = time.time_ns() // 1_000_000
    if ms <= _last_ms:
        # Same (or an earlier: clock stepped back) millisecond: keep order with the 12-bit counter.
        ms = _last_ms
        _counter += 1
        if _counter >= 1 << 12:
            ms += 1
            _counter = 0
    else:
        _counter = 0
    _last_ms = ms
    rand_b = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms << 80) | (0x7 << 76) | (_counter << 64) | (0b10 << 62) | rand_b
    return str(uuid.UUID(int=value))


def parse_job_id(text: str) -> str:
    """The canonical form of a job id, or InvalidArgument for anything that is not a UUID."""
    if not text:
        raise InvalidArgument("job_id is required")
    if len(text) > 64:
        raise InvalidArgument("malformed job_id: too long")
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise InvalidArgument(f"malformed job_id {text!r}: expected a UUID") from None
