"""PauseAction and ResumeAction of an action the engine has never seen are refused (NOT_FOUND, with
the known actions) and store nothing, unless the caller asks to configure it ahead
(``create_if_unknown``, ``jobwarden actions pause NAME --create``). Known: a stored configuration,
a job in the store (also after a restart), or a connected worker that serves it."""

from __future__ import annotations

import grpc
import pytest
from jobwarden.v1 import job_pb2
from jobwarden.v1 import job_service_pb2 as js

from tests.config.test_action_config import get_config, set_config
from tests.config.test_actions_cli import cli
from tests.conftest import EngineFactory, EngineHandle, Stubs
from tests.engine.helpers import rpc_error, submit
from tests.support import RawWorker
from tests.timers.test_restart import connected


async def _refused(stubs: Stubs, action: str) -> None:
    """Both calls refuse ``action`` as unknown, and nothing about it is stored or listed."""
    before = await stubs.jobs.ListActions(js.ListActionsRequest())
    for call in (
        stubs.jobs.PauseAction(js.PauseActionRequest(action=action)),
        stubs.jobs.ResumeAction(js.ResumeActionRequest(action=action)),
    ):
        error = await rpc_error(call)
        assert error.code() == grpc.StatusCode.NOT_FOUND
        details = error.details() or ""
        assert f"no action {action!r}: no job, worker or config has named it; known actions: " in details
    assert await stubs.jobs.ListActions(js.ListActionsRequest()) == before
    assert await get_config(stubs, action) == job_pb2.ActionConfig(
        action=action, timeouts=job_pb2.JobTimeouts()
    )


async def test_an_unknown_action_is_refused_and_nothing_is_stored(engine: EngineHandle, stubs: Stubs) -> None:
    await submit(stubs, "transcode")
    await _refused(stubs, "trancode")
    error = await rpc_error(stubs.jobs.PauseAction(js.PauseActionRequest(action="trancode")))
    assert "known actions: transcode; did you mean 'transcode'?" in (error.details() or "")
    assert "trancode" not in engine.core.configs.stored


async def test_create_if_unknown_pauses_an_action_ahead_of_its_first_job(
    engine: EngineHandle, stubs: Stubs
) -> None:
    paused = (
        await stubs.jobs.PauseAction(js.PauseActionRequest(action="later", create_if_unknown=True))
    ).config
    assert paused.paused
    assert (await get_config(stubs, "later")).paused
    assert [c.action for c in (await stubs.jobs.ListActions(js.ListActionsRequest())).configs] == ["later"]
    # Now it is known: resuming needs no flag.
    resumed = (await stubs.jobs.ResumeAction(js.ResumeActionRequest(action="later"))).config
    assert not resumed.paused


@pytest.mark.parametrize("how", ["config", "job", "worker"])
async def test_a_known_action_pauses(engine: EngineHandle, stubs: Stubs, how: str) -> None:
    if how == "config":
        await set_config(stubs, job_pb2.ActionConfig(action="known", max_running=2))
    elif how == "job":
        await submit(stubs, "known")
    else:
        worker = await RawWorker(engine.address, ["known"]).connect()
    assert (await stubs.jobs.PauseAction(js.PauseActionRequest(action="known"))).config.paused
    assert (await get_config(stubs, "known")).paused
    if how == "worker":
        await worker.close()


async def test_an_action_known_by_its_stored_jobs_after_a_restart(
    engine_factory: EngineFactory, sqlite_url: str
) -> None:
    first = await engine_factory()
    async with connected(first.address) as stubs:
        job = await submit(stubs, "stored")
        await stubs.jobs.CancelJob(js.CancelJobRequest(job_id=job.id))
    await first.server.stop(grace=0)
    second = await engine_factory(db_url=sqlite_url)
    async with connected(second.address) as stubs:
        assert (await stubs.jobs.PauseAction(js.PauseActionRequest(action="stored"))).config.paused
        await _refused(stubs, "never-seen")


async def test_the_cli_refuses_an_unknown_action_and_creates_it_on_request(
    engine: EngineHandle, stubs: Stubs
) -> None:
    at = ("--engine", engine.address)
    code, out, err = await cli("pause", "trancode", *at)
    assert code == 1
    assert out == ""
    assert "no action 'trancode'" in err
    assert "--create" in err
    assert "trancode" not in engine.core.configs.stored
    code, out, err = await cli("pause", "trancode", "--create", *at)
    assert (code, err) == (0, "")
    assert out.strip() == "trancode: paused (jobs keep queueing; running ones go on)"
    assert (await get_config(stubs, "trancode")).paused
