"""Every bad input of the workflow API: a precise status and message, and nothing changed."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from jobwarden.contract import WorkflowLimits, WorkflowRunStatus
from jobwarden.v1 import workflow_pb2
from jobwarden.v1 import workflow_service_pb2 as ws

from .conftest import StartWorkers
from .helpers import FAILURE, action, behaving, definition, edge, fail, succeed, wait_run


async def refused(call: Any, request: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(request)
    return caught.value


async def put_refused(
    wf: Any,
    message: workflow_pb2.WorkflowDefinition,
    code: grpc.StatusCode = grpc.StatusCode.INVALID_ARGUMENT,
) -> str:
    error = await refused(wf.PutWorkflow, ws.PutWorkflowRequest(definition=message))
    assert error.code() is code, error.details()
    listed = await wf.ListWorkflows(ws.ListWorkflowsRequest(all_versions=True))
    assert all(d.name != message.name for d in listed.definitions), "nothing is stored"
    return error.details() or ""


def two(edges: list[workflow_pb2.WorkflowEdge], name: str = "bad") -> workflow_pb2.WorkflowDefinition:
    return definition(name, [action("a"), action("b"), action("c")], edges)


async def test_a_cycle_is_named(wf: Any) -> None:
    details = await put_refused(wf, two([edge("a", "b"), edge("b", "c"), edge("c", "b")]))
    assert details.startswith("the edges make a cycle: b -> c -> b")


async def test_steps_no_first_step_reaches_are_unreachable(wf: Any) -> None:
    message = definition("bad", [action("a"), action("b"), action("c")], [edge("b", "c"), edge("c", "b")])
    details = await put_refused(wf, message)
    assert details.startswith(
        "step 'b' is unreachable: no first step leads to 'b', 'c' (they form the cycle b -> c -> b)"
    )


async def test_a_dangling_edge_names_the_missing_step(wf: Any) -> None:
    details = await put_refused(wf, two([edge("a", "nowhere")]))
    assert details == "edges[0] (a -> nowhere): target 'nowhere' is not a step of this workflow"
    details = await put_refused(wf, two([edge("", "b")]))
    assert details == "edges[0] (? -> b): source is required"


async def test_bad_names_and_duplicate_steps(wf: Any) -> None:
    details = await put_refused(wf, definition("bad", [action("1st")]))
    assert details.startswith("steps[0]: step name '1st' is not valid")
    details = await put_refused(wf, definition("bad", [action("a"), action("a", "b")]))
    assert details == "step 'a': a second step has this name (step names are unique)"
    details = await put_refused(wf, definition("bad name!", [action("a")]))
    assert details.startswith("workflow name 'bad name!' is not valid")
    details = await put_refused(wf, definition("bad", []))
    assert details == "workflow 'bad' has no steps"


async def test_a_step_with_nothing_to_do(wf: Any) -> None:
    details = await put_refused(wf, definition("bad", [workflow_pb2.WorkflowStep(name="idle")]))
    assert details == "step 'idle': it has nothing to do (give it an action, a delay or a workflow)"
    details = await put_refused(wf, definition("bad", [action("a", "not an action!")]))
    assert details.startswith("step 'a': action 'not an action!' is not a valid action name")


async def test_templates_and_conditions_that_do_not_compile(wf: Any) -> None:
    details = await put_refused(wf, definition("bad", [action("a", input={"x": "{{ input.size + }}"})]))
    assert details.startswith("step 'a': template 'input.size +' does not compile:")
    details = await put_refused(wf, two([edge("a", "b", condition="step.result.size >")]))
    assert details.startswith(
        "edge a -> b (SUCCESS) (edges[0]): condition 'step.result.size >' does not compile"
    )
    details = await put_refused(wf, definition("bad", [action("a", input={"x": "{{ inptu.size }}"})]))
    assert details == (
        "step 'a': template 'inptu.size' names inptu: an expression may use only input, context, steps and "
        "(on an edge) step"
    )
    details = await put_refused(wf, definition("bad", [action("a", input={"x": "{{ input.size "})]))
    assert details == "step 'a': template a '{{' without its closing '}}'"


async def test_a_template_naming_a_step_that_is_missing_or_not_upstream(wf: Any) -> None:
    message = definition(
        "bad", [action("a"), action("b", input={"x": "{{ steps.ghost.result }}"})], [edge("a", "b")]
    )
    details = await put_refused(wf, message)
    assert details == "step 'b': reads steps.ghost, which is not a step of this workflow"
    # c runs beside b, not after it: b's result is not there when c starts.
    message = definition(
        "bad",
        [action("a"), action("b"), action("c", input={"x": "{{ steps.b.result.y }}"})],
        [edge("a", "b"), edge("a", "c")],
    )
    details = await put_refused(wf, message)
    assert details.startswith("step 'c': reads steps.b, which is not upstream of it")
    details = await put_refused(
        wf, two([edge("a", "b", condition="steps.c.status == 'COMPLETED'"), edge("b", "c")])
    )
    assert details.startswith("edge a -> b (SUCCESS) (edges[0]): reads steps.c, which is not upstream of it")


async def test_definitions_over_the_limits(wf: Any) -> None:
    too_many = WorkflowLimits.MAX_STEPS + 1
    message = definition("big", [action(f"s{i}", "x") for i in range(too_many)])
    details = await put_refused(wf, message)
    assert details == f"workflow 'big' has {too_many} steps, at most {WorkflowLimits.MAX_STEPS} allowed"
    long_name = "n" * (WorkflowLimits.MAX_NAME_LENGTH + 1)
    details = await put_refused(wf, definition(long_name, [action("a")]))
    assert details == f"workflow name is longer than {WorkflowLimits.MAX_NAME_LENGTH} characters"
    huge = definition("huge", [action("a", input={"blob": "x" * (WorkflowLimits.MAX_DEFINITION_BYTES + 10)})])
    error = await refused(wf.PutWorkflow, ws.PutWorkflowRequest(definition=huge))
    # Past the size of a gRPC message, the transport itself refuses it; under it, the engine does.
    assert error.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert (await wf.ListWorkflows(ws.ListWorkflowsRequest(all_versions=True))).definitions == []


async def test_the_same_content_creates_no_version_and_a_new_one_does(wf: Any) -> None:
    message = definition("versioned", [action("a")])
    first = await wf.PutWorkflow(ws.PutWorkflowRequest(definition=message))
    again = await wf.PutWorkflow(ws.PutWorkflowRequest(definition=message))
    assert first.created
    assert not again.created
    assert again.definition.version == first.definition.version == 1
    assert again.definition.digest == first.definition.digest
    changed = definition("versioned", [action("a"), action("b")], [edge("a", "b")])
    second = await wf.PutWorkflow(ws.PutWorkflowRequest(definition=changed))
    assert second.created
    assert second.definition.version == 2
    got = await wf.GetWorkflow(ws.GetWorkflowRequest(name="versioned", version=1))
    assert [s.name for s in got.definition.steps] == ["a"]
    listed = await wf.ListWorkflows(ws.ListWorkflowsRequest(all_versions=True))
    assert [(d.name, d.version) for d in listed.definitions] == [("versioned", 1), ("versioned", 2)]
    latest = await wf.ListWorkflows(ws.ListWorkflowsRequest())
    assert [(d.name, d.version) for d in latest.definitions] == [("versioned", 2)]


async def test_unknown_workflows_and_versions(wf: Any) -> None:
    error = await refused(wf.GetWorkflow, ws.GetWorkflowRequest(name="ghost"))
    assert error.code() is grpc.StatusCode.NOT_FOUND
    assert error.details() == "no workflow 'ghost' (workflows: none)"
    await wf.PutWorkflow(ws.PutWorkflowRequest(definition=definition("real", [action("a")])))
    error = await refused(wf.StartWorkflow, ws.StartWorkflowRequest(workflow="real", version=7))
    assert error.code() is grpc.StatusCode.NOT_FOUND
    assert error.details() == "workflow 'real' has no version 7 (its versions are 1 to 1)"
    assert (await wf.ListWorkOrders(ws.ListWorkOrdersRequest())).orders == []
    error = await refused(wf.StartWorkflow, ws.StartWorkflowRequest(workflow="realx"))
    assert error.code() is grpc.StatusCode.NOT_FOUND
    assert error.details() == "no workflow 'realx' (workflows: real)"


async def test_bad_retries_and_cancels_change_nothing(wf: Any, workers: StartWorkers) -> None:
    import asyncio

    gate = asyncio.Event()

    async def held(ctx: Any) -> dict[str, Any]:
        await gate.wait()
        return {}

    await workers(behaving("held", held), behaving("boom", fail()), behaving("fix", succeed()))
    await wf.PutWorkflow(
        ws.PutWorkflowRequest(
            definition=definition("steer", [action("held"), action("boom")], [edge("held", "boom")])
        )
    )
    started = await wf.StartWorkflow(ws.StartWorkflowRequest(workflow="steer"))
    order_id = started.order.id
    # A retry while the last run is unfinished.
    error = await refused(wf.RetryWorkOrder, ws.RetryWorkOrderRequest(work_order_id=order_id))
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert error.details() == (
        f"work order {order_id}'s last run {started.run.id} is RUNNING; retry it once it has ended "
        "(or cancel it first); nothing changed"
    )
    gate.set()
    run = await wait_run(wf, started.run.id)
    assert WorkflowRunStatus(run.status) is WorkflowRunStatus.FAILED
    # A retry from a step that is not in the run.
    error = await refused(
        wf.RetryWorkOrder, ws.RetryWorkOrderRequest(work_order_id=order_id, from_step="nope")
    )
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert (
        error.details()
        == "from_step: workflow 'steer' version 1 has no step 'nope' (its steps: held, boom); nothing changed"
    )
    # A cancel of a finished run.
    error = await refused(wf.CancelWorkflowRun, ws.CancelWorkflowRunRequest(run_id=run.id))
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert error.details() == (
        f"workflow run {run.id} is already FAILED; only an unfinished run can be cancelled; nothing changed"
    )
    # Ids: unknown, too short, malformed.
    error = await refused(wf.GetWorkOrder, ws.GetWorkOrderRequest(work_order_id="0000-0000-0000"))
    assert error.code() is grpc.StatusCode.NOT_FOUND
    error = await refused(wf.GetWorkflowRun, ws.GetWorkflowRunRequest(run_id="abc"))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "run_id" in (error.details() or "")
    assert "too short" in (error.details() or "")
    error = await refused(wf.ListWorkOrders, ws.ListWorkOrdersRequest(limit=5000))
    assert error.details() == "limit must be between 0 and 1000"
    order = await wf.GetWorkOrder(ws.GetWorkOrderRequest(work_order_id=order_id))
    assert order.order.run_count == 1
    assert [r.id for r in order.runs] == [run.id]
    assert WorkflowRunStatus(order.order.status) is WorkflowRunStatus.FAILED


async def test_a_condition_that_fails_at_run_time_fails_its_target_only(
    wf: Any, workers: StartWorkers
) -> None:
    await workers(behaving("a", succeed({"n": 1})), behaving("b", succeed()), behaving("c", succeed()))
    message = definition(
        "cond-error",
        [action("a"), action("b"), action("c")],
        [edge("a", "b", condition="step.result.missing > 2"), edge("b", "c", FAILURE)],
    )
    await wf.PutWorkflow(ws.PutWorkflowRequest(definition=message))
    started = await wf.StartWorkflow(ws.StartWorkflowRequest(workflow="cond-error"))
    run = await wait_run(wf, started.run.id)
    steps = {s.name: s for s in run.steps}
    assert steps["b"].error.message.startswith(
        "edge a -> b (SUCCESS): condition {{ step.result.missing > 2 }} failed:"
    )
    # Its FAILURE edge handles it: c runs, and the run completes.
    assert WorkflowRunStatus(run.status) is WorkflowRunStatus.COMPLETED
