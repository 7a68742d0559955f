"""The engine's OpenTelemetry spans: how long each traced job waited and ran, from its committed events.

A job submitted with a trace context (``SubmitJobRequest.trace_context``) gets one span for each
stretch of time it spends in a status before it finishes: ``jobwarden.queued``,
``jobwarden.delayed``, ``jobwarden.waiting_for_lock``, ``jobwarden.running`` (one per attempt)
and ``jobwarden.timed_out``, each a child of the submitter's span. A span starts at the event that
brought the job into the status and ends at the one that took it out, with those events' times,
so what the spans show is what was committed. A job refused at submit gets a zero-length
``jobwarden.rejected`` span. Jobs without a context (or with one the propagator cannot read) get
no span: a trace is something the submitter starts.

Open spans live in memory: a stretch that an engine restart cuts is not exported (the next status
starts a span again).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from jobwarden.contract import TERMINAL_STATUSES, JobEventType, JobStatus
from jobwarden.server.core import Event
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

__all__ = ["JobTracer"]

log = logging.getLogger("jobwarden.observability")

_SCOPE = "jobwarden.server"
#: the statuses a span of the job's waiting or running ends with an error in
_ERROR_ENDS = frozenset({JobStatus.FAILED, JobStatus.REJECTED})
_STATUS_EVENTS = frozenset({JobEventType.SUBMITTED, JobEventType.STATUS_CHANGED})
#: the statuses of a live attempt: their spans end with the attempt's outcome
_ATTEMPT_STATUSES = frozenset({JobStatus.RUNNING, JobStatus.TIMED_OUT})


@dataclass(slots=True)
class _Open:
    span: Span
    parent: Context
    #: the attempt a RUNNING or TIMED_OUT span is of; 0 for the waits
    attempt: int = 0


class JobTracer:
    """Feeds spans from committed events (``on_events``) to ``tracer_provider``'s tracer."""

    def __init__(self, tracer_provider: Any) -> None:
        self._tracer: Tracer = tracer_provider.get_tracer(_SCOPE)
        #: the span of each traced job's current status, by job id
        self._open: dict[str, _Open] = {}

    @property
    def open_spans(self) -> int:
        return len(self._open)

    def on_events(self, events: Iterable[Event]) -> None:
        for ev in events:
            if ev.type in _STATUS_EVENTS:
                self._on_status(ev)

    def _on_status(self, ev: Event) -> None:
        snapshot = ev.snapshot
        current = self._open.pop(ev.job_id, None)
        if current is not None:
            parent = current.parent
            _end(current, ev)
        else:
            found = _parent_of(snapshot.get("trace_context"))
            if found is None:
                return
            parent = found
        status = ev.status
        if status in TERMINAL_STATUSES:
            if current is None and ev.type is JobEventType.SUBMITTED:
                # Refused at admission: no stretch of time, but the submitter should see why.
                _end(_Open(self._start(ev, parent), parent), ev)
            return
        attempt = snapshot.get("attempt", 0) if status in _ATTEMPT_STATUSES else 0
        self._open[ev.job_id] = _Open(self._start(ev, parent), parent, attempt)

    def _start(self, ev: Event, parent: Context) -> Span:
        snapshot = ev.snapshot
        status = ev.status
        attributes: dict[str, Any] = {
            "jobwarden.job.id": ev.job_id,
            "jobwarden.action": snapshot["action"],
            "jobwarden.status": status.name,
        }
        if ev.reason:
            attributes["jobwarden.status_reason"] = ev.reason
        if status in _ATTEMPT_STATUSES:
            attributes["jobwarden.attempt"] = snapshot.get("attempt", 0)
            attributes["jobwarden.worker.id"] = snapshot.get("worker_id", "")
        return self._tracer.start_span(
            f"jobwarden.{status.name.lower()}",
            context=parent,
            kind=SpanKind.INTERNAL,
            attributes=attributes,
            start_time=_nanoseconds(ev.time),
        )


def _end(current: _Open, ev: Event) -> None:
    """End the span at ``ev``, which took the job into its next status: an error when the job failed
    there, or when the attempt the span is of did (a failed attempt that is retried leaves the job
    DELAYED or QUEUED, not FAILED)."""
    span = current.span
    status = ev.status
    span.set_attribute("jobwarden.next_status", status.name)
    error: Mapping[str, Any] | None = None
    if current.attempt:
        attempt = _attempt(ev.snapshot, current.attempt)
        if attempt is not None and JobStatus(attempt["status"]) is JobStatus.FAILED:
            error = attempt.get("error") or {}
    if error is None and status in _ERROR_ENDS:
        error = ev.snapshot.get("error") or {}
    if error is not None:
        span.set_status(Status(StatusCode.ERROR, error.get("message") or ev.reason or status.name))
    span.end(end_time=_nanoseconds(ev.time))


def _attempt(snapshot: Mapping[str, Any], number: int) -> Mapping[str, Any] | None:
    for attempt in reversed(snapshot.get("attempts") or ()):
        if attempt["number"] == number:
            found: Mapping[str, Any] = attempt
            return found
    return None


def _parent_of(carrier: Mapping[str, str] | None) -> Context | None:
    """The submitter's context, or None when there is none the propagator can read."""
    if not carrier:
        return None
    try:
        context = propagate.extract(dict(carrier))
    except Exception:  # a propagator that chokes on a bad value: the job is simply not traced
        log.debug("unreadable trace context %r", carrier, exc_info=True)
        return None
    if not trace.get_current_span(context).get_span_context().is_valid:
        return None
    return context


def _nanoseconds(seconds: float) -> int:
    return int(seconds * 1e9)
