"""Action steps joined by success, failure and always edges, through a real engine and real SDK workers."""

from __future__ import annotations

from typing import Any

from jobwarden.contract import ErrorKind, StepStatus, WorkflowRunStatus
from jobwarden.v1 import job_service_pb2, workflow_pb2
from jobwarden.v1 import workflow_service_pb2 as ws

from .conftest import StartWorkers
from .helpers import (
    ALWAYS,
    CALLS,
    FAILURE,
    action,
    behaving,
    crash,
    definition,
    edge,
    fail,
    result,
    step_statuses,
    steps_by_name,
    succeed,
    wait_run,
)


async def _put_and_start(
    wf: Any, message: workflow_pb2.WorkflowDefinition, input: dict[str, Any] | None = None
) -> tuple[workflow_pb2.WorkflowDefinition, ws.StartWorkflowResponse]:
    put = await wf.PutWorkflow(ws.PutWorkflowRequest(definition=message))
    assert put.created
    request = ws.StartWorkflowRequest(workflow=message.name)
    if input:
        request.input.update(input)
    started = await wf.StartWorkflow(request)
    return put.definition, started


def _graph(name: str) -> workflow_pb2.WorkflowDefinition:
    # ingest -> transcode; transcode fails -> notify (handled); always -> cleanup
    return definition(
        name,
        [action("ingest"), action("transcode"), action("notify"), action("cleanup"), action("publish")],
        [
            edge("ingest", "transcode"),
            edge("transcode", "publish"),
            edge("transcode", "notify", FAILURE),
            edge("transcode", "cleanup", ALWAYS),
        ],
    )


async def test_a_handled_failure_completes_the_run(wf: Any, jobs: Any, workers: StartWorkers) -> None:
    await workers(
        behaving("ingest", succeed({"asset": 7})),
        behaving("transcode", fail("codec missing")),
        behaving("notify", succeed()),
        behaving("cleanup", succeed()),
        behaving("publish", succeed()),
    )
    _, started = await _put_and_start(wf, _graph("media"), {"asset_id": 7})
    assert started.order.workflow == "media"
    assert started.run.number == 1
    run = await wait_run(wf, started.run.id)
    assert WorkflowRunStatus(run.status) is WorkflowRunStatus.COMPLETED, run
    assert step_statuses(run) == {
        "ingest": "COMPLETED",
        "transcode": "FAILED",
        "notify": "COMPLETED",
        "cleanup": "COMPLETED",
        "publish": "SKIPPED",
    }
    steps = steps_by_name(run)
    assert result(steps["ingest"]) == {"asset": 7}
    assert steps["transcode"].error.message == "codec missing"
    assert CALLS["publish"] == 0
    taken = {(e.source, e.target): e.taken for e in run.edges}
    assert taken == {
        ("ingest", "transcode"): True,
        ("transcode", "publish"): False,
        ("transcode", "notify"): True,
        ("transcode", "cleanup"): True,
    }
    # A step's job names its run, its step and the work order.
    job = (await jobs.GetJob(job_service_pb2.GetJobRequest(job_id=steps["transcode"].job_id))).job
    assert (job.workflow_run_id, job.workflow_step, job.work_order_id) == (
        run.id,
        "transcode",
        run.work_order_id,
    )
    order = (await wf.GetWorkOrder(ws.GetWorkOrderRequest(work_order_id=run.work_order_id[-8:]))).order
    assert WorkflowRunStatus(order.status) is WorkflowRunStatus.COMPLETED
    assert order.last_run_id == run.id
    assert order.run_count == 1
    # Default output: the completed leaf steps' results by name.
    assert set(result_of(run)) == {"notify", "cleanup"}


def result_of(run: workflow_pb2.WorkflowRun) -> dict[str, Any]:
    from jobwarden.wire import struct_to_dict

    return struct_to_dict(run.output)


async def test_an_unhandled_failure_fails_the_run_naming_the_step(wf: Any, workers: StartWorkers) -> None:
    await workers(behaving("first", succeed()), behaving("second", fail("bad input file")))
    message = definition("plain", [action("first"), action("second")], [edge("first", "second")])
    _, started = await _put_and_start(wf, message)
    run = await wait_run(wf, started.run.id)
    assert WorkflowRunStatus(run.status) is WorkflowRunStatus.FAILED
    assert run.error.step == "second"
    assert run.error.message == "step 'second' failed: bad input file"
    assert ErrorKind(run.error.kind) is ErrorKind.JOB_ERROR
    assert run.error.job_id == steps_by_name(run)["second"].job_id
    listed = await wf.ListWorkOrders(ws.ListWorkOrdersRequest(workflow="plain"))
    assert [o.id for o in listed.orders] == [run.work_order_id]
    assert WorkflowRunStatus(listed.orders[0].status) is WorkflowRunStatus.FAILED


async def test_a_crash_aborts_the_run(wf: Any, workers: StartWorkers) -> None:
    import asyncio

    gate = asyncio.Event()

    async def slow(ctx: Any) -> dict[str, Any]:
        await gate.wait()
        return {}

    await workers(
        behaving("start", succeed()),
        behaving("crasher", crash("segfault in the codec")),
        behaving("slow", slow),
        behaving("after", succeed()),
    )
    message = definition(
        "crashy",
        [action("start"), action("crasher"), action("slow"), action("after")],
        [
            edge("start", "crasher"),
            edge("start", "slow"),
            edge("crasher", "after", FAILURE),
            edge("slow", "after"),
        ],
    )
    _, started = await _put_and_start(wf, message)
    run = await wait_run(wf, started.run.id)
    gate.set()
    assert WorkflowRunStatus(run.status) is WorkflowRunStatus.FAILED
    assert run.error.step == "crasher"
    assert ErrorKind(run.error.kind) is ErrorKind.CRASHED
    statuses = step_statuses(run)
    assert statuses["crasher"] == "FAILED"
    assert statuses["slow"] == "CANCELLED"
    assert statuses["after"] == "SKIPPED"
    assert CALLS["after"] == 0


async def test_continue_on_crash_follows_the_failure_edges(wf: Any, workers: StartWorkers) -> None:
    await workers(behaving("crasher2", crash()), behaving("rescue", succeed()))
    message = definition(
        "tolerant",
        [action("crasher2", continue_on_crash=True), action("rescue")],
        [edge("crasher2", "rescue", FAILURE)],
    )
    _, started = await _put_and_start(wf, message)
    run = await wait_run(wf, started.run.id)
    assert WorkflowRunStatus(run.status) is WorkflowRunStatus.COMPLETED, run.error
    assert StepStatus(steps_by_name(run)["rescue"].status) is StepStatus.COMPLETED
