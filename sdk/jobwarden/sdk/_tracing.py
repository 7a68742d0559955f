"""OpenTelemetry tracing of jobs, when the ``tracing`` extra is installed (``jobwarden[tracing]``).

Three things, each a no-op without OpenTelemetry or without a configured tracer provider:

- a submit carries the caller's trace context (``current_trace_context``), so the job joins the
  caller's trace;
- a worker runs each attempt in a ``jobwarden.attempt`` span whose parent is that context
  (``trace_attempt``), and each ``ctx.step`` in a ``jobwarden.step`` span under it (``step_span``);
- ``configure_tracing`` sets up the OpenTelemetry SDK from the standard ``OTEL_*`` variables, for
  the ``jobwarden worker`` and ``jobwarden serve`` commands (an application that sets up
  OpenTelemetry itself does not need it).

Only the OpenTelemetry API is used at run time; the SDK and the exporters only in
``configure_tracing``. Nothing of OpenTelemetry is imported until someone else has imported its API:
before that no span can be active and no provider set, and ``import jobwarden.sdk`` stays quick.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from importlib.metadata import entry_points
from importlib.util import find_spec
from typing import TYPE_CHECKING, Any

from jobwarden.sdk._exceptions import JobCancelled, JobFailed

if TYPE_CHECKING:
    from jobwarden.sdk._context import JobContext

#: whether OpenTelemetry's API is installed (without it, everything here does nothing)
AVAILABLE = find_spec("opentelemetry") is not None and find_spec("opentelemetry.trace") is not None

__all__ = [
    "AVAILABLE",
    "INSTALL_HINT",
    "TracingSetupError",
    "configure_tracing",
    "current_trace_context",
    "step_span",
    "trace_attempt",
    "tracing_for_command",
    "tracing_requested_by_environment",
]

logger = logging.getLogger("jobwarden.tracing")

INSTALL_HINT = "pip install 'jobwarden[tracing]'"
#: the instrumentation scope of the SDK's spans
_SCOPE = "jobwarden.sdk"
#: the entry point group where OpenTelemetry span exporters are registered by name
_EXPORTER_GROUP = "opentelemetry_traces_exporter"
_OTLP_BY_PROTOCOL = {"grpc": "otlp_proto_grpc", "http/protobuf": "otlp_proto_http"}


class TracingSetupError(Exception):
    """Tracing was asked for but cannot be set up (not installed, an unknown exporter)."""


def _api_loaded() -> bool:
    """True once something imported OpenTelemetry's API: only then can a span be active or a tracer
    provider set up."""
    return "opentelemetry.trace" in sys.modules


def _tracing_on() -> bool:
    """True when someone set up a real tracer provider."""
    if not _api_loaded():
        return False
    from opentelemetry import trace

    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider | trace.NoOpTracerProvider)


# -- the submit side ----------------------------------------------------------------------------


def current_trace_context() -> dict[str, str]:
    """The caller's trace context in the configured propagator's text form (W3C ``traceparent`` and
    ``tracestate`` by default), or ``{}`` when there is no active span (or no OpenTelemetry)."""
    if not _api_loaded():
        return {}
    from opentelemetry import propagate, trace

    if not trace.get_current_span().get_span_context().is_valid:
        return {}
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


# -- the worker side ----------------------------------------------------------------------------


def trace_attempt(
    method: Callable[[JobContext], Any], is_async: bool, worker_name: str
) -> Callable[[JobContext], Any]:
    """``method`` running inside a ``jobwarden.attempt`` span (the job's trace context is its
    parent), or ``method`` itself when tracing is off. The wrapper makes the span current where the
    method runs: on the event loop for an async one, in the pool thread for a plain one."""
    if not _tracing_on():
        return method
    if is_async:

        @functools.wraps(method)
        async def run_async(ctx: JobContext) -> Any:
            with _attempt_span(ctx, worker_name):
                return await method(ctx)

        return run_async

    @functools.wraps(method)
    def run(ctx: JobContext) -> Any:
        with _attempt_span(ctx, worker_name):
            return method(ctx)

    return run


def _attempt_span(ctx: JobContext, worker_name: str) -> AbstractContextManager[Any]:
    from opentelemetry import propagate
    from opentelemetry.trace import SpanKind

    parent = propagate.extract(dict(ctx.job.trace_context)) if ctx.job.trace_context else None
    return _span(
        "jobwarden.attempt",
        {
            "jobwarden.job.id": ctx.job_id,
            "jobwarden.action": ctx.action,
            "jobwarden.attempt": ctx.attempt,
            "jobwarden.attempt.mode": ctx.mode.name,
            "jobwarden.worker.name": worker_name,
        },
        parent=parent,
        kind=SpanKind.CONSUMER,
    )


def step_span(ctx: JobContext, name: str) -> AbstractContextManager[Any]:
    """A ``jobwarden.step`` span around one run of a step (nothing when tracing is off)."""
    if not _tracing_on():
        return nullcontext()
    return _span(
        "jobwarden.step",
        {"jobwarden.step.name": name, "jobwarden.job.id": ctx.job_id, "jobwarden.attempt": ctx.attempt},
    )


@contextmanager
def _span(name: str, attributes: Mapping[str, Any], *, parent: Any = None, kind: Any = None) -> Iterator[Any]:
    from opentelemetry import trace

    tracer = trace.get_tracer(_SCOPE)
    with tracer.start_as_current_span(
        name,
        context=parent,
        kind=kind or trace.SpanKind.INTERNAL,
        attributes=dict(attributes),
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield span
        except BaseException as error:
            _record_outcome(span, error)
            raise
        span.set_attribute("jobwarden.outcome", "completed")


def _record_outcome(span: Any, error: BaseException) -> None:
    """A cancel is how the job was told to stop, not an error of the span; anything else is."""
    from opentelemetry.trace import Status, StatusCode

    if isinstance(error, JobCancelled | asyncio.CancelledError):
        span.set_attribute("jobwarden.outcome", "cancelled")
        return
    span.set_attribute("jobwarden.outcome", "failed")
    if isinstance(error, Exception):
        span.record_exception(error)
    if isinstance(error, JobFailed):
        description = f"{error.kind.name}: {error.message}"
    else:
        description = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    span.set_status(Status(StatusCode.ERROR, description))


# -- setting up the OpenTelemetry SDK -------------------------------------------------------------


def tracing_requested_by_environment(environ: Mapping[str, str] | None = None) -> bool:
    """True when the standard variables ask for traces: ``OTEL_TRACES_EXPORTER`` (other than
    ``none``) or an OTLP endpoint, and ``OTEL_SDK_DISABLED`` is not ``true``."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporters:
        return exporters != "none"
    return bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def tracing_for_command(
    flag: bool, service_name: str, *, instance_id: str = "", set_global: bool = False
) -> Any | None:
    """The provider of a command run with ``--tracing`` or under ``OTEL_*`` variables that ask for
    traces; None otherwise. Without the tracing extra, ``--tracing`` is a ``TracingSetupError`` and
    the variables alone a warning (they may be meant for another program in the same environment)."""
    if not flag and not tracing_requested_by_environment():
        return None
    try:
        return configure_tracing(service_name, instance_id=instance_id, set_global=set_global)
    except TracingSetupError as error:
        if flag or AVAILABLE:
            raise
        logger.warning("the OTEL_* variables ask for traces, but no trace is made: %s", error)
        return None


def configure_tracing(service_name: str, *, instance_id: str = "", set_global: bool = False) -> Any:
    """An OpenTelemetry SDK ``TracerProvider`` exporting as the ``OTEL_*`` variables say.

    ``OTEL_TRACES_EXPORTER`` names the exporters (default ``otlp``, over gRPC unless
    ``OTEL_EXPORTER_OTLP_PROTOCOL`` says otherwise; ``console``; ``none``); the OTLP exporter reads
    its endpoint, headers and certificates from its own variables, the batch processor
    ``OTEL_BSP_*``, the sampler ``OTEL_TRACES_SAMPLER``. ``service_name`` is used unless
    ``OTEL_SERVICE_NAME`` or ``OTEL_RESOURCE_ATTRIBUTES`` name the service. With ``set_global`` the
    provider becomes the process's (what the SDK's worker and client spans use).

    Raises ``TracingSetupError`` when the tracing extra is not installed or an exporter is unknown.
    """
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import (
            SERVICE_INSTANCE_ID,
            SERVICE_NAME,
            OTELResourceDetector,
            Resource,
        )
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        raise TracingSetupError(f"tracing needs the OpenTelemetry SDK: {INSTALL_HINT}") from None
    exporters = [_exporter_class(name)() for name in _exporter_names()]
    # What the variables name wins; Resource.create would let ours win over them.
    named = OTELResourceDetector().detect().attributes
    ours = {SERVICE_NAME: service_name, SERVICE_INSTANCE_ID: instance_id}
    provider = TracerProvider(
        resource=Resource.create({key: value for key, value in ours.items() if value and key not in named})
    )
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    if not exporters:
        logger.warning("tracing is on but OTEL_TRACES_EXPORTER is none: spans are exported nowhere")
    if set_global:
        trace.set_tracer_provider(provider)
    return provider


def _exporter_names() -> list[str]:
    names = os.environ.get("OTEL_TRACES_EXPORTER", "").strip() or "otlp"
    if names.lower() == "none":
        return []
    return [_entry_point_name(name.strip()) for name in names.split(",") if name.strip()]


def _entry_point_name(name: str) -> str:
    if name != "otlp":
        return name
    protocol = (
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "grpc"
    ).strip()
    if protocol not in _OTLP_BY_PROTOCOL:
        raise TracingSetupError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL {protocol!r} is not one of {', '.join(_OTLP_BY_PROTOCOL)}"
        )
    return _OTLP_BY_PROTOCOL[protocol]


def _exporter_class(name: str) -> Callable[[], Any]:
    found = entry_points(group=_EXPORTER_GROUP, name=name)
    if not found:
        installed = sorted(point.name for point in entry_points(group=_EXPORTER_GROUP))
        raise TracingSetupError(
            f"OTEL_TRACES_EXPORTER names {name!r}, which is not installed "
            f"(installed: {', '.join(installed) or 'none'}; the OTLP exporter comes with {INSTALL_HINT})"
        )
    exporter: Callable[[], Any] = next(iter(found)).load()
    return exporter
