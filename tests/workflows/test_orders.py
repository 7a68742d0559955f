"""Work orders over several runs: retry from the start or from a step (reusing upstream results),
pinned and latest versions, cancel, the run deadline, and a start timeout that starts a workflow."""

from __future__ import annotations

import asyncio
from typing import Any

from google.protobuf import duration_pb2
from jobwarden.contract import ErrorKind, JobStatus, StepStatus, WorkflowRunStatus
from jobwarden.sdk import JobContext
from jobwarden.v1 import job_pb2, job_service_pb2
from jobwarden.v1 import workflow_service_pb2 as ws

from .conftest import StartWorkers
from .helpers import (
    CALLS,
    action,
    behaving,
    definition,
    edge,
    step_statuses,
    steps_by_name,
    succeed,
    wait_for,
    wait_run,
)
from .test_features import start


async def test_rerun_from_a_middle_step_reuses_the_upstream_results(wf: Any, workers: StartWorkers) -> None:
    flaky = {"fail": True}

    def middle(ctx: JobContext) -> dict[str, Any]:
        if flaky["fail"]:
            from jobwarden.sdk import JobFailed

            raise JobFailed("transient storage error")
        ctx.set_workflow_variable("middle_ran", "yes")
        return {"from_first": ctx.input["v"]}

    def first(ctx: JobContext) -> dict[str, Any]:
        ctx.set_workflow_variable("token", "t-1")
        return {"v": 41}

    await workers(
        behaving("first", first),
        behaving("middle", middle),
        behaving("last", lambda ctx: {"token": dict(ctx.job.workflow_variables)["token"]}),
    )
    message = definition(
        "rerun",
        [action("first"), action("middle", input={"v": "{{ steps.first.result.v }}"}), action("last")],
        [edge("first", "middle"), edge("middle", "last")],
    )
    started = await start(wf, message)
    failed = await wait_run(wf, started.run.id)
    assert WorkflowRunStatus(failed.status) is WorkflowRunStatus.FAILED
    assert failed.error.step == "middle"
    assert CALLS["first"] == 1

    # A retry while... the last run ended, so it is allowed: from the middle step.
    flaky["fail"] = False
    retried = await wf.RetryWorkOrder(
        ws.RetryWorkOrderRequest(work_order_id=started.order.id, from_step="middle")
    )
    assert retried.run.number == 2
    assert retried.run.rerun_from_step == "middle"
    assert retried.run.previous_run_id == failed.id
    run = await wait_run(wf, retried.run.id)
    assert WorkflowRunStatus(run.status) is WorkflowRunStatus.COMPLETED, run.error
    steps = steps_by_name(run)
    # The upstream step's outcome was reused: its executor was not called again.
    assert CALLS["first"] == 1
    assert CALLS["middle"] == 2
    assert steps["first"].reused_from_run_id == failed.id
    assert steps["first"].job_id == steps_by_name(failed)["first"].job_id
    assert steps["middle"].reused_from_run_id == ""
    # Its result and its context updates are there for the steps after it.
    assert dict(run.context)["token"] == "t-1"
    from jobwarden.wire import struct_to_dict

    assert struct_to_dict(steps["middle"].result) == {"from_first": 41}
    assert struct_to_dict(steps["last"].result) == {"token": "t-1"}
    order = await wf.GetWorkOrder(ws.GetWorkOrderRequest(work_order_id=started.order.id))
    assert [r.id for r in order.runs] == [failed.id, run.id]
    assert order.order.run_count == 2
    assert WorkflowRunStatus(order.order.status) is WorkflowRunStatus.COMPLETED

    # From the start: everything runs again, on the pinned version unless the latest is asked for.
    newer = definition(
        "rerun",
        [action("first"), action("middle", input={"v": 1}), action("last"), action("extra", "last")],
        [edge("first", "middle"), edge("middle", "last"), edge("last", "extra")],
    )
    put = await wf.PutWorkflow(ws.PutWorkflowRequest(definition=newer))
    assert put.definition.version == 2
    again = await wf.RetryWorkOrder(ws.RetryWorkOrderRequest(work_order_id=started.order.id))
    assert again.run.version == 1
    pinned = await wait_run(wf, again.run.id)
    assert [s.name for s in pinned.steps] == ["first", "middle", "last"]
    assert CALLS["first"] == 2
    latest = await wf.RetryWorkOrder(
        ws.RetryWorkOrderRequest(work_order_id=started.order.id, from_step="extra", latest_version=True)
    )
    assert latest.run.version == 2
    done = await wait_run(wf, latest.run.id)
    assert WorkflowRunStatus(done.status) is WorkflowRunStatus.COMPLETED, done.error
    assert step_statuses(done)["extra"] == "COMPLETED"
    assert CALLS["first"] == 2


async def test_cancel_a_run_tells_the_running_jobs_worker(wf: Any, jobs: Any, workers: StartWorkers) -> None:
    told = asyncio.Event()

    async def long(ctx: JobContext) -> dict[str, Any]:
        try:
            await ctx.wait_cancelled()
        finally:
            # The SDK cancels an async executor once the engine's cancel reaches its worker.
            told.set()
        return {}

    await workers(behaving("long", long), behaving("later", succeed()))
    started = await start(
        wf, definition("cancellable", [action("long"), action("later")], [edge("long", "later")])
    )
    running = await wait_run(
        wf,
        started.run.id,
        WorkflowRunStatus.RUNNING,
        check=lambda r: JobStatus(r.steps[0].job_status) is JobStatus.RUNNING,
    )
    job_id = running.steps[0].job_id
    cancelled = await wf.CancelWorkflowRun(
        ws.CancelWorkflowRunRequest(run_id=started.run.id, reason="operator changed their mind")
    )
    assert WorkflowRunStatus(cancelled.run.status) is WorkflowRunStatus.CANCELLED
    assert cancelled.run.cancel_requested
    await asyncio.wait_for(told.wait(), 30)

    async def job_cancelled() -> bool:
        job = (await jobs.GetJob(job_service_pb2.GetJobRequest(job_id=job_id))).job
        return JobStatus(job.status) is JobStatus.CANCELLED

    await wait_for(job_cancelled, what="the step's job to be CANCELLED")
    run = await wait_run(wf, started.run.id)
    assert step_statuses(run) == {"long": "CANCELLED", "later": "SKIPPED"}
    assert CALLS["later"] == 0
    order = (await wf.GetWorkOrder(ws.GetWorkOrderRequest(work_order_id=started.order.id))).order
    assert WorkflowRunStatus(order.status) is WorkflowRunStatus.CANCELLED


async def test_the_run_deadline_fails_the_run_and_cancels_its_steps(wf: Any, workers: StartWorkers) -> None:
    async def stuck(ctx: JobContext) -> dict[str, Any]:
        await ctx.wait_cancelled()
        return {}

    await workers(behaving("stuck", stuck))
    message = definition("deadline", [action("stuck")], run_timeout=duration_pb2.Duration(seconds=1))
    started = await start(wf, message)
    assert started.run.deadline.seconds > 0
    run = await wait_run(wf, started.run.id)
    assert WorkflowRunStatus(run.status) is WorkflowRunStatus.FAILED
    assert ErrorKind(run.error.kind) is ErrorKind.ENGINE
    assert "run deadline of 1s passed" in run.error.message
    assert run.error.step == "stuck"
    assert StepStatus(run.steps[0].status) is StepStatus.CANCELLED


async def test_a_start_timeout_run_request_starts_a_workflow(
    wf: Any, jobs: Any, workers: StartWorkers
) -> None:
    await workers(behaving("fallback", succeed({"fell_back": True})))
    await wf.PutWorkflow(ws.PutWorkflowRequest(definition=definition("rescue", [action("fallback")])))
    request = job_service_pb2.SubmitJobRequest(action="nobody-serves-this")
    request.input.update({"asset": 3})
    start_timeout = request.timeouts.start
    start_timeout.duration.CopyFrom(duration_pb2.Duration(nanos=300_000_000))
    start_timeout.action = job_pb2.START_TIMEOUT_ACTION_FAIL
    start_timeout.run_request.workflow.workflow = "rescue"
    submitted = (await jobs.SubmitJob(request)).job
    got = (await jobs.GetJob(job_service_pb2.GetJobRequest(job_id=submitted.id))).job
    assert got.timeouts.start.run_request.workflow.workflow == "rescue"

    async def started_order() -> Any:
        orders = (await wf.ListWorkOrders(ws.ListWorkOrdersRequest(workflow="rescue"))).orders
        return orders[0] if orders else None

    order = await wait_for(started_order, what="the start timeout's work order")
    assert order.labels["jobwarden.start_timeout_of"] == submitted.id
    assert order.correlation_id == submitted.id
    run = await wait_run(wf, order.last_run_id)
    assert WorkflowRunStatus(run.status) is WorkflowRunStatus.COMPLETED
    from jobwarden.wire import struct_to_dict

    assert struct_to_dict(run.input) == {"asset": 3}  # the timed-out job's input


async def test_start_is_idempotent_with_a_key(wf: Any, workers: StartWorkers) -> None:
    import grpc
    import pytest

    await workers(behaving("once", succeed()))
    await wf.PutWorkflow(ws.PutWorkflowRequest(definition=definition("keyed", [action("once")])))
    request = ws.StartWorkflowRequest(workflow="keyed", idempotency_key="order-77")
    request.input.update({"n": 1})
    first = await wf.StartWorkflow(request)
    second = await wf.StartWorkflow(request)
    assert second.duplicate
    assert not first.duplicate
    assert second.order.id == first.order.id
    other = ws.StartWorkflowRequest(workflow="keyed", idempotency_key="order-77")
    other.input.update({"n": 2})
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await wf.StartWorkflow(other)
    assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "input differ" in (refused.value.details() or "")
    listed = (await wf.ListWorkOrders(ws.ListWorkOrdersRequest(workflow="keyed"))).orders
    assert len(listed) == 1
