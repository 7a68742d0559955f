"""The benchmark's client processes: ``python -m jobwarden.bench._agent ROLE SPEC_JSON``.

Clients run apart from the engine so that the engine's process is measured alone. Each role prints
``ready`` once connected, then one JSON line with what it measured (wall-clock ``time.time()`` stamps,
comparable across the processes of one machine):

- ``submit``: submits ``jobs`` jobs in ``SubmitJobs`` batches of ``batch``, ``inflight`` batches at
  once, optionally with lock requests or deadlines (start timeout, ``run_at``, heartbeat timeout).
- ``steady``: submits one job per ``SubmitJob`` at a steady ``rate`` for ``seconds`` and follows
  their COMPLETED events; writes one record per job to ``out``.
- ``watch``: opens ``streams`` ``WatchJobs`` streams from ``after``; on the stdin line ``stop HEAD``
  it waits until every stream has seen HEAD and reports, per stream, what arrived and how late.
- ``workflows``: starts ``runs`` runs of ``workflow`` (one ``StartWorkflow`` each, ``inflight`` at
  once) and reports when the first was sent and the last accepted.
- ``echo``: a bare ``grpc.aio`` server with one unary method that answers each request with its own
  bytes (no interceptor, no serializer); writes its port to ``port_file`` and serves until the stdin
  line ``stop``: the floor any Python gRPC server stands on (``floor``).
- ``unary``: ``calls`` unary calls of ``method`` with ``payload`` (hex bytes), ``inflight`` at once:
  calls/s.

Only the SDK's stubs are imported here: no engine code.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import threading
import time
from array import array
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from jobwarden.v1 import (
    job_pb2,
    job_service_pb2,
    job_service_pb2_grpc,
    workflow_service_pb2,
    workflow_service_pb2_grpc,
)

__all__ = ["main"]

_OPTIONS = [
    ("grpc.max_receive_message_length", 64 << 20),
    ("grpc.max_send_message_length", 64 << 20),
]
_EVENT_TYPES = {
    v.number: v.name.removeprefix("JOB_EVENT_TYPE_") for v in job_pb2.JobEventType.DESCRIPTOR.values
}
_STATUSES = {v.number: v.name.removeprefix("JOB_STATUS_") for v in job_pb2.JobStatus.DESCRIPTOR.values}
_EXCLUSIVE = job_pb2.LOCK_MODE_EXCLUSIVE
_SHARED = job_pb2.LOCK_MODE_SHARED


def _seconds(ts: Timestamp) -> float:
    return ts.seconds + ts.nanos * 1e-9


def _duration(seconds: float) -> Duration:
    d = Duration()
    d.FromNanoseconds(int(max(seconds, 0.001) * 1e9))
    return d


def _percentiles(values: list[float] | array[float]) -> dict[str, float]:
    if not values:
        return {"count": 0}
    ordered = sorted(values)
    n = len(ordered)

    def at(q: float) -> float:
        return ordered[min(n - 1, int(q * n))]

    return {"count": n, "p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "max": ordered[-1]}


@dataclass(slots=True, frozen=True)
class _Span:
    """A run of concurrent senders: when it began and ended, and the CPU seconds this process spent."""

    first_send: float
    last_ack: float
    cpu_seconds: float

    def report(self, count: int) -> dict[str, float]:
        """What every sending role reports of its run, with ``count`` (calls, jobs, runs) per second."""
        return {
            "first_send": self.first_send,
            "last_ack": self.last_ack,
            "rate": count / max(self.last_ack - self.first_send, 1e-9),
            "cpu_seconds": self.cpu_seconds,
        }


async def _concurrently(sender: Callable[[], Awaitable[None]], inflight: int) -> _Span:
    """``inflight`` copies of ``sender`` at once, until each returns."""
    first_send = time.time()
    cpu_before = time.process_time()
    await asyncio.gather(*(sender() for _ in range(max(1, inflight))))
    return _Span(first_send, time.time(), time.process_time() - cpu_before)


def _write_json(path: str, value: Any) -> None:
    with open(path, "w") as file:
        json.dump(value, file)


def _emit(result: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


def _ready() -> None:
    sys.stdout.write("ready\n")
    sys.stdout.flush()


# -- submit ----------------------------------------------------------------------------------------


class _JobMaker:
    """Builds each job's SubmitJobRequest from the spec (plain, with locks, or with a deadline)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.action: str = spec["action"]
        self.locks: dict[str, Any] | None = spec.get("locks")
        self.timers: dict[str, Any] | None = spec.get("timers")
        self.random = random.Random(spec.get("seed", 1))
        #: when the first job whose deadline fires was made (timers)
        self.fire_origin = 0.0

    def make(self, index: int, total: int) -> job_service_pb2.SubmitJobRequest:
        request = job_service_pb2.SubmitJobRequest(action=self.action)
        if self.locks:
            self._add_locks(request)
        if self.timers:
            self._add_deadline(request, index, total)
        return request

    def _add_locks(self, request: job_service_pb2.SubmitJobRequest) -> None:
        assert self.locks is not None
        rnd = self.random
        count = self.locks["resources"]
        first = rnd.randrange(count)
        chosen = [first]
        if count > 1 and rnd.random() < self.locks.get("second", 0.0):
            chosen.append((first + 1 + rnd.randrange(count - 1)) % count)
        for resource in chosen:
            mode = _EXCLUSIVE if rnd.random() < self.locks["exclusive"] else _SHARED
            request.locks.add(resource=f"bench-resource:{resource}", mode=mode)

    def _add_deadline(self, request: job_service_pb2.SubmitJobRequest, index: int, total: int) -> None:
        # The jobs are sent in two groups, each split among the kinds by its shares: first those
        # whose deadline lies ``far`` ahead (they stay pending), then the ``fire`` ones, whose
        # deadlines are spread over ``window`` seconds starting ``lead`` seconds after the first of
        # them is sent, so that the window opens only once every deadline is armed.
        assert self.timers is not None
        t = self.timers
        fire = min(t.get("fire", total), total)
        pending = total - fire
        now = time.time()
        if index < pending:
            deadline = now + t.get("far", 3600.0)
            share = index / pending
        else:
            if self.fire_origin == 0.0:
                self.fire_origin = now
            start = self.fire_origin + t["lead"]
            deadline = start + t["window"] * self.random.random()
            share = (index - pending) / max(fire, 1)
        if share < t["start_share"]:
            request.timeouts.start.duration.CopyFrom(_duration(deadline - now))
            request.timeouts.start.action = job_pb2.START_TIMEOUT_ACTION_FAIL
        elif share < t["start_share"] + t["wake_share"]:
            request.run_at.FromNanoseconds(int(deadline * 1e9))
        else:
            request.action = t["heartbeat_action"]
            request.timeouts.heartbeat.CopyFrom(_duration(deadline - now))


async def _submit(spec: dict[str, Any]) -> dict[str, Any]:
    total: int = spec["jobs"]
    batch_size: int = spec.get("batch", 1000)
    inflight: int = spec.get("inflight", 2)
    sample_size: int = spec.get("sample", 0)
    maker = _JobMaker(spec)
    async with grpc.aio.insecure_channel(spec["engine"], options=_OPTIONS) as channel:
        stub = job_service_pb2_grpc.JobServiceStub(channel)
        await stub.GetStats(job_service_pb2.GetStatsRequest(), timeout=30)
        prebuilt = None
        if not maker.timers:
            # Built before the clock starts: the client's own cost is not the engine's.
            prebuilt = [maker.make(i, total) for i in range(total)]
        _ready()
        starts = list(range(0, total, batch_size))
        next_batch = 0
        latencies: list[float] = []
        sample: list[str] = []
        rnd = random.Random(7)
        accepted = 0

        async def sender() -> None:
            nonlocal next_batch, accepted
            while next_batch < len(starts):
                begin = starts[next_batch]
                next_batch += 1
                end = min(total, begin + batch_size)
                jobs = (
                    prebuilt[begin:end]
                    if prebuilt is not None
                    else [maker.make(i, total) for i in range(begin, end)]
                )
                sent = time.time()
                if len(jobs) == 1 and batch_size == 1:
                    # One job per call is what most clients do: SubmitJob, not a SubmitJobs of one.
                    one = await stub.SubmitJob(jobs[0], timeout=120)
                    items = [one]
                else:
                    many = await stub.SubmitJobs(job_service_pb2.SubmitJobsRequest(jobs=jobs), timeout=120)
                    items = list(many.jobs)
                latencies.append(time.time() - sent)
                accepted += len(items)
                if sample_size:
                    for item in items:
                        # Reservoir sampling: every job equally likely to be in the sample.
                        if len(sample) < sample_size:
                            sample.append(item.job.id)
                        else:
                            slot = rnd.randrange(accepted)
                            if slot < sample_size:
                                sample[slot] = item.job.id

        span = await _concurrently(sender, inflight)
    return {
        "jobs": accepted,
        **span.report(accepted),
        "batch_seconds": _percentiles(latencies),
        "fire_origin": maker.fire_origin,
        "sample": sample,
    }


# -- steady ----------------------------------------------------------------------------------------


async def _steady(spec: dict[str, Any]) -> dict[str, Any]:
    rate: float = spec["rate"]
    seconds: float = spec["seconds"]
    action: str = spec["action"]
    total = max(1, int(rate * seconds))
    sent_at: dict[str, float] = {}
    acked_at: dict[str, float] = {}
    done: dict[str, tuple[float, float, float, float]] = {}
    errors: list[str] = []
    async with grpc.aio.insecure_channel(spec["engine"], options=_OPTIONS) as channel:
        stub = job_service_pb2_grpc.JobServiceStub(channel)
        head = (await stub.GetStats(job_service_pb2.GetStatsRequest(), timeout=30)).head_sequence
        all_done = asyncio.Event()
        submitted_all = False

        async def follow() -> None:
            request = job_service_pb2.WatchJobsRequest(
                after_sequence=head, actions=[action], statuses=[job_pb2.JOB_STATUS_COMPLETED]
            )
            async for response in stub.WatchJobs(request):
                now = time.time()
                for ev in response.events:
                    job = ev.job
                    done[job.id] = (
                        now,
                        _seconds(job.created_at),
                        _seconds(job.started_at),
                        _seconds(job.finished_at),
                    )
                if submitted_all and len(done) >= len(sent_at):
                    all_done.set()
                    return

        follower = asyncio.create_task(follow())
        _ready()

        async def submit_one(request: job_service_pb2.SubmitJobRequest) -> None:
            sent = time.time()
            try:
                response = await stub.SubmitJob(request, timeout=30)
            except grpc.aio.AioRpcError as error:
                errors.append(f"{error.code().name}: {error.details()}")
                return
            job_id = response.job.id
            sent_at[job_id] = sent
            acked_at[job_id] = time.time()

        requests = [job_service_pb2.SubmitJobRequest(action=action) for _ in range(total)]
        tasks: list[asyncio.Task[None]] = []
        loop = asyncio.get_running_loop()
        start = loop.time()
        first_send = time.time()
        for index, request in enumerate(requests):
            # Open loop: each submit leaves at its time whether or not the previous one was answered.
            delay = start + index / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(submit_one(request)))
        await asyncio.gather(*tasks)
        last_send = time.time()
        submitted_all = True
        if len(done) >= len(sent_at):
            all_done.set()
        try:
            await asyncio.wait_for(all_done.wait(), spec.get("drain_timeout", 60))
        except TimeoutError:
            errors.append(f"only {len(done)} of {len(sent_at)} jobs completed within the drain timeout")
        follower.cancel()
    records = [
        [job_id, sent, acked_at[job_id], *done.get(job_id, (0.0, 0.0, 0.0, 0.0))]
        for job_id, sent in sent_at.items()
    ]
    _write_json(spec["out"], records)
    return {
        "submitted": len(sent_at),
        "completed": len(done),
        "first_send": first_send,
        "last_send": last_send,
        "offered_rate": len(sent_at) / max(last_send - first_send, 1e-9),
        "errors": errors[:10],
        "error_count": len(errors),
    }


# -- watch -----------------------------------------------------------------------------------------


class _Stream:
    def __init__(self, after: int) -> None:
        self.last = after
        self.count = 0
        self.messages = 0
        self.gaps = 0
        self.duplicates = 0
        self.cuts = 0
        self.first_receipt = 0.0
        self.last_receipt = 0.0
        self.lags: array[float] = array("d")
        #: the lags of the first stream of a process, by event type and job status
        self.kinds: dict[str, array[float]] | None = None
        self.error = ""


async def _watch(spec: dict[str, Any]) -> dict[str, Any]:
    address: str = spec["engine"]
    after: int = spec["after"]
    stop_head: list[int] = []
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()

    def _stop(head: int) -> None:
        stop_head.append(head)
        stopped.set()

    def read_stdin() -> None:
        for line in sys.stdin:
            if line.startswith("stop"):
                loop.call_soon_threadsafe(_stop, int(line.split()[1]))
                return

    threading.Thread(target=read_stdin, daemon=True).start()
    streams = [_Stream(after) for _ in range(spec["streams"])]
    streams[0].kinds = {}
    channels = [
        # Each stream on a connection of its own, as separate watchers would be.
        grpc.aio.insecure_channel(address, options=[*_OPTIONS, ("grpc.use_local_subchannel_pool", 1)])
        for _ in streams
    ]

    async def follow(stream: _Stream, channel: grpc.aio.Channel) -> None:
        stub = job_service_pb2_grpc.JobServiceStub(channel)
        while True:
            call = stub.WatchJobs(job_service_pb2.WatchJobsRequest(after_sequence=stream.last))
            try:
                async for response in call:
                    now = time.time()
                    stream.messages += 1
                    events = response.events
                    if events:
                        if not stream.first_receipt:
                            stream.first_receipt = now
                        stream.last_receipt = now
                    lags = stream.lags
                    last = stream.last
                    kinds = stream.kinds
                    for ev in events:
                        seq = ev.sequence
                        if seq <= last:
                            stream.duplicates += 1
                            continue
                        if seq != last + 1:
                            stream.gaps += seq - last - 1
                        last = seq
                        t = ev.time
                        lag = now - (t.seconds + t.nanos * 1e-9)
                        lags.append(lag)
                        if kinds is not None:
                            kind = f"{_EVENT_TYPES[ev.type]}:{_STATUSES[ev.job.status]}"
                            kinds.setdefault(kind, array("d")).append(lag)
                    stream.count += len(events)
                    stream.last = last
                    if stop_head and last >= stop_head[0]:
                        return
                return
            except grpc.aio.AioRpcError as error:
                if error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                    stream.cuts += 1  # cut for falling behind: reconnect from the last sequence
                    continue
                stream.error = f"{error.code().name}: {error.details()}"
                return
            finally:
                call.cancel()

    tasks = [asyncio.create_task(follow(s, c)) for s, c in zip(streams, channels, strict=True)]
    _ready()
    await stopped.wait()
    target = stop_head[0]
    waiting = [t for s, t in zip(streams, tasks, strict=True) if s.last < target and not t.done()]
    for stream, task in zip(streams, tasks, strict=True):
        if stream.last >= target:
            task.cancel()
    if waiting:
        await asyncio.wait(waiting, timeout=spec.get("drain_timeout", 60))
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for channel in channels:
        await channel.close()
    pooled: array[float] = array("d")
    per_stream = []
    for stream in streams:
        pooled.extend(stream.lags)
        span = stream.last_receipt - stream.first_receipt
        lag = _percentiles(stream.lags)
        per_stream.append(
            {
                "events": stream.count - stream.duplicates,
                "messages": stream.messages,
                "last": stream.last,
                "complete": stream.last >= target and stream.gaps == 0,
                "gaps": stream.gaps,
                "duplicates": stream.duplicates,
                "cuts": stream.cuts,
                "events_per_second": (stream.count / span) if span > 0 else 0.0,
                "lag_p50": lag.get("p50", 0.0),
                "lag_p99": lag.get("p99", 0.0),
                "lag_max": lag.get("max", 0.0),
                "first_receipt": stream.first_receipt,
                "last_receipt": stream.last_receipt,
                "error": stream.error,
            }
        )
    return {
        "target": target,
        "streams": per_stream,
        "lag": _percentiles(pooled),
        "lag_by_kind": {kind: _percentiles(values) for kind, values in (streams[0].kinds or {}).items()},
        "cpu_seconds": time.process_time(),
    }


# -- workflows -------------------------------------------------------------------------------------


async def _workflows(spec: dict[str, Any]) -> dict[str, Any]:
    total: int = spec["runs"]
    inflight: int = spec.get("inflight", 16)
    async with grpc.aio.insecure_channel(spec["engine"], options=_OPTIONS) as channel:
        stub = workflow_service_pb2_grpc.WorkflowServiceStub(channel)
        jobs = job_service_pb2_grpc.JobServiceStub(channel)
        await jobs.GetStats(job_service_pb2.GetStatsRequest(), timeout=30)
        requests = [
            workflow_service_pb2.StartWorkflowRequest(workflow=spec["workflow"]) for _ in range(total)
        ]
        _ready()
        latencies: list[float] = []
        next_run = 0

        async def sender() -> None:
            nonlocal next_run
            while next_run < total:
                request = requests[next_run]
                next_run += 1
                sent = time.time()
                await stub.StartWorkflow(request, timeout=120)
                latencies.append(time.time() - sent)

        span = await _concurrently(sender, inflight)
    return {"runs": total, **span.report(total), "start_seconds": _percentiles(latencies)}


# -- echo and unary: the bare gRPC floor --------------------------------------------------------

ECHO_METHOD = "/jobwarden.bench.Echo/Echo"


def _echo_handler() -> grpc.GenericRpcHandler:
    async def echo(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        return request

    handler: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(
        echo
    )  # no (de)serializers: bytes in, bytes out
    return grpc.method_handlers_generic_handler("jobwarden.bench.Echo", {"Echo": handler})


async def _echo(spec: dict[str, Any]) -> dict[str, Any]:
    server = grpc.aio.server(options=_OPTIONS)
    server.add_generic_rpc_handlers((_echo_handler(),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    Path(spec["port_file"]).write_text(str(port))  # noqa: ASYNC240 (a few bytes, before serving)
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()

    def read_stdin() -> None:
        for line in sys.stdin:
            if line.startswith("stop"):
                break
        loop.call_soon_threadsafe(stopped.set)

    threading.Thread(target=read_stdin, daemon=True).start()
    _ready()
    await stopped.wait()
    await server.stop(0.5)
    return {"port": port, "cpu_seconds": time.process_time()}


async def _unary(spec: dict[str, Any]) -> dict[str, Any]:
    calls: int = spec["calls"]
    inflight: int = spec.get("inflight", 64)
    payload = bytes.fromhex(spec.get("payload", ""))
    async with grpc.aio.insecure_channel(spec["engine"], options=_OPTIONS) as channel:
        call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
            spec.get("method", ECHO_METHOD)
        )
        for _ in range(min(100, calls)):  # connection and caches warm before the clock starts
            await call(payload, timeout=30)
        _ready()
        left = calls
        latencies: array[float] = array("d")

        async def caller() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                sent = time.perf_counter()
                await call(payload, timeout=30)
                latencies.append(time.perf_counter() - sent)

        span = await _concurrently(caller, inflight)
    return {"calls": calls, **span.report(calls), "latency_seconds": _percentiles(latencies)}


_ROLES: dict[str, Callable[[dict[str, Any]], Coroutine[Any, Any, dict[str, Any]]]] = {
    "submit": _submit,
    "steady": _steady,
    "watch": _watch,
    "workflows": _workflows,
    "echo": _echo,
    "unary": _unary,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobwarden.bench._agent")
    parser.add_argument("role", choices=sorted(_ROLES))
    parser.add_argument("spec", help="the role's settings as a JSON object")
    args = parser.parse_args(argv)
    spec = json.loads(args.spec)
    try:
        result = asyncio.run(_ROLES[args.role](spec))
    except grpc.aio.AioRpcError as error:
        print(f"bench agent {args.role}: {error.code().name}: {error.details()}", file=sys.stderr)
        return 1
    _emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
