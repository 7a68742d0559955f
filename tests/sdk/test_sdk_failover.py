"""Clients and workers given several engines (``a:1,b:2``): they find the leader and fail over.

A standby of a real cluster refuses writes and worker sessions with UNAVAILABLE naming the leader
in the trailing metadata ``jobwarden-leader``; ``RefusingStandby`` is a real gRPC server that does
just that, so the redirect is tested without leader election. The failover of a worker is tested
with an engine that dies and another that takes over its database on another address.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from jobwarden.contract import JobStatus
from jobwarden.sdk import (
    EngineUnavailable,
    Executor,
    JobClient,
    JobContext,
    SyncJobClient,
    Worker,
    engine_addresses,
)
from jobwarden.sdk._endpoints import LEADER_METADATA, leader_hint, never_delivered

from tests.support import EngineProcess, free_port

from .conftest import JOBWARDEN, wait_status, wait_until


class RefusingStandby:
    """A gRPC server that answers every call as a standby does: UNAVAILABLE, naming ``leader``."""

    def __init__(self, leader: str | None) -> None:
        self.leader = leader
        self.port = free_port()
        self.calls: list[str] = []
        self._server: grpc.aio.Server | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> RefusingStandby:
        standby = self

        async def refuse(context: grpc.aio.ServicerContext[Any, Any], method: str) -> None:
            standby.calls.append(method)
            leader = standby.leader or "none"
            metadata = ((LEADER_METADATA, standby.leader),) if standby.leader else ()
            await context.abort(
                grpc.StatusCode.UNAVAILABLE,
                f"engine standby-1 is a standby; the leader is {leader}",
                trailing_metadata=metadata,
            )

        class Handler(grpc.GenericRpcHandler):
            def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[Any, Any]:
                method: str = details.method

                async def unary(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
                    await refuse(context, method)
                    return b""

                async def stream_out(
                    request: bytes, context: grpc.aio.ServicerContext[Any, Any]
                ) -> AsyncIterator[bytes]:
                    await refuse(context, method)
                    yield b""

                async def stream_both(
                    requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]
                ) -> AsyncIterator[bytes]:
                    await refuse(context, method)
                    yield b""

                if method.endswith("/Connect"):
                    return grpc.stream_stream_rpc_method_handler(stream_both)
                if method.endswith("/WatchJobs"):
                    return grpc.unary_stream_rpc_method_handler(stream_out)
                return grpc.unary_unary_rpc_method_handler(unary)

        self._server = grpc.aio.server(handlers=[Handler()])
        self._server.add_insecure_port(self.address)
        await self._server.start()
        return self

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(0)


@pytest.fixture
async def standby_factory() -> AsyncIterator[Callable[[str | None], Awaitable[RefusingStandby]]]:
    started: list[RefusingStandby] = []

    async def start(leader: str | None) -> RefusingStandby:
        standby = await RefusingStandby(leader).start()
        started.append(standby)
        return standby

    yield start
    for standby in started:
        await standby.stop()


def dead_address() -> str:
    """An address nothing listens on: connections are refused."""
    return f"127.0.0.1:{free_port()}"


class Gate(Executor):
    """Runs until the test opens its gate; records every attempt it ran."""

    action = "failover-gate"
    supports_resume = True
    opened: asyncio.Event | None = None
    ran: list[tuple[str, int, str]] = []

    async def execute(self, ctx: JobContext) -> dict[str, Any]:
        Gate.ran.append((ctx.job_id, ctx.attempt, "execute"))
        assert Gate.opened is not None
        await Gate.opened.wait()
        return {"attempt": ctx.attempt}

    async def resume(self, ctx: JobContext) -> dict[str, Any]:
        Gate.ran.append((ctx.job_id, ctx.attempt, "resume"))
        assert Gate.opened is not None
        await Gate.opened.wait()
        return {"attempt": ctx.attempt}


@contextlib.asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(worker.run())
    try:
        yield task
    finally:
        worker.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 30)


# -- addresses ---------------------------------------------------------------------------------


def test_addresses_are_parsed_from_commas_lists_and_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert engine_addresses("a:1, b:2 ,a:1") == ("a:1", "b:2")
    assert engine_addresses(["a:1", "grpc://b:2"]) == ("a:1", "b:2")
    monkeypatch.setenv("JOBWARDEN_ENGINE", "x:7,y:8")
    assert engine_addresses(None) == ("x:7", "y:8")
    assert engine_addresses("") == ("x:7", "y:8")
    monkeypatch.delenv("JOBWARDEN_ENGINE")
    assert engine_addresses(None) == ("127.0.0.1:50051",)


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("a:1,,b:2", "separated by commas"),
        ("a:1,nohost", "must be HOST:PORT, got 'nohost'"),
        ("a:1,b:99999", "must be HOST:PORT, got 'b:99999'"),
    ],
)
def test_a_bad_address_list_is_refused_saying_which(value: str, said: str) -> None:
    with pytest.raises(ValueError, match=re.escape(said)):
        engine_addresses(value)
    with pytest.raises(ValueError, match=re.escape(said)):
        JobClient(value)


# -- clients -----------------------------------------------------------------------------------


async def test_a_client_skips_a_dead_engine_and_keys_its_submits(engine: Any) -> None:
    async with JobClient(f"{dead_address()},{engine.address}", timeout=5) as client:
        job = await client.submit("work", {"n": 1})
        assert client.address == engine.address
        # With several engines a submit may be sent twice: it carries a key of its own.
        assert job.idempotency_key.startswith("jobwarden-sdk-")
        assert (await client.get(job.id)).id == job.id
        given = await client.submit("work", {"n": 2}, idempotency_key="mine")
        assert given.idempotency_key == "mine"
        batch = await client.submit_many([{"action": "work"}, {"action": "work", "idempotency_key": "k2"}])
        assert batch[0].idempotency_key.startswith("jobwarden-sdk-")
        assert batch[1].idempotency_key == "k2"
        assert (await client.stats()).head_sequence > 0


async def test_a_submit_sent_again_with_its_key_is_one_job(engine: Any) -> None:
    async with JobClient(f"{dead_address()},{engine.address}") as client:
        first = await client.submit("work", {"n": 1}, idempotency_key="again")
        second = await client.submit("work", {"n": 1}, idempotency_key="again")
        assert first.id == second.id
        assert len((await client.list(action="work")).jobs) == 1


async def test_one_address_works_as_before(engine: Any) -> None:
    async with JobClient(engine.address) as client:
        job = await client.submit("work")
        assert job.idempotency_key == ""  # nothing is sent twice with one engine
        assert client.addresses == (engine.address,)
    dead = dead_address()
    async with JobClient(dead, timeout=5, failover_timeout=60) as client:
        # No failover with one address: the first refusal is the answer, at once.
        with pytest.raises(EngineUnavailable, match=f"cannot reach the engine at {dead}"):
            await asyncio.wait_for(client.stats(), 20)


async def test_no_live_engine_gives_up_after_the_failover_timeout_naming_them_all() -> None:
    a, b = dead_address(), dead_address()
    async with JobClient(f"{a},{b}", timeout=2, failover_timeout=1.0) as client:
        with pytest.raises(EngineUnavailable) as refused:
            await client.submit("work")
    assert f"no engine of {a}, {b} took the call as leader within 1s" in str(refused.value)


async def test_a_standby_redirects_the_client_to_the_leader(engine: Any, standby_factory: Any) -> None:
    standby = await standby_factory(engine.address)
    # Even given the standby alone, the client follows it to the leader it names.
    async with JobClient(standby.address, timeout=5) as client:
        job = await client.submit("work")
        assert client.address == engine.address
        assert standby.calls == ["/jobwarden.v1.JobService/SubmitJob"]
        assert client.addresses == (standby.address, engine.address)
        assert (await client.get(job.id)).id == job.id
        assert len(standby.calls) == 1  # later calls go to the leader


async def test_a_standby_refusal_is_never_delivered_and_names_the_leader(standby_factory: Any) -> None:
    standby = await standby_factory("10.0.0.9:50051")
    async with grpc.aio.insecure_channel(standby.address) as channel:
        call: Any = channel.unary_unary("/jobwarden.v1.JobService/CancelJob")
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call(b"")
    assert leader_hint(refused.value) == "10.0.0.9:50051"
    assert never_delivered(refused.value)
    assert "is a standby" in (refused.value.details() or "")


async def test_a_standby_without_a_leader_sends_the_client_on_to_the_next(
    engine: Any, standby_factory: Any
) -> None:
    standby = await standby_factory(None)
    async with JobClient([standby.address, engine.address], timeout=5) as client:
        job = await client.cancel((await client.submit("work")).id)
        assert JobStatus(job.status) is JobStatus.CANCELLED
        assert client.address == engine.address


async def test_the_watch_reads_from_the_next_engine(engine: Any) -> None:
    async with JobClient(f"{dead_address()},{engine.address}", timeout=5) as client:
        job = await client.submit("work")
        async with asyncio.timeout(30):
            async for event in client.watch(after_sequence=0):
                assert event.job.id == job.id
                break


def test_the_sync_client_takes_several_engines(tmp_path: Path) -> None:
    # A sync test has no event loop for an in-process engine: the engine runs in its own process.
    with (
        EngineProcess(f"sqlite:///{tmp_path / 'engine.db'}") as live,
        SyncJobClient([dead_address(), live.address], timeout=5) as client,
    ):
        job = client.submit("work")
        assert client.address == live.address
        assert client.get(job.id).idempotency_key.startswith("jobwarden-sdk-")


async def test_the_cli_takes_several_engines(engine: Any) -> None:
    dead = dead_address()
    done = await asyncio.to_thread(
        subprocess.run,
        [JOBWARDEN, "submit", "work", "--engine", f"{dead},{engine.address}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    bad = await asyncio.to_thread(
        subprocess.run,
        [JOBWARDEN, "jobs", "--engine", f"{engine.address},nohost"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2
    assert "engine address must be HOST:PORT, got 'nohost'" in bad.stderr


# -- workers -----------------------------------------------------------------------------------


async def test_a_worker_finds_the_leader_past_a_dead_engine_and_a_standby(
    engine: Any, standby_factory: Any
) -> None:
    standby = await standby_factory(engine.address)
    Gate.opened, Gate.ran = asyncio.Event(), []
    Gate.opened.set()
    worker = Worker([Gate], engine=[dead_address(), standby.address], capacity=2, connect_timeout=30)
    async with running(worker), JobClient(engine.address) as client:
        await asyncio.wait_for(worker.wait_connected(), 30)
        assert worker.address == engine.address
        assert "/jobwarden.v1.ExecutorService/Connect" in standby.calls
        job = await client.submit("failover-gate")
        done = await wait_status(client, job.id)
        assert JobStatus(done.status) is JobStatus.COMPLETED


async def test_a_worker_fails_over_and_reattaches_its_running_job(engine_factory: Any) -> None:
    """The leader dies with a job running; another engine takes over the database on another
    address: the worker registers there and re-attaches the job, which completes in its first
    attempt, not run again."""
    first = await engine_factory()
    second_port = free_port()
    second_address = f"127.0.0.1:{second_port}"
    Gate.opened, Gate.ran = asyncio.Event(), []
    worker = Worker([Gate], engine=[first.address, second_address], capacity=2)
    clients = [first.address, second_address]
    async with running(worker), JobClient(clients, timeout=5) as client:
        await asyncio.wait_for(worker.wait_connected(), 30)
        job = await client.submit("failover-gate", timeouts={"heartbeat": 30, "takeover": 60})
        await wait_status(client, job.id, JobStatus.RUNNING)
        await first.server.stop(grace=0)
        # Submitted while no engine answers: the client retries until one does.
        late = asyncio.create_task(client.submit("work", {"late": True}))
        await asyncio.sleep(0.3)
        await engine_factory(db_url=first.db_url, port=second_port)
        submitted = await asyncio.wait_for(late, 60)
        assert submitted.idempotency_key.startswith("jobwarden-sdk-")

        async def reattached() -> bool:
            current = await client.get(job.id)
            return worker.address == second_address and JobStatus(current.status) is JobStatus.RUNNING

        await wait_until(reattached, what="the job re-attached at the second engine")
        Gate.opened.set()
        done = await wait_status(client, job.id)
        assert JobStatus(done.status) is JobStatus.COMPLETED, done
        assert done.attempt == 1
        assert Gate.ran == [(job.id, 1, "execute")]
        assert client.address == second_address
        assert len((await client.list(action="work")).jobs) == 1


# -- answers lost with their engine -------------------------------------------------------------


class LosingEngine:
    """A front for a real engine that carries the ``lose`` calls out and then loses their answer,
    as a leader that commits and dies before it replies (UNAVAILABLE, no hint, after the fact); it
    passes the other calls through."""

    def __init__(self, behind: str, lose: frozenset[str]) -> None:
        self.behind = behind
        self.lose = lose
        self.port = free_port()
        self.carried: list[str] = []
        self._server: grpc.aio.Server | None = None
        self._channel: grpc.aio.Channel | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> LosingEngine:
        self._channel = grpc.aio.insecure_channel(self.behind)
        front = self

        class Handler(grpc.GenericRpcHandler):
            def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[Any, Any]:
                method: str = details.method

                async def unary(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
                    assert front._channel is not None
                    call: Any = front._channel.unary_unary(method)
                    answer: bytes = await call(request)
                    name = method.rsplit("/", 1)[-1]
                    front.carried.append(name)
                    if name in front.lose:
                        await context.abort(grpc.StatusCode.UNAVAILABLE, "the engine went away mid-call")
                    return answer

                return grpc.unary_unary_rpc_method_handler(unary)

        self._server = grpc.aio.server(handlers=[Handler()])
        self._server.add_insecure_port(self.address)
        await self._server.start()
        return self

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(0)
        if self._channel is not None:
            await self._channel.close()


@pytest.fixture
async def losing(engine: Any) -> AsyncIterator[LosingEngine]:
    lose = frozenset({"SubmitJob", "CancelJob", "RetryJob", "AcquireLock"})
    front = await LosingEngine(engine.address, lose).start()
    yield front
    await front.stop()


async def test_a_submit_whose_answer_was_lost_is_sent_again_and_stays_one_job(
    engine: Any, losing: LosingEngine
) -> None:
    async with JobClient([losing.address, engine.address], timeout=5) as client:
        job = await client.submit("work", {"n": 1})
        assert losing.carried == ["SubmitJob"]  # the first try was committed, its answer lost
        assert client.address == engine.address
        stored = (await client.list(action="work")).jobs
        assert [each.id for each in stored] == [job.id]


async def test_a_cancel_whose_answer_was_lost_is_found_done(engine: Any, losing: LosingEngine) -> None:
    async with JobClient(engine.address) as direct:
        job = await direct.submit("work", run_at=_later(600))
    async with JobClient([losing.address, engine.address], timeout=5) as client:
        cancelled = await client.cancel(job.id)  # not refused as "already CANCELLED"
    assert losing.carried == ["CancelJob"]
    assert JobStatus(cancelled.status) is JobStatus.CANCELLED


async def test_a_retry_whose_answer_was_lost_is_not_done_twice(engine: Any, losing: LosingEngine) -> None:
    async with JobClient(engine.address) as direct:
        job = await direct.submit("work", run_at=_later(600))
        await direct.cancel(job.id)
    async with JobClient([losing.address, engine.address], timeout=5) as client:
        retried = await client.retry(job.id)
    assert losing.carried == ["GetJob", "RetryJob"]  # read first, then retried; its answer lost
    assert JobStatus(retried.status) is JobStatus.QUEUED
    async with JobClient(engine.address) as direct:
        events = await direct.events(job.id)
    # Retried once: one move from CANCELLED back to QUEUED in its history.
    assert [int(event.previous_status) for event in events].count(JobStatus.CANCELLED) == 1


async def test_a_lock_whose_answer_was_lost_is_not_taken_again(engine: Any, losing: LosingEngine) -> None:
    async with JobClient([losing.address, engine.address], timeout=5) as client:
        with pytest.raises(EngineUnavailable, match="may or may not have done it"):
            await client.acquire_lock("ops", ["asset:1"], ttl=60)
    assert losing.carried == ["AcquireLock"]


def _later(seconds: float) -> Any:
    from datetime import UTC, datetime, timedelta

    return datetime.now(UTC) + timedelta(seconds=seconds)
