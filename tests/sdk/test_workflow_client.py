"""``JobClient``'s and ``SyncJobClient``'s workflow calls against a real engine and real workers:
definitions put and read back, a run started, watched to its end and read, errors through the SDK's
error tree."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from jobwarden.sdk import (
    InvalidRequest,
    InvalidTransition,
    JobClient,
    JobNotFound,
    SyncJobClient,
    Workflow,
)
from jobwarden.v1 import workflow_pb2
from jobwarden.wire import struct_to_dict

from .conftest import ROOT, WorkerProcess

Workers = Callable[..., WorkerProcess]
COMPLETED = workflow_pb2.WORKFLOW_RUN_STATUS_COMPLETED


@pytest.fixture
async def media_worker(
    engine: Any, client: JobClient, workers: Workers, monkeypatch: pytest.MonkeyPatch
) -> WorkerProcess:
    monkeypatch.setenv("MEDIA_STEP_SECONDS", "0.02")
    worker = workers("--capacity", "8", target="examples.workflows.media_executors:EXECUTORS", cwd=ROOT)
    await worker.connected(client)
    return worker


def two_steps(name: str = "pair") -> Workflow:
    wf = Workflow(name, context={"who": "sdk"})
    first = wf.action("ingest", "media.ingest")
    second = wf.action(
        "notify",
        "media.notify",
        input={"channel": "{{ context.who }}", "text": "{{ steps.ingest.result.path }}"},
    )
    first.on_success(second)
    return wf


async def test_put_get_list_versions(engine: Any, client: JobClient) -> None:
    put = await client.put_workflow(two_steps())
    assert put.created
    assert put.definition.version == 1
    again = await client.put_workflow(two_steps().definition())
    assert not again.created
    assert again.definition.version == 1
    assert again.definition.digest == put.definition.digest
    changed = two_steps()
    changed.description = "v2"
    assert (await client.put_workflow(changed)).definition.version == 2

    latest = await client.get_workflow("pair")
    assert (latest.version, latest.description) == (2, "v2")
    first = await client.get_workflow("pair", version=1)
    assert first.description == ""
    assert [d.version for d in await client.list_workflows()] == [2]
    assert [d.version for d in await client.list_workflows(name="pair", all_versions=True)] == [1, 2]

    with pytest.raises(JobNotFound):
        await client.get_workflow("pair", version=3)
    with pytest.raises(JobNotFound):
        await client.get_workflow("nothing")


async def test_a_bad_definition_is_refused_naming_the_step_and_nothing_is_stored(
    engine: Any, client: JobClient
) -> None:
    wf = Workflow("loop")
    a, b = wf.action("a", "x"), wf.action("b", "x")
    a.on_success(b)
    b.on_success(a)
    with pytest.raises(InvalidRequest) as refused:
        await client.put_workflow(wf)
    assert "'a'" in str(refused.value) or "'b'" in str(refused.value)
    wrong = Workflow("wrong")
    wrong.action("a", "x", input={"v": "{{ steps.nowhere.result }}"})
    with pytest.raises(InvalidRequest, match="nowhere"):
        await client.put_workflow(wrong)
    assert await client.list_workflows() == []


async def test_start_watch_wait_read_a_run(
    engine: Any, client: JobClient, media_worker: WorkerProcess
) -> None:
    await client.put_workflow(two_steps())
    head = (await client.stats()).head_sequence
    started = await client.start_workflow(
        "pair", {"asset_id": 5}, context={"who": "tests"}, labels={"team": "media"}, correlation_id="c-1"
    )
    assert started.order.workflow == "pair"
    assert started.run.work_order_id == started.order.id
    assert started.run.number == 1

    seen: list[workflow_pb2.WorkflowEvent] = []

    async def follow() -> None:
        async for event in client.watch_workflows(after_sequence=head, work_order_ids=[started.order.id]):
            seen.append(event)
            if event.run.status == COMPLETED and event.run.id == started.run.id:
                return

    await asyncio.wait_for(follow(), 60)
    run = await asyncio.wait_for(client.wait_workflow_run(started.run.id), 60)
    assert run.status == COMPLETED
    assert [step.status for step in run.steps] == [workflow_pb2.STEP_STATUS_COMPLETED] * 2
    notify = run.steps[1]
    assert struct_to_dict(notify.result) == {"notified": "tests"}
    sequences = [event.sequence for event in seen]
    assert sequences == sorted(set(sequences))
    assert seen[0].type in (
        workflow_pb2.WORKFLOW_EVENT_TYPE_ORDER_CREATED,
        workflow_pb2.WORKFLOW_EVENT_TYPE_RUN_STARTED,
    )
    assert {event.step for event in seen if event.type == workflow_pb2.WORKFLOW_EVENT_TYPE_STEP_CHANGED} == {
        "ingest",
        "notify",
    }

    found = await client.get_work_order(started.order.id[-8:])
    assert found.order.id == started.order.id
    assert found.order.status == COMPLETED
    assert [r.id for r in found.runs] == [run.id]
    assert (await client.get_workflow_run(run.id[:8])).id == run.id
    page = await client.list_work_orders(workflow="pair", statuses=["completed"])
    assert [order.id for order in page.orders] == [started.order.id]
    assert (await client.list_work_orders(statuses=["failed"])).orders == []
    assert [o.id async for o in client.iter_work_orders(correlation_id="c-1")] == [started.order.id]

    # A retry from a step reuses the upstream outcome; the run number goes up.
    retried = await client.retry_work_order(started.order.id, from_step="notify")
    assert retried.run.number == 2
    again = await asyncio.wait_for(client.wait_workflow_run(retried.run.id), 60)
    assert again.status == COMPLETED
    assert again.steps[0].reused_from_run_id == run.id
    assert again.steps[0].job_id == run.steps[0].job_id
    assert not again.steps[1].reused_from_run_id

    with pytest.raises(InvalidRequest):
        await client.retry_work_order(started.order.id, from_step="nosuch")
    with pytest.raises(InvalidTransition):
        await client.cancel_workflow_run(again.id)
    with pytest.raises(ValueError, match="unknown run status 'sideways'"):
        await client.list_work_orders(statuses=["sideways"])


async def test_idempotent_start_and_cancel(engine: Any, client: JobClient) -> None:
    slow = Workflow("slow")
    slow.delay("nap", "1h")
    await client.put_workflow(slow)
    first = await client.start_workflow("slow", idempotency_key="k-1")
    same = await client.start_workflow("slow", idempotency_key="k-1")
    assert same.duplicate
    assert same.order.id == first.order.id
    with pytest.raises(InvalidTransition):
        await client.start_workflow("slow", {"other": True}, idempotency_key="k-1")
    with pytest.raises(InvalidTransition):
        await client.retry_work_order(first.order.id)
    cancelled = await client.cancel_workflow_run(first.run.id, "not today")
    assert cancelled.status == workflow_pb2.WORKFLOW_RUN_STATUS_CANCELLED
    with pytest.raises(JobNotFound):
        await client.start_workflow("no-such-workflow")


async def test_the_sync_client_has_the_same_calls(engine: Any) -> None:
    def use() -> None:
        # In a thread of its own: the engine runs in this test's event loop.
        with SyncJobClient(engine.address) as client:
            wf = Workflow("sync-slow")
            wf.delay("nap", "1h")
            assert client.put_workflow(wf).created
            assert client.get_workflow("sync-slow").version == 1
            assert [d.name for d in client.list_workflows()] == ["sync-slow"]
            started = client.start_workflow("sync-slow", {"n": 1})
            assert client.get_work_order(started.order.id).order.id == started.order.id
            assert client.get_workflow_run(started.run.id).id == started.run.id
            assert [o.id for o in client.list_work_orders(workflow="sync-slow").orders] == [started.order.id]
            cancelled = client.cancel_workflow_run(started.run.id)
            assert cancelled.status == workflow_pb2.WORKFLOW_RUN_STATUS_CANCELLED
            waited = client.wait_workflow_run(started.run.id, timeout=30)
            assert waited.status == workflow_pb2.WORKFLOW_RUN_STATUS_CANCELLED
            events = client.watch_workflows(after_sequence=0, run_ids=[started.run.id])
            first = next(events)
            assert first.run.id == started.run.id
            events.close()

    await asyncio.to_thread(use)
