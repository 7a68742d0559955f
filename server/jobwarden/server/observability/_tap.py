"""Following a running engine without changing it: its committed events and its store writes.

The group-commit writer reports every write attempt (``Writer.observe``) with the events it
committed, so metrics, job log lines and trace spans see exactly what was committed, once.
"""

from __future__ import annotations

import logging
from typing import Any

from jobwarden.contract import JobEventType, JobStatus
from jobwarden.server.core import CommitReport, Engine, Event

from ._metrics import EngineMetrics

__all__ = ["observe"]

log = logging.getLogger("jobwarden.observability")
#: one line per job status change: job_id, attempt, action, status, previous status and actor as fields
jobs_log = logging.getLogger("jobwarden.jobs")

#: statuses worth a line at INFO; the others are logged at DEBUG
_NOTABLE = frozenset({JobStatus.TIMED_OUT, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.REJECTED})


def observe(engine: Engine, metrics: EngineMetrics | None = None, job_tracer: Any = None) -> None:
    """Feed ``metrics`` (if any), the ``jobwarden.jobs`` log and ``job_tracer`` (a ``JobTracer``, if
    any: it needs the tracing extra, so it is not imported here) from a started engine's commits."""

    def committed(report: CommitReport) -> None:
        if metrics is not None:
            metrics.on_commit(report.seconds, ok=report.ok)
            if report.events:
                metrics.on_events(report.events)
        if report.events:
            _log_events(report.events)
            if job_tracer is not None:
                job_tracer.on_events(report.events)

    engine.writer.observe(committed)


def _log_events(events: list[Event]) -> None:
    info = jobs_log.isEnabledFor(logging.INFO)
    debug = jobs_log.isEnabledFor(logging.DEBUG)
    if not info:
        return
    for ev in events:
        if ev.type not in (
            JobEventType.SUBMITTED,
            JobEventType.STATUS_CHANGED,
            JobEventType.CANCEL_REQUESTED,
        ):
            continue
        snapshot = ev.snapshot
        status = JobStatus(snapshot["status"])
        level = (
            logging.INFO if status in _NOTABLE or ev.type is JobEventType.CANCEL_REQUESTED else logging.DEBUG
        )
        if level == logging.DEBUG and not debug:
            continue
        previous = ev.previous_status.name if ev.previous_status is not None else ""
        what = (
            "cancel requested"
            if ev.type is JobEventType.CANCEL_REQUESTED
            else (f"{previous} -> {status.name}" if previous else f"submitted {status.name}")
        )
        jobs_log.log(
            level,
            "job %s attempt %d %s %s by %s%s",
            ev.job_id,
            snapshot.get("attempt", 0),
            snapshot["action"],
            what,
            ev.actor,
            f": {ev.reason}" if ev.reason else "",
            extra={
                "job_id": ev.job_id,
                "attempt": snapshot.get("attempt", 0),
                "action": snapshot["action"],
                "status": status.name,
                "previous_status": previous,
                "actor": ev.actor,
                "sequence": ev.sequence,
            },
        )
