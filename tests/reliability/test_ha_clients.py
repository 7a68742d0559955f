"""The SDK against real engines sharing a private PostgreSQL: a standby's refusal leads clients and
workers to the leader, and when the leader dies the worker re-attaches its running job at the new
leader, where it completes in its first attempt."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from jobwarden.contract import JobStatus
from jobwarden.sdk import Executor, JobClient, JobContext, Worker

from tests.support import EngineProcess, wait_for
from tests.support.postgres import PrivatePostgres

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(300)]


@pytest.fixture
def pg() -> Iterator[PrivatePostgres]:
    reason = PrivatePostgres.unavailable()
    if reason:
        pytest.skip(reason)
    with PrivatePostgres() as server:
        yield server


def engines(pg: PrivatePostgres, tmp_path: Path, count: int) -> list[EngineProcess]:
    started = []
    for n in range(count):
        engine = EngineProcess(pg.url, log_path=tmp_path / f"engine{n}.log")
        engine.extra_args = ("--engine-id", f"e{n}", "--advertise", engine.address)
        started.append(engine.start())
    return started


async def leader_of(client: JobClient, candidates: list[EngineProcess]) -> EngineProcess:
    async with asyncio.timeout(60):
        while True:
            cluster = await client.engines()
            for engine in candidates:
                if cluster.leader_address == engine.address:
                    return engine
            await asyncio.sleep(0.05)


class Gate(Executor):
    action = "ha-gate"
    supports_resume = True
    opened: asyncio.Event | None = None
    ran: list[tuple[int, str]] = []

    async def execute(self, ctx: JobContext) -> dict[str, Any]:
        Gate.ran.append((ctx.attempt, "execute"))
        assert Gate.opened is not None
        await Gate.opened.wait()
        return {"attempt": ctx.attempt}

    async def resume(self, ctx: JobContext) -> dict[str, Any]:
        Gate.ran.append((ctx.attempt, "resume"))
        assert Gate.opened is not None
        await Gate.opened.wait()
        return {"attempt": ctx.attempt}


@contextlib.asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[None]:
    task = asyncio.create_task(worker.run())
    try:
        yield
    finally:
        worker.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 30)


async def wait_status(client: JobClient, job_id: str, *wanted: JobStatus) -> Any:
    async with asyncio.timeout(60):
        while True:
            job = await client.get(job_id)
            if JobStatus(job.status) in wanted:
                return job
            await asyncio.sleep(0.05)


async def test_the_standby_sends_clients_and_workers_to_the_leader_and_the_worker_fails_over(
    pg: PrivatePostgres, tmp_path: Path
) -> None:
    first, second = await asyncio.to_thread(engines, pg, tmp_path, 2)
    everyone = [first, second]
    async with JobClient([first.address, second.address], timeout=5) as probe:
        leader = await leader_of(probe, everyone)
    standby = second if leader is first else first
    # Given the standby first, both the client and the worker end up at the leader.
    Gate.opened, Gate.ran = asyncio.Event(), []
    worker = Worker([Gate], engine=[standby.address, leader.address], capacity=2)
    async with running(worker), JobClient([standby.address, leader.address], timeout=5) as client:
        await asyncio.wait_for(worker.wait_connected(), 60)
        assert worker.address == leader.address
        job = await client.submit("ha-gate", timeouts={"heartbeat": 10, "takeover": 60})
        assert client.address == leader.address
        assert job.idempotency_key.startswith("jobwarden-sdk-")
        await wait_status(client, job.id, JobStatus.RUNNING)
        # The leader dies with the job running: the standby takes over, the worker follows.
        await asyncio.to_thread(leader.kill)
        new_leader = await leader_of(client, [standby])
        assert new_leader is standby
        await wait_for(
            lambda: worker.address == standby.address and worker.running_jobs == 1,
            timeout=60,
            message="the worker at the new leader, holding its job",
        )
        resumed = await wait_status(client, job.id, JobStatus.RUNNING)
        assert resumed.attempt == 1
        Gate.opened.set()
        done = await wait_status(client, job.id, JobStatus.COMPLETED)
        assert done.attempt == 1
        assert Gate.ran == [(1, "execute")]  # re-attached, not run again
        # Submitted after the failover, through the same client: it goes to the new leader.
        late = await client.submit("ha-gate")
        assert client.address == standby.address
        assert (
            JobStatus((await wait_status(client, late.id, JobStatus.COMPLETED)).status) is JobStatus.COMPLETED
        )


def test_jobwarden_engines_lists_the_leader_and_the_standby(pg: PrivatePostgres, tmp_path: Path) -> None:
    first, second = engines(pg, tmp_path, 2)
    jobwarden = str(Path(sys.executable).with_name("jobwarden"))
    done = subprocess.run(
        [jobwarden, "engines", "--engine", f"{first.address},{second.address}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines()[1:]]
    assert sorted(row[2 if row[1] == "*" else 1] for row in rows) == sorted([first.address, second.address])
    roles = [row[3 if row[1] == "*" else 2] for row in rows]
    assert roles[0] == "leader"
    assert roles[1:] == ["standby"]
