"""Fixtures for every suite: real engines on free ports over real SQLite files (and PostgreSQL when it
is there), real gRPC channels."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import grpc
import pytest
from jobwarden.server.api import EngineServer, ServerOptions
from jobwarden.server.core import Engine, EngineConfig
from jobwarden.v1 import executor_service_pb2_grpc, job_service_pb2_grpc, lock_service_pb2_grpc

from tests.support import EngineProcess

POSTGRES_URL = os.environ.get("JOBWARDEN_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
_postgres_state: dict[str, str | None] = {}


def postgres_unavailable() -> str | None:
    """Why PostgreSQL cannot be used, or None when it can (checked once)."""
    if "reason" not in _postgres_state:
        try:
            import psycopg

            with psycopg.connect(POSTGRES_URL.replace("postgresql+psycopg", "postgresql"), connect_timeout=3):
                pass
            _postgres_state["reason"] = None
        except Exception as error:  # any failure means: skip, and say why
            _postgres_state["reason"] = f"PostgreSQL not reachable at {POSTGRES_URL}: {error}"
    return _postgres_state["reason"]


@pytest.fixture(autouse=True)
def _no_engine_process_left_behind() -> Iterator[None]:
    """Whatever a test does (or fails to do), the engine processes it started end with it."""
    yield
    for process in list(EngineProcess.live):
        process.kill()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'jobwarden.db'}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh schema in the test database, dropped afterwards."""
    reason = postgres_unavailable()
    if reason:
        pytest.skip(reason)
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    plain = POSTGRES_URL.replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        # An engine still running here (its fixture, set up after this one, ends after it) may be
        # writing: the drop can deadlock with its transaction and be chosen to give way; try again.
        for attempt in range(5):
            try:
                with psycopg.connect(plain, autocommit=True) as conn:
                    conn.execute(f"DROP SCHEMA {schema} CASCADE")
                break
            except psycopg.errors.DeadlockDetected:
                if attempt == 4:
                    raise
                time.sleep(0.2)


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using it runs on SQLite and on PostgreSQL (skipped, with the reason, when absent)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'jobwarden.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@dataclass
class EngineHandle:
    server: EngineServer

    @property
    def address(self) -> str:
        return self.server.address

    @property
    def core(self) -> Engine:
        return self.server.engine

    @property
    def db_url(self) -> str:
        return self.server.config.db_url

    def channel(self) -> grpc.aio.Channel:
        return grpc.aio.insecure_channel(self.address)


EngineFactory = Callable[..., Awaitable[EngineHandle]]

#: short enough for tests that wait for a dead session, long enough for a busy machine
TEST_CONFIG = EngineConfig(
    heartbeat_interval=1.0, session_timeout_intervals=3.0, default_takeover_timeout=5.0
)


@pytest.fixture
async def engine_factory(sqlite_url: str) -> AsyncIterator[EngineFactory]:
    """Start real engines: ``await engine_factory(db_url=..., port=..., **EngineConfig fields)``."""
    started: list[EngineServer] = []

    async def start(db_url: str | None = None, port: int = 0, **config: Any) -> EngineHandle:
        engine_config = replace(TEST_CONFIG, db_url=db_url or sqlite_url, **config)
        server = EngineServer(engine_config, ServerOptions(port=port, watch_keepalive=0.5))
        await server.start()
        started.append(server)
        return EngineHandle(server)

    yield start
    for server in reversed(started):
        await server.stop(grace=0)


@pytest.fixture
async def engine(engine_factory: EngineFactory) -> EngineHandle:
    """A real engine in this test's event loop, on a free port, over a SQLite file in tmp_path."""
    return await engine_factory()


@pytest.fixture
async def any_engine(db_url: str, engine_factory: EngineFactory) -> EngineHandle:
    """``engine``, once on SQLite and once on PostgreSQL. (``db_url`` first: fixtures end in reverse
    order, so the engine stops before its PostgreSQL schema is dropped.)"""
    return await engine_factory(db_url=db_url)


@dataclass
class Stubs:
    jobs: job_service_pb2_grpc.JobServiceAsyncStub
    executors: executor_service_pb2_grpc.ExecutorServiceAsyncStub
    locks: lock_service_pb2_grpc.LockServiceAsyncStub
    channel: grpc.aio.Channel


def _stubs(handle: EngineHandle) -> Stubs:
    channel = handle.channel()
    return Stubs(
        job_service_pb2_grpc.JobServiceStub(channel),
        executor_service_pb2_grpc.ExecutorServiceStub(channel),
        lock_service_pb2_grpc.LockServiceStub(channel),
        channel,
    )


@pytest.fixture
async def stubs(engine: EngineHandle) -> AsyncIterator[Stubs]:
    """Stubs of every jobwarden service over one real channel to ``engine``."""
    made = _stubs(engine)
    yield made
    await made.channel.close()


@pytest.fixture
async def any_stubs(any_engine: EngineHandle) -> AsyncIterator[Stubs]:
    """``stubs`` for ``any_engine``."""
    made = _stubs(any_engine)
    yield made
    await made.channel.close()
