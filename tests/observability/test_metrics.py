"""``/metrics`` scraped during a run: every figure matches the engine's own registry and API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2
from jobwarden.contract import JobStatus
from jobwarden.server.api import EngineServer, ServerOptions
from jobwarden.v1 import job_pb2, lock_service_pb2
from jobwarden.v1 import job_service_pb2 as js
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import TEST_CONFIG, Stubs
from tests.engine.helpers import request
from tests.support import RawWorker, raw_unary


@pytest.fixture
async def server(sqlite_url: str) -> AsyncIterator[EngineServer]:
    engine = EngineServer(
        replace(TEST_CONFIG, db_url=sqlite_url), ServerOptions(port=0, watch_keepalive=0.5, metrics_port=0)
    )
    await engine.start()
    yield engine
    await engine.stop(grace=0)


@pytest.fixture
async def stubs(server: EngineServer) -> AsyncIterator[Stubs]:
    from jobwarden.v1 import executor_service_pb2_grpc, job_service_pb2_grpc, lock_service_pb2_grpc

    channel = grpc.aio.insecure_channel(server.address)
    yield Stubs(
        job_service_pb2_grpc.JobServiceStub(channel),
        executor_service_pb2_grpc.ExecutorServiceStub(channel),
        lock_service_pb2_grpc.LockServiceStub(channel),
        channel,
    )
    await channel.close()


async def scrape(server: EngineServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``/metrics``, by name and labels (fetched over HTTP like Prometheus does)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.metrics_server.port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n")
    await writer.drain()
    raw = await reader.read()
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert b"text/plain" in head
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_match_the_registry_during_a_run(server: EngineServer, stubs: Stubs) -> None:
    core = server.engine
    worker = await RawWorker(server.address, ["encode"], capacity=3).connect()
    watch = stubs.jobs.WatchJobs(js.WatchJobsRequest())
    await watch.read()
    ids = [(await stubs.jobs.SubmitJob(request("encode", {"n": n}))).job.id for n in range(8)]
    held = [await worker.next_assignment() for _ in range(3)]
    await worker.complete(held[0], {"ok": 1})
    await worker.fail(held[1], "broken input", retryable=False)
    assert (await worker.next_ack()).accepted
    assert (await worker.next_ack()).accepted
    # Two more come and complete; two after them stay running with held[2]; the last one waits.
    more = [await worker.next_assignment() for _ in range(2)]
    for a in more:
        await worker.complete(a, {"ok": 2})
        assert (await worker.next_ack()).accepted
    running = [await worker.next_assignment() for _ in range(2)]
    assert ids[-1] not in {a.job_id for a in running}
    await stubs.jobs.CancelJob(js.CancelJobRequest(job_id=ids[-1]))
    # Locks: an external holder, and a job waiting for the lock behind it.
    await stubs.locks.AcquireLock(
        lock_service_pb2.AcquireLockRequest(
            holder="mam-sync",
            locks=[job_pb2.LockRequest(resource="asset:1", mode=job_pb2.LOCK_MODE_EXCLUSIVE)],
            ttl=duration_pb2.Duration(seconds=600),
        )
    )
    # (A job takes its locks when a worker could run it.)
    publisher = await RawWorker(server.address, ["publish"], capacity=1).connect()
    waiting = (
        await stubs.jobs.SubmitJob(
            request(
                "publish", locks=[job_pb2.LockRequest(resource="asset:1", mode=job_pb2.LOCK_MODE_EXCLUSIVE)]
            )
        )
    ).job
    with pytest.raises(grpc.aio.AioRpcError):
        # Refused by the limits.
        await stubs.jobs.ListJobs(js.ListJobsRequest(statuses=[job_pb2.JOB_STATUS_QUEUED] * 1001))
    with pytest.raises(grpc.aio.AioRpcError):
        await raw_unary(stubs.channel, "/jobwarden.v1.JobService/GetJob")(b"\xff\xff")  # undecodable
    await core.writer.flush()

    samples = await scrape(server)
    stats = await stubs.jobs.GetStats(js.GetStatsRequest())
    # The state now: as the registry counts it, as GetStats reports it.
    for (action, status), count in core.registry.counts.items():
        assert value(samples, "jobwarden_jobs", action=action, status=status.name) == count, (action, status)
    for action_stats in stats.actions:
        for status in (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.COMPLETED, JobStatus.FAILED):
            expected = getattr(action_stats, status.name.lower())
            assert (
                value(samples, "jobwarden_jobs", action=action_stats.action, status=status.name) == expected
            )
        assert (
            value(samples, "jobwarden_worker_free_capacity", action=action_stats.action)
            == action_stats.free_capacity
        )
        assert value(samples, "jobwarden_queue_depth", action=action_stats.action) == core.queues.size(
            action_stats.action
        )
    assert value(samples, "jobwarden_jobs", action="encode", status="RUNNING") == 3
    assert value(samples, "jobwarden_jobs", action="encode", status="COMPLETED") == 3
    assert value(samples, "jobwarden_jobs", action="publish", status="WAITING_FOR_LOCK") == 1
    assert value(samples, "jobwarden_workers") == stats.workers == 2
    assert value(samples, "jobwarden_worker_capacity") == 4
    assert value(samples, "jobwarden_worker_jobs") == 3
    assert value(samples, "jobwarden_watchers") == stats.watchers == 1
    assert value(samples, "jobwarden_timers") == core.timers.pending
    assert value(samples, "jobwarden_lock_waiters") == core.locks.waiter_count() == 1
    assert value(samples, "jobwarden_lock_holders") == 1
    assert value(samples, "jobwarden_event_sequence") == stats.head_sequence == core.bus.head
    assert value(samples, "jobwarden_store_healthy") == 1
    assert value(samples, "jobwarden_store_commits_total") == core.writer.stats.commits
    assert value(samples, "jobwarden_refusals_total", by="limits", code="INVALID_ARGUMENT") == 1
    assert value(samples, "jobwarden_refusals_total", by="decoding", code="INVALID_ARGUMENT") == 1
    # What happened, counted from the committed events.
    assert value(samples, "jobwarden_job_transitions_total", action="encode", status="QUEUED") == 8
    assert value(samples, "jobwarden_job_transitions_total", action="encode", status="COMPLETED") == 3
    assert value(samples, "jobwarden_job_transitions_total", action="encode", status="FAILED") == 1
    assert value(samples, "jobwarden_job_transitions_total", action="encode", status="CANCELLED") == 1
    assert value(samples, "jobwarden_job_start_latency_seconds_count", action="encode") == 7
    assert value(samples, "jobwarden_job_run_seconds_count", action="encode", status="COMPLETED") == 3
    assert value(samples, "jobwarden_job_run_seconds_count", action="encode", status="FAILED") == 1
    commits = value(samples, "jobwarden_store_commit_seconds_count")
    assert 0 < commits <= core.writer.stats.commits
    assert value(samples, "jobwarden_store_commit_seconds_sum") > 0
    # A second scrape sees later changes.
    await stubs.locks.ReleaseLock(lock_service_pb2.ReleaseLockRequest(holder="mam-sync"))
    later = await scrape(server)
    for _ in range(200):
        if value(later, "jobwarden_jobs", action="publish", status="RUNNING") == 1:
            break
        await asyncio.sleep(0.02)
        later = await scrape(server)
    assert value(later, "jobwarden_lock_waiters") == 0
    assert value(later, "jobwarden_jobs", action="publish", status="WAITING_FOR_LOCK") == 0
    assert value(later, "jobwarden_jobs", action="publish", status="RUNNING") == 1
    assert (await publisher.next_assignment()).job_id == waiting.id
    watch.cancel()
    await worker.close()
    await publisher.close()
    print(f"metrics: {len(samples)} samples scraped, each matching the engine's registry")


async def test_the_metrics_port_answers_only_metrics(server: EngineServer) -> None:
    for request_line, status in (
        (b"GET /metrics HTTP/1.1", b"200"),
        (b"GET /nothing HTTP/1.1", b"404"),
        (b"POST /metrics HTTP/1.1", b"405"),
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.metrics_server.port)
        writer.write(request_line + b"\r\nHost: t\r\n\r\n")
        await writer.drain()
        answer = await reader.read()
        writer.close()
        assert answer.split(b" ", 2)[1] == status, (request_line, answer[:80])
    # Garbage and silence do not hurt it.
    reader, writer = await asyncio.open_connection("127.0.0.1", server.metrics_server.port)
    writer.write(b"\x00\x01garbage\r\n\r\n")
    await writer.drain()
    await reader.read()
    writer.close()
    assert server.metrics_server.scrapes == 1
