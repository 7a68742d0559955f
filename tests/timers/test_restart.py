"""Deadlines and the lock table live in the database: after a restart (clean, or kill -9) every timer is
re-armed at its stored time, deadlines that passed while the engine was down fire at once, and the
lock table (holders, waiters in order, external TTLs) is back. On SQLite and on PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest
from jobwarden.contract import ErrorKind, JobStatus, LockMode, StartTimeoutAction
from jobwarden.v1 import executor_service_pb2_grpc, job_service_pb2_grpc, lock_service_pb2_grpc
from jobwarden.v1 import lock_service_pb2 as ls

from tests.conftest import EngineFactory, Stubs
from tests.support import EngineProcess, RawWorker, wait_for, wait_for_async
from tests.timers.helpers import (
    dur,
    events,
    get,
    lock,
    seconds,
    stamp,
    start_timeout,
    status_path,
    submit,
    timeouts,
    wait_path,
    wait_status,
)

S = JobStatus
SH, X = LockMode.SHARED, LockMode.EXCLUSIVE


@asynccontextmanager
async def connected(address: str) -> AsyncIterator[Stubs]:
    channel = grpc.aio.insecure_channel(address)
    try:
        yield Stubs(
            job_service_pb2_grpc.JobServiceStub(channel),
            executor_service_pb2_grpc.ExecutorServiceStub(channel),
            lock_service_pb2_grpc.LockServiceStub(channel),
            channel,
        )
    finally:
        await channel.close()


async def hold_external(stubs: Stubs, holder: str, resource: str, ttl: float) -> float:
    request = ls.AcquireLockRequest(holder=holder, locks=[lock(resource, X)], ttl=dur(ttl))
    response = await stubs.locks.AcquireLock(request)
    return seconds(response.held[0].expires_at)


def lock_table(listed: ls.ListLocksResponse) -> list[tuple[str, list[tuple[str, int, float]], list[str]]]:
    return [
        (
            r.resource,
            sorted((h.holder, h.mode, round(seconds(h.expires_at), 3)) for h in r.holders),
            [w.holder for w in r.waiters],
        )
        for r in listed.resources
    ]


async def test_timers_and_locks_survive_a_restart(db_url: str, engine_factory: EngineFactory) -> None:
    # db_url first: fixtures end in reverse order, so the engines stop before the schema is dropped.
    first = await engine_factory(db_url=db_url)
    async with connected(first.address) as stubs:
        worker = await RawWorker(first.address, [("edit", True, 0)], capacity=5, name="editor").connect()
        holder = await submit(stubs, "edit", locks=[lock("file:1", X)], timeouts=timeouts(takeover=60))
        held = await worker.next_assignment()
        waiter = await submit(stubs, "edit", locks=[lock("file:1", SH)])
        await wait_status(stubs, waiter.id, S.WAITING_FOR_LOCK)
        # Far deadlines: re-armed at their stored times.
        far_start = await submit(stubs, "unserved", timeouts=timeouts(start=start_timeout(60)))
        far_wake = await submit(stubs, "unserved", run_at=stamp(time.time() + 60))
        far_ttl = await hold_external(stubs, "ops", "tape:far", 60)
        # Near deadlines: they pass while the engine is down.
        near_start = await submit(stubs, "unserved", timeouts=timeouts(start=start_timeout(0.2)))
        near_wake = await submit(stubs, "unserved", run_at=stamp(time.time() + 0.2))
        near_ttl = await hold_external(stubs, "backup", "tape:near", 0.2)
        # A start-timeout RETRY in its backoff: its retries used so far are kept.
        retrying = await submit(
            stubs,
            "unserved",
            timeouts=timeouts(
                start=start_timeout(0.05, StartTimeoutAction.RETRY, retry_interval=0.3, retry_count=1)
            ),
        )
        await wait_path(stubs, retrying.id, S.QUEUED, S.DELAYED)
        locks_before = lock_table(await stubs.locks.ListLocks(ls.ListLocksRequest()))
        far_start_at = seconds((await get(stubs, far_start.id)).deadlines.start)

    stopped_at = time.time()
    await first.server.stop(grace=0)
    await worker.drop()
    await wait_for(lambda: time.time() > stopped_at + 0.4, message="the near deadlines to pass")

    second = await engine_factory(db_url=db_url)
    timers = second.core.timers
    assert timers.due("start", far_start.id) == pytest.approx(far_start_at, abs=1e-3)
    assert timers.due("wake", far_wake.id) == pytest.approx(seconds(far_wake.run_at), abs=1e-3)
    assert timers.due("lock_ttl", "ops") == pytest.approx(far_ttl, abs=1e-3)
    assert timers.due("takeover", holder.id) is not None
    async with connected(second.address) as stubs:
        listed = lock_table(await stubs.locks.ListLocks(ls.ListLocksRequest()))
        assert [entry for entry in listed if entry[0] != "tape:near"] == [
            entry for entry in locks_before if entry[0] != "tape:near"
        ], "holders, modes, TTLs and waiters in order are back"
        assert (await get(stubs, far_start.id)).status == S.QUEUED
        assert (await get(stubs, far_wake.id)).status == S.DELAYED

        # What passed while the engine was down fires at once.
        failed = await wait_status(stubs, near_start.id, S.FAILED)
        assert failed.error.kind == ErrorKind.START_TIMEOUT
        assert (await events(stubs, near_start.id))[-1].time.seconds >= int(stopped_at)
        await wait_status(stubs, near_wake.id, S.QUEUED)

        async def expired() -> bool:
            listed = await stubs.locks.ListLocks(ls.ListLocksRequest(prefix="tape:near"))
            return not listed.resources

        await wait_for_async(expired, message="the external lock whose TTL passed to go")
        assert near_ttl < time.time()
        again = await wait_status(stubs, retrying.id, S.FAILED)
        assert "1 start retries" in again.error.message, "the start retry used before the restart counts"

        # The running job timed out with the restart; its worker reconnects and finishes it.
        timed_out = await get(stubs, holder.id)
        assert timed_out.status == S.TIMED_OUT
        assert timed_out.status_reason == "the engine restarted while it ran"
        back = await RawWorker(
            second.address,
            [("edit", True, 0)],
            capacity=5,
            name="editor",
            worker_id=worker.worker_id,
            running_jobs=[(holder.id, held.attempt)],
        ).connect()
        assert back.registered is not None
        assert [j.job_id for j in back.registered.resumed_jobs] == [holder.id]
        await back.complete(held)
        assert (await back.next_ack()).accepted
        assert (await back.next_assignment()).job_id == waiter.id, "the waiter got the lock"
        assert await status_path(stubs, holder.id) == [
            S.QUEUED,
            S.RUNNING,
            S.TIMED_OUT,
            S.RUNNING,
            S.COMPLETED,
        ]
        await back.close()


async def test_deadlines_that_pass_during_a_kill_9_fire_at_once(tmp_path: Path, db_url: str) -> None:
    process = EngineProcess(db_url, log_path=tmp_path / "engine.log").start()
    try:
        async with connected(process.address) as stubs:
            worker = await RawWorker(process.address, ["render"]).connect()
            # Its worker is gone with the engine: after the restart the passed execution timeout asks it
            # to stop, and the job (with its locks) ends KILLED only when its session is declared dead,
            # at the takeover deadline counted from the restart.
            running = await submit(stubs, "render", timeouts=timeouts(execution=1.0, takeover=1.0))
            await worker.next_assignment()
            start_job = await submit(stubs, "unserved", timeouts=timeouts(start=start_timeout(1.0)))
            wake_job = await submit(stubs, "unserved", run_at=stamp(time.time() + 1.0))
            ttl_at = await hold_external(stubs, "backup", "tape:1", 1.0)
            deadlines = [
                seconds((await get(stubs, running.id)).deadlines.execution),
                seconds(start_job.deadlines.start),
                seconds(wake_job.run_at),
                ttl_at,
            ]
        killed_at = time.time()
        process.kill()
        await worker.drop()
        assert killed_at < min(deadlines), "killed before any deadline passed"
        await wait_for(
            lambda: time.time() > max(deadlines) + 0.1, timeout=30, message="every deadline to pass"
        )

        restarted_at = time.time()
        process.start()
        async with connected(process.address) as stubs:
            failed = await wait_status(stubs, start_job.id, S.FAILED)
            assert failed.error.kind == ErrorKind.START_TIMEOUT
            await wait_status(stubs, wake_job.id, S.QUEUED)
            killed = await wait_status(stubs, running.id, S.FAILED)
            assert killed.error.kind == ErrorKind.KILLED
            assert "session was declared dead" in killed.error.message
            fired = [
                seconds(e.time)
                for job_id in (start_job.id, wake_job.id, running.id)
                for e in (await events(stubs, job_id))[-1:]
            ]
            assert min(fired) >= restarted_at, "they fired after the restart, not before the kill"

            async def released() -> bool:
                return not (await stubs.locks.ListLocks(ls.ListLocksRequest())).resources

                await wait_for_async(released, message="the external lock to expire")
    finally:
        process.terminate()
