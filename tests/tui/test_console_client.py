"""The console talks through the SDK's ``JobClient`` and sees the SDK's errors, nothing of its own."""

from __future__ import annotations

import jobwarden.tui
import pytest
from jobwarden.contract import JobStatus
from jobwarden.sdk import EngineUnavailable, InvalidTransition, JobClient
from jobwarden.tui._operations import run_all

from tests.conftest import EngineHandle
from tests.tui.helpers import RecordingConsole, closed_address, engine_job, row_text, submit, until

SIZE = (140, 30)


async def test_a_refused_call_is_the_sdks_error_with_the_job_and_nothing_changes(
    engine: EngineHandle,
) -> None:
    channel = engine.channel()
    app = RecordingConsole(engine.address, flush_interval=0.1, stats_interval=0.3)
    async with app.run_test(size=SIZE) as pilot:
        assert isinstance(app.client, JobClient)
        job = await submit(channel, "waits")
        await until(pilot, lambda: "QUEUED" in row_text(app, job.id), what="the queued row")
        outcome = await run_all([job.id], lambda job_id: app.client.retry(job_id, reason="too soon"))
        assert outcome.done == 0
        [(refused_id, error)] = outcome.refused
        assert isinstance(error, InvalidTransition)
        assert (refused_id, error.job_id) == (job.id, job.id)
        assert "only FAILED or CANCELLED jobs can be retried" in str(error)
        assert JobStatus((await engine_job(channel, job.id)).status) is JobStatus.QUEUED
    await channel.close()


async def test_an_engine_that_is_not_there_reads_as_the_sdks_unavailable() -> None:
    address = closed_address()
    app = RecordingConsole(address, flush_interval=0.1, stats_interval=0.3)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.feed.reconnects >= 1, what="a failed connection")
        assert f"cannot reach the engine at {address}" in app.feed.status().error
        with pytest.raises(EngineUnavailable):
            await app.client.stats()


def test_the_console_has_no_client_or_error_classes_of_its_own() -> None:
    assert not {"EngineClient", "EngineError"} & set(jobwarden.tui.__all__)
    assert not hasattr(jobwarden.tui, "EngineError")
