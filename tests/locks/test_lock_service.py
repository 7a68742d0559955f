"""LockService: external holders acquire with a TTL (expiry releases), wait in FIFO order, release;
ListLocks shows holders and waiters per resource. Bad requests are refused and change nothing."""

from __future__ import annotations

import asyncio
import contextlib
import time

import grpc
import pytest
from jobwarden.contract import JobStatus, LockMode
from jobwarden.v1 import lock_service_pb2 as ls

from tests.conftest import EngineHandle, Stubs
from tests.support import RawWorker, wait_for, wait_for_async
from tests.timers.helpers import dur, get, lock, seconds, submit, wait_status

S = JobStatus
SH, X = LockMode.SHARED, LockMode.EXCLUSIVE


def acquire(
    stubs: Stubs, holder: str, *locks: tuple[str, int], ttl: float | None = 30.0, wait: float | None = None
) -> grpc.aio.UnaryUnaryCall:  # type: ignore[type-arg]
    request = ls.AcquireLockRequest(holder=holder, locks=[lock(r, m) for r, m in locks])
    if ttl is not None:
        request.ttl.CopyFrom(dur(ttl))
    if wait is not None:
        request.wait.CopyFrom(dur(wait))
    return stubs.locks.AcquireLock(request)


async def listing(stubs: Stubs, prefix: str = "") -> ls.ListLocksResponse:
    return await stubs.locks.ListLocks(ls.ListLocksRequest(prefix=prefix))


async def test_acquire_list_release(stubs: Stubs) -> None:
    before = time.time()
    held = await acquire(stubs, "mam-sync", ("asset:1", X), ("asset:2", SH), ttl=60)
    assert sorted((h.resource, h.mode, h.holder) for h in held.held) == [
        ("asset:1", X, "mam-sync"),
        ("asset:2", SH, "mam-sync"),
    ]
    for holding in held.held:
        assert holding.job_id == ""
        assert seconds(holding.since) >= before - 1
        assert seconds(holding.expires_at) >= before + 59
    await acquire(stubs, "reporter", ("asset:2", SH))
    listed = await listing(stubs, "asset:")
    assert [r.resource for r in listed.resources] == ["asset:1", "asset:2"]
    assert sorted(h.holder for h in listed.resources[1].holders) == ["mam-sync", "reporter"]
    assert [r.resource for r in (await listing(stubs, "asset:2")).resources] == ["asset:2"]

    released = await stubs.locks.ReleaseLock(ls.ReleaseLockRequest(holder="mam-sync", resources=["asset:1"]))
    assert released.released == 1
    assert [r.resource for r in (await listing(stubs)).resources] == ["asset:2"]
    released = await stubs.locks.ReleaseLock(ls.ReleaseLockRequest(holder="mam-sync"))
    assert released.released == 1
    assert [h.holder for h in (await listing(stubs)).resources[0].holders] == ["reporter"]


async def test_busy_locks_are_refused_at_once_without_wait(stubs: Stubs) -> None:
    await acquire(stubs, "first", ("asset:1", X))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await acquire(stubs, "second", ("asset:1", SH), ("asset:3", X))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "asset:1 held by first EXCLUSIVE" in (refused.value.details() or "")
    listed = await listing(stubs)
    assert [(r.resource, [h.holder for h in r.holders], list(r.waiters)) for r in listed.resources] == [
        ("asset:1", ["first"], [])
    ], "all or nothing: asset:3 was not taken"


async def test_ttl_expiry_releases_and_lets_a_job_in(engine: EngineHandle, stubs: Stubs) -> None:
    worker = await RawWorker(engine.address, ["edit"]).connect()
    await acquire(stubs, "backup", ("disk:1", X), ttl=0.1)
    job = await submit(stubs, "edit", locks=[lock("disk:1", SH)])
    await wait_status(stubs, job.id, S.WAITING_FOR_LOCK)
    listed = await listing(stubs, "disk:1")
    assert [w.job_id for w in listed.resources[0].waiters] == [job.id]
    assignment = await worker.next_assignment()
    assert assignment.job_id == job.id
    holders = (await listing(stubs, "disk:1")).resources[0].holders
    assert [(h.holder, h.job_id) for h in holders] == [(job.id, job.id)]
    assert not holders[0].HasField("expires_at"), "a job's lock has no TTL"
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stubs.locks.ReleaseLock(ls.ReleaseLockRequest(holder="backup"))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    await worker.complete(assignment)
    await worker.next_ack()
    await worker.close()


async def test_waiters_are_served_in_fifo_order(stubs: Stubs) -> None:
    await acquire(stubs, "a", ("tape", X))
    second = asyncio.ensure_future(acquire(stubs, "b", ("tape", SH), wait=30))

    async def waiting(*names: str) -> bool:
        resources = (await listing(stubs, "tape")).resources
        return bool(resources) and [w.holder for w in resources[0].waiters] == list(names)

    await wait_for_async(lambda: waiting("b"))
    third = asyncio.ensure_future(acquire(stubs, "c", ("tape", X), wait=30))
    await wait_for_async(lambda: waiting("b", "c"))
    fourth = asyncio.ensure_future(acquire(stubs, "d", ("tape", SH), wait=30))
    await wait_for_async(lambda: waiting("b", "c", "d"))
    assert not second.done()

    await stubs.locks.ReleaseLock(ls.ReleaseLockRequest(holder="a"))
    got = await second
    assert [(h.holder, h.mode) for h in got.held] == [("b", SH)]
    # "d" is SHARED like "b", but "c" (EXCLUSIVE) came first: "d" waits.
    await wait_for_async(lambda: waiting("c", "d"))
    assert not third.done()
    assert not fourth.done()
    await stubs.locks.ReleaseLock(ls.ReleaseLockRequest(holder="b"))
    assert [h.holder for h in (await third).held] == ["c"]
    assert not fourth.done()
    await stubs.locks.ReleaseLock(ls.ReleaseLockRequest(holder="c"))
    assert [h.holder for h in (await fourth).held] == ["d"]


async def test_a_wait_that_runs_out_leaves_the_queue(stubs: Stubs) -> None:
    await acquire(stubs, "a", ("tape", X))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await acquire(stubs, "b", ("tape", X), wait=0.05)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "not granted within 0.05s" in (refused.value.details() or "")
    [tape] = (await listing(stubs, "tape")).resources
    assert [h.holder for h in tape.holders] == ["a"]
    assert list(tape.waiters) == []


async def test_the_ttl_of_a_waiter_counts_from_its_grant(stubs: Stubs) -> None:
    await acquire(stubs, "a", ("tape", X), ttl=0.1)
    got = await acquire(stubs, "b", ("tape", X), ttl=30, wait=30)
    assert seconds(got.held[0].expires_at) > time.time() + 20


async def test_a_job_waits_behind_an_external_holder_and_the_other_way_round(
    engine: EngineHandle, stubs: Stubs
) -> None:
    worker = await RawWorker(engine.address, ["edit"]).connect()
    job = await submit(stubs, "edit", locks=[lock("disk:7", X)])
    assignment = await worker.next_assignment()
    waiting = asyncio.ensure_future(acquire(stubs, "ops", ("disk:7", SH), wait=30))

    async def queued() -> bool:
        resources = (await listing(stubs, "disk:7")).resources
        return bool(resources) and [w.holder for w in resources[0].waiters] == ["ops"]

    await wait_for_async(queued)
    await worker.complete(assignment)
    await worker.next_ack()
    assert [h.holder for h in (await waiting).held] == ["ops"]
    assert (await get(stubs, job.id)).status == S.COMPLETED
    await worker.close()


# -- bad input: refused, and nothing changed ----------------------------------------------------


@pytest.mark.parametrize(
    ("holder", "locks", "ttl", "wait", "code", "words"),
    [
        ("ops", [("tape", 7)], 30.0, None, "INVALID_ARGUMENT", "unknown lock mode 7"),
        ("ops", [("tape", 0)], 30.0, None, "INVALID_ARGUMENT", "unknown lock mode 0"),
        ("ops", [("", X)], 30.0, None, "INVALID_ARGUMENT", "empty resource"),
        ("ops", [("   ", X)], 30.0, None, "INVALID_ARGUMENT", "empty resource"),
        ("ops", [], 30.0, None, "INVALID_ARGUMENT", "at least one lock"),
        ("", [("tape", X)], 30.0, None, "INVALID_ARGUMENT", "holder is required"),
        (
            "01a20321-a2f0-7000-9f85-c15312de1eac",
            [("tape", X)],
            30.0,
            None,
            "INVALID_ARGUMENT",
            "must not be a job id",
        ),
        ("ops", [("tape", X)], None, None, "INVALID_ARGUMENT", "ttl is required"),
        ("ops", [("tape", X)], -1.0, None, "INVALID_ARGUMENT", "must be positive"),
        ("ops", [("tape", X)], 0.0, None, "INVALID_ARGUMENT", "must be positive"),
        ("ops", [("tape", X)], 1e12, None, "INVALID_ARGUMENT", "absurd"),
        ("ops", [("tape", X)], 30.0, -5.0, "INVALID_ARGUMENT", "wait must be positive"),
        ("ops", [("x" * 600, X)], 30.0, None, "INVALID_ARGUMENT", "longer than"),
        ("holder", [("tape", X)], 30.0, None, "FAILED_PRECONDITION", "already holds"),
    ],
)
async def test_bad_acquire_is_refused_and_changes_nothing(
    stubs: Stubs,
    holder: str,
    locks: list[tuple[str, int]],
    ttl: float | None,
    wait: float | None,
    code: str,
    words: str,
) -> None:
    await acquire(stubs, "holder", ("existing", SH))
    before = await listing(stubs)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await acquire(stubs, holder, *locks, ttl=ttl, wait=wait)
    assert refused.value.code() == getattr(grpc.StatusCode, code)
    assert words in (refused.value.details() or "")
    assert await listing(stubs) == before


@pytest.mark.parametrize(
    ("holder", "resources", "code", "words"),
    [
        ("nobody", [], "FAILED_PRECONDITION", "nobody holds no locks"),
        ("holder", ["not-mine"], "FAILED_PRECONDITION", "does not hold not-mine"),
        ("holder", ["existing", "not-mine"], "FAILED_PRECONDITION", "does not hold not-mine"),
        ("", [], "INVALID_ARGUMENT", "holder is required"),
    ],
)
async def test_releasing_what_one_does_not_hold_changes_nothing(
    stubs: Stubs, holder: str, resources: list[str], code: str, words: str
) -> None:
    await acquire(stubs, "holder", ("existing", SH), ("other", X))
    before = await listing(stubs)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stubs.locks.ReleaseLock(ls.ReleaseLockRequest(holder=holder, resources=resources))
    assert refused.value.code() == getattr(grpc.StatusCode, code)
    assert words in (refused.value.details() or "")
    assert await listing(stubs) == before


async def test_releasing_a_jobs_lock_is_refused(engine: EngineHandle, stubs: Stubs) -> None:
    job = await submit(stubs, "edit", locks=[lock("disk:3")])
    worker = await RawWorker(engine.address, ["edit"]).connect()
    assignment = await worker.next_assignment()
    before = await listing(stubs)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stubs.locks.ReleaseLock(ls.ReleaseLockRequest(holder=job.id))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert await listing(stubs) == before
    await worker.complete(assignment)
    await worker.next_ack()
    await worker.close()


async def test_a_waiter_whose_caller_gives_up_leaves_the_queue(engine: EngineHandle, stubs: Stubs) -> None:
    """A client deadline (or cancel) ends the wait: no phantom waiter is left to block later requests.
    (It used to stay queued until granted, holding up everyone behind it.)"""
    await acquire(stubs, "reader", ("tape", SH))
    request = ls.AcquireLockRequest(holder="writer", locks=[lock("tape", X)], ttl=dur(30), wait=dur(30))
    with pytest.raises(grpc.aio.AioRpcError) as gave_up:
        await stubs.locks.AcquireLock(request, timeout=0.2)
    assert gave_up.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED

    async def gone() -> bool:
        [tape] = (await listing(stubs, "tape")).resources
        return not tape.waiters

    await wait_for_async(gone, message="the abandoned waiter to leave the queue")
    assert not engine.core.locks.is_waiting("writer")
    # A later reader is no longer held up behind the writer that left.
    await acquire(stubs, "reader-2", ("tape", SH))
    # And the writer may ask again.
    again = asyncio.ensure_future(acquire(stubs, "writer", ("tape", X), wait=30))
    await stubs.locks.ReleaseLock(ls.ReleaseLockRequest(holder="reader"))
    await stubs.locks.ReleaseLock(ls.ReleaseLockRequest(holder="reader-2"))
    assert [h.holder for h in (await again).held] == ["writer"]


async def test_locks_granted_to_a_caller_that_is_gone_are_given_back(
    engine: EngineHandle, stubs: Stubs
) -> None:
    """The grant and the caller's cancel in the same instant: the locks go back rather than being held
    with no TTL by nobody."""
    core = engine.core
    await acquire(stubs, "first", ("tape", X))
    task = asyncio.ensure_future(core.acquire_locks("second", [("tape", int(X))], 30.0, 30.0))
    await wait_for(lambda: core.locks.is_waiting("second"))
    core.flow.release_locks_of("first")  # grants "second" now, synchronously
    assert core.locks.holds("second")
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    if task.cancelled():
        assert not core.locks.holds("second"), "granted to a caller that never learned it: given back"
    else:
        # The wait finished first and swallowed the cancel (asyncio.wait_for in Python 3.11): the locks
        # are held with their TTL, as if the caller had received the answer.
        assert core.timers.due("lock_ttl", "second") is not None
    await stubs.locks.ListLocks(ls.ListLocksRequest())
