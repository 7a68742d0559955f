"""Building API requests from plain Python values (shared by the clients and the CLI)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from google.protobuf import duration_pb2
from jobwarden.contract import ErrorKind, JobStatus, Limits, LockMode, StartTimeoutAction
from jobwarden.sdk._convert import check_input
from jobwarden.sdk._tracing import current_trace_context
from jobwarden.v1 import job_pb2, job_service_pb2
from jobwarden.wire import dict_to_struct, duration, timestamp

__all__ = [
    "LockSpec",
    "int32",
    "int64",
    "lock_request",
    "retry_policy",
    "statuses",
    "submit_request",
    "timeouts",
]

#: a lock: a ``LockRequest``, ``"resource"`` (EXCLUSIVE), ``"resource:MODE"`` or ``(resource, mode)``
LockSpec = job_pb2.LockRequest | str | tuple[str, LockMode | str]
Seconds = float | timedelta


#: a trailing ``:WORD`` in capitals reads as a mode: one that is not SHARED or EXCLUSIVE is a typo
_MODE_LIKE = re.compile(r"^[A-Z][A-Z_]+$")


def lock_request(spec: LockSpec) -> job_pb2.LockRequest:
    """A ``LockRequest`` from ``"asset:1:SHARED"``, ``"asset:1"`` (EXCLUSIVE) or a pair.

    Resources may contain colons: only a last part ``:SHARED`` or ``:EXCLUSIVE`` (any case) is a
    mode. A last part in capitals that is no mode (``"asset:1:WRITE"``) is refused as a mistyped
    mode; a resource really named so takes its mode explicitly (``"asset:1:WRITE:EXCLUSIVE"``).
    Raises ``ValueError`` for an empty resource or an unknown mode.
    """
    if isinstance(spec, job_pb2.LockRequest):
        return spec
    if isinstance(spec, str):
        resource, _, last = spec.rpartition(":")
        if resource and last.upper() in LockMode.__members__:
            mode: LockMode | str = last
        elif resource and _MODE_LIKE.match(last):
            raise ValueError(
                f"unknown lock mode {last!r} in {spec!r}: use SHARED or EXCLUSIVE "
                f"(for a resource named {spec!r}, give its mode: {spec + ':EXCLUSIVE'!r})"
            )
        else:
            resource, mode = spec, LockMode.EXCLUSIVE
    else:
        resource, mode = spec
    if not resource:
        raise ValueError(f"a lock needs a resource name, got {spec!r}")
    if isinstance(mode, str):
        try:
            mode = LockMode[mode.upper()]
        except KeyError:
            raise ValueError(f"unknown lock mode {mode!r}: use SHARED or EXCLUSIVE") from None
    return job_pb2.LockRequest(resource=resource, mode=job_pb2.LockMode.ValueType(mode))


_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)


def int32(value: int, what: str, low: int | None = None, high: int | None = None) -> int:
    """``value`` if the wire's 32-bit field holds it, else ``ValueError`` naming the field and the range
    the engine takes (``low``..``high`` when given): protobuf's own "Value out of range" names neither."""
    return _checked_int(value, what, _INT32, low, high)


def int64(value: int, what: str, low: int | None = None, high: int | None = None) -> int:
    """Like ``int32``, for a 64-bit field."""
    return _checked_int(value, what, _INT64, low, high)


def _checked_int(value: int, what: str, wire: tuple[int, int], low: int | None, high: int | None) -> int:
    value = int(value)
    if not wire[0] <= value <= wire[1]:
        lowest = wire[0] if low is None else low
        highest = wire[1] if high is None else high
        raise ValueError(f"{what} must be between {lowest} and {highest}, got {value}")
    return value


def statuses(values: Iterable[JobStatus | str | int] | None) -> list[job_pb2.JobStatus.ValueType]:
    """Job statuses from enum members, numbers or names (``"failed"``); ``ValueError`` when unknown."""
    out: list[job_pb2.JobStatus.ValueType] = []
    for value in values or ():
        if isinstance(value, str):
            try:
                value = JobStatus[value.strip().upper()]
            except KeyError:
                known = ", ".join(status.name for status in JobStatus)
                raise ValueError(f"unknown status {value!r}: use one of {known}") from None
        out.append(job_pb2.JobStatus.ValueType(int(JobStatus(value))))
    return out


def _seconds(value: Seconds) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def _duration(value: Seconds, what: str) -> duration_pb2.Duration:
    try:
        return duration(_seconds(value))
    except ValueError as error:
        raise ValueError(f"{what}: {error}") from None


def timeouts(spec: job_pb2.JobTimeouts | Mapping[str, Any] | None) -> job_pb2.JobTimeouts | None:
    """``JobTimeouts`` from ``{"heartbeat": 30, "takeover": 60, "execution": 600, "start": {...}}``
    (seconds or timedeltas); ``start`` takes ``duration``, ``action`` (FAIL/RETRY/NONE),
    ``retry_interval``, ``retry_backoff_exponential``, ``retry_count``."""
    if spec is None or isinstance(spec, job_pb2.JobTimeouts):
        return spec
    out = job_pb2.JobTimeouts()
    for name in ("heartbeat", "takeover", "execution"):
        if spec.get(name) is not None:
            getattr(out, name).CopyFrom(_duration(spec[name], f"timeouts.{name}"))
    start = spec.get("start")
    if start is not None:
        if isinstance(start, job_pb2.StartTimeout):
            out.start.CopyFrom(start)
        else:
            if start.get("duration") is not None:
                out.start.duration.CopyFrom(_duration(start["duration"], "timeouts.start.duration"))
            if start.get("action") is not None:
                action = start["action"]
                action = StartTimeoutAction[action.upper()] if isinstance(action, str) else action
                out.start.action = job_pb2.StartTimeoutAction.ValueType(int(action))
            if start.get("retry_interval") is not None:
                out.start.retry_interval.CopyFrom(
                    _duration(start["retry_interval"], "timeouts.start.retry_interval")
                )
            out.start.retry_backoff_exponential = bool(start.get("retry_backoff_exponential", False))
            out.start.retry_count = int32(start.get("retry_count", 0), "start.retry_count", 0)
    unknown = set(spec) - {"heartbeat", "takeover", "execution", "start"}
    if unknown:
        raise ValueError(f"unknown timeout(s): {', '.join(sorted(unknown))}")
    return out


def retry_policy(spec: job_pb2.RetryPolicy | Mapping[str, Any] | None) -> job_pb2.RetryPolicy | None:
    """``RetryPolicy`` from ``{"max_attempts": 3, "initial_interval": 1, "backoff_coefficient": 2,
    "max_interval": 60, "non_retryable_kinds": ["JOB_ERROR"]}``."""
    if spec is None or isinstance(spec, job_pb2.RetryPolicy):
        return spec
    out = job_pb2.RetryPolicy(
        max_attempts=int32(
            spec.get("max_attempts", 0), "retry_policy.max_attempts", 1, Limits.MAX_RETRY_ATTEMPTS
        ),
        backoff_coefficient=float(spec.get("backoff_coefficient", 0.0)),
    )
    for name in ("initial_interval", "max_interval"):
        if spec.get(name) is not None:
            getattr(out, name).CopyFrom(_duration(spec[name], f"retry_policy.{name}"))
    for kind in spec.get("non_retryable_kinds", ()):
        member = ErrorKind[kind.upper()] if isinstance(kind, str) else ErrorKind(kind)
        out.non_retryable_kinds.append(job_pb2.ErrorKind.ValueType(int(member)))
    return out


def submit_request(
    action: str,
    input: Mapping[str, Any] | None = None,
    *,
    priority: int = 0,
    labels: Mapping[str, str] | None = None,
    locks: Iterable[LockSpec] | None = None,
    run_at: datetime | None = None,
    correlation_id: str = "",
    idempotency_key: str = "",
    timeouts: job_pb2.JobTimeouts | Mapping[str, Any] | None = None,
    retry_policy: job_pb2.RetryPolicy | Mapping[str, Any] | None = None,
    workflow_variables: Mapping[str, str] | None = None,
    trace_context: Mapping[str, str] | None = None,
) -> job_service_pb2.SubmitJobRequest:
    """A ``SubmitJobRequest``; raises ``TypeError``/``ValueError`` naming what the wire cannot hold
    (input JSON cannot hold or that nests deeper than the engine takes, a number out of its field's
    range).

    ``trace_context`` None takes the caller's OpenTelemetry context (none without an active span).
    """
    check_input(input, "a job's")
    request = job_service_pb2.SubmitJobRequest(
        action=action,
        priority=int32(priority, "priority", -Limits.MAX_PRIORITY, Limits.MAX_PRIORITY),
        labels=dict(labels or {}),
        locks=[lock_request(lock) for lock in locks or ()],
        correlation_id=correlation_id,
        idempotency_key=idempotency_key,
        workflow_variables=dict(workflow_variables or {}),
        trace_context=current_trace_context() if trace_context is None else dict(trace_context),
    )
    dict_to_struct(input, request.input)
    if run_at is not None:
        request.run_at.CopyFrom(timestamp(run_at))
    built_timeouts = _timeouts(timeouts)
    if built_timeouts is not None:
        request.timeouts.CopyFrom(built_timeouts)
    built_policy = _retry_policy(retry_policy)
    if built_policy is not None:
        request.retry_policy.CopyFrom(built_policy)
    return request


_timeouts = timeouts
_retry_policy = retry_policy
