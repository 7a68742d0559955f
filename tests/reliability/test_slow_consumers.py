"""100 watchers, 10 of which never read: the engine and the 90 others keep their pace; the 10 are
cut (RESOURCE_EXHAUSTED) instead of holding events in memory, and may reconnect from their last
sequence. The engine runs in its own process, so the watchers' work does not slow it artificially.
A cut frees the watcher's per-client slot and its place in GetStats at once, even when its client
never reads again."""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from jobwarden.server.api import EngineServer, ServerOptions
from jobwarden.v1 import job_service_pb2 as js
from jobwarden.v1 import job_service_pb2_grpc

from tests.conftest import TEST_CONFIG
from tests.engine.helpers import request
from tests.support import next_message, wait_for, wait_for_async

ROOT = Path(__file__).resolve().parents[2]
FAST, SLOW = 90, 10
JOBS = 400
MAX_PENDING = 200


@pytest.fixture
def engine_address(tmp_path: Path) -> Iterator[str]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.reliability._engine_main",
            f"sqlite:///{tmp_path / 'slow.db'}",
            json.dumps({"watch_max_pending": MAX_PENDING}),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=(tmp_path / "engine.log").open("wb"),
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().decode()
        assert "listening on" in line, line
        yield line.split("listening on", 1)[1].strip()
    finally:
        process.kill()
        process.wait(10)


class FastWatcher:
    def __init__(self, stub: job_service_pb2_grpc.JobServiceAsyncStub, sent: dict[int, float]) -> None:
        self.sequences: list[int] = []
        self.lags: list[float] = []
        self.sent = sent
        self.call = stub.WatchJobs(js.WatchJobsRequest(after_sequence=0))
        self.task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        async for response in self.call:
            now = time.monotonic()
            for ev in response.events:
                self.sequences.append(ev.sequence)
                if ev.sequence in self.sent:
                    self.lags.append(now - self.sent[ev.sequence])


async def test_slow_watchers_are_cut_and_the_rest_keep_pace(engine_address: str) -> None:
    fast_channels = [grpc.aio.insecure_channel(engine_address) for _ in range(9)]
    # Without BDP probing a connection keeps HTTP/2's default 64 KiB window: a reader that never reads
    # stops the engine's writes after that much (with it, gRPC would buffer megabytes first).
    slow_channels = [
        grpc.aio.insecure_channel(engine_address, options=[("grpc.http2.bdp_probe", 0)]) for _ in range(SLOW)
    ]
    control = grpc.aio.insecure_channel(engine_address)
    jobs = job_service_pb2_grpc.JobServiceStub(control)
    #: event sequence -> when the call that made it was answered
    sent: dict[int, float] = {}
    try:
        fast = [
            FastWatcher(job_service_pb2_grpc.JobServiceStub(fast_channels[i % 9]), sent) for i in range(FAST)
        ]
        # Started and never read: their messages pile up in gRPC until flow control stops the engine's
        # writes, and then in the engine's per-watcher buffer until it overflows.
        slow = [
            job_service_pb2_grpc.JobServiceStub(channel).WatchJobs(js.WatchJobsRequest(after_sequence=0))
            for channel in slow_channels
        ]
        for _ in range(200):
            if (await jobs.GetStats(js.GetStatsRequest())).watchers >= FAST + SLOW:
                break
            await asyncio.sleep(0.05)
        assert (await jobs.GetStats(js.GetStatsRequest())).watchers == FAST + SLOW
        started = time.monotonic()
        ids = []
        for n in range(JOBS):
            job = (await jobs.SubmitJob(request("slow-consumers", {"n": n, "pad": "x" * 512}))).job
            sent[job.sequence] = time.monotonic()
            ids.append(job.id)
        for job_id in ids:
            job = (await jobs.CancelJob(js.CancelJobRequest(job_id=job_id))).job
            sent[job.sequence] = time.monotonic()
        load_seconds = time.monotonic() - started
        head = (await jobs.GetStats(js.GetStatsRequest())).head_sequence
        assert head == 2 * JOBS
        await wait_for(lambda: all(len(w.sequences) >= head for w in fast), timeout=120)
        caught_up = time.monotonic() - started
        for watcher in fast:
            assert watcher.sequences == list(range(1, head + 1)), "a fast watcher missed or repeated events"
        # The slow ones, reading at last: what gRPC had buffered, then the cut.
        for call in slow:
            with pytest.raises(grpc.aio.AioRpcError) as cut:
                async for _ in call:
                    pass
            assert cut.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, cut.value
            assert "after_sequence" in (cut.value.details() or "")
        lags = sorted(lag for w in fast for lag in w.lags)
        print(
            f"slow consumers: {FAST} fast watchers got all {head} events gap-free, {SLOW} never-reading "
            f"ones cut; {2 * JOBS} calls in {load_seconds:.1f}s ({2 * JOBS / load_seconds:.0f}/s), fast "
            f"watchers caught up {caught_up - load_seconds:.2f}s after the last call; delivery lag p50 "
            f"{statistics.median(lags) * 1000:.0f} ms, p99 {lags[int(len(lags) * 0.99)] * 1000:.0f} ms"
        )
    finally:
        for channel in [*fast_channels, *slow_channels, control]:
            await channel.close(grace=None)


@pytest.fixture
async def one_watcher_per_client(sqlite_url: str) -> AsyncIterator[EngineServer]:
    """An engine in this event loop that lets each client hold one watcher, cut 50 events behind."""
    server = EngineServer(
        replace(TEST_CONFIG, db_url=sqlite_url, watch_max_pending=50),
        ServerOptions(port=0, watch_keepalive=0.5, max_watchers_per_client=1),
    )
    await server.start()
    yield server
    await server.stop(grace=0)


async def test_a_cut_frees_the_slot_at_once_though_the_client_never_reads(
    one_watcher_per_client: EngineServer,
) -> None:
    server = one_watcher_per_client
    slow_channel = grpc.aio.insecure_channel(server.address, options=[("grpc.http2.bdp_probe", 0)])
    control = grpc.aio.insecure_channel(server.address)
    jobs = job_service_pb2_grpc.JobServiceStub(control)

    async def watchers() -> int:
        return (await jobs.GetStats(js.GetStatsRequest())).watchers

    try:
        # Started and never read, from here to the end of the test but for the last lines.
        slow = job_service_pb2_grpc.JobServiceStub(slow_channel).WatchJobs(js.WatchJobsRequest())
        await wait_for_async(lambda: _equals(watchers(), 1), message="the slow watcher to subscribe")
        # At the limit: this client's second watcher is refused.
        refused = jobs.WatchJobs(js.WatchJobsRequest())
        with pytest.raises(grpc.aio.AioRpcError) as at_limit:
            await refused.read()
        assert at_limit.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        # Events in commits of 10 (fewer than the 50 it may fall behind) until gRPC's window is full
        # and the engine waits to write to it, and then 50 more: it is cut while that write waits.
        submitted = 0
        while await watchers() and submitted < 10_000:
            batch = js.SubmitJobsRequest(jobs=[request("slow-cut", {"n": n}) for n in range(10)])
            await jobs.SubmitJobs(batch)
            submitted += 10
        assert submitted > 100, "cut before gRPC's window was full: the write never waited"
        await wait_for_async(lambda: _equals(watchers(), 0), message="GetStats.watchers to drop")
        assert server.limits is not None
        assert not server.limits.watchers, "the cut watcher still holds its per-client slot"
        # The same client watches again, at the limit of one, while the first has read nothing.
        fresh = jobs.WatchJobs(js.WatchJobsRequest(after_sequence=0))
        first = await next_message(fresh, 30)
        assert first.events[0].sequence == 1
        assert await watchers() == 1
        fresh.cancel()
        # The slow one, reading at last: what gRPC had buffered for it, then the cut.
        with pytest.raises(grpc.aio.AioRpcError) as cut:
            async for _ in slow:
                pass
        assert cut.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "after_sequence" in (cut.value.details() or "")
    finally:
        await slow_channel.close(grace=None)
        await control.close(grace=None)


async def _equals(value: Awaitable[int], expected: int) -> bool:
    return await value == expected
