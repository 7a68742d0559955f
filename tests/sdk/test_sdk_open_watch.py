"""``JobClient``'s raw watch stream and the channel settings the console needs, against a real engine."""

from __future__ import annotations

import asyncio
import socket

import grpc
import pytest
from jobwarden.sdk import (
    ClientSecurity,
    EngineUnavailable,
    InvalidRequest,
    JobClient,
    Rejected,
    WatchStream,
)
from jobwarden.v1 import job_pb2, job_service_pb2


def _closed_address() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


async def _read_until_job(stream: WatchStream, job_id: str) -> job_service_pb2.WatchJobsResponse:
    while True:
        response = await asyncio.wait_for(stream.read(), timeout=30)
        assert response is not None, "the engine ended the stream"
        if any(event.job_id == job_id for event in response.events):
            return response


async def test_open_watch_gives_each_batch_with_the_engines_head(client: JobClient) -> None:
    head = (await client.stats()).head_sequence
    stream = client.open_watch(head)
    try:
        job = await client.submit("watched")
        response = await _read_until_job(stream, job.id)
        assert response.head_sequence >= max(event.sequence for event in response.events) > head
        assert response.events[0].job.status == job_pb2.JOB_STATUS_QUEUED
    finally:
        stream.cancel()


async def test_a_sequence_beyond_the_engines_head_is_refused_as_the_sdks_error(client: JobClient) -> None:
    head = (await client.stats()).head_sequence
    stream = client.open_watch(head + 1000)
    try:
        with pytest.raises(InvalidRequest, match="beyond the newest event") as refused:
            await asyncio.wait_for(stream.read(), timeout=30)
    finally:
        stream.cancel()
    assert refused.value.code is grpc.StatusCode.OUT_OF_RANGE
    assert (await client.stats()).head_sequence == head


async def test_an_engine_that_is_not_there_is_engine_unavailable_naming_the_address() -> None:
    address = _closed_address()
    async with JobClient(address, timeout=5) as unreachable:
        stream = unreachable.open_watch()
        try:
            with pytest.raises(EngineUnavailable, match=f"cannot reach the engine at {address}"):
                await asyncio.wait_for(stream.read(), timeout=30)
        finally:
            stream.cancel()


async def test_channel_options_replace_the_sdks_own(engine: object) -> None:
    address = engine.address  # type: ignore[attr-defined]
    async with JobClient(address) as normal:
        job = await normal.submit("sized", {"note": "x" * 100})
        # 10 bytes are less than the job: the channel refuses to read it, so the option took effect.
        async with JobClient(address, channel_options=[("grpc.max_receive_message_length", 10)]) as tiny:
            with pytest.raises(Rejected):
                await tiny.get(job.id)
        assert (await normal.get(job.id)).id == job.id


def test_the_security_given_is_the_one_used() -> None:
    # No token in the environment; the one given here may not travel in clear to another machine.
    with pytest.raises(ValueError, match="sent only over TLS or to this machine"):
        JobClient("10.1.2.3:50051", security=ClientSecurity(token="a-token-of-sixteen-chars"))
