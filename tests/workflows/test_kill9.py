"""kill -9 of the engine mid-run: the run finishes correctly after a restart, no step runs twice
beyond at-least-once, no edge is taken twice."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import duration_pb2
from jobwarden.contract import StepStatus, WorkflowEventType, WorkflowRunStatus
from jobwarden.sdk import JobContext, Worker
from jobwarden.v1 import job_service_pb2, job_service_pb2_grpc, workflow_service_pb2_grpc
from jobwarden.v1 import workflow_service_pb2 as ws

from tests.support import EngineProcess

from .helpers import CALLS, action, behaving, definition, edge, step_statuses, succeed, wait_for, wait_run


async def test_kill_9_mid_run_and_the_run_finishes(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'wf.db'}"
    engine = EngineProcess(db, log_path=tmp_path / "engine-1.log").start()
    gate = asyncio.Event()

    async def middle(ctx: JobContext) -> dict[str, Any]:
        if CALLS["middle"] == 1:
            await gate.wait()  # the first attempt is running when the engine dies
        return {"attempt": ctx.attempt}

    worker = Worker(
        [behaving("first", succeed({"v": 1})), behaving("middle", middle), behaving("last", succeed())],
        engine=engine.address,
        capacity=4,
        name="kill9",
        reconnect_initial=0.1,
        reconnect_max=0.5,
    )
    serving = asyncio.create_task(worker.run())
    channel = grpc.aio.insecure_channel(engine.address)
    try:
        await asyncio.wait_for(worker.wait_connected(), 30)
        wf = workflow_service_pb2_grpc.WorkflowServiceStub(channel)
        middle_step = action("middle")
        middle_step.action.timeouts.heartbeat.CopyFrom(duration_pb2.Duration(seconds=1))
        middle_step.action.timeouts.takeover.CopyFrom(duration_pb2.Duration(seconds=1))
        middle_step.action.retry_policy.max_attempts = 3
        middle_step.action.retry_policy.initial_interval.CopyFrom(duration_pb2.Duration(nanos=100_000_000))
        message = definition(
            "durable",
            [action("first"), middle_step, action("last")],
            [edge("first", "middle"), edge("middle", "last")],
        )
        await wf.PutWorkflow(ws.PutWorkflowRequest(definition=message))
        started = await wf.StartWorkflow(ws.StartWorkflowRequest(workflow="durable"))

        async def middle_running() -> bool:
            return CALLS["middle"] == 1

        await wait_for(middle_running, what="the middle step's executor to run")
        engine.kill()
        await channel.close()
        engine = EngineProcess(db, port=engine.port, log_path=tmp_path / "engine-2.log").start()
        channel = grpc.aio.insecure_channel(engine.address)
        wf = workflow_service_pb2_grpc.WorkflowServiceStub(channel)
        jobs = job_service_pb2_grpc.JobServiceStub(channel)
        gate.set()
        run = await wait_run(wf, started.run.id, within=60)
        assert WorkflowRunStatus(run.status) is WorkflowRunStatus.COMPLETED, run.error
        assert step_statuses(run) == {"first": "COMPLETED", "middle": "COMPLETED", "last": "COMPLETED"}
        # At least once for the step that was running; exactly once for the others.
        assert CALLS["first"] == 1
        assert CALLS["last"] == 1
        assert CALLS["middle"] in (1, 2)
        order = await wf.GetWorkOrder(ws.GetWorkOrderRequest(work_order_id=started.order.id))
        assert order.order.run_count == 1
        assert WorkflowRunStatus(order.order.status) is WorkflowRunStatus.COMPLETED
        # No edge taken twice: each step started once in the stored workflow events.
        head = (await jobs.GetStats(job_service_pb2.GetStatsRequest())).head_sequence
        events: list[Any] = []
        async for response in jobs.WatchJobs(
            job_service_pb2.WatchJobsRequest(workflow_events=True, exclude_job_events=True, after_sequence=0)
        ):
            events.extend(response.workflow_events)
            if (events and events[-1].sequence >= head) or any(
                e.type == WorkflowEventType.RUN_STATUS_CHANGED and e.run.status == WorkflowRunStatus.COMPLETED
                for e in events
            ):
                break
        started_steps = [
            e.step
            for e in events
            if e.type == WorkflowEventType.STEP_CHANGED
            and StepStatus(e.run.steps[0].status) is StepStatus.RUNNING
        ]
        assert sorted(started_steps) == ["first", "last", "middle"]
        sequences = [e.sequence for e in events]
        assert sequences == sorted(set(sequences))
    finally:
        worker.stop()
        serving.cancel()
        await channel.close()
        engine.kill()
