"""A standby's watch carries workflow events too: job and workflow events share one sequence, so a
standby that tailed job events alone would see gaps wherever a workflow event sits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2
from jobwarden.v1 import job_service_pb2 as js
from jobwarden.v1 import job_service_pb2_grpc, workflow_pb2, workflow_service_pb2_grpc
from jobwarden.v1 import workflow_service_pb2 as ws

from tests.support.cluster import EngineCluster
from tests.support.waiting import wait_for_async

FAST: tuple[str, ...] = (
    "--lease-duration",
    "2",
    "--lease-renew-interval",
    "0.4",
    "--standby-poll-interval",
    "0.1",
)


@pytest.fixture
def cluster(cluster_db: str, tmp_path: Path) -> Any:
    with EngineCluster(cluster_db, size=2, log_dir=tmp_path, extra_args=FAST) as running:
        yield running


async def merged_history(address: str, head: int) -> list[int]:
    """Every sequence up to ``head`` from one engine's WatchJobs, job and workflow events merged."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = job_service_pb2_grpc.JobServiceStub(channel)
        sequences: list[int] = []
        call = stub.WatchJobs(js.WatchJobsRequest(after_sequence=0, workflow_events=True))
        try:
            async for response in call:
                sequences.extend(ev.sequence for ev in response.events)
                sequences.extend(ev.sequence for ev in response.workflow_events)
                if sequences and max(sequences) >= head:
                    break
        finally:
            call.cancel()
    return sorted(sequences)


async def test_a_standby_watch_has_the_workflow_events_with_no_gap(cluster: EngineCluster) -> None:
    leader = await cluster.wait_for_leader()
    standby = next(e for e in cluster.engines if e is not leader)
    async with grpc.aio.insecure_channel(leader.address) as channel:
        wf = workflow_service_pb2_grpc.WorkflowServiceStub(channel)
        wait = workflow_pb2.WorkflowStep(
            name="wait", delay=workflow_pb2.DelayStep(duration=duration_pb2.Duration(nanos=100_000_000))
        )
        definition = workflow_pb2.WorkflowDefinition(name="pause", steps=[wait])
        await wf.PutWorkflow(ws.PutWorkflowRequest(definition=definition), timeout=30)
        started = await wf.StartWorkflow(ws.StartWorkflowRequest(workflow="pause"), timeout=30)

        async def finished() -> bool:
            run = (await wf.GetWorkflowRun(ws.GetWorkflowRunRequest(run_id=started.run.id), timeout=10)).run
            return run.status == workflow_pb2.WORKFLOW_RUN_STATUS_COMPLETED

        await wait_for_async(finished, timeout=30, message="the run to complete")
        jobs = job_service_pb2_grpc.JobServiceStub(channel)
        head = (await jobs.GetStats(js.GetStatsRequest(), timeout=10)).head_sequence
    assert head > 0
    on_leader = await merged_history(leader.address, head)
    assert on_leader == list(range(1, head + 1))
    # The standby serves the same history, whole, within its tail's poll.
    on_standby = await merged_history(standby.address, head)
    assert on_standby == on_leader
    async with grpc.aio.insecure_channel(standby.address) as channel:
        read = workflow_service_pb2_grpc.WorkflowServiceStub(channel)
        run = (await read.GetWorkflowRun(ws.GetWorkflowRunRequest(run_id=started.run.id), timeout=10)).run
        assert run.status == workflow_pb2.WORKFLOW_RUN_STATUS_COMPLETED
