"""A new leader keeps its lease while its recovery makes progress, and gives it up when it stalls.

Recovering a large backlog takes longer than a lease: with 200,000 queued jobs every new leader was
deposed the moment it finished recovering, by each engine in turn, and none ever led. Renewing
regardless was no better: a recovery hung on the database kept the lease, and no engine could lead.

The first two tests drive ``Leadership`` alone, on the tests' private PostgreSQL, with recoveries
that make progress or hang; the last runs real engines with a real backlog.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import grpc
import pytest
from jobwarden.sdk import JobClient
from jobwarden.server.core import leadership as leadership_module
from jobwarden.server.core.leadership import (
    EngineRole,
    LeaderLease,
    Leadership,
    LeadershipSettings,
)
from jobwarden.v1 import job_service_pb2_grpc

from tests.engine.helpers import request
from tests.support.cluster import EngineCluster, list_engines
from tests.support.waiting import wait_for

from .test_several_engines import FAST, leader_stats_of

LEASE = 1.5
Recovery = Callable[[int], Coroutine[Any, Any, None]]


class Member:
    """One ``Leadership`` on the shared lease, with the recovery it runs when elected."""

    def __init__(self, url: str, engine_id: str, recovery: Callable[[Leadership], Recovery]) -> None:
        settings = LeadershipSettings(
            engine_id=engine_id,
            address=f"{engine_id}:1",
            lease_seconds=LEASE,
            renew_interval=0.3,
            poll_interval=0.05,
            margin=0.3,
        )
        self.leadership = Leadership(LeaderLease(url, lease_seconds=LEASE), settings)
        self.recovery = recovery(self.leadership)
        self.roles: list[EngineRole] = []
        self.leadership.observe_roles(lambda role, epoch, reason: self.roles.append(role))

    async def start(self) -> None:
        async def deposed(reason: str) -> None:
            pass

        await self.leadership.start(self.recovery, deposed, lambda: None)

    async def stop(self) -> None:
        await self.leadership.stop()


@pytest.fixture
async def members() -> AsyncIterator[list[Member]]:
    started: list[Member] = []
    yield started
    for member in started:
        await member.stop()


def hangs(leadership: Leadership) -> Recovery:
    async def recover(epoch: int) -> None:
        await asyncio.Event().wait()  # a read the database never answers

    return recover


def progresses(seconds: float) -> Callable[[Leadership], Recovery]:
    def make(leadership: Leadership) -> Recovery:
        async def recover(epoch: int) -> None:
            loop = asyncio.get_running_loop()
            end = loop.time() + seconds
            while loop.time() < end:
                await asyncio.sleep(0.1)  # a page read
                leadership.note_progress()

        return recover

    return make


def instant(leadership: Leadership) -> Recovery:
    async def recover(epoch: int) -> None:
        return None

    return recover


async def test_a_takeover_whose_recovery_stalls_gives_the_lease_to_another_engine(
    cluster_db: str, members: list[Member], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="jobwarden.leadership")
    hung = Member(cluster_db, "hung", hangs)
    other = Member(cluster_db, "other", instant)
    members.extend([hung, other])
    await other.leadership.run_sql(other.leadership.lease.create_tables)
    await other.leadership._beat()  # the hung engine sees another engine that could take over
    await hung.start()  # it takes the lease, recovers for ever, and gives up
    assert hung.leadership.role is EngineRole.STANDBY
    assert EngineRole.LEADER not in hung.roles
    assert any("gives up leading" in r.getMessage() for r in caplog.records)
    assert "made no progress" in caplog.text
    await other.start()
    await wait_for(lambda: other.leadership.is_leader, timeout=30)
    lease = await other.leadership.run_sql(other.leadership.lease.read)
    assert (lease.leader_id, lease.epoch) == ("other", 2)


async def test_a_lone_takeover_whose_recovery_hangs_keeps_the_lease_and_says_so(
    cluster_db: str,
    members: list[Member],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Alone, nobody else could lead: it keeps the lease (as a lone leader rides out a slow
    database) and says, every so often, that its recovery is not moving."""
    monkeypatch.setattr(leadership_module, "STALL_REPORT_SECONDS", 0.5)
    caplog.set_level(logging.WARNING, logger="jobwarden.leadership")
    answered = asyncio.Event()

    def hangs_until_answered(leadership: Leadership) -> Recovery:
        async def recover(epoch: int) -> None:
            await answered.wait()  # a read the database answers only at the end of the test

        return recover

    alone = Member(cluster_db, "alone", hangs_until_answered)
    members.append(alone)
    taking_over = asyncio.get_running_loop().create_task(alone.start())
    await wait_for(lambda: "its recovery has made no progress" in caplog.text, timeout=30)
    assert alone.leadership.role is EngineRole.LEADER
    assert not taking_over.done()
    lease = await alone.leadership.run_sql(alone.leadership.lease.read)
    assert (lease.leader_id, lease.epoch) == ("alone", 1)
    assert "gives up" not in caplog.text
    answered.set()
    await asyncio.wait_for(taking_over, 30)
    assert alone.leadership.is_leader
    assert alone.roles == [EngineRole.LEADER]


async def test_a_takeover_whose_recovery_makes_progress_keeps_the_lease(
    cluster_db: str, members: list[Member]
) -> None:
    slow = Member(cluster_db, "slow", progresses(4 * LEASE))
    other = Member(cluster_db, "other", instant)
    members.extend([slow, other])
    await other.leadership.run_sql(other.leadership.lease.create_tables)
    await other.leadership._beat()
    recovering = asyncio.get_running_loop().create_task(slow.start())
    await wait_for(lambda: slow.leadership.role is EngineRole.LEADER, timeout=10)
    await other.start()  # it polls all along and would take a lease that ran out
    await recovering
    assert slow.leadership.is_leader
    assert slow.roles == [EngineRole.LEADER]
    assert slow.leadership.stats.renewals >= 4
    assert EngineRole.LEADER not in other.roles
    lease = await other.leadership.run_sql(other.leadership.lease.read)
    assert (lease.leader_id, lease.epoch) == ("slow", 1)


async def submit_until_taken(address: str, timeout: float = 120.0) -> list[tuple[str, str]]:
    """Submit one job to ``address`` until it takes it: each refusal's details and leader hint."""
    refusals: list[tuple[str, str]] = []
    deadline = asyncio.get_running_loop().time() + timeout
    async with grpc.aio.insecure_channel(address) as channel:
        stub = job_service_pb2_grpc.JobServiceStub(channel)
        while True:
            try:
                await stub.SubmitJob(request("backlog", idempotency_key="after-the-kill"), timeout=10)
                return refusals
            except grpc.aio.AioRpcError as error:
                if error.code() is not grpc.StatusCode.UNAVAILABLE:
                    raise
                hints = [v for k, v in (error.trailing_metadata() or ()) if k == "jobwarden-leader"]
                refusals.append((error.details() or "", str(hints[0]) if hints else ""))
            assert asyncio.get_running_loop().time() < deadline, refusals[-5:]
            await asyncio.sleep(0.05)


async def test_a_new_leader_with_a_large_backlog_leads_once_it_has_recovered(
    cluster_db: str, tmp_path: Path
) -> None:
    """120,000 queued jobs take longer to recover than the 1.5 s a leader may act on one lease here,
    even on a quiet machine: the new leader reads them a page at a time and renews on each."""
    with EngineCluster(cluster_db, size=2, log_dir=tmp_path, extra_args=FAST) as cluster:
        await cluster.wait_for_leader()
        # Every address and an idempotency key per job: the submits follow the lease if it moves.
        async with JobClient(cluster.addresses, timeout=120) as client:
            for batch in range(120):
                await client.submit_many(
                    [
                        {"action": "backlog", "input": {}, "idempotency_key": f"b{batch}-{n}"}
                        for n in range(1000)
                    ]
                )
        leader = await cluster.wait_for_leader()
        standby = next(e for e in cluster.engines if e is not leader)
        assert standby.log_path is not None
        deposed_before = standby.log_path.read_text().count("stops leading")
        before = await list_engines(standby.address)
        assert before is not None
        [standby_id] = [e.engine_id for e in before.engines if e.address == standby.address]
        leader.kill()
        refusals = await submit_until_taken(standby.address)
        assert await cluster.wait_for_leader(timeout=90) is standby
        # While it recovers, the new leader says so, naming itself (clients try it again).
        taking_over = [(details, hint) for details, hint in refusals if "taking over" in details]
        assert taking_over, refusals
        for details, hint in taking_over:
            assert details == (
                f"engine {standby_id} is taking over as the leader (it is recovering the jobs "
                "the store holds); try again in a moment"
            )
            assert hint == standby.address
        assert all("is a standby" in details for details, _ in refusals if "taking over" not in details)
        answer = await list_engines(standby.address)
        assert answer is not None
        await asyncio.sleep(3.0)  # more than a lease: a leader deposed after recovering shows by now
        again = await list_engines(standby.address)
        assert again is not None
        assert (again.leader_address, again.epoch) == (standby.address, answer.epoch)
        log_text = standby.log_path.read_text()
        assert log_text.count("stops leading") == deposed_before
        assert "gives up leading" not in log_text
        stats = await leader_stats_of(standby.address)
        assert stats.queued == 120_001
