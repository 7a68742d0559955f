"""The database refuses writes, then comes back: callers get an error (UNAVAILABLE), nothing is
acknowledged (no submit answered, no result acked), nothing reaches the store, and the engine serves
again as soon as the database does.

Two real faults: a SQLite database that turns read-only under the engine (``PRAGMA query_only`` on
every connection the engine takes: the test runs as root, for whom ``chmod`` changes nothing), and a
PostgreSQL role turned read-only whose connections are killed with ``pg_terminate_backend``.
"""

from __future__ import annotations

import hashlib
import sqlite3
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from jobwarden.contract import JobStatus
from jobwarden.server.core import SqlStore
from jobwarden.v1 import job_service_pb2 as js
from sqlalchemy import event

from tests.conftest import POSTGRES_URL, EngineFactory, EngineHandle, Stubs, postgres_unavailable
from tests.engine.helpers import request
from tests.reliability._harness import Ledger, check_invariants
from tests.support import RawWorker, wait_for

#: how long a caller waits for a commit before it is told the store is unavailable
COMMIT_TIMEOUT = 1.0


@dataclass
class Fault:
    fail: Callable[[], None]
    heal: Callable[[], None]
    #: a digest of everything stored (read straight from the database, not through the engine)
    digest: Callable[[], str]


def _stubs(engine: EngineHandle) -> Stubs:
    from jobwarden.v1 import executor_service_pb2_grpc, job_service_pb2_grpc, lock_service_pb2_grpc

    channel = engine.channel()
    return Stubs(
        job_service_pb2_grpc.JobServiceStub(channel),
        executor_service_pb2_grpc.ExecutorServiceStub(channel),
        lock_service_pb2_grpc.LockServiceStub(channel),
        channel,
    )


async def _unavailable(call: Awaitable[Any]) -> grpc.StatusCode:
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error.code()
    raise AssertionError("the call succeeded while the database refused writes")


async def scenario(engine: EngineHandle, fault: Fault) -> None:
    stubs = _stubs(engine)
    worker = await RawWorker(engine.address, ["work"], capacity=2).connect()
    try:
        first = (await stubs.jobs.SubmitJob(request("work", idempotency_key="first"))).job
        a = await worker.next_assignment()
        await worker.complete(a, {"ok": 1})
        assert (await worker.next_ack()).accepted
        second = (await stubs.jobs.SubmitJob(request("work", idempotency_key="second"))).job
        b = await worker.next_assignment()
        await engine.core.writer.flush()
        before = fault.digest()

        fault.fail()
        # Every write is refused: the caller hears UNAVAILABLE, and is never told "done".
        code = await _unavailable(stubs.jobs.SubmitJob(request("work", idempotency_key="during")))
        assert code == grpc.StatusCode.UNAVAILABLE
        assert await _unavailable(stubs.jobs.CancelJob(js.CancelJobRequest(job_id=first.id))) in (
            grpc.StatusCode.UNAVAILABLE,
            grpc.StatusCode.FAILED_PRECONDITION,  # already COMPLETED: refused before any write
        )
        await worker.complete(b, {"ok": 2})
        with pytest.raises(TimeoutError):
            await worker.next_ack(timeout=2 * COMMIT_TIMEOUT)  # the result is not acknowledged
        assert not engine.core.writer.healthy
        assert fault.digest() == before, "something reached the store while it refused writes"
        # The engine is up and answers what needs no write.
        assert (await stubs.jobs.GetJob(js.GetJobRequest(job_id=first.id))).job.status == JobStatus.COMPLETED
        await stubs.jobs.GetStats(js.GetStatsRequest())

        fault.heal()
        await wait_for(
            lambda: engine.core.writer.healthy, timeout=30, message="the store to take writes again"
        )
        # The result held back is committed now, and only now acknowledged.
        ack = await worker.next_ack(timeout=15)
        assert (ack.job_id, ack.accepted) == (second.id, True)
        # A submit that failed has an unknown outcome: the same idempotency key settles it, once.
        again = await stubs.jobs.SubmitJob(request("work", idempotency_key="during"))
        once_more = await stubs.jobs.SubmitJob(request("work", idempotency_key="during"))
        assert again.job.id == once_more.job.id
        assert once_more.duplicate
        # And new work flows.
        fresh = (await stubs.jobs.SubmitJob(request("work", idempotency_key="after"))).job
        for _ in range(2):
            c = await worker.next_assignment()
            await worker.complete(c, {"ok": 3})
            assert (await worker.next_ack()).accepted
        assert fault.digest() != before
        ledger = Ledger(submitted=[first.id, second.id, again.job.id, fresh.id])
        ledger.acked = {first.id: [a.attempt], second.id: [b.attempt]}
        figures = await check_invariants(stubs.channel, ledger)
        assert not figures.problems, figures.problems
        print(f"database outage: {figures.line()}")
    finally:
        await worker.close()
        await stubs.channel.close()


# -- SQLite ---------------------------------------------------------------------------------------


@pytest.fixture
async def sqlite_engine(engine_factory: EngineFactory) -> EngineHandle:
    return await engine_factory(commit_timeout=COMMIT_TIMEOUT)


def _sqlite_fault(engine: EngineHandle) -> Fault:
    state = {"read_only": False}

    def on_checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        dbapi_connection.execute(f"PRAGMA query_only = {1 if state['read_only'] else 0}")

    assert isinstance(engine.core.store, SqlStore)
    event.listen(engine.core.store.engine, "checkout", on_checkout)
    path = engine.db_url.removeprefix("sqlite:///")

    def digest() -> str:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            rows = db.execute("SELECT id, status, doc FROM jobs ORDER BY id").fetchall()
            events = db.execute("SELECT count(*), coalesce(max(sequence), 0) FROM events").fetchone()
            locks = db.execute("SELECT count(*) FROM locks").fetchone()
        return hashlib.sha256(repr((rows, events, locks)).encode()).hexdigest()

    return Fault(
        fail=lambda: state.__setitem__("read_only", True),
        heal=lambda: state.__setitem__("read_only", False),
        digest=digest,
    )


async def test_sqlite_refusing_writes(sqlite_engine: EngineHandle) -> None:
    await scenario(sqlite_engine, _sqlite_fault(sqlite_engine))


# -- PostgreSQL -----------------------------------------------------------------------------------


@pytest.fixture
def pg_role() -> Iterator[tuple[str, str]]:
    """A schema and a role of its own, so turning the role read-only touches no other test."""
    reason = postgres_unavailable()
    if reason:
        pytest.skip(reason)
    import psycopg

    suffix = uuid.uuid4().hex[:10]
    schema, role = f"f_{suffix}", f"jw_{suffix}"
    admin = POSTGRES_URL.replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
        conn.execute(f"CREATE SCHEMA {schema} AUTHORIZATION {role}")
    try:
        yield schema, role
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'")
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE {role}")


@pytest.fixture
async def pg_engine(engine_factory: EngineFactory, pg_role: tuple[str, str]) -> EngineHandle:
    schema, role = pg_role
    base = POSTGRES_URL.replace("postgresql+psycopg://postgres@", f"postgresql+psycopg://{role}@")
    return await engine_factory(
        db_url=f"{base}?options=-csearch_path%3D{schema}", commit_timeout=COMMIT_TIMEOUT
    )


def _pg_fault(schema: str, role: str) -> Fault:
    import psycopg

    admin = POSTGRES_URL.replace("postgresql+psycopg", "postgresql")

    def run(*statements: str) -> None:
        with psycopg.connect(admin, autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement)

    kill = f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'"

    def digest() -> str:
        with psycopg.connect(admin) as conn:
            rows = conn.execute(f"SELECT id, status, doc FROM {schema}.jobs ORDER BY id").fetchall()
            events = conn.execute(
                f"SELECT count(*), coalesce(max(sequence), 0) FROM {schema}.events"
            ).fetchone()
            locks = conn.execute(f"SELECT count(*) FROM {schema}.locks").fetchone()
        return hashlib.sha256(repr((rows, events, locks)).encode()).hexdigest()

    return Fault(
        # New sessions of the role are read-only; the engine's open ones are killed, so it must reconnect.
        fail=lambda: run(f"ALTER ROLE {role} SET default_transaction_read_only = on", kill),
        heal=lambda: run(f"ALTER ROLE {role} RESET default_transaction_read_only", kill),
        digest=digest,
    )


@pytest.mark.postgres
async def test_postgres_connections_killed_and_refusing_writes(
    pg_engine: EngineHandle, pg_role: tuple[str, str]
) -> None:
    await scenario(pg_engine, _pg_fault(*pg_role))
