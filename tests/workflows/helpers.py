"""Helpers of the workflow tests: definitions in a few words, executors that count their calls, and
waits on runs through the real gRPC API."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from google.protobuf import duration_pb2
from jobwarden.contract import StepStatus, WorkflowRunStatus
from jobwarden.sdk import Executor, JobContext, JobFailed
from jobwarden.v1 import workflow_pb2, workflow_service_pb2, workflow_service_pb2_grpc
from jobwarden.wire import dict_to_struct, struct_to_dict

SUCCESS, FAILURE, ALWAYS = (
    workflow_pb2.EDGE_KIND_SUCCESS,
    workflow_pb2.EDGE_KIND_FAILURE,
    workflow_pb2.EDGE_KIND_ALWAYS,
)

#: how many times each action's executor ran, over the whole test process
CALLS: Counter[str] = Counter()


def action(
    name: str, action_name: str = "", *, input: dict[str, Any] | None = None, **fields: Any
) -> workflow_pb2.WorkflowStep:
    step = workflow_pb2.WorkflowStep(name=name, **fields)
    step.action.action = action_name or name
    if input is not None:
        dict_to_struct(input, step.action.input)
    return step


def delay(name: str, seconds: float) -> workflow_pb2.WorkflowStep:
    step = workflow_pb2.WorkflowStep(name=name)
    step.delay.duration.CopyFrom(duration_pb2.Duration(seconds=int(seconds), nanos=int((seconds % 1) * 1e9)))
    return step


def sub(name: str, workflow: str, *, input: dict[str, Any] | None = None) -> workflow_pb2.WorkflowStep:
    step = workflow_pb2.WorkflowStep(name=name)
    step.workflow.workflow = workflow
    if input is not None:
        dict_to_struct(input, step.workflow.input)
    return step


def edge(source: str, target: str, kind: int = SUCCESS, condition: str = "") -> workflow_pb2.WorkflowEdge:
    return workflow_pb2.WorkflowEdge(source=source, target=target, kind=kind, condition=condition)  # type: ignore[arg-type]


def definition(
    name: str,
    steps: list[workflow_pb2.WorkflowStep],
    edges: Sequence[workflow_pb2.WorkflowEdge] = (),
    **fields: Any,
) -> workflow_pb2.WorkflowDefinition:
    output = fields.pop("output", None)
    message = workflow_pb2.WorkflowDefinition(name=name, steps=steps, edges=list(edges), **fields)
    if output is not None:
        dict_to_struct(output, message.output)
    return message


def behaving(action_name: str, behave: Callable[[JobContext], Any]) -> Executor:
    """An executor of ``action_name`` that counts its calls in ``CALLS`` and does what ``behave`` does."""

    class Behaving(Executor):
        action = action_name

        async def execute(self, ctx: JobContext) -> Any:
            CALLS[action_name] += 1
            value = behave(ctx)
            if asyncio.iscoroutine(value):
                value = await value
            return value

    return Behaving()


def succeed(result: dict[str, Any] | None = None) -> Callable[[JobContext], Any]:
    return lambda ctx: result if result is not None else {"echo": ctx.input}


def fail(message: str = "handled failure") -> Callable[[JobContext], Any]:
    def behave(ctx: JobContext) -> Any:
        raise JobFailed(message)

    return behave


def crash(message: str = "boom") -> Callable[[JobContext], Any]:
    def behave(ctx: JobContext) -> Any:
        raise RuntimeError(message)

    return behave


async def wait_run(
    stub: workflow_service_pb2_grpc.WorkflowServiceAsyncStub,
    run_id: str,
    *statuses: WorkflowRunStatus,
    within: float = 30.0,
    check: Callable[[workflow_pb2.WorkflowRun], bool] | None = None,
) -> workflow_pb2.WorkflowRun:
    """The run once it is in one of ``statuses`` (any finished one when none are given)."""
    wanted = {int(s) for s in statuses} or {
        int(WorkflowRunStatus.COMPLETED),
        int(WorkflowRunStatus.FAILED),
        int(WorkflowRunStatus.CANCELLED),
    }
    deadline = time.monotonic() + within
    while True:
        run = (await stub.GetWorkflowRun(workflow_service_pb2.GetWorkflowRunRequest(run_id=run_id))).run
        if run.status in wanted and (check is None or check(run)):
            return run
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} did not become {sorted(wanted)} in {within}s: {run}")
        await asyncio.sleep(0.05)


async def wait_for(predicate: Callable[[], Awaitable[Any]], *, within: float = 30.0, what: str = "") -> Any:
    deadline = time.monotonic() + within
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.05)


def steps_by_name(run: workflow_pb2.WorkflowRun) -> dict[str, workflow_pb2.StepRun]:
    return {s.name: s for s in run.steps}


def step_statuses(run: workflow_pb2.WorkflowRun) -> dict[str, str]:
    return {s.name: StepStatus(s.status).name for s in run.steps}


def result(step: workflow_pb2.StepRun) -> dict[str, Any]:
    return struct_to_dict(step.result)
