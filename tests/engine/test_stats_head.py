"""``GetStats``' counts describe the moment of its ``head_sequence``: a client that seeds counts from
it and then follows ``WatchJobs`` after that head counts every change exactly once."""

from __future__ import annotations

import asyncio
import sqlite3
import time

from jobwarden.contract import JobStatus
from jobwarden.v1 import job_service_pb2 as js
from jobwarden.v1 import job_service_pb2_grpc

from tests.conftest import EngineHandle


def queued(stats: js.GetStatsResponse) -> int:
    return sum(entry.count for entry in stats.statuses if entry.status == JobStatus.QUEUED)


async def test_a_change_not_yet_committed_is_neither_in_the_counts_nor_the_head(engine: EngineHandle) -> None:
    async with engine.channel() as channel:
        stub = job_service_pb2_grpc.JobServiceStub(channel)
        await stub.SubmitJob(js.SubmitJobRequest(action="nobody-serves-this"))
        before = await stub.GetStats(js.GetStatsRequest())
        assert queued(before) == 1
        # Hold the database: the next submit is counted and numbered, but cannot commit.
        blocker = sqlite3.connect(engine.db_url.removeprefix("sqlite:///"), timeout=30)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            submit = asyncio.ensure_future(stub.SubmitJob(js.SubmitJobRequest(action="nobody-serves-this")))
            deadline = time.monotonic() + 20
            while engine.core.registry.sequence == before.head_sequence:
                assert time.monotonic() < deadline, "the second submit was never numbered"
                await asyncio.sleep(0.01)
            during = await stub.GetStats(js.GetStatsRequest())
            assert during.head_sequence == before.head_sequence
            assert queued(during) == 1
            assert not submit.done()
        finally:
            blocker.rollback()
            blocker.close()
        await submit
        after = await stub.GetStats(js.GetStatsRequest())
        assert after.head_sequence > before.head_sequence
        assert queued(after) == 2
