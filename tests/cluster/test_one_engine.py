"""One engine: ListEngines and health say it leads; SQLite refuses a second engine in process too;
and the fence itself, on the store, without an engine."""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from jobwarden.server.api import EngineServer, ServerOptions
from jobwarden.server.core import EngineAlreadyRunning, Fenced, SqlStore, WriteSet
from jobwarden.v1 import cluster_service_pb2 as cs
from jobwarden.v1 import cluster_service_pb2_grpc

from tests.conftest import TEST_CONFIG, EngineHandle
from tests.support.private_postgres import PrivatePostgres


async def test_the_one_sqlite_engine_lists_itself_as_leader_at_epoch_1(engine: EngineHandle) -> None:
    async with grpc.aio.insecure_channel(engine.address) as channel:
        answer = await cluster_service_pb2_grpc.ClusterServiceStub(channel).ListEngines(
            cs.ListEnginesRequest()
        )
        assert answer.epoch == 1
        assert answer.leader_address == engine.address
        assert [(e.role, e.address, e.epoch) for e in answer.engines] == [
            (cs.ENGINE_ROLE_LEADER, engine.address, 1)
        ]
        assert answer.leader_id == answer.engine_id == answer.engines[0].engine_id
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "jobwarden.v1.Leader", "jobwarden.v1.ExecutorService", "jobwarden.v1.JobService"):
            status = await health.Check(health_pb2.HealthCheckRequest(service=service))
            assert status.status == health_pb2.HealthCheckResponse.SERVING, service


async def test_a_second_engine_on_one_sqlite_file_is_refused_and_changes_nothing(
    engine: EngineHandle, tmp_path: Path
) -> None:
    db_file = engine.db_url.removeprefix("sqlite:///")
    size = await asyncio.to_thread(os.path.getsize, db_file)
    second = EngineServer(replace(TEST_CONFIG, db_url=engine.db_url), ServerOptions(port=0))
    with pytest.raises(EngineAlreadyRunning) as refused:
        await second.start()
    assert refused.value.message.startswith(f"the SQLite database {db_file} is already served by engine pid ")
    assert refused.value.code == "FAILED_PRECONDITION"
    assert await asyncio.to_thread(os.path.getsize, db_file) == size
    await second.stop(grace=0)
    # The first one goes on serving.
    assert engine.core.is_leader


def test_a_write_with_a_stale_epoch_is_fenced_and_writes_nothing(tmp_path: Path) -> None:
    reason = PrivatePostgres.available()
    if reason:
        pytest.skip(reason)
    with PrivatePostgres() as pg:
        store = SqlStore(pg.url)
        store.create_schema()
        pg.execute(
            "CREATE TABLE engine_leader (id INTEGER PRIMARY KEY, epoch BIGINT NOT NULL, leader_id TEXT,"
            " address TEXT NOT NULL DEFAULT '', lease_expires_at TIMESTAMPTZ,"
            " holds_lock BOOLEAN NOT NULL DEFAULT FALSE)"
        )
        pg.execute("INSERT INTO engine_leader (id, epoch) VALUES (1, 7)")
        lock_row = {
            "resource": "r",
            "holder": "h",
            "mode": 2,
            "job_id": None,
            "since": 1.0,
            "expires_at": None,
        }
        store.fence_epoch = 7
        store.write(WriteSet(locks_added=[dict(lock_row)]))
        assert [row.resource for row in store.load_locks()] == ["r"]
        pg.execute("UPDATE engine_leader SET epoch = 8 WHERE id = 1")
        with pytest.raises(Fenced) as fenced:
            store.write(WriteSet(locks_added=[{**lock_row, "resource": "s"}], locks_removed=[("r", "h")]))
        assert fenced.value.message == "the lease's epoch is no longer 7: a newer leader took over"
        assert [row.resource for row in store.load_locks()] == ["r"]  # neither the add nor the remove
        store.close()
