"""Fan-out and joins, SKIPPED steps, conditions and templates, context variables, delays and
sub-workflows, through a real engine and real SDK workers."""

from __future__ import annotations

import asyncio
from typing import Any

from jobwarden.contract import StepStatus, WorkflowRunStatus
from jobwarden.sdk import JobContext, Worker
from jobwarden.v1 import job_pb2, job_service_pb2, workflow_pb2, workflow_service_pb2_grpc
from jobwarden.v1 import workflow_service_pb2 as ws
from jobwarden.wire import struct_to_dict

from tests.conftest import EngineFactory

from .conftest import StartWorkers
from .helpers import (
    ALWAYS,
    CALLS,
    FAILURE,
    action,
    behaving,
    definition,
    delay,
    edge,
    fail,
    result,
    step_statuses,
    steps_by_name,
    sub,
    succeed,
    wait_run,
)


async def start(
    wf: Any, message: workflow_pb2.WorkflowDefinition, input: dict[str, Any] | None = None, **fields: Any
) -> ws.StartWorkflowResponse:
    await wf.PutWorkflow(ws.PutWorkflowRequest(definition=message))
    request = ws.StartWorkflowRequest(workflow=message.name, **fields)
    if input:
        request.input.update(input)
    response: ws.StartWorkflowResponse = await wf.StartWorkflow(request)
    return response


async def test_fan_out_and_join_all_and_any_with_skipped_steps(wf: Any, workers: StartWorkers) -> None:
    def transcode(ctx: JobContext) -> dict[str, Any]:
        if ctx.input.get("profile") == "4k":
            from jobwarden.sdk import JobFailed

            raise JobFailed("no 4k encoder")
        return {"profile": ctx.input["profile"]}

    await workers(
        behaving("ingest", succeed({"asset": "a1"})),
        behaving("transcode", transcode),
        behaving("package", succeed()),
        behaving("notify", succeed()),
        behaving("publish", succeed()),
    )
    profiles = ["hd", "sd", "4k"]
    steps = [action("ingest")]
    steps += [
        action(f"t_{p}", "transcode", input={"profile": p, "asset": "{{ steps.ingest.result.asset }}"})
        for p in profiles
    ]
    steps += [
        action("package_all", "package"),
        action("package_any", "package", join=workflow_pb2.JOIN_MODE_ANY),
        action("notify", "notify", join=workflow_pb2.JOIN_MODE_ANY),
        action("publish", "publish"),
    ]
    edges = [edge("ingest", f"t_{p}") for p in profiles]
    edges += [edge(f"t_{p}", "package_all") for p in profiles]
    edges += [edge(f"t_{p}", "package_any") for p in profiles]
    edges += [edge(f"t_{p}", "notify", FAILURE) for p in profiles]
    edges += [edge("package_all", "publish")]
    started = await start(wf, definition("fanout", steps, edges))
    run = await wait_run(wf, started.run.id)
    statuses = step_statuses(run)
    assert statuses == {
        "ingest": "COMPLETED",
        "t_hd": "COMPLETED",
        "t_sd": "COMPLETED",
        "t_4k": "FAILED",
        # ALL: one input edge (from t_4k) was not taken
        "package_all": "SKIPPED",
        # ANY: two of three were
        "package_any": "COMPLETED",
        "notify": "COMPLETED",
        # nothing reached it: shown, not hidden
        "publish": "SKIPPED",
    }
    # t_4k's failure is handled by its FAILURE edge to notify: the run completes.
    assert WorkflowRunStatus(run.status) is WorkflowRunStatus.COMPLETED, run.error
    assert CALLS["package"] == 1
    assert CALLS["publish"] == 0
    assert result(steps_by_name(run)["t_hd"]) == {"profile": "hd"}


async def test_a_thousand_step_fan_out_and_fan_in(engine_factory: EngineFactory) -> None:
    # The worker shares the test's event loop with the engine: on a busy machine a long pass of the
    # engine must not get its session declared dead (this test is about the graph, not about timing).
    # (Not the ``workers`` fixture: it stands on the ``engine`` fixture, a second engine on this
    # test's SQLite file, which SQLite's single-engine lock rightly refuses.)
    engine = await engine_factory(session_timeout_intervals=60.0, default_takeover_timeout=60.0)
    channel = engine.channel()
    wf = workflow_service_pb2_grpc.WorkflowServiceStub(channel)
    worker = Worker([behaving("noop", succeed({}))], engine=engine.address, capacity=500, name="wide")
    serving = asyncio.create_task(worker.run())
    await asyncio.wait_for(worker.wait_connected(), 30)
    width = 1000
    steps = (
        [action("split", "noop")]
        + [action(f"s{i}", "noop") for i in range(width)]
        + [action("merge", "noop")]
    )
    edges = [edge("split", f"s{i}") for i in range(width)] + [edge(f"s{i}", "merge") for i in range(width)]
    started = await start(wf, definition("wide", steps, edges))
    run = await wait_run(wf, started.run.id, within=120)
    assert WorkflowRunStatus(run.status) is WorkflowRunStatus.COMPLETED, run.error
    assert CALLS["noop"] == width + 2
    assert all(StepStatus(s.status) is StepStatus.COMPLETED for s in run.steps)
    worker.stop()
    await asyncio.wait_for(serving, 30)
    await channel.close()


async def test_conditions_templates_context_and_output(wf: Any, jobs: Any, workers: StartWorkers) -> None:
    seen: dict[str, Any] = {}

    def probe(ctx: JobContext) -> dict[str, Any]:
        ctx.set_job_variable("quality", "high")
        ctx.set_workflow_variable("region", "eu-west")
        return {"size": ctx.input["size"] * 2, "name": ctx.input["name"]}

    def big(ctx: JobContext) -> dict[str, Any]:
        seen["big_input"] = ctx.input
        seen["big_context"] = dict(struct_map(ctx.job.workflow_variables))
        return {"handled": "big"}

    await workers(behaving("probe", probe), behaving("big", big), behaving("small", succeed()))
    probe_step = action("probe", input={"size": "{{ input.size }}", "name": "clip-{{ input.id }}"})
    probe_step.action.locks.add(resource="asset:{{ input.id }}", mode=job_pb2.LOCK_MODE_EXCLUSIVE)
    message = definition(
        "conditional",
        [
            probe_step,
            action(
                "big",
                input={
                    "size": "{{ steps.probe.result.size }}",
                    "q": "{{ steps.probe.variables.quality }}",
                    "where": "{{ context.region }}",
                },
            ),
            action("small"),
        ],
        [
            edge("probe", "big", condition="step.result.size > 100"),
            edge("probe", "small", condition="steps.probe.result.size <= 100"),
        ],
        context={"region": "us-east", "tier": "gold"},
        output={
            "size": "{{ steps.probe.result.size }}",
            "region": "{{ context.region }}",
            "label": "{{ steps.probe.result.name }}",
        },
    )
    started = await start(wf, message, {"size": 60, "id": 9}, context={"tier": "platinum"})
    run = await wait_run(wf, started.run.id)
    assert WorkflowRunStatus(run.status) is WorkflowRunStatus.COMPLETED, run.error
    assert step_statuses(run) == {"probe": "COMPLETED", "big": "COMPLETED", "small": "SKIPPED"}
    # A template keeps the value's type when it is the whole string, and makes text inside one.
    assert seen["big_input"] == {"size": 120, "q": "high", "where": "eu-west"}
    # The step's job got the run's context as its workflow variables: the definition's, overridden
    # by the start request's, updated by the earlier step (JEF).
    assert seen["big_context"] == {"region": "eu-west", "tier": "platinum"}
    assert dict(run.context) == {"region": "eu-west", "tier": "platinum"}
    assert dict(steps_by_name(run)["probe"].job_variables) == {"quality": "high"}
    assert struct_to_dict(run.output) == {"size": 120, "region": "eu-west", "label": "clip-9"}
    # A lock resource is a template too.
    probe_job = (
        await jobs.GetJob(job_service_pb2.GetJobRequest(job_id=steps_by_name(run)["probe"].job_id))
    ).job
    assert [lock.resource for lock in probe_job.locks] == ["asset:9"]


def struct_map(values: Any) -> dict[str, str]:
    return {k: v for k, v in values.items()}


async def test_a_template_that_fails_at_run_time_fails_its_step_only(wf: Any, workers: StartWorkers) -> None:
    await workers(behaving("a", succeed({"x": 1})), behaving("b", succeed()), behaving("c", succeed()))
    message = definition(
        "runtime-error",
        [action("a"), action("b", input={"y": "{{ steps.a.result.missing_field }}"}), action("c")],
        [edge("a", "b"), edge("b", "c", ALWAYS)],
    )
    started = await start(wf, message)
    run = await wait_run(wf, started.run.id)
    steps = steps_by_name(run)
    assert StepStatus(steps["b"].status) is StepStatus.FAILED
    assert "steps.a.result.missing_field" in steps["b"].error.message
    assert "missing_field" in steps["b"].error.message
    assert "no such" in steps["b"].error.message
    assert steps["b"].job_id == ""  # no job was submitted
    assert CALLS["b"] == 0
    # Nothing else changes: its ALWAYS edge still runs c, and the failure is handled by it.
    assert StepStatus(steps["c"].status) is StepStatus.COMPLETED
    assert WorkflowRunStatus(run.status) is WorkflowRunStatus.COMPLETED


async def test_a_delay_step_waits_durably_and_shows_delayed(wf: Any, workers: StartWorkers) -> None:
    await workers(behaving("before", succeed()), behaving("after", succeed()))
    message = definition(
        "delayed",
        [action("before"), delay("wait", 2.5), action("after")],
        [edge("before", "wait"), edge("wait", "after")],
    )
    started = await start(wf, message)
    waiting = await wait_run(wf, started.run.id, WorkflowRunStatus.DELAYED)
    step = steps_by_name(waiting)["wait"]
    assert StepStatus(step.status) is StepStatus.DELAYED
    assert step.wake_at.seconds > 0
    assert CALLS["after"] == 0
    run = await wait_run(wf, started.run.id)
    assert WorkflowRunStatus(run.status) is WorkflowRunStatus.COMPLETED
    assert CALLS["after"] == 1


async def test_a_sub_workflow_step_runs_another_workflow_and_takes_its_output(
    wf: Any, workers: StartWorkers
) -> None:
    await workers(
        behaving("encode", lambda ctx: {"encoded": ctx.input["file"]}),
        behaving("announce", lambda ctx: {"announced": ctx.input}),
        behaving("broken", fail("child failure")),
    )
    child = definition(
        "encode-child", [action("encode")], output={"file": "{{ steps.encode.result.encoded }}"}
    )
    await wf.PutWorkflow(ws.PutWorkflowRequest(definition=child))
    parent = definition(
        "parent",
        [
            sub("child", "encode-child", input={"file": "{{ input.path }}"}),
            action("announce", input={"got": "{{ steps.child.result.file }}"}),
        ],
        [edge("child", "announce")],
    )
    started = await start(wf, parent, {"path": "/media/x.mov"})
    run = await wait_run(wf, started.run.id)
    assert WorkflowRunStatus(run.status) is WorkflowRunStatus.COMPLETED, run.error
    steps = steps_by_name(run)
    assert result(steps["child"]) == {"file": "/media/x.mov"}
    assert result(steps["announce"]) == {"announced": {"got": "/media/x.mov"}}
    child_run = (await wf.GetWorkflowRun(ws.GetWorkflowRunRequest(run_id=steps["child"].child_run_id))).run
    assert (child_run.parent_run_id, child_run.parent_step) == (run.id, "child")
    assert WorkflowRunStatus(child_run.status) is WorkflowRunStatus.COMPLETED

    # A failed sub-run fails its step, naming the sub-run.
    failing_child = definition("broken-child", [action("broken")])
    await wf.PutWorkflow(ws.PutWorkflowRequest(definition=failing_child))
    started = await start(wf, definition("parent2", [sub("child", "broken-child")]))
    run = await wait_run(wf, started.run.id)
    assert WorkflowRunStatus(run.status) is WorkflowRunStatus.FAILED
    assert run.error.step == "child"
    assert "broken-child" in run.error.message
    assert "child failure" in run.error.message
