"""Jobs and their locks on a real engine: SHARED readers together, EXCLUSIVE alone, no writer
starvation, all-or-nothing without deadlock (randomized), templates, release on every way out."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable

import grpc
import pytest
from jobwarden.contract import ErrorKind, JobStatus, LockMode, StartTimeoutAction
from jobwarden.v1 import executor_service_pb2 as pb
from jobwarden.v1 import job_pb2
from jobwarden.v1 import job_service_pb2 as js
from jobwarden.v1 import lock_service_pb2 as ls

from tests.conftest import EngineHandle, Stubs
from tests.support import RawWorker, wait_for_async
from tests.timers.helpers import (
    Completer,
    events,
    get,
    lock,
    retry_policy,
    start_timeout,
    status_path,
    submit,
    submit_request,
    timeouts,
    wait_status,
)

S = JobStatus
SH, X = LockMode.SHARED, LockMode.EXCLUSIVE


async def locks_of(stubs: Stubs, resource: str) -> tuple[list[tuple[str, int]], list[str]]:
    """(holders with their modes, waiters in order) of one resource, through ListLocks."""
    response = await stubs.locks.ListLocks(ls.ListLocksRequest(prefix=resource))
    for entry in response.resources:
        if entry.resource == resource:
            return [(h.holder, h.mode) for h in entry.holders], [w.holder for w in entry.waiters]
    return [], []


async def running_sets(stubs: Stubs, job_ids: Iterable[str]) -> list[set[str]]:
    """Replaying the jobs' events in sequence order: the set of RUNNING jobs after each event."""
    merged: list[job_pb2.JobEvent] = []
    for job_id in job_ids:
        merged.extend(await events(stubs, job_id))
    merged.sort(key=lambda e: e.sequence)
    status: dict[str, int] = {}
    sets = []
    for event in merged:
        status[event.job_id] = event.job.status
        sets.append({j for j, s in status.items() if s in (S.RUNNING, S.TIMED_OUT)})
    return sets


async def test_shared_together_exclusive_alone_and_no_writer_starvation(
    engine: EngineHandle, stubs: Stubs
) -> None:
    worker = await RawWorker(engine.address, ["doc"], capacity=10).connect()
    readers = [await submit(stubs, "doc", {"r": i}, locks=[lock("doc:1", SH)]) for i in range(3)]
    first = {}
    for _ in readers:
        assignment = await worker.next_assignment()
        first[assignment.job_id] = assignment
    assert set(first) == {r.id for r in readers}, "SHARED readers run together"
    holders, _ = await locks_of(stubs, "doc:1")
    assert sorted(holders) == sorted((r.id, SH) for r in readers)

    writer = await submit(stubs, "doc", {"w": 1}, locks=[lock("doc:1", X)])
    waiting = await wait_status(stubs, writer.id, S.WAITING_FOR_LOCK)
    assert waiting.status_reason.startswith("waiting for doc:1")
    late_reader = await submit(stubs, "doc", {"r": 3}, locks=[lock("doc:1", SH)])
    await wait_status(stubs, late_reader.id, S.WAITING_FOR_LOCK)
    _, waiters = await locks_of(stubs, "doc:1")
    assert waiters == [writer.id, late_reader.id], "the later reader queues behind the waiting writer"

    for reader in readers[:2]:
        await worker.complete(first[reader.id])
        await worker.next_ack()
    assert (await get(stubs, writer.id)).status == S.WAITING_FOR_LOCK
    await worker.complete(first[readers[2].id])
    await worker.next_ack()
    writing = await worker.next_assignment()
    assert writing.job_id == writer.id
    holders, waiters = await locks_of(stubs, "doc:1")
    assert holders == [(writer.id, X)]
    assert waiters == [late_reader.id]
    assert (await get(stubs, late_reader.id)).status == S.WAITING_FOR_LOCK
    await worker.complete(writing)
    await worker.next_ack()
    last = await worker.next_assignment()
    assert last.job_id == late_reader.id
    await worker.complete(last)
    await worker.next_ack()

    everyone = [*(r.id for r in readers), writer.id, late_reader.id]
    for running in await running_sets(stubs, everyone):
        assert writer.id not in running or running == {writer.id}, "EXCLUSIVE runs alone"
    assert await status_path(stubs, writer.id) == [
        S.QUEUED,
        S.WAITING_FOR_LOCK,
        S.QUEUED,
        S.RUNNING,
        S.COMPLETED,
    ]
    assert await locks_of(stubs, "doc:1") == ([], [])
    await worker.close()


@pytest.mark.parametrize("seed", [1, 2])
async def test_overlapping_multi_resource_requests_never_deadlock(
    engine: EngineHandle, stubs: Stubs, seed: int
) -> None:
    rng = random.Random(seed)
    resources = [f"res:{i}" for i in range(5)]
    wanted: list[dict[str, LockMode]] = []
    for _ in range(40):
        picked = rng.sample(resources, rng.randint(1, 3))
        wanted.append({r: (SH if rng.random() < 0.5 else X) for r in picked})
    completers = [
        Completer(
            await RawWorker(engine.address, ["mix"], capacity=3, name=f"w{i}").connect(),
            hold=lambda: rng.uniform(0, 0.005),
        ).start()
        for i in range(3)
    ]
    response = await stubs.jobs.SubmitJobs(
        js.SubmitJobsRequest(
            jobs=[
                # Listed in random order: the engine must not depend on a global resource order.
                submit_request(
                    "mix", {"i": i}, locks=[lock(r, m) for r, m in rng.sample(list(w.items()), len(w))]
                )
                for i, w in enumerate(wanted)
            ]
        )
    )
    ids = [r.job.id for r in response.jobs]

    async def finished() -> bool:
        if sum(len(c.done) for c in completers) < len(ids):
            return False
        return all([(await get(stubs, i)).status == S.COMPLETED for i in ids])

    await wait_for_async(finished, timeout=60, message="every job to finish (a deadlock would hang here)")
    for completer in completers:
        await completer.stop()

    index = {job_id: i for i, job_id in enumerate(ids)}
    for running in await running_sets(stubs, ids):
        for resource in resources:
            users = [wanted[index[j]][resource] for j in running if resource in wanted[index[j]]]
            assert X not in users or len(users) == 1, f"{resource} shared with an EXCLUSIVE holder"
    # FIFO: of two conflicting jobs, the earlier one finished before the later one started.
    sequence: dict[tuple[str, S], int] = {}
    for job_id in ids:
        for event in await events(stubs, job_id):
            sequence.setdefault((job_id, S(event.job.status)), event.sequence)
    for a, b in itertools.combinations(range(len(ids)), 2):
        shared = set(wanted[a]) & set(wanted[b])
        if any(X in (wanted[a][r], wanted[b][r]) for r in shared):
            assert sequence[(ids[a], S.COMPLETED)] < sequence[(ids[b], S.RUNNING)], (a, b)
    assert (await stubs.locks.ListLocks(ls.ListLocksRequest())).resources == []


async def test_lock_template_expands_from_the_input(engine: EngineHandle, stubs: Stubs) -> None:
    config = job_pb2.ActionConfig(action="transcode", lock_templates=[lock("asset:{input.asset_id}", X)])
    await stubs.jobs.SetActionConfig(js.SetActionConfigRequest(config=config))
    worker = await RawWorker(engine.address, ["transcode"], capacity=5).connect()
    one = await submit(stubs, "transcode", {"asset_id": 5})
    assert [(lk.resource, lk.mode) for lk in one.locks] == [("asset:5", X)]
    two = await submit(stubs, "transcode", {"asset_id": 5}, locks=[lock("disk:a", SH)])
    other = await submit(stubs, "transcode", {"asset_id": 6})
    got = {(await worker.next_assignment()).job_id for _ in range(2)}
    assert got == {one.id, other.id}
    assert sorted((lk.resource, lk.mode) for lk in (await get(stubs, two.id)).locks) == [
        ("asset:5", X),
        ("disk:a", SH),
    ]
    assert (await wait_status(stubs, two.id, S.WAITING_FOR_LOCK)).status == S.WAITING_FOR_LOCK

    before = await stubs.jobs.ListJobs(js.ListJobsRequest(action="transcode"))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await submit(stubs, "transcode", {"name": "no asset id"})
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "input.asset_id" in (refused.value.details() or "")
    after = await stubs.jobs.ListJobs(js.ListJobsRequest(action="transcode"))
    assert [j.id for j in after.jobs] == [j.id for j in before.jobs], "nothing was created"
    await worker.close()


async def test_start_timeout_while_waiting_for_a_lock_withdraws(engine: EngineHandle, stubs: Stubs) -> None:
    worker = await RawWorker(engine.address, ["edit"], capacity=5).connect()
    holder = await submit(stubs, "edit", locks=[lock("file:1")])
    held = await worker.next_assignment()
    impatient = await submit(
        stubs,
        "edit",
        locks=[lock("file:1"), lock("file:2")],
        timeouts=timeouts(start=start_timeout(0.05, StartTimeoutAction.FAIL)),
    )
    patient = await submit(stubs, "edit", locks=[lock("file:2")])
    failed = await wait_status(stubs, impatient.id, S.FAILED)
    assert failed.error.kind == ErrorKind.START_TIMEOUT
    assert await status_path(stubs, impatient.id) == [S.QUEUED, S.WAITING_FOR_LOCK, S.FAILED]
    # Its place in the queue is given up: the job behind it on file:2 runs.
    assert (await worker.next_assignment()).job_id == patient.id
    assert await status_path(stubs, patient.id) == [S.QUEUED, S.WAITING_FOR_LOCK, S.QUEUED, S.RUNNING]
    _, waiters = await locks_of(stubs, "file:1")
    assert waiters == []
    await worker.complete(held)
    await worker.next_ack()
    assert holder.id == held.job_id
    await worker.close()


async def test_cancel_while_waiting_withdraws(engine: EngineHandle, stubs: Stubs) -> None:
    worker = await RawWorker(engine.address, ["edit"], capacity=5).connect()
    await submit(stubs, "edit", locks=[lock("file:1", SH)])
    held = await worker.next_assignment()
    writer = await submit(stubs, "edit", locks=[lock("file:1", X)])
    reader = await submit(stubs, "edit", locks=[lock("file:1", SH)])
    await wait_status(stubs, reader.id, S.WAITING_FOR_LOCK)
    await stubs.jobs.CancelJob(js.CancelJobRequest(job_id=writer.id, reason="not needed"))
    assert (await get(stubs, writer.id)).status == S.CANCELLED
    assert (await worker.next_assignment()).job_id == reader.id, "the reader is no longer behind a writer"
    holders, waiters = await locks_of(stubs, "file:1")
    assert sorted(h for h, _ in holders) == sorted([held.job_id, reader.id])
    assert waiters == []
    await worker.close()


@pytest.mark.parametrize("ending", ["failed", "cancelled", "lost", "retry-backoff"])
async def test_locks_are_released_on_every_way_out(engine: EngineHandle, stubs: Stubs, ending: str) -> None:
    worker = await RawWorker(engine.address, ["edit"], capacity=5).connect()
    fields: dict[str, object] = {}
    if ending == "lost":
        fields["timeouts"] = timeouts(heartbeat=0.05, takeover=0.05)
    if ending == "retry-backoff":
        fields["retry_policy"] = retry_policy(2, 30)
    job = await submit(stubs, "edit", locks=[lock("file:9")], **fields)  # type: ignore[arg-type]
    assignment = await worker.next_assignment()
    waiter = await submit(stubs, "edit", locks=[lock("file:9")])
    await wait_status(stubs, waiter.id, S.WAITING_FOR_LOCK)
    if ending in ("failed", "retry-backoff"):
        await worker.fail(assignment, "no")
    elif ending == "cancelled":
        await stubs.jobs.CancelJob(js.CancelJobRequest(job_id=job.id))
        await worker.next_cancel()
        await worker.send(
            pb.ConnectRequest(cancel_ack=pb.CancelAck(job_id=job.id, attempt=assignment.attempt))
        )
    expected = {"failed": S.FAILED, "cancelled": S.CANCELLED, "lost": S.FAILED, "retry-backoff": S.DELAYED}
    await wait_status(stubs, job.id, expected[ending])
    assert (await worker.next_assignment()).job_id == waiter.id
    holders, _ = await locks_of(stubs, "file:9")
    assert holders == [(waiter.id, X)]
    await worker.close()


async def test_a_lock_handed_on_is_freed_before_it_is_granted_in_the_event_order(
    engine: EngineHandle, stubs: Stubs
) -> None:
    """Replaying the events never shows two EXCLUSIVE holders: the holder's end comes first."""
    exclusive = [job_pb2.LockRequest(resource="asset:1", mode=job_pb2.LOCK_MODE_EXCLUSIVE)]
    first = (await stubs.jobs.SubmitJob(js.SubmitJobRequest(action="edit", locks=exclusive))).job
    second = (await stubs.jobs.SubmitJob(js.SubmitJobRequest(action="edit", locks=exclusive))).job
    worker = await RawWorker(engine.address, ["edit"], capacity=2).connect()
    a = await worker.next_assignment()
    assert a.job_id == first.id

    async def waiting() -> bool:
        got = await stubs.jobs.GetJob(js.GetJobRequest(job_id=second.id))
        return got.job.status == JobStatus.WAITING_FOR_LOCK

    await wait_for_async(waiting)
    await worker.complete(a)
    b = await worker.next_assignment()
    assert b.job_id == second.id
    events: list[job_pb2.JobEvent] = []
    for job_id in (first.id, second.id):
        events += (await stubs.jobs.GetJobEvents(js.GetJobEventsRequest(job_id=job_id))).events
    holders: set[str] = set()
    for event in sorted(events, key=lambda e: e.sequence):
        if event.job.locks_held:
            holders.add(event.job_id)
        else:
            holders.discard(event.job_id)
        assert len(holders) <= 1, f"two holders of an EXCLUSIVE lock at event {event.sequence}"
    await worker.close()
