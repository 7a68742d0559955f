"""Plain-text rendering of jobs, events and logs for the CLI."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from jobwarden.contract import (
    TERMINAL_STATUSES,
    ErrorKind,
    ExecutionMode,
    JobEventType,
    JobStatus,
    LockMode,
    StepStatus,
    WorkflowRunStatus,
)
from jobwarden.v1 import cluster_service_pb2, job_pb2
from jobwarden.wire import message_json, struct_to_dict, timestamp_datetime

__all__ = [
    "ago",
    "engine_role",
    "event_line",
    "job_detail",
    "job_rows",
    "lock_mode_name",
    "message_json",
    "run_status_name",
    "status_name",
    "step_status_name",
    "table",
    "until",
]


def _name(enum: type[Any], value: int) -> str:
    try:
        return str(enum(value).name)
    except ValueError:
        return "-" if value == 0 else str(value)


def status_name(value: int) -> str:
    return _name(JobStatus, value)


def run_status_name(value: int) -> str:
    """``"COMPLETED"`` for ``WORKFLOW_RUN_STATUS_COMPLETED``; the number for one this SDK does not know."""
    return _name(WorkflowRunStatus, value)


def step_status_name(value: int) -> str:
    """``"SKIPPED"`` for ``STEP_STATUS_SKIPPED``; the number for one this SDK does not know."""
    return _name(StepStatus, value)


def lock_mode_name(mode: int) -> str:
    """``"SHARED"`` or ``"EXCLUSIVE"``; the number for a mode this SDK does not know (0 too)."""
    try:
        return LockMode(mode).name
    except ValueError:
        return str(mode)


def ago(stamp: Any, now: datetime | None = None) -> str:
    """``"12s"``, ``"5m"``, ``"3h"``, ``"2d"`` since a Timestamp, or ``"-"`` when unset."""
    moment = timestamp_datetime(stamp)
    if moment is None:
        return "-"
    seconds = int(((now or datetime.now(UTC)) - moment).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if abs(seconds) >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def until(stamp: Any, now: datetime | None = None) -> str:
    """``"in 4s"`` to a Timestamp ahead, ``"3s ago"`` for one passed, ``"-"`` when unset."""
    moment = timestamp_datetime(stamp)
    if moment is None:
        return "-"
    seconds = (moment - (now or datetime.now(UTC))).total_seconds()
    text = _span(abs(seconds))
    return f"in {text}" if seconds > 0 else f"{text} ago"


def _span(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:.1f}s" if seconds < 10 else f"{int(seconds)}s"


def engine_role(value: int) -> str:
    """``leader``, ``standby``, ``fenced`` (the number of a role this SDK does not know)."""
    try:
        name: str = cluster_service_pb2.EngineRole.Name(value)  # type: ignore[arg-type]
    except ValueError:
        return str(value)
    return name.removeprefix("ENGINE_ROLE_").lower()


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [len(header) for header in headers]
    for row in rows:
        widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return "\n".join(lines)


def job_rows(jobs: Sequence[job_pb2.Job]) -> tuple[list[str], list[list[str]]]:
    headers = ["ID", "ACTION", "STATUS", "PROGRESS", "ATTEMPT", "AGE", "MESSAGE"]
    rows = []
    for job in jobs:
        message = (
            job.error.message
            if JobStatus(job.status) is JobStatus.FAILED and job.error.message
            else job.message
        )
        rows.append(
            [
                job.id,
                job.action,
                status_name(job.status),
                f"{job.progress}%",
                str(job.attempt),
                ago(job.created_at),
                message.replace("\n", " ")[:60],
            ]
        )
    return headers, rows


def job_detail(job: job_pb2.Job) -> str:
    """A job as a person reads it: one field a line, the error and its trace last."""
    lines = [
        f"id:          {job.id}",
        f"action:      {job.action}",
        f"status:      {status_name(job.status)}" + _status_note(job),
        f"progress:    {job.progress}%" + (f"  {job.message}" if job.message else ""),
        f"attempt:     {job.attempt}" + (f" ({_name(ExecutionMode, job.mode)})" if job.mode else ""),
        f"priority:    {job.priority}",
    ]
    if job.worker_id:
        lines.append(f"worker:      {job.worker_id}")
    if job.step and JobStatus(job.status) not in TERMINAL_STATUSES:
        lines.append(f"step:        {job.step}")
    if job.labels:
        lines.append("labels:      " + ", ".join(f"{k}={v}" for k, v in sorted(job.labels.items())))
    if job.locks:
        held = " (held)" if job.locks_held else ""
        lines.append(
            "locks:       "
            + ", ".join(f"{lock.resource}:{_name(LockMode, lock.mode)}" for lock in job.locks)
            + held
        )
    if job.workflow_run_id:
        lines.append(
            f"in run:      {job.workflow_run_id} step {job.workflow_step} (work order {job.work_order_id})"
        )
    if job.correlation_id:
        lines.append(f"correlation: {job.correlation_id}")
    if job.idempotency_key:
        lines.append(f"idempotency: {job.idempotency_key}")
    for label, stamp in (
        ("created", job.created_at),
        ("started", job.started_at),
        ("finished", job.finished_at),
        ("run at", job.run_at),
    ):
        moment = timestamp_datetime(stamp)
        if moment is not None:
            lines.append(f"{label + ':':<12} {moment.isoformat(timespec='seconds')} ({ago(stamp)} ago)")
    lines.append(f"input:       {json.dumps(struct_to_dict(job.input), sort_keys=True)}")
    if job.HasField("result"):
        lines.append(f"result:      {json.dumps(struct_to_dict(job.result), sort_keys=True)}")
    if job.job_variables:
        lines.append(f"variables:   {json.dumps(dict(job.job_variables), sort_keys=True)}")
    if job.workflow_variables:
        lines.append(f"workflow:    {json.dumps(dict(job.workflow_variables), sort_keys=True)}")
    if job.checkpoint.completed_steps:
        lines.append("steps done:  " + ", ".join(step.name for step in job.checkpoint.completed_steps))
    if len(job.attempts) > 1:
        lines.append("attempts:")
        for attempt in job.attempts:
            error = (
                f"  {_name(ErrorKind, attempt.error.kind)}: {attempt.error.message}"
                if attempt.error.kind
                else ""
            )
            lines.append(
                f"  #{attempt.number} {status_name(attempt.status)} {_name(ExecutionMode, attempt.mode)}"
                f" {attempt.worker_id}{error}"
            )
    if job.error.kind or job.error.message:
        lines.append(f"error:       {_name(ErrorKind, job.error.kind)}: {job.error.message}")
        if job.error.step:
            lines.append(f"  in step:   {job.error.step}")
        if job.error.stack_trace:
            lines.append("stack trace:")
            lines.extend("  " + line for line in job.error.stack_trace.rstrip().splitlines())
    return "\n".join(lines)


def _status_note(job: job_pb2.Job) -> str:
    note = ""
    # A failure's reason is printed with the error below; say it once.
    if job.status_reason and not (job.error.message and job.error.message in job.status_reason):
        note += f" ({job.status_reason})"
    if job.cancel_requested and JobStatus(job.status) not in TERMINAL_STATUSES:
        note += " (cancel requested)"
    return note


def event_line(event: job_pb2.JobEvent) -> str:
    job = event.job
    moment = timestamp_datetime(event.time)
    when = moment.astimezone().strftime("%H:%M:%S.%f")[:-3] if moment else "-"
    kind = _name(JobEventType, event.type)
    change = status_name(job.status)
    if JobEventType(event.type) is JobEventType.STATUS_CHANGED and event.previous_status:
        change = f"{status_name(event.previous_status)}->{change}"
    detail = f"{job.progress}%"
    if job.step and JobStatus(job.status) is JobStatus.RUNNING:
        detail += f" [{job.step}]"
    if job.message:
        detail += f" {job.message}"
    if event.reason:
        detail += f" ({event.reason})"
    if JobStatus(job.status) is JobStatus.FAILED and job.error.message:
        detail += f" {_name(ErrorKind, job.error.kind)}: {job.error.message}"
    if event.actor and event.actor != "engine":
        # Who did it: the audit trail of cancels and retries (and which worker reported what).
        detail += f"  by {event.actor}"
    return f"{event.sequence:>8}  {when}  {event.job_id}  {job.action:<16} {kind:<16} {change:<24} {detail}"
