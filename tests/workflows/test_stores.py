"""The workflow tables on SQLite and PostgreSQL: definitions, work orders, runs and workflow events
written by a real engine and read back through the API, and after a restart on the same database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from jobwarden.contract import WorkflowRunStatus
from jobwarden.sdk import Worker
from jobwarden.v1 import job_service_pb2, job_service_pb2_grpc, workflow_pb2, workflow_service_pb2_grpc
from jobwarden.v1 import workflow_service_pb2 as ws

from tests.conftest import EngineFactory, EngineHandle

from .helpers import FAILURE, action, behaving, definition, edge, fail, succeed, wait_run


@pytest.fixture
async def any_wf(
    any_engine: EngineHandle,
) -> AsyncIterator[workflow_service_pb2_grpc.WorkflowServiceAsyncStub]:
    channel = any_engine.channel()
    yield workflow_service_pb2_grpc.WorkflowServiceStub(channel)
    await channel.close()


async def test_orders_runs_and_events_are_stored(
    any_engine: EngineHandle, any_wf: Any, engine_factory: EngineFactory
) -> None:
    import asyncio

    worker = Worker(
        [behaving("s1", succeed({"n": 1})), behaving("s2", fail("no"))],
        engine=any_engine.address,
        name="stores",
    )
    serving = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(worker.wait_connected(), 30)
        message = definition(
            "stored",
            [action("s1"), action("s2"), action("s3", "s1")],
            [edge("s1", "s2"), edge("s2", "s3", FAILURE)],
        )
        await any_wf.PutWorkflow(ws.PutWorkflowRequest(definition=message))
        request = ws.StartWorkflowRequest(
            workflow="stored", correlation_id="patient-123", idempotency_key="k1"
        )
        request.input.update({"patient": 123})
        started = await any_wf.StartWorkflow(request)
        run = await wait_run(any_wf, started.run.id)
        assert WorkflowRunStatus(run.status) is WorkflowRunStatus.COMPLETED
        retried = await any_wf.RetryWorkOrder(
            ws.RetryWorkOrderRequest(work_order_id=started.order.id, from_step="s3")
        )
        await wait_run(any_wf, retried.run.id)
    finally:
        worker.stop()
        serving.cancel()
    by_status = await any_wf.ListWorkOrders(
        ws.ListWorkOrdersRequest(
            statuses=[workflow_pb2.WORKFLOW_RUN_STATUS_COMPLETED], correlation_id="patient-123"
        )
    )
    assert [o.id for o in by_status.orders] == [started.order.id]
    assert (
        await any_wf.ListWorkOrders(
            ws.ListWorkOrdersRequest(statuses=[workflow_pb2.WORKFLOW_RUN_STATUS_FAILED])
        )
    ).orders == []

    # A new engine on the same database reads it all back.
    await any_engine.server.stop(grace=0)
    again = await engine_factory(db_url=any_engine.db_url)
    channel = again.channel()
    try:
        wf = workflow_service_pb2_grpc.WorkflowServiceStub(channel)
        jobs = job_service_pb2_grpc.JobServiceStub(channel)
        order = await wf.GetWorkOrder(ws.GetWorkOrderRequest(work_order_id=started.order.id[:8]))
        assert order.order.run_count == 2
        assert [r.number for r in order.runs] == [1, 2]
        assert dict(order.order.labels) == {}
        assert order.order.idempotency_key == "k1"
        assert order.runs[1].steps[0].reused_from_run_id == run.id
        duplicate = await wf.StartWorkflow(request)
        assert duplicate.duplicate
        assert duplicate.order.id == started.order.id
        listed = await wf.ListWorkflows(ws.ListWorkflowsRequest())
        assert [d.name for d in listed.definitions] == ["stored"]
        head = (await jobs.GetStats(job_service_pb2.GetStatsRequest())).head_sequence
        flows: list[Any] = []
        jobs_seen: list[Any] = []
        async for response in jobs.WatchJobs(
            job_service_pb2.WatchJobsRequest(workflow_events=True, after_sequence=0)
        ):
            flows.extend(response.workflow_events)
            jobs_seen.extend(response.events)
            if max([e.sequence for e in flows] + [e.sequence for e in jobs_seen]) >= head:
                break
        merged = sorted([e.sequence for e in flows] + [e.sequence for e in jobs_seen])
        assert merged == list(range(1, head + 1))
    finally:
        await channel.close()
