"""The engine's parts on their own: a ``JobFlow`` and a ``Dispatcher`` (and the ``Jobs`` part that makes
jobs) on a real SQLite store and on the in-memory one, without gRPC and without the ``Engine`` façade;
and a new part that brings its own kind of timer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from jobwarden.contract import JobEventType, JobStatus, LockMode
from jobwarden.server.core import (
    ActionConfigs,
    AssignmentOut,
    DeadlineHandlers,
    Dispatcher,
    Engine,
    EngineConfig,
    EventBus,
    ExecutorSpec,
    JobFlow,
    Jobs,
    JobStore,
    LockTable,
    MemoryStore,
    Registry,
    Store,
    SubmitSpec,
    Timers,
    WorkerSession,
    Writer,
)

from tests.support.waiting import wait_for


@dataclass
class Parts:
    store: JobStore
    writer: Writer
    timers: Timers
    flow: JobFlow
    dispatcher: Dispatcher
    jobs: Jobs


@pytest.fixture(params=["sqlite", "memory"])
async def parts(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Parts]:
    config = EngineConfig(db_url=f"sqlite:///{tmp_path / 'parts.db'}")
    store: JobStore = Store(config.db_url) if request.param == "sqlite" else MemoryStore()
    store.create_schema()
    bus = EventBus()
    writer = Writer(store, bus.publish)
    writer.start()
    registry = Registry(writer, sequence=0)
    timers = Timers()
    flow = JobFlow(
        config,
        store=store,
        writer=writer,
        registry=registry,
        locks=LockTable(),
        timers=timers,
        configs=ActionConfigs(writer),
    )
    dispatcher = Dispatcher(flow)
    jobs = Jobs(flow, dispatcher, bus)
    DeadlineHandlers(flow, dispatcher, jobs)
    timers.start()
    flow.running = True
    yield Parts(store, writer, timers, flow, dispatcher, jobs)
    flow.running = False
    timers.stop()
    await writer.close()
    flow.close_readers()
    store.close()


def connect_worker(dispatcher: Dispatcher, action: str, capacity: int) -> WorkerSession:
    now = time.time()
    session = WorkerSession(
        id="w-parts",
        name="parts",
        executors={action: ExecutorSpec(action)},
        capacity=capacity,
        labels={},
        connected_at=now,
        last_seen=now,
    )
    dispatcher.sessions[session.id] = session
    dispatcher.schedule()
    return session


async def next_assignment(session: WorkerSession) -> AssignmentOut:
    message = await asyncio.wait_for(session.outbox.get(), 15)
    assert isinstance(message, AssignmentOut), message
    return message


async def test_a_job_goes_from_submit_to_completed_through_flow_and_dispatcher(parts: Parts) -> None:
    session = connect_worker(parts.dispatcher, "render", capacity=1)
    [(snapshot, duplicate)] = await parts.jobs.submit([SubmitSpec(action="render", input={"n": 1})])
    assert not duplicate
    assignment = await next_assignment(session)
    assert (assignment.job["id"], assignment.attempt) == (snapshot["id"], 1)
    job = parts.flow.registry.jobs[snapshot["id"]]
    assert job.status is JobStatus.RUNNING
    assert session.jobs == {job.id: 1}

    job.result = {"ok": True}
    parts.flow.end(job, JobStatus.COMPLETED, actor=f"worker:{session.id}")
    await parts.writer.flush()

    assert session.jobs == {}, "the attempt's slot on the worker is free again"
    stored = parts.store.get_job(job.id)
    assert stored is not None
    assert (stored.status, stored.result) == (JobStatus.COMPLETED, {"ok": True})
    statuses = [ev.snapshot["status"] for ev in parts.store.job_events(job.id)]
    assert statuses == [JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.COMPLETED]


async def test_a_lock_passes_to_the_waiting_job_when_its_holder_ends(parts: Parts) -> None:
    session = connect_worker(parts.dispatcher, "edit", capacity=2)
    spec = SubmitSpec(action="edit", locks=[("asset:7", int(LockMode.EXCLUSIVE))])
    [(first, _)] = await parts.jobs.submit([spec])
    holder = parts.flow.registry.jobs[first["id"]]
    await next_assignment(session)
    [(second, _)] = await parts.jobs.submit([spec])
    waiter = parts.flow.registry.jobs[second["id"]]
    await wait_for(lambda: waiter.status is JobStatus.WAITING_FOR_LOCK, message="the second job to wait")
    assert [h.holder for h in parts.flow.locks.holders_of("asset:7")] == [holder.id]
    assert session.jobs == {holder.id: 1}, "a job waiting for a lock takes no slot"

    parts.flow.end(holder, JobStatus.COMPLETED, actor=f"worker:{session.id}")
    assignment = await next_assignment(session)
    await parts.writer.flush()

    assert assignment.job["id"] == waiter.id
    assert [h.holder for h in parts.flow.locks.holders_of("asset:7")] == [waiter.id]
    freed = parts.store.job_events(holder.id)[-1]
    granted = [ev for ev in parts.store.job_events(waiter.id) if ev.reason == "its locks were granted"]
    assert freed.snapshot["status"] == JobStatus.COMPLETED
    assert len(granted) == 1
    assert freed.sequence < granted[0].sequence, "the lock is handed on only after its holder let go"
    assert granted[0].type is JobEventType.STATUS_CHANGED
    assert waiter.status is JobStatus.RUNNING


class Reminders:
    """A part of the kind a workflow runner would be: it registers its own timers when made."""

    KIND = "reminder"

    def __init__(self, timers: Timers) -> None:
        self.timers = timers
        self.fired: list[str] = []
        self.heard = asyncio.Event()
        timers.on(self.KIND, self._on_reminder)

    def remind(self, key: str, at: float) -> None:
        self.timers.arm(self.KIND, key, at)

    def _on_reminder(self, key: str) -> None:
        self.fired.append(key)
        self.heard.set()


async def test_a_new_part_registers_its_own_timer_kind_and_is_called(parts: Parts) -> None:
    reminders = Reminders(parts.timers)
    reminders.remind("step-1", time.time())
    await asyncio.wait_for(reminders.heard.wait(), 15)
    assert reminders.fired == ["step-1"]
    assert parts.timers.due(Reminders.KIND, "step-1") is None, "a fired timer is no longer pending"


async def test_a_timer_kind_claimed_twice_is_refused_and_the_first_handler_stays(parts: Parts) -> None:
    reminders = Reminders(parts.timers)
    with pytest.raises(ValueError, match="timer kind 'reminder' already has a handler"):
        Reminders(parts.timers)
    with pytest.raises(ValueError, match="timer kind 'start' already has a handler"):
        parts.timers.on("start", reminders._on_reminder)
    reminders.remind("step-2", time.time())
    await asyncio.wait_for(reminders.heard.wait(), 15)
    assert reminders.fired == ["step-2"]


async def test_a_whole_engine_runs_on_the_in_memory_store_and_recovers_from_it() -> None:
    """The store is a seam: the façade takes any ``JobStore``. A restart on the same store finds the
    unfinished job and its history."""
    store = MemoryStore()
    first = Engine(EngineConfig(), store)
    await first.start()
    spec = SubmitSpec(action="ingest", locks=[("asset:3", int(LockMode.EXCLUSIVE))])
    [(snapshot, _)] = await first.submit([spec])
    await first.stop()

    second = Engine(EngineConfig(), store)
    await second.start()
    try:
        job = await second.get_job(snapshot["id"])
        assert job.status is JobStatus.QUEUED
        assert [lock.resource for lock in job.locks] == ["asset:3"]
        assert [ev.type for ev in await second.job_events(job.id)] == [JobEventType.SUBMITTED]
    finally:
        await second.stop()
