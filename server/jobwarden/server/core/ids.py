"""Job ids: UUID version 7, so ids sort by creation time and "newest first" is "largest id first"."""

from __future__ import annotations

import os
import re
import time
import uuid

from .errors import InvalidArgument

__all__ = ["MIN_ABBREVIATION", "id_abbreviation", "new_job_id", "parse_job_id"]

#: the fewest characters of an id that name a job: the console shows the last 8
MIN_ABBREVIATION = 8
_ID_CHARACTERS = re.compile(r"^[0-9a-f-]+$")

_last_ms = 0
_counter = 0
#: random bytes drawn in bulk: one ``os.urandom`` call per 512 ids, not one each (each call is a
#: syscall that drops the GIL, and getting it back from a busy writer thread can take milliseconds)
_RANDOM_CHUNK = 8 * 512
_random = b""
_random_at = 0


def _forget_random() -> None:
    """A forked child draws its own bytes (else parent and child would make the same ids)."""
    global _random, _random_at
    _random, _random_at = b"", 0


os.register_at_fork(after_in_child=_forget_random)


def new_job_id() -> str:
    """A UUIDv7 string; ids made by one engine are strictly increasing, even within a millisecond."""
    global _last_ms, _counter, _random, _random_at
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
    if _random_at >= len(_random):
        _random = os.urandom(_RANDOM_CHUNK)
        _random_at = 0
    rand_b = int.from_bytes(_random[_random_at : _random_at + 8], "big") & ((1 << 62) - 1)
    _random_at += 8
    value = (ms << 80) | (0x7 << 76) | (_counter << 64) | (0b10 << 62) | rand_b
    text = f"{value:032x}"  # what str(uuid.UUID(int=value)) gives, without building the UUID
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


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


def id_abbreviation(text: str) -> str | None:
    """None for a full job id; for a part of one (its start or its end, as the console shows the last
    8 characters), that part in lower case; InvalidArgument for anything else."""
    if not text:
        raise InvalidArgument("job_id is required")
    if len(text) > 64:
        raise InvalidArgument("malformed job_id: too long")
    try:
        uuid.UUID(text)
        return None
    except ValueError:
        pass
    part = text.strip().lower()
    if not _ID_CHARACTERS.match(part):
        raise InvalidArgument(f"malformed job_id {text!r}: expected a UUID, or its first or last characters")
    if len(part) < MIN_ABBREVIATION:
        raise InvalidArgument(
            f"job id {text!r} is too short: give the whole id, or at least {MIN_ABBREVIATION} of its "
            "first or last characters"
        )
    return part
