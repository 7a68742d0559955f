"""Workflow events in WatchJobs: one sequence with the job events, gap-free, replayable."""

from __future__ import annotations

import asyncio
from typing import Any

from jobwarden.contract import StepStatus, WorkflowEventType, WorkflowRunStatus
from jobwarden.v1 import job_service_pb2

from .conftest import StartWorkers
from .helpers import FAILURE, action, behaving, definition, edge, fail, succeed, wait_run
from .test_features import start


async def collect(
    jobs: Any, request: job_service_pb2.WatchJobsRequest, until: int, within: float = 30.0
) -> tuple[list[Any], list[Any]]:
    """Job events and workflow events of a watch, until the head reaches ``until``."""
    job_events: list[Any] = []
    workflow_events: list[Any] = []

    async def read() -> None:
        async for response in jobs.WatchJobs(request):
            job_events.extend(response.events)
            workflow_events.extend(response.workflow_events)
            seen = [e.sequence for e in response.events] + [e.sequence for e in response.workflow_events]
            if seen and max(seen) >= until:
                return

    await asyncio.wait_for(read(), within)
    return job_events, workflow_events


async def test_workflow_events_are_gap_free_with_job_events_and_replay(
    wf: Any, jobs: Any, workers: StartWorkers
) -> None:
    await workers(behaving("w1", succeed()), behaving("w2", fail()), behaving("w3", succeed()))
    # From sequence 0: whatever the engine did before this watch started is replayed, the rest is live.
    live_request = job_service_pb2.WatchJobsRequest(workflow_events=True, after_sequence=0)
    live_call = jobs.WatchJobs(live_request)
    live_jobs: list[Any] = []
    live_flows: list[Any] = []

    async def follow() -> None:
        async for response in live_call:
            live_jobs.extend(response.events)
            live_flows.extend(response.workflow_events)

    follower = asyncio.create_task(follow())
    started = await start(
        wf,
        definition(
            "watched",
            [action("w1"), action("w2"), action("w3")],
            [edge("w1", "w2"), edge("w2", "w3", FAILURE)],
        ),
    )
    run = await wait_run(wf, started.run.id)
    assert WorkflowRunStatus(run.status) is WorkflowRunStatus.COMPLETED
    head = (await jobs.GetStats(job_service_pb2.GetStatsRequest())).head_sequence

    async def caught_up() -> bool:
        sequences = [e.sequence for e in live_jobs] + [e.sequence for e in live_flows]
        return bool(sequences) and max(sequences) >= head

    from .helpers import wait_for

    await wait_for(caught_up, what="the live watcher to reach the head")
    follower.cancel()
    live_call.cancel()
    merged = sorted([e.sequence for e in live_jobs] + [e.sequence for e in live_flows])
    assert merged == list(range(1, head + 1)), "job and workflow events together have no gap"
    types = [WorkflowEventType(e.type) for e in live_flows]
    assert types[:2] == [WorkflowEventType.ORDER_CREATED, WorkflowEventType.RUN_STARTED]
    assert types[-1] is WorkflowEventType.RUN_STATUS_CHANGED
    assert WorkflowRunStatus(live_flows[-1].run.status) is WorkflowRunStatus.COMPLETED
    assert WorkflowRunStatus(live_flows[-1].order.status) is WorkflowRunStatus.COMPLETED
    changes = [
        (e.step, StepStatus(e.previous_step_status).name, StepStatus(e.run.steps[0].status).name)
        for e in live_flows
        if e.type == WorkflowEventType.STEP_CHANGED
    ]
    assert ("w2", "RUNNING", "FAILED") in changes
    assert ("w3", "PENDING", "RUNNING") in changes
    # Replayed from the store: the same events, the same gap-free sequence.
    replay_jobs, replay_flows = await collect(
        jobs, job_service_pb2.WatchJobsRequest(workflow_events=True, after_sequence=0), head
    )
    assert [e.sequence for e in replay_flows] == [e.sequence for e in live_flows]
    assert [e.sequence for e in replay_jobs] == [e.sequence for e in live_jobs]
    assert [e.SerializeToString() for e in replay_flows] == [e.SerializeToString() for e in live_flows]
    # Filtered: one run's workflow events only.
    _, only_run = await collect(
        jobs,
        job_service_pb2.WatchJobsRequest(
            workflow_events=True, after_sequence=0, run_ids=[run.id[-8:]], exclude_job_events=True
        ),
        live_flows[-1].sequence,
    )
    assert [e.sequence for e in only_run] == [e.sequence for e in live_flows if e.run.id == run.id]
    # Without workflow_events, a watcher sees job events only, as before.
    plain_jobs, plain_flows = await collect(
        jobs, job_service_pb2.WatchJobsRequest(after_sequence=0), live_jobs[-1].sequence
    )
    assert plain_flows == []
    assert [e.sequence for e in plain_jobs] == [e.sequence for e in live_jobs]
