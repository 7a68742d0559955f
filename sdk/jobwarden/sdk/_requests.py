"""Building API requests from plain Python values (shared by the clients and the CLI)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from jobwarden.contract import ErrorKind, JobStatus, LockMode, StartTimeoutAction
from jobwarden.sdk._convert import check_depth, dict_to_struct, duration, timestamp
from jobwarden.sdk._tracing import current_trace_context
from jobwarden.v1 import job_pb2, job_service_pb2

__all__ = ["LockSpec", "lock_request", "retry_policy", "statuses", "submit_request", "timeouts"]

#: a lock: a ``LockRequest``, ``"resource"`` (EXCLUSIVE), ``"resource:MODE"`` or ``(resource, mode)``
LockSpec = job_pb2.LockRequest | str | tuple[str, LockMode | str]
Seconds = float | timedelta


def lock_request(spec: LockSpec) -> job_pb2.LockRequest:
    """A ``LockRequest`` from ``"asset:1:SHARED"``, ``"asset:1"`` (EXCLUSIVE) or a pair.

    Raises ``ValueError`` for an empty resource or an unknown mode.
    """
    if isinstance(spec, job_pb2.LockRequest):
        return spec
    if isinstance(spec, str):
        resource, _, last = spec.rpartition(":")
        if resource and last.upper() in LockMode.__members__:
            mode: LockMode | str = last
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


def timeouts(spec: job_pb2.JobTimeouts | Mapping[str, Any] | None) -> job_pb2.JobTimeouts | None:
    """``JobTimeouts`` from ``{"heartbeat": 30, "takeover": 60, "execution": 600, "start": {...}}``
    (seconds or timedeltas); ``start`` takes ``duration``, ``action`` (FAIL/RETRY/NONE),
    ``retry_interval``, ``retry_backoff_exponential``, ``retry_count``."""
    if spec is None or isinstance(spec, job_pb2.JobTimeouts):
        return spec
    out = job_pb2.JobTimeouts()
    for name in ("heartbeat", "takeover", "execution"):
        if spec.get(name) is not None:
            getattr(out, name).CopyFrom(duration(_seconds(spec[name])))
    start = spec.get("start")
    if start is not None:
        if isinstance(start, job_pb2.StartTimeout):
            out.start.CopyFrom(start)
        else:
            if start.get("duration") is not None:
                out.start.duration.CopyFrom(duration(_seconds(start["duration"])))
            if start.get("action") is not None:
                action = start["action"]
                action = StartTimeoutAction[action.upper()] if isinstance(action, str) else action
                out.start.action = job_pb2.StartTimeoutAction.ValueType(int(action))
            if start.get("retry_interval") is not None:
                out.start.retry_interval.CopyFrom(duration(_seconds(start["retry_interval"])))
            out.start.retry_backoff_exponential = bool(start.get("retry_backoff_exponential", False))
            out.start.retry_count = int(start.get("retry_count", 0))
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
        max_attempts=int(spec.get("max_attempts", 0)),
        backoff_coefficient=float(spec.get("backoff_coefficient", 0.0)),
    )
    for name in ("initial_interval", "max_interval"):
        if spec.get(name) is not None:
            getattr(out, name).CopyFrom(duration(_seconds(spec[name])))
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
    """A ``SubmitJobRequest``; raises ``TypeError``/``ValueError`` for input JSON cannot hold, or
    that nests deeper than the engine takes.

    ``trace_context`` None takes the caller's OpenTelemetry context (none without an active span).
    """
    if input is not None and not isinstance(input, Mapping):
        raise TypeError(f"a job's input must be a JSON object (a dict), got {type(input).__name__}")
    if input:
        check_depth(input, "input")
    request = job_service_pb2.SubmitJobRequest(
        action=action,
        priority=priority,
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
