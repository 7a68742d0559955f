"""The connection indicator and the feed's recovery, against a real ``jobwarden serve`` process.

The engine is killed and restarted on the same port and database; the console says so while it is
gone and catches up from its last sequence once it is back, missing nothing.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import grpc.aio
from jobwarden.contract import JobStatus
from jobwarden.tui._feed import LinkState, LinkStatus
from jobwarden.tui.widgets import LinkIndicator
from jobwarden.v1 import job_service_pb2, job_service_pb2_grpc

from tests.conftest import EngineHandle
from tests.support import EngineProcess
from tests.tui.helpers import RecordingConsole, closed_address, row_text, submit, until

SIZE = (140, 30)


def indicator(app: RecordingConsole) -> str:
    return str(app.screen.query_one(LinkIndicator).content)


async def head_sequence(address: str) -> int:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = job_service_pb2_grpc.JobServiceStub(channel)
        return (await stub.GetStats(job_service_pb2.GetStatsRequest())).head_sequence


async def test_lost_engine_shows_reconnecting_and_the_feed_catches_up(tmp_path: Path) -> None:
    engine = EngineProcess(f"sqlite:///{tmp_path / 'engine.db'}", log_path=tmp_path / "engine.log").start()
    try:
        app = RecordingConsole(engine.address, flush_interval=0.1, stats_interval=0.3)
        async with app.run_test(size=SIZE) as pilot:
            async with grpc.aio.insecure_channel(engine.address) as channel:
                before = await submit(channel, "transcode", n=1)
            await until(pilot, lambda: "QUEUED" in row_text(app, before.id), what="the first job")
            await until(pilot, lambda: "live" in indicator(app), what="the live indicator")

            engine.kill()
            await until(pilot, lambda: "reconnecting" in indicator(app), what="the reconnecting indicator")
            assert app.feed.status().state is LinkState.RECONNECTING
            # What was seen stays on screen while the engine is away.
            assert "QUEUED" in row_text(app, before.id)

            engine.start()
            # Changes made the moment the engine is back, likely before the console reconnects:
            # the feed must replay them from its sequence, not skip them.
            async with grpc.aio.insecure_channel(engine.address) as channel:
                after = [await submit(channel, "transcode", n=n) for n in range(2, 12)]
                cancel = job_service_pb2.CancelJobRequest(job_id=before.id, reason="while you were away")
                await job_service_pb2_grpc.JobServiceStub(channel).CancelJob(cancel)
            await until(pilot, lambda: "live" in indicator(app), timeout=30, what="live again")
            await until(
                pilot,
                lambda: all(job.id in app.jobs_screen.table.order for job in after),
                what="the jobs submitted during the outage",
            )
            await until(pilot, lambda: "CANCELLED" in row_text(app, before.id), what="the missed cancel")
            head = await head_sequence(engine.address)
            await until(pilot, lambda: app.store.sequence >= head, what="the feed at the engine's head")
            assert app.feed.reconnects >= 1
            assert app.store.jobs[before.id].status is JobStatus.CANCELLED
            # The header's counts were seeded again on reconnecting, and the replay not counted twice.
            assert app.counts.get() == {JobStatus.QUEUED: 10, JobStatus.CANCELLED: 1}
    finally:
        engine.terminate()


async def test_silent_engine_shows_stale_then_live(tmp_path: Path) -> None:
    engine = EngineProcess(f"sqlite:///{tmp_path / 'engine.db'}", log_path=tmp_path / "engine.log").start()
    assert engine.process is not None
    pid = engine.process.pid
    try:
        # The engine's keep-alive comes every 5 s; 6 s of silence is stale.
        app = RecordingConsole(engine.address, flush_interval=0.1, stats_interval=0.5, stale_after=6.0)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: "live" in indicator(app), what="the live indicator")
            # A stopped process keeps its sockets open: TCP sees nothing wrong, only silence.
            os.kill(pid, signal.SIGSTOP)
            try:
                await until(pilot, lambda: "stale" in indicator(app), timeout=30, what="the stale indicator")
                assert app.feed.status().state is LinkState.STALE
            finally:
                os.kill(pid, signal.SIGCONT)
            await until(pilot, lambda: "live" in indicator(app), timeout=30, what="live again")
            async with grpc.aio.insecure_channel(engine.address) as channel:
                job = await submit(channel, "transcode")
            await until(pilot, lambda: job.id in app.jobs_screen.table.order, what="a job after the silence")
    finally:
        engine.terminate()


async def test_a_large_backlog_shows_how_many_jobs_have_loaded(engine: EngineHandle) -> None:
    """Every unfinished job is listed before the view goes live (200,000 took 15 s here): the
    indicator and the empty table say how many have come so far, not only "connecting"."""
    async with engine.channel() as channel:
        stub = job_service_pb2_grpc.JobServiceStub(channel)
        for _ in range(4):
            jobs = [job_service_pb2.SubmitJobRequest(action="backlog") for _n in range(900)]
            await stub.SubmitJobs(job_service_pb2.SubmitJobsRequest(jobs=jobs))
    app = RecordingConsole(engine.address, flush_interval=0.05, stats_interval=0.3)
    seen: list[int | None] = []

    async def watch_the_feed() -> None:
        while True:
            loading = app.feed.status().loading
            if not seen or seen[-1] != loading:
                seen.append(loading)
            await asyncio.sleep(0)

    async with app.run_test(size=SIZE) as pilot:
        watching = asyncio.get_running_loop().create_task(watch_the_feed())
        try:
            await until(pilot, lambda: "live" in indicator(app), what="the live indicator")
        finally:
            watching.cancel()
        assert len(app.store) == 3600
    # Listed 1,000 a page: the count grows a page at a time, and is gone once the list is in.
    counts = [n for n in seen if n]
    assert counts == sorted(counts)
    assert set(counts) <= {1000, 2000, 3000, 3600}
    assert counts, seen
    assert seen[-1] is None
    status = LinkStatus(LinkState.CONNECTING, 2.0, 0, "", loading=45_000)
    quiet = RecordingConsole(closed_address())
    async with quiet.run_test(size=SIZE) as pilot:
        link = pilot.app.screen.query_one(LinkIndicator)
        link.show(status, None)
        assert str(link.content) == "◌ loading jobs · 45,000"
        assert quiet._empty_text(status) == "Loading the engine's unfinished jobs: 45,000 so far…"
