"""A job id abbreviated to its first or last characters, resolved by the engine for every client, on
SQLite and PostgreSQL: a finished job found in the store as well as one in memory."""

from __future__ import annotations

from jobwarden.v1 import job_service_pb2 as js

from tests.conftest import Stubs
from tests.engine.helpers import get, rpc_error, submit


async def test_an_abbreviated_id_names_one_job(any_stubs: Stubs) -> None:
    kept = await submit(any_stubs, "work")
    gone = await submit(any_stubs, "work")
    await any_stubs.jobs.CancelJob(js.CancelJobRequest(job_id=gone.id[-8:]))
    assert (await get(any_stubs, gone.id[-12:].upper())).id == gone.id
    assert (await get(any_stubs, kept.id[-8:])).id == kept.id
    events = await any_stubs.jobs.GetJobEvents(js.GetJobEventsRequest(job_id=gone.id[-8:]))
    assert {event.job_id for event in events.events} == {gone.id}

    error = await rpc_error(any_stubs.jobs.GetJob(js.GetJobRequest(job_id="abc%_def")))
    assert error.code().name == "INVALID_ARGUMENT", "no LIKE wildcard reaches the store"
