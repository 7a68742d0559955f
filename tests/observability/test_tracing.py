"""OpenTelemetry traces: one trace from a submit through the engine's waits into the worker's attempts
and steps, against a real engine and a real SDK worker, exported to the SDK's in-memory exporter."""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import pytest
from jobwarden.contract import JobStatus, Limits
from jobwarden.sdk import Executor, JobClient, JobContext, JobFailed, SyncJobClient, Worker
from jobwarden.sdk._tracing import (
    TracingSetupError,
    configure_tracing,
    step_span,
    trace_attempt,
    tracing_requested_by_environment,
)
from jobwarden.server.api import EngineServer, ServerOptions
from jobwarden.v1 import job_service_pb2 as js
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from opentelemetry.util._once import Once

from tests.conftest import TEST_CONFIG
from tests.engine.helpers import request
from tests.sdk.conftest import JOBWARDEN, wait_status, wait_until
from tests.support import EngineProcess

#: a valid W3C traceparent of a trace nobody here started
FOREIGN_TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class Recorder:
    """A tracer provider that keeps every finished span in memory."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider(resource=Resource.create({"service.name": "jobwarden-tests"}))
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def named(self, name: str, trace_id: int | None = None) -> list[ReadableSpan]:
        return [
            s
            for s in self.spans()
            if s.name == name and (trace_id is None or (s.context and s.context.trace_id == trace_id))
        ]


def _reset_global_tracer_provider() -> None:
    # What OpenTelemetry's own tests do: the global provider may otherwise be set once per process.
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    """A recorder that is the process's tracer provider (what the SDK's client and worker use)."""
    made = Recorder()
    _reset_global_tracer_provider()
    trace.set_tracer_provider(made.provider)
    yield made
    _reset_global_tracer_provider()
    made.provider.shutdown()


@pytest.fixture
def unconfigured() -> Iterator[None]:
    """No tracer provider at all: OpenTelemetry installed, nobody set it up."""
    _reset_global_tracer_provider()
    yield
    _reset_global_tracer_provider()


async def start_engine(sqlite_url: str, **options: Any) -> EngineServer:
    server = EngineServer(
        replace(TEST_CONFIG, db_url=sqlite_url), ServerOptions(port=0, watch_keepalive=0.5, **options)
    )
    await server.start()
    return server


@pytest.fixture
async def traced_engine(sqlite_url: str, recorder: Recorder) -> AsyncIterator[EngineServer]:
    server = await start_engine(sqlite_url, tracing=True, tracer_provider=recorder.provider)
    yield server
    await server.stop(grace=0)


class Gate(Executor):
    """Holds its job (and so its locks) until the test opens the gate."""

    action = "trace-gate"

    def __init__(self) -> None:
        self.opened = asyncio.Event()

    async def execute(self, ctx: JobContext) -> Any:
        await self.opened.wait()
        return {"opened": True}


class Transcode(Executor):
    """Two steps; ``encode`` fails on the first attempt when the input says so."""

    action = "trace-transcode"

    async def execute(self, ctx: JobContext) -> Any:
        source = await ctx.step("download", lambda: {"bytes": 42})
        encoded = await ctx.step("encode", self.encode, ctx, source)
        return {"encoded": encoded}

    async def encode(self, ctx: JobContext, source: dict[str, Any]) -> dict[str, Any]:
        if ctx.input.get("fail_first_encode") and ctx.attempt == 1:
            raise JobFailed("the encoder gave up on frame 7")
        return {"frames": source["bytes"] // 2}


class SyncSteps(Executor):
    """A plain (thread pool) executor: its steps run in a worker thread."""

    action = "trace-sync"

    def execute(self, ctx: JobContext) -> Any:
        ctx.step("one", lambda: 1)
        ctx.step("two", lambda: 2)
        return {}


@pytest.fixture
async def worker(traced_engine: EngineServer) -> AsyncIterator[tuple[Worker, Gate]]:
    gate = Gate()
    running = Worker([gate, Transcode(), SyncSteps()], engine=traced_engine.address, name="trace-worker")
    task = asyncio.create_task(running.run())
    await asyncio.wait_for(running.wait_connected(), 30)
    yield running, gate
    gate.opened.set()
    running.stop()
    await asyncio.wait_for(task, 30)


def by_id(spans: list[ReadableSpan]) -> dict[int, ReadableSpan]:
    return {s.context.span_id: s for s in spans if s.context is not None}


def attr(span: ReadableSpan, key: str) -> Any:
    return (span.attributes or {}).get(key)


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


async def test_one_trace_from_the_submit_through_the_lock_wait_and_both_attempts_to_the_steps(
    traced_engine: EngineServer, worker: tuple[Worker, Gate], recorder: Recorder
) -> None:
    _, gate = worker
    async with JobClient(traced_engine.address) as client:
        blocker = await client.submit("trace-gate", locks=["asset:1"])
        await wait_status(client, blocker.id, JobStatus.RUNNING)
        tracer = trace.get_tracer("media-pipeline")
        with tracer.start_as_current_span("submit transcode") as submit_span:
            job = await client.submit(
                "trace-transcode",
                {"fail_first_encode": True},
                locks=["asset:1"],
                retry_policy={"max_attempts": 2, "initial_interval": 0.05},
            )
        trace_id = submit_span.get_span_context().trace_id
        assert f"{trace_id:032x}" in job.trace_context["traceparent"]
        await wait_status(client, job.id, JobStatus.WAITING_FOR_LOCK)
        gate.opened.set()
        done = await wait_status(client, job.id)
        assert JobStatus(done.status) is JobStatus.COMPLETED, done.error
        assert len(done.attempts) == 2

        def finished() -> bool:
            running = recorder.named("jobwarden.running", trace_id)
            attempts = recorder.named("jobwarden.attempt", trace_id)
            return len(running) == 2 and len(attempts) == 2

        await wait_until(finished, what="the spans of both attempts")

    ours = [s for s in recorder.spans() if s.context is not None and s.context.trace_id == trace_id]
    spans = by_id(ours)
    submit_id = submit_span.get_span_context().span_id
    # The engine's waits and runs and the worker's attempts are children of the submit's span.
    engine_spans = [s for s in ours if s.name.startswith("jobwarden.") and s.name != "jobwarden.step"]
    assert {parent_id(s) for s in engine_spans} == {submit_id}
    # Their times are the committed events': they follow each other, none overlaps the next.
    timeline = sorted(
        (s for s in engine_spans if s.name not in ("jobwarden.attempt",)), key=lambda s: s.start_time or 0
    )
    for earlier, later in itertools.pairwise(timeline):
        assert (earlier.end_time or 0) <= (later.start_time or 0), (earlier.name, later.name)
    assert attr(timeline[0], "jobwarden.job.id") == job.id
    assert [(s.name, attr(s, "jobwarden.next_status")) for s in timeline] == [
        ("jobwarden.queued", "WAITING_FOR_LOCK"),
        ("jobwarden.waiting_for_lock", "QUEUED"),
        ("jobwarden.queued", "RUNNING"),
        ("jobwarden.running", "DELAYED"),  # the first attempt failed; the retry waits out its backoff
        ("jobwarden.delayed", "QUEUED"),
        ("jobwarden.queued", "RUNNING"),
        ("jobwarden.running", "COMPLETED"),
    ]

    running = sorted(recorder.named("jobwarden.running", trace_id), key=lambda s: s.start_time or 0)
    assert [attr(s, "jobwarden.attempt") for s in running] == [1, 2]
    assert running[0].status.status_code is StatusCode.ERROR
    assert "frame 7" in (running[0].status.description or "")
    assert running[1].status.status_code is StatusCode.UNSET

    attempts = sorted(recorder.named("jobwarden.attempt", trace_id), key=lambda s: s.start_time or 0)
    assert [attr(s, "jobwarden.attempt") for s in attempts] == [1, 2]
    assert attempts[0].status.status_code is StatusCode.ERROR
    assert attempts[1].status.status_code is StatusCode.UNSET

    steps = recorder.named("jobwarden.step", trace_id)
    by_attempt: dict[int, list[tuple[str, StatusCode]]] = {}
    for step in sorted(steps, key=lambda s: s.start_time or 0):
        parent = spans[parent_id(step) or 0]
        assert parent.name == "jobwarden.attempt"
        number = attr(parent, "jobwarden.attempt")
        by_attempt.setdefault(number, []).append((attr(step, "jobwarden.step.name"), step.status.status_code))
    # The second attempt skips the download the first one checkpointed.
    assert by_attempt == {
        1: [("download", StatusCode.UNSET), ("encode", StatusCode.ERROR)],
        2: [("encode", StatusCode.UNSET)],
    }
    failed_step = next(s for s in steps if s.status.status_code is StatusCode.ERROR)
    assert [e.name for e in failed_step.events] == ["exception"]
    # The blocker was submitted outside any span: the engine made no span of it.
    assert not [
        s
        for s in recorder.spans()
        if (s.attributes or {}).get("jobwarden.job.id") == blocker.id and s.name != "jobwarden.attempt"
    ]
    assert traced_engine.job_tracer.open_spans == 0


async def test_a_plain_executor_runs_its_steps_inside_its_attempt_span(
    traced_engine: EngineServer, worker: tuple[Worker, Gate], recorder: Recorder
) -> None:
    """Its steps run in a pool thread: the attempt span must be current there, not only on the loop."""
    async with JobClient(traced_engine.address) as client:
        with trace.get_tracer("test").start_as_current_span("submit"):
            job = await client.submit("trace-sync")
        assert JobStatus((await wait_status(client, job.id)).status) is JobStatus.COMPLETED
    await wait_until(lambda: len(recorder.named("jobwarden.step")) == 2, what="both step spans")
    (attempt,) = recorder.named("jobwarden.attempt")
    assert attempt.context is not None
    assert {parent_id(s) for s in recorder.named("jobwarden.step")} == {attempt.context.span_id}


async def test_the_sync_client_sends_the_context_of_the_callers_thread(
    traced_engine: EngineServer, recorder: Recorder
) -> None:
    def submit_in_a_span() -> tuple[int, Any, Any]:
        with (
            trace.get_tracer("test").start_as_current_span("sync submit") as span,
            SyncJobClient(traced_engine.address) as client,
        ):
            one = client.submit("trace-transcode")
            (many,) = client.submit_many([{"action": "trace-transcode"}])
            return span.get_span_context().trace_id, one, many

    trace_id, one, many = await asyncio.to_thread(submit_in_a_span)
    for job in (one, many):
        assert f"{trace_id:032x}" in job.trace_context["traceparent"]


async def test_a_submit_outside_any_span_carries_no_context_and_makes_no_span(
    unconfigured: None, sqlite_url: str
) -> None:
    """OpenTelemetry installed but not set up: the SDK sends nothing, the worker wraps nothing, and an
    engine tracing into a provider of its own records nothing of a job without a context."""
    recorder = Recorder()
    server = await start_engine(sqlite_url, tracing=True, tracer_provider=recorder.provider)
    running = Worker([Transcode()], engine=server.address, name="untraced")
    task = asyncio.create_task(running.run())
    try:
        await asyncio.wait_for(running.wait_connected(), 30)
        async with JobClient(server.address) as client:
            with trace.get_tracer("test").start_as_current_span("not recorded"):
                job = await client.submit("trace-transcode")
            assert dict(job.trace_context) == {}
            assert JobStatus((await wait_status(client, job.id)).status) is JobStatus.COMPLETED
    finally:
        running.stop()
        await asyncio.wait_for(task, 30)
        await server.stop(grace=0)
    assert recorder.spans() == []

    async def method(ctx: JobContext) -> None:
        return None

    assert trace_attempt(method, True, "w") is method
    with step_span(None, "x") as nothing:  # type: ignore[arg-type]
        assert nothing is None


async def test_an_engine_without_tracing_records_nothing(sqlite_url: str, recorder: Recorder) -> None:
    """The worker and the client trace (the process set up OpenTelemetry); the engine was not asked to."""
    server = await start_engine(sqlite_url)
    running = Worker([Transcode()], engine=server.address, name="worker-only")
    task = asyncio.create_task(running.run())
    try:
        await asyncio.wait_for(running.wait_connected(), 30)
        async with JobClient(server.address) as client:
            with trace.get_tracer("test").start_as_current_span("submit"):
                job = await client.submit("trace-transcode")
            assert job.trace_context["traceparent"]
            assert JobStatus((await wait_status(client, job.id)).status) is JobStatus.COMPLETED
        await wait_until(lambda: recorder.named("jobwarden.attempt"), what="the worker's span")
    finally:
        running.stop()
        await asyncio.wait_for(task, 30)
        await server.stop(grace=0)
    assert server.job_tracer is None
    assert {s.name for s in recorder.spans()} == {"submit", "jobwarden.attempt", "jobwarden.step"}


async def test_a_malformed_context_is_kept_but_traced_nowhere(
    traced_engine: EngineServer, recorder: Recorder
) -> None:
    async with grpc.aio.insecure_channel(traced_engine.address) as channel:
        from jobwarden.v1 import job_service_pb2_grpc

        jobs = job_service_pb2_grpc.JobServiceStub(channel)
        for carrier in (
            {"traceparent": "garbage"},
            {"traceparent": "00-" + "0" * 32 + "-" + "0" * 16 + "-01"},
        ):
            submitted = (await jobs.SubmitJob(request("nobody-serves-this", trace_context=carrier))).job
            assert dict(submitted.trace_context) == carrier
            await jobs.CancelJob(js.CancelJobRequest(job_id=submitted.id, reason="done looking"))
            got = (await jobs.GetJob(js.GetJobRequest(job_id=submitted.id))).job
            assert JobStatus(got.status) is JobStatus.CANCELLED
            assert dict(got.trace_context) == carrier
    assert recorder.spans() == []
    assert traced_engine.job_tracer.open_spans == 0


async def test_a_submit_refused_at_admission_is_a_zero_length_error_span(
    traced_engine: EngineServer, recorder: Recorder
) -> None:
    async with grpc.aio.insecure_channel(traced_engine.address) as channel:
        from jobwarden.v1 import job_pb2, job_service_pb2_grpc

        jobs = job_service_pb2_grpc.JobServiceStub(channel)
        config = job_pb2.ActionConfig(action="trace-full", max_queued=1)
        await jobs.SetActionConfig(js.SetActionConfigRequest(config=config))
        await jobs.SubmitJob(request("trace-full"))
        carrier = {"traceparent": FOREIGN_TRACEPARENT}
        refused = (await jobs.SubmitJob(request("trace-full", trace_context=carrier))).job
        assert JobStatus(refused.status) is JobStatus.REJECTED
    (span,) = recorder.spans()
    assert span.name == "jobwarden.rejected"
    assert span.status.status_code is StatusCode.ERROR
    assert "max_queued" in (span.status.description or "")
    assert span.start_time == span.end_time
    assert span.context is not None
    assert f"{span.context.trace_id:032x}" == FOREIGN_TRACEPARENT.split("-")[1]
    assert parent_id(span) == int(FOREIGN_TRACEPARENT.split("-")[2], 16)
    assert traced_engine.job_tracer.open_spans == 0


@pytest.mark.parametrize(
    ("carrier", "message"),
    [
        (
            {f"k{i}": "v" for i in range(Limits.MAX_TRACE_CONTEXT_ENTRIES + 1)},
            f"trace_context: {Limits.MAX_TRACE_CONTEXT_ENTRIES + 1} entries, at most "
            f"{Limits.MAX_TRACE_CONTEXT_ENTRIES} allowed",
        ),
        (
            {"traceparent": "x" * (Limits.MAX_TRACE_CONTEXT_VALUE_LENGTH + 1)},
            f"trace_context['traceparent'] is longer than {Limits.MAX_TRACE_CONTEXT_VALUE_LENGTH} characters",
        ),
        ({"k" * (Limits.MAX_TRACE_CONTEXT_KEY_LENGTH + 1): "v"}, "trace_context: key"),
        ({"": FOREIGN_TRACEPARENT}, "trace_context: empty key"),
    ],
)
async def test_an_oversized_context_is_refused_and_nothing_is_stored(
    traced_engine: EngineServer, carrier: dict[str, str], message: str
) -> None:
    async with grpc.aio.insecure_channel(traced_engine.address) as channel:
        from jobwarden.v1 import job_service_pb2_grpc

        jobs = job_service_pb2_grpc.JobServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await jobs.SubmitJob(request("trace-transcode", trace_context=carrier))
        assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert message in (refused.value.details() or "")
        listed = await jobs.ListJobs(js.ListJobsRequest())
        assert list(listed.jobs) == []


async def test_the_context_is_stored_with_the_job_across_a_restart(
    sqlite_url: str, unconfigured: None
) -> None:
    carrier = {"traceparent": FOREIGN_TRACEPARENT, "tracestate": "vendor=abc"}
    server = await start_engine(sqlite_url)
    async with JobClient(server.address) as client:
        job = await client.submit("trace-later", trace_context=carrier)
    await server.stop(grace=0)
    again = await start_engine(sqlite_url)
    try:
        async with JobClient(again.address) as client:
            assert dict((await client.get(job.id)).trace_context) == carrier
    finally:
        await again.stop(grace=0)


def test_the_standard_variables_decide_whether_the_engine_traces() -> None:
    assert not tracing_requested_by_environment({})
    assert tracing_requested_by_environment({"OTEL_TRACES_EXPORTER": "otlp"})
    assert tracing_requested_by_environment({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"})
    assert not tracing_requested_by_environment({"OTEL_TRACES_EXPORTER": "none"})
    assert not tracing_requested_by_environment({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"})


def test_serve_with_an_unknown_exporter_says_so_and_does_not_start(tmp_path: Path) -> None:
    env = {**os.environ, "OTEL_TRACES_EXPORTER": "carrier-pigeon"}
    result = subprocess.run(
        [JOBWARDEN, "serve", "--port", "0", "--db", f"sqlite:///{tmp_path / 'j.db'}"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 2, result.stderr
    assert "OTEL_TRACES_EXPORTER names 'carrier-pigeon', which is not installed" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "j.db").exists()


def test_configured_from_the_standard_variables_with_our_service_name_unless_they_name_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    provider = configure_tracing("transcoder", instance_id="host:12")
    assert provider.resource.attributes["service.name"] == "transcoder"
    assert provider.resource.attributes["service.instance.id"] == "host:12"
    provider.shutdown()
    monkeypatch.setenv("OTEL_SERVICE_NAME", "media-workers")
    provider = configure_tracing("transcoder")
    assert provider.resource.attributes["service.name"] == "media-workers"
    provider.shutdown()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier/pigeon")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    with pytest.raises(TracingSetupError, match="OTEL_EXPORTER_OTLP_PROTOCOL 'carrier/pigeon'"):
        configure_tracing("transcoder")


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP trace receiver, as an OpenTelemetry collector would be."""

    def __init__(self) -> None:
        self.requests: list[trace_service_pb2.ExportTraceServiceRequest] = []

    async def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self.requests.append(request)
        return trace_service_pb2.ExportTraceServiceResponse()

    def spans(self) -> list[tuple[str, str, bytes]]:
        """(service name, span name, trace id) of every span received."""
        found = []
        for export in self.requests:
            for resource_spans in export.resource_spans:
                service = next(
                    a.value.string_value
                    for a in resource_spans.resource.attributes
                    if a.key == "service.name"
                )
                for scope in resource_spans.scope_spans:
                    found += [(service, span.name, span.trace_id) for span in scope.spans]
        return found


async def test_serve_exports_over_otlp_when_the_standard_variables_say_where(sqlite_url: str) -> None:
    collector = Collector()
    receiver = grpc.aio.server()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(collector, receiver)  # type: ignore[no-untyped-call]
    port = receiver.add_insecure_port("127.0.0.1:0")
    await receiver.start()
    engine = EngineProcess(
        sqlite_url,
        env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
            "OTEL_BSP_SCHEDULE_DELAY": "50",
        },
    )
    try:
        engine.start()
        async with JobClient(engine.address) as client:
            job = await client.submit(
                "nobody-serves-this", trace_context={"traceparent": FOREIGN_TRACEPARENT}
            )
            await client.cancel(job.id, "seen enough")
            trace_id = bytes.fromhex(FOREIGN_TRACEPARENT.split("-")[1])
            await wait_until(
                lambda: ("jobwarden-engine", "jobwarden.queued", trace_id) in collector.spans(),
                what="the engine's span at the collector",
            )
    finally:
        engine.terminate()
        await receiver.stop(0)


def test_the_sdk_imports_no_opentelemetry_until_the_application_does() -> None:
    """No span can be active nor a provider set before the API is imported: the SDK waits for that."""
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, jobwarden.sdk; from jobwarden.sdk._requests import submit_request; "
            "assert not submit_request('a').trace_context; print('opentelemetry.trace' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "False"
