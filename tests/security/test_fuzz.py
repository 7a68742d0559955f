"""More than 10,000 malformed or random requests against a real engine: hypothesis strategies built
from the proto descriptors (every field of every request, unknown enum values, odd strings, huge and
negative numbers, NaN, broken timestamps and durations), random worker streams, garbage bytes as
request bodies, and garbage bytes straight on the port.

Checked: the engine stays up; it never answers a well-formed message with INTERNAL or UNKNOWN (an
unhandled error), and a body that does not decode with INVALID_ARGUMENT saying so; nothing it is
sent makes it log an ERROR or a traceback; a refused call changes nothing in the store (every change
in the event log is accounted for by a call that was accepted, or by the engine's own timers); a
worker connected throughout keeps its stream; and afterwards every well-formed call is answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, cast

import grpc
import pytest
from google.protobuf import descriptor as pd
from google.protobuf import duration_pb2, message_factory
from google.protobuf.message import DecodeError, Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jobwarden.contract import JobStatus
from jobwarden.v1 import (
    executor_service_pb2,
    job_pb2,
    job_service_pb2,
    lock_service_pb2,
    workflow_service_pb2,
)
from jobwarden.v1 import executor_service_pb2 as ep
from jobwarden.v1 import job_service_pb2 as js

from tests.conftest import EngineFactory, EngineHandle
from tests.engine.helpers import request
from tests.reliability._harness import Ledger, check_invariants
from tests.support import RawWorker, raw_unary, raw_unary_stream

#: hypothesis examples per kind, and requests per example
EXAMPLES = 70
PER_EXAMPLE = 100
GARBAGE_BODIES = 2000
GARBAGE_CONNECTIONS = 600
#: codes a refused, well-formed request may get (anything else is an engine fault)
REFUSALS = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.DEADLINE_EXCEEDED,  # an AcquireLock told to wait
}
JOB_ID = "01a20000-0000-7000-8000-000000000001"


# -- strategies from the descriptors ---------------------------------------------------------------

_STRINGS = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "",
            "work",
            "fuzz",
            "a" * 201,
            "x" * 5000,
            "../../etc/passwd",
            "\x00",
            "key=value",
            "asset:{input.asset}",
            "{",
            JOB_ID,
            "01a20000-0000-7000-8000-00000000000",
            "not-a-uuid",
            "ünïcödé ✓",
        ]
    ),
)
_INT32 = st.one_of(st.integers(-3, 12), st.sampled_from([-(2**31), 2**31 - 1, 1001, 10_001, 100_000]))
_INT64 = st.one_of(st.integers(-3, 12), st.sampled_from([-(2**63), 2**63 - 1, 2**53 + 1]))
_DOUBLES = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, 1.0, 1e308, -1.0]))
_JSON = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20)
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=10), children, max_size=3)
    ),
    max_leaves=8,
)


def _scalar(f: pd.FieldDescriptor) -> st.SearchStrategy[Any]:
    t = f.type
    if t == f.TYPE_STRING:
        return _STRINGS
    if t == f.TYPE_BYTES:
        return st.binary(max_size=40)
    if t == f.TYPE_BOOL:
        return st.booleans()
    if t in (f.TYPE_DOUBLE, f.TYPE_FLOAT):
        return _DOUBLES if t == f.TYPE_DOUBLE else st.floats(width=32)
    if t == f.TYPE_ENUM:
        return st.integers(-2, 15)  # unknown values included: proto3 enums are open
    if t in (f.TYPE_INT64, f.TYPE_SINT64, f.TYPE_SFIXED64):
        return _INT64
    if t in (f.TYPE_UINT64, f.TYPE_FIXED64):
        return st.integers(0, 2**64 - 1)
    if t in (f.TYPE_UINT32, f.TYPE_FIXED32):
        return st.integers(0, 2**32 - 1)
    return _INT32


def message_strategy(descriptor: pd.Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    cls: Any = message_factory.GetMessageClass(descriptor)
    name = descriptor.full_name
    if name == "google.protobuf.Struct":
        return st.dictionaries(st.text(max_size=10), _JSON, max_size=4).map(_struct)
    if name in ("google.protobuf.Timestamp", "google.protobuf.Duration"):
        return st.builds(
            lambda s, n: cls(seconds=s, nanos=n),
            st.one_of(st.integers(-10, 10**6), st.sampled_from([-(2**62), 2**62, 253402300800])),
            st.one_of(st.integers(0, 999_999_999), st.sampled_from([-1, 10**9, -(2**31)])),
        )
    if depth > 2:
        return st.just(cls())
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for f in descriptor.fields:
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            key = _scalar(f.message_type.fields_by_name["key"])
            value_field = f.message_type.fields_by_name["value"]
            value = (
                message_strategy(value_field.message_type, depth + 1)
                if value_field.message_type is not None
                else _scalar(value_field)
            )
            optional[f.name] = st.dictionaries(key, value, max_size=3)
            continue
        single = message_strategy(f.message_type, depth + 1) if f.message_type is not None else _scalar(f)
        optional[f.name] = st.lists(single, max_size=3) if f.is_repeated else single
    return st.fixed_dictionaries({}, optional=optional).map(lambda values: _build(cls, values))


def _struct(data: dict[str, Any]) -> Message:
    from google.protobuf import struct_pb2

    struct = struct_pb2.Struct()
    struct.update(data)
    return struct


def _build(cls: type[Message], values: dict[str, Any]) -> Message:
    message = cls()
    for name, value in values.items():
        f = cls.DESCRIPTOR.fields_by_name[name]
        target = getattr(message, name)
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            for k, v in value.items():
                if isinstance(v, Message):
                    target[k].CopyFrom(v)
                else:
                    target[k] = v
        elif f.is_repeated:
            if f.message_type is not None:
                for item in value:
                    target.add().CopyFrom(item)
            else:
                target.extend(value)
        elif f.message_type is not None:
            target.CopyFrom(value)
        elif f.containing_oneof is None or not message.WhichOneof(f.containing_oneof.name):
            setattr(message, name, value)
    return message


@dataclass(frozen=True)
class Method:
    name: str
    path: str
    request: type[Message]
    response: type[Message]
    server_streaming: bool


def _methods() -> list[Method]:
    out = []
    for module, service in (
        (job_service_pb2, "JobService"),
        (executor_service_pb2, "ExecutorService"),
        (lock_service_pb2, "LockService"),
        (workflow_service_pb2, "WorkflowService"),
    ):
        descriptor = module.DESCRIPTOR.services_by_name[service]
        for m in descriptor.methods:
            if m.client_streaming:
                continue  # Connect: fuzzed as streams below
            out.append(
                Method(
                    m.name,
                    f"/{descriptor.full_name}/{m.name}",
                    message_factory.GetMessageClass(m.input_type),
                    message_factory.GetMessageClass(m.output_type),
                    m.server_streaming,
                )
            )
    return out


METHODS = _methods()
CALLS = st.sampled_from(METHODS).flatmap(
    lambda m: message_strategy(cast(pd.Descriptor, m.request.DESCRIPTOR)).map(lambda r: (m, r))
)
CONNECT_MESSAGES = message_strategy(ep.ConnectRequest.DESCRIPTOR)


# -- the run -----------------------------------------------------------------------------------------


@dataclass
class Tally:
    requests: Counter[str] = field(default_factory=Counter)
    codes: Counter[str] = field(default_factory=Counter)
    accepted: int = 0
    #: job ids, actions and lock holders that accepted calls may have changed
    touched_jobs: set[str] = field(default_factory=set)
    touched_actions: set[str] = field(default_factory=set)
    touched_holders: set[str] = field(default_factory=set)
    faults: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.requests.values())


def _touches(method: Method, request: Any, response: Any, tally: Tally) -> None:
    """What an accepted call may have changed."""
    tally.accepted += 1
    for job in _jobs_in(response):
        tally.touched_jobs.add(job)
    if method.name in ("PauseAction", "ResumeAction"):
        tally.touched_actions.add(request.action)
    if method.name == "SetActionConfig":
        tally.touched_actions.add(request.config.action)
    if method.name in ("AcquireLock", "ReleaseLock"):
        tally.touched_holders.add(request.holder)


def _jobs_in(response: Any) -> list[str]:
    if isinstance(response, js.SubmitJobsResponse):
        return [r.job.id for r in response.jobs]
    job = getattr(response, "job", None)
    return [job.id] if job is not None and job.id else []


class Fuzzer:
    def __init__(self, engine: EngineHandle, channel: grpc.aio.Channel, tally: Tally) -> None:
        self.engine = engine
        self.channel = channel
        self.tally = tally

    def state(self) -> tuple[int, dict[str, Any], set[tuple[str, str]]]:
        core = self.engine.core
        configs = {c.action: c.to_dict() for c in core.action_configs()}
        holders = {(v.resource, h.holder) for v in core.list_locks() for h in v.holders}
        return core.bus.head, configs, holders

    async def check_unchanged(self, before: tuple[int, dict[str, Any], set[tuple[str, str]]]) -> None:
        """Everything that changed since ``before`` was changed by an accepted call or by a timer."""
        core = self.engine.core
        await core.writer.flush()
        head, configs, holders = self.state()
        tally = self.tally
        if head > before[0]:
            for ev in await core.events_between(before[0], head, 1_000_000):
                by_api = ev.actor.startswith("anonymous@")
                if by_api and ev.job_id not in tally.touched_jobs:
                    tally.faults.append(
                        f"event {ev.sequence} ({ev.type.name}) of job {ev.job_id} by a refused call"
                    )
        for action in set(configs) | set(before[1]):
            if configs.get(action) != before[1].get(action) and action not in tally.touched_actions:
                tally.faults.append(f"config of {action!r} changed by a refused call")
        for resource, holder in holders - before[2]:
            if holder not in tally.touched_holders:
                tally.faults.append(f"lock {resource} taken by {holder!r} in a refused call")

    async def call(self, method: Method, message: Message) -> None:
        tally = self.tally
        tally.requests[method.name] += 1
        try:
            if method.server_streaming:
                stream = self.channel.unary_stream(
                    method.path,
                    request_serializer=method.request.SerializeToString,
                    response_deserializer=method.response.FromString,
                )(message, timeout=5)
                try:
                    # A refusal comes at once; an accepted watch stays open (that is enough).
                    await asyncio.wait_for(stream.read(), 0.05)
                except TimeoutError:
                    pass
                finally:
                    stream.cancel()
                response: Any = None
            else:
                response = await self.channel.unary_unary(
                    method.path,
                    request_serializer=method.request.SerializeToString,
                    response_deserializer=method.response.FromString,
                )(message, timeout=10)
        except grpc.aio.AioRpcError as error:
            tally.codes[error.code().name] += 1
            if error.code() not in REFUSALS:
                tally.faults.append(
                    f"{method.name}: {error.code().name} {error.details()} for {message!r:.300}"
                )
            return
        tally.codes["OK"] += 1
        _touches(method, message, response, tally)

    async def garbage_body(self, method: Method, body: bytes) -> None:
        self.tally.requests["garbage body"] += 1
        try:
            if method.server_streaming:
                stream = raw_unary_stream(self.channel, method.path)(body, timeout=5)
                try:
                    await asyncio.wait_for(stream.read(), 0.05)
                except TimeoutError:
                    pass
                finally:
                    stream.cancel()
                answer = b""
            else:
                answer = await raw_unary(self.channel, method.path)(body, timeout=5)
        except grpc.aio.AioRpcError as error:
            self.tally.codes[error.code().name] += 1
            code, details = error.code(), error.details() or ""
            if _parses(method, body):
                if code not in REFUSALS:
                    self.tally.faults.append(f"{method.name}: {code.name} {details} for a body that parses")
            elif code is not grpc.StatusCode.INVALID_ARGUMENT or not details.startswith(
                f"the request body is not a valid {method.request.DESCRIPTOR.full_name}: "
            ):
                self.tally.faults.append(
                    f"{method.name}: {code.name} {details} for a body that does not parse"
                )
            return
        # Bytes that happen to parse are a real request: what they change is the call's own doing.
        self.tally.codes["OK"] += 1
        if not _parses(method, body):
            return  # a watch still open when we stopped waiting; the engine could not parse it either
        _touches(method, method.request.FromString(body), method.response.FromString(answer), self.tally)

    async def worker_stream(self, messages: list[Message], garbage: bytes | None = None) -> None:
        """``messages`` on one Connect stream, with ``garbage`` (bytes that need not decode) after the
        first when given."""
        self.tally.requests["worker stream message"] += len(messages) + (garbage is not None)
        bodies = [m.SerializeToString() for m in messages]
        if garbage is not None:
            bodies.insert(1, garbage)
        stream: grpc.aio.StreamStreamCall[bytes, ep.ConnectResponse] = self.channel.stream_stream(
            "/jobwarden.v1.ExecutorService/Connect",
            response_deserializer=ep.ConnectResponse.FromString,
        )(timeout=5)
        try:
            for body in bodies:
                await stream.write(body)
            await stream.done_writing()
            while True:
                read = await asyncio.wait_for(stream.read(), 2)
                if read is grpc.aio.EOF:
                    break
                response = cast(ep.ConnectResponse, read)
                if response.WhichOneof("message") == "assignment":
                    self.tally.touched_jobs.add(response.assignment.job_id)
                elif response.WhichOneof("message") == "assignments":
                    self.tally.touched_jobs.update(a.job_id for a in response.assignments.assignments)
        except grpc.aio.AioRpcError as error:
            code = error.code()
            if code is grpc.StatusCode.INTERNAL and error.details() == "Internal error from Core":
                # grpcio's asyncio client (grpc/grpc#36066): a write that fails because the engine
                # already ended the stream (refusing it) replaces the engine's status with this one.
                self.tally.codes["INTERNAL (client side, grpc#36066)"] += 1
            elif code not in REFUSALS | {grpc.StatusCode.CANCELLED}:
                kinds = [m.WhichOneof("message") for m in messages]
                self.tally.faults.append(f"Connect: {code.name} {error.details()} after {kinds}")
            else:
                self.tally.codes[code.name] += 1
        except (TimeoutError, asyncio.InvalidStateError):
            self.tally.codes["stream open"] += 1
        finally:
            stream.cancel()


def _parses(method: Method, body: bytes) -> bool:
    try:
        method.request.FromString(body)
    except DecodeError:
        return False
    return True


@pytest.fixture
async def fuzz_engine(engine_factory: EngineFactory) -> EngineHandle:
    return await engine_factory()


@pytest.fixture
async def channel(fuzz_engine: EngineHandle) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(fuzz_engine.address) as open_channel:
        yield open_channel


async def test_fuzz(
    fuzz_engine: EngineHandle, channel: grpc.aio.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    tally = Tally()
    fuzzer = Fuzzer(fuzz_engine, channel, tally)
    # A worker that minds its own business throughout: no bad request may end its stream.
    bystander = await RawWorker(fuzz_engine.address, ["bystander"], name="bystander").connect()

    async def keep_alive() -> None:
        while True:
            await bystander.heartbeat()
            await asyncio.sleep(0.3)

    beating = asyncio.get_running_loop().create_task(keep_alive())
    loop = asyncio.get_running_loop()
    rng = random.Random(1234)

    # hypothesis draws the requests (in a thread, since @given bodies are synchronous); the event
    # loop sends them, a batch at a time, concurrently.
    calls: list[list[tuple[Method, Message]]] = []
    streams: list[list[Message]] = []

    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(CALLS, min_size=PER_EXAMPLE, max_size=PER_EXAMPLE))
    def draw_calls(batch: list[tuple[Method, Message]]) -> None:
        calls.append(batch)

    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(st.lists(CONNECT_MESSAGES, min_size=1, max_size=6), min_size=5, max_size=5))
    def draw_streams(batch: list[list[Message]]) -> None:
        streams.extend(batch)

    await loop.run_in_executor(None, draw_calls)
    await loop.run_in_executor(None, draw_streams)

    for batch in calls:
        before = fuzzer.state()
        await asyncio.gather(*(fuzzer.call(method, message) for method, message in batch))
        await fuzzer.check_unchanged(before)
    for start in range(0, len(streams), 10):
        before = fuzzer.state()
        await asyncio.gather(
            *(
                fuzzer.worker_stream(messages, rng.randbytes(rng.randrange(1, 60)) if index % 2 else None)
                for index, messages in enumerate(streams[start : start + 10])
            )
        )
        await fuzzer.check_unchanged(before)
    for _ in range(0, GARBAGE_BODIES, 100):
        before = fuzzer.state()
        await asyncio.gather(
            *(
                fuzzer.garbage_body(rng.choice(METHODS), rng.randbytes(rng.randrange(0, 200)))
                for _ in range(100)
            )
        )
        await fuzzer.check_unchanged(before)
    host, port = fuzz_engine.address.rsplit(":", 1)
    for _ in range(0, GARBAGE_CONNECTIONS, 50):
        await asyncio.gather(*(_garbage_connection(host, int(port), rng, tally) for _ in range(50)))

    assert not tally.faults, "\n".join(tally.faults[:30])
    # Refusals are warnings at most: no ERROR and no traceback for anything a client sent.
    serious = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not serious, [f"{r.name}: {r.getMessage()}" for r in serious[:10]]
    assert tally.total >= 10_000, (tally.total, dict(tally.requests), len(calls), len(streams))
    # Still up, still serving every well-formed call, and the bystander's stream is intact.
    await _well_formed_calls_answered(fuzz_engine, channel)
    assert bystander._reader is not None
    assert not bystander._reader.done(), "a bad request ended another stream"
    beating.cancel()
    await bystander.close()
    figures = await check_invariants(channel, Ledger())
    gaps = [p for p in figures.problems if p.startswith("event sequence")]
    assert not gaps, gaps
    print(
        f"fuzz: {tally.total} malformed or random requests ({dict(tally.requests)}); answers "
        f"{dict(tally.codes)}; {tally.accepted} accepted, every change accounted for; engine up and "
        f"answering; {figures.events} events gap-free"
    )


async def _garbage_connection(host: str, port: int, rng: random.Random, tally: Tally) -> None:
    tally.requests["garbage on the port"] += 1
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError as error:
        tally.faults.append(f"the port refused a connection: {error}")
        return
    kind = rng.random()
    if kind < 0.3:
        payload = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + rng.randbytes(rng.randrange(0, 300))
    elif kind < 0.5:
        payload = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    else:
        payload = rng.randbytes(rng.randrange(1, 2000))
    try:
        writer.write(payload)
        await writer.drain()
        await asyncio.wait_for(reader.read(1024), 0.2)
    except (OSError, TimeoutError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _well_formed_calls_answered(engine: EngineHandle, channel: grpc.aio.Channel) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from jobwarden.v1 import executor_service_pb2_grpc, job_service_pb2_grpc, lock_service_pb2_grpc

    jobs = job_service_pb2_grpc.JobServiceStub(channel)
    locks = lock_service_pb2_grpc.LockServiceStub(channel)
    health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    job = (await jobs.SubmitJob(request("after-fuzz", {"ok": True}))).job
    worker = await RawWorker(engine.address, ["after-fuzz"]).connect()
    a = await worker.next_assignment()
    await worker.complete(a, {"done": True})
    assert (await worker.next_ack()).accepted
    await worker.close()
    done = (await jobs.GetJob(js.GetJobRequest(job_id=job.id))).job
    assert done.status == JobStatus.COMPLETED
    assert (await jobs.ListJobs(js.ListJobsRequest(action="after-fuzz"))).jobs
    assert len((await jobs.GetJobEvents(js.GetJobEventsRequest(job_id=job.id))).events) == 3
    await jobs.GetStats(js.GetStatsRequest())
    await locks.AcquireLock(
        lock_service_pb2.AcquireLockRequest(
            holder="after",
            locks=[job_pb2.LockRequest(resource="r", mode=job_pb2.LOCK_MODE_EXCLUSIVE)],
            ttl=duration_pb2.Duration(seconds=60),
        )
    )
    assert (await locks.ReleaseLock(lock_service_pb2.ReleaseLockRequest(holder="after"))).released == 1
    workers = await executor_service_pb2_grpc.ExecutorServiceStub(channel).ListWorkers(
        ep.ListWorkersRequest()
    )
    assert any(w.name == "bystander" for w in workers.workers)
    assert math.isfinite((await jobs.GetStats(js.GetStatsRequest())).throughput)
