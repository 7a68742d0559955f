"""JobClient and SyncJobClient against a real engine: submit, read, steer, watch (with reconnects)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from jobwarden.contract import JobEventType, JobStatus, Limits
from jobwarden.sdk import (
    EngineUnavailable,
    InvalidRequest,
    InvalidTransition,
    JobClient,
    JobNotFound,
    LockConflict,
    SyncJobClient,
)
from jobwarden.v1 import job_pb2
from jobwarden.wire import struct_to_dict

from tests.engine.helpers import nested

from .conftest import TcpProxy, WorkerProcess, wait_status, wait_until
from .test_sdk_resilience import _at_step_two

Workers = Callable[..., WorkerProcess]


async def test_submit_many_idempotency_list_and_events(client: JobClient) -> None:
    jobs = await client.submit_many(
        [{"action": "batch", "input": {"n": n}, "labels": {"group": "g1"}} for n in range(3)]
        + [{"action": "other", "priority": 5}]
    )
    assert [struct_to_dict(job.input).get("n") for job in jobs] == [0, 1, 2, None]
    first = await client.submit("keyed", {"a": 1}, idempotency_key="k-1")
    again = await client.submit("keyed", {"a": 1}, idempotency_key="k-1")
    assert again.id == first.id
    assert struct_to_dict(again.input) == {"a": 1}

    page = await client.list(action="batch")
    assert sorted(job.id for job in page.jobs) == sorted(job.id for job in jobs[:3])
    labelled = [job async for job in client.iter_jobs(label="group=g1", page_size=2)]
    assert len(labelled) == 3
    assert {JobStatus(job.status) for job in labelled} == {JobStatus.QUEUED}

    history = await client.events(jobs[0].id)
    assert JobEventType(history[0].type) is JobEventType.SUBMITTED


async def test_errors_carry_the_engines_message_and_change_nothing(client: JobClient) -> None:
    with pytest.raises(JobNotFound) as missing:
        await client.get("01900000-0000-7000-8000-000000000000")
    assert missing.value.job_id == "01900000-0000-7000-8000-000000000000"
    with pytest.raises(InvalidRequest):
        await client.get("not-a-job-id")
    job = await client.submit("never-served")
    cancelled = await client.cancel(job.id, "not needed")
    assert JobStatus(cancelled.status) is JobStatus.CANCELLED
    with pytest.raises(InvalidTransition) as refused:
        await client.cancel(job.id)
    assert refused.value.message
    assert JobStatus((await client.get(job.id)).status) is JobStatus.CANCELLED
    with pytest.raises(InvalidRequest):
        await client.submit("")


async def test_an_input_nested_too_deep_is_refused_before_it_is_sent(engine: Any, client: JobClient) -> None:
    head = (await client.stats()).head_sequence
    too_deep = nested(Limits.MAX_PAYLOAD_DEPTH + 1)
    for submit in (
        lambda: client.submit("deep", too_deep),
        lambda: client.submit_many(
            [{"action": "deep", "input": {"ok": 1}}, {"action": "deep", "input": too_deep}]
        ),
    ):
        with pytest.raises(
            ValueError, match=r"^input\.a\[0\]\.a.* nests objects and lists deeper than 20 levels"
        ):
            await submit()
    assert (await client.stats()).head_sequence == head
    # At the limit it is taken, and comes back as it went.
    job = await client.submit("deep", nested(Limits.MAX_PAYLOAD_DEPTH))
    assert struct_to_dict((await client.get(job.id)).input) == nested(Limits.MAX_PAYLOAD_DEPTH)


async def test_an_engine_that_is_down_is_a_clear_error() -> None:
    async with JobClient("127.0.0.1:1", timeout=5) as down:
        with pytest.raises(EngineUnavailable, match=r"cannot reach the engine at 127\.0\.0\.1:1"):
            await down.get("x")
        with pytest.raises(EngineUnavailable):
            async for _ in down.watch():
                pass


async def test_wait_and_logs_and_workers(client: JobClient, workers: Workers, tmp_path: Path) -> None:
    worker = workers()
    await worker.connected(client)
    listed = await client.workers()
    assert any(w.name == worker.name and "sdk-steps" in [e.action for e in w.executors] for w in listed)
    gate = tmp_path / "gate"
    gate.touch()
    job = await client.submit("sdk-sync", {"gate": str(gate)})
    done = await asyncio.wait_for(client.wait(job.id), 30)
    assert JobStatus(done.status) is JobStatus.COMPLETED
    assert [line.message for line in await client.logs(job.id)] == ["waiting for the gate"]


async def test_watch_reconnects_from_its_last_sequence_without_gap_or_duplicate(
    engine: object, proxy: tuple[TcpProxy, str], client: JobClient
) -> None:
    relay, address = proxy
    seen: list[job_pb2.JobEvent] = []
    async with JobClient(address) as watcher:

        async def follow() -> None:
            async for event in watcher.watch(after_sequence=0, actions=["watched"]):
                seen.append(event)

        task = asyncio.create_task(follow())
        try:
            first = [await client.submit("watched", {"n": n}) for n in range(3)]
            await wait_until(lambda: len(seen) >= 3, what="the first events")
            relay.cut()
            second = [await client.submit("watched", {"n": n}) for n in range(3, 6)]
            await wait_until(lambda: len(seen) >= 6, what="the events after the reconnect")
            await client.cancel(first[0].id)
            await wait_until(lambda: len(seen) >= 7, what="the cancel event")
        finally:
            task.cancel()
    sequences = [event.sequence for event in seen]
    assert sequences == sorted(set(sequences)), "no duplicate, in order"
    assert [event.job_id for event in seen[:6]] == [job.id for job in first + second]
    assert relay.connections >= 2


async def test_the_sync_client_does_the_same_without_an_event_loop(engine: object, tmp_path: Path) -> None:
    address = engine.address  # type: ignore[attr-defined]

    def use() -> tuple[str, list[job_pb2.JobEventType.ValueType], int]:
        with SyncJobClient(address) as sync:
            job = sync.submit("sync-client", {"x": 1}, labels={"k": "v"})
            fetched = sync.get(job.id)
            sync.cancel(job.id)
            types: list[job_pb2.JobEventType.ValueType] = []
            for event in sync.watch(after_sequence=0, job_ids=[job.id]):
                types.append(event.type)
                if JobStatus(event.job.status) is JobStatus.CANCELLED:
                    break
            with pytest.raises(JobNotFound):
                sync.retry("01900000-0000-7000-8000-000000000000")
            return fetched.action, types, len(sync.list(action="sync-client").jobs)

    action, types, count = await asyncio.to_thread(use)
    assert action == "sync-client"
    assert types[0] == JobEventType.SUBMITTED
    assert count == 1


async def test_retrying_a_running_job_is_refused(client: JobClient, workers: Workers, tmp_path: Path) -> None:
    worker = workers()
    await worker.connected(client)
    gate = tmp_path / "gate"
    job = await client.submit("sdk-steps", {"gate": str(gate)})
    await wait_until(lambda: _at_step_two(client, job.id), what="the job to run")
    with pytest.raises(InvalidTransition):
        await client.retry(job.id)
    gate.touch()
    assert JobStatus((await wait_status(client, job.id)).status) is JobStatus.COMPLETED


async def test_actions_and_external_locks(client: JobClient) -> None:
    # Configured ahead of any job or worker: without create_if_unknown an unknown action is refused.
    assert (await client.pause_action("paused-action", create_if_unknown=True)).paused
    assert "paused-action" in [config.action for config in (await client.list_actions()).configs]
    assert not (await client.resume_action("paused-action")).paused
    config = await client.get_action_config("paused-action")
    config.max_running = 3
    assert (await client.set_action_config(config)).max_running == 3

    held = await client.acquire_lock("mam-sync", ["asset:9:SHARED", "asset:10"], ttl=60)
    assert sorted(lock.resource for lock in held) == ["asset:10", "asset:9"]
    listed = {resource.resource: resource for resource in await client.locks("asset:")}
    assert [holder.holder for holder in listed["asset:10"].holders] == ["mam-sync"]
    with pytest.raises(LockConflict, match="asset:10"):
        await client.acquire_lock("someone-else", ["asset:10"], ttl=60)
    assert await client.release_lock("mam-sync") == 2
    assert await client.locks("asset:") == []
