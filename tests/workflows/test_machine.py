"""The run state machine without gRPC: the pure decisions, and a whole engine on the in-memory store
whose step jobs a fake worker session ends through the flow (as the worker protocol would)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from jobwarden.contract import EdgeKind, ErrorKind, JobStatus, JoinMode, StepStatus, WorkflowRunStatus
from jobwarden.server.core import (
    ActionStepDef,
    AssignmentOut,
    EdgeDef,
    Engine,
    EngineConfig,
    ExecutorSpec,
    JobError,
    MemoryStore,
    StartRequest,
    StepDef,
    WorkerSession,
    WorkflowDef,
    WorkflowRun,
)
from jobwarden.server.core.workflows.machine import edge_matches, join_decision


def test_edges_follow_the_outcome_of_their_source() -> None:
    assert edge_matches(EdgeKind.SUCCESS, StepStatus.COMPLETED)
    assert not edge_matches(EdgeKind.SUCCESS, StepStatus.FAILED)
    assert edge_matches(EdgeKind.FAILURE, StepStatus.FAILED)
    assert edge_matches(EdgeKind.ALWAYS, StepStatus.FAILED)
    assert edge_matches(EdgeKind.ALWAYS, StepStatus.COMPLETED)
    for kind in EdgeKind:
        assert not edge_matches(kind, StepStatus.SKIPPED)
        assert not edge_matches(kind, StepStatus.CANCELLED)


def test_joins_wait_for_every_decided_edge() -> None:
    assert join_decision(JoinMode.ALL, [(True, True), (False, False)]) is None
    assert join_decision(JoinMode.ANY, [(True, True), (False, False)]) is None
    assert join_decision(JoinMode.ALL, [(True, True), (True, False)]) is False
    assert join_decision(JoinMode.ANY, [(True, True), (True, False)]) is True
    assert join_decision(JoinMode.ANY, [(True, False), (True, False)]) is False
    assert join_decision(JoinMode.ALL, [(True, True), (True, True)]) is True


def step(name: str, action: str = "work", join: JoinMode = JoinMode.ALL) -> StepDef:
    return StepDef(name=name, action=ActionStepDef(action=action), join=join)


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


async def started_engine(store: MemoryStore) -> Engine:
    engine = Engine(EngineConfig(db_url="memory:"), store)
    await engine.start()
    return engine


@pytest.fixture
async def engine(store: MemoryStore) -> AsyncIterator[Engine]:
    made = await started_engine(store)
    yield made
    await made.stop()


def fake_worker(engine: Engine) -> WorkerSession:
    now = time.time()
    session = WorkerSession(
        id="w-machine",
        name="machine",
        executors={"work": ExecutorSpec("work")},
        capacity=100,
        labels={},
        connected_at=now,
        last_seen=now,
    )
    engine.sessions[session.id] = session
    engine.dispatcher.schedule()
    return session


async def assignments(session: WorkerSession, count: int) -> dict[str, str]:
    """The next ``count`` assignments: step name -> job id."""
    got: dict[str, str] = {}
    while len(got) < count:
        message = await asyncio.wait_for(session.outbox.get(), 15)
        if isinstance(message, AssignmentOut):
            got[message.job["workflow_step"]] = message.job["id"]
    return got


async def settle(engine: Engine, run_id: str) -> WorkflowRun:
    await engine.writer.flush()
    return await engine.get_workflow_run(run_id)


async def test_a_run_advances_through_fan_out_a_handled_failure_and_a_join(engine: Engine) -> None:
    session = fake_worker(engine)
    definition = WorkflowDef(
        name="machine",
        steps=[step("a"), step("b"), step("c"), step("join", join=JoinMode.ANY), step("rescue")],
        edges=[
            EdgeDef("a", "b", EdgeKind.SUCCESS),
            EdgeDef("a", "c", EdgeKind.SUCCESS),
            EdgeDef("b", "join", EdgeKind.SUCCESS),
            EdgeDef("c", "join", EdgeKind.SUCCESS),
            EdgeDef("b", "rescue", EdgeKind.FAILURE),
        ],
    )
    stored, created = await engine.put_workflow(definition)
    assert created
    assert stored.version == 1
    order, run, _ = await engine.start_workflow(StartRequest(workflow="machine", input={"k": 1}))
    assert {n: s.status for n, s in run.steps.items()}["a"] is StepStatus.RUNNING

    jobs = await assignments(session, 1)
    job = engine.registry.jobs[jobs["a"]]
    assert (job.workflow_run_id, job.workflow_step, job.work_order_id) == (run.id, "a", order.id)
    assert job.input == {"k": 1}
    job.result = {"from": "a"}
    engine.flow.end(job, JobStatus.COMPLETED)
    # The run advanced in the same turn: b and c have jobs in the batch that ended a.
    run = await settle(engine, run.id)
    assert run.steps["b"].status is StepStatus.RUNNING
    assert run.steps["c"].status is StepStatus.RUNNING

    jobs = await assignments(session, 2)
    engine.flow.fail(engine.registry.jobs[jobs["b"]], JobError(ErrorKind.JOB_ERROR, "b broke"))
    run = await settle(engine, run.id)
    assert run.steps["b"].status is StepStatus.FAILED
    assert run.steps["rescue"].status is StepStatus.RUNNING
    assert run.steps["join"].status is StepStatus.PENDING  # c is undecided
    c = engine.registry.jobs[jobs["c"]]
    c.result = {}
    engine.flow.end(c, JobStatus.COMPLETED)
    run = await settle(engine, run.id)
    assert run.steps["join"].status is StepStatus.RUNNING  # ANY: c's edge was taken

    jobs = await assignments(session, 2)
    for name in ("join", "rescue"):
        j = engine.registry.jobs[jobs[name]]
        j.result = {"done": name}
        engine.flow.end(j, JobStatus.COMPLETED)
    run = await settle(engine, run.id)
    assert run.status is WorkflowRunStatus.COMPLETED, run.error
    assert run.output == {"join": {"done": "join"}, "rescue": {"done": "rescue"}}
    order = await engine.get_work_order(order.id)
    assert order.status is WorkflowRunStatus.COMPLETED


async def test_an_unfinished_run_is_recovered_by_a_new_engine_on_the_same_store(store: MemoryStore) -> None:
    first = await started_engine(store)
    session = fake_worker(first)
    await first.put_workflow(
        WorkflowDef(name="again", steps=[step("a"), step("b")], edges=[EdgeDef("a", "b", EdgeKind.SUCCESS)])
    )
    _, run, _ = await first.start_workflow(StartRequest(workflow="again"))
    jobs = await assignments(session, 1)
    a = first.registry.jobs[jobs["a"]]
    a.result = {}
    first.flow.end(a, JobStatus.COMPLETED)
    await first.writer.flush()
    await first.stop()

    second = await started_engine(store)
    try:
        recovered = second.workflows.runs[run.id]
        assert recovered.steps["a"].status is StepStatus.COMPLETED
        assert recovered.steps["b"].status is StepStatus.RUNNING
        b_id = recovered.steps["b"].job_id
        b = second.registry.jobs[b_id]
        # Assigned before the stop (TIMED_OUT now, awaiting a takeover), or never started (QUEUED).
        assert b.status in (JobStatus.TIMED_OUT, JobStatus.QUEUED)
        if b.status is JobStatus.QUEUED:
            await assignments(fake_worker(second), 1)
        b.result = {"after": "restart"}
        second.flow.end(b, JobStatus.COMPLETED)
        done = await settle(second, run.id)
        assert done.status is WorkflowRunStatus.COMPLETED
        assert done.output == {"b": {"after": "restart"}}
    finally:
        await second.stop()
