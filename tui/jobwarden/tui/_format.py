"""Plain-text formatting shared by the screens: ages, progress bars, status names, ids."""

from __future__ import annotations

import json
from collections.abc import Mapping

from google.protobuf import struct_pb2
from jobwarden.contract import ErrorKind, JobStatus, LockMode
from jobwarden.wire import struct_to_dict
from rich.cells import cell_len, set_cell_size

#: how each status reads in a chip; WAITING_FOR_LOCK is shortened so every chip fits one width
STATUS_LABEL: Mapping[JobStatus, str] = {
    JobStatus.QUEUED: "QUEUED",
    JobStatus.DELAYED: "DELAYED",
    JobStatus.WAITING_FOR_LOCK: "WAIT LOCK",
    JobStatus.RUNNING: "RUNNING",
    JobStatus.TIMED_OUT: "TIMED OUT",
    JobStatus.COMPLETED: "COMPLETED",
    JobStatus.FAILED: "FAILED",
    JobStatus.CANCELLED: "CANCELLED",
    JobStatus.REJECTED: "REJECTED",
}

#: the CSS class suffix of each status (``status--running``)
STATUS_CLASS: Mapping[JobStatus, str] = {status: status.name.lower() for status in JobStatus}

_BLOCKS = " ▏▎▍▌▋▊▉█"


def status_of(value: int) -> JobStatus | None:
    """The contract status for a proto enum value, ``None`` for UNSPECIFIED or unknown values."""
    try:
        return JobStatus(value)
    except ValueError:
        return None


def status_label(value: int) -> str:
    status = status_of(value)
    return STATUS_LABEL[status] if status is not None else "?"


def error_kind_label(value: int) -> str:
    try:
        return ErrorKind(value).name
    except ValueError:
        return ""


def lock_mode_label(value: int) -> str:
    try:
        return LockMode(value).name
    except ValueError:
        return "?"


def short_id(job_id: str) -> str:
    """The last 8 characters of an id: UUIDv7s made close together share their first ones."""
    return job_id[-8:]


def format_duration(value: float) -> str:
    """A compact duration: ``0s``, ``42s``, ``3m07s``, ``2h05m``, ``3d04h``."""
    total = max(0, int(value))
    if total < 60:
        return f"{total}s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def format_time(value: float, now: float) -> str:
    """A time as "12s ago"; an em dash when unset."""
    if not value:
        return "—"
    if value > now:
        return f"in {format_duration(value - now)}"
    return f"{format_duration(now - value)} ago"


def progress_bar(percent: int, width: int) -> str:
    """A bar of ``width`` cells with eighth-cell resolution."""
    percent = min(100, max(0, percent))
    eighths = round(percent * width * 8 / 100)
    full, part = divmod(eighths, 8)
    bar = "█" * full
    if full < width:
        bar += _BLOCKS[part] if part else " "
        bar += " " * (width - full - 1)
    return bar


def struct_to_text(value: struct_pb2.Struct, *, present: bool = True) -> str:
    """A Struct as indented JSON, or "(none)"."""
    if not present or not value.fields:
        return "(none)"
    data = struct_to_dict(value)
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False)


def truncate(text: str, width: int) -> str:
    """``text`` on one line, cut to ``width`` cells with an ellipsis."""
    text = text.replace("\n", " ").replace("\r", " ")
    if cell_len(text) <= width:
        return text
    if width <= 1:
        return set_cell_size(text, max(0, width))
    return set_cell_size(text, width - 1) + "…"
