"""The action configuration RPCs: GetActionConfig, SetActionConfig, ListActions, PauseAction and
ResumeAction. A configuration survives a restart; a bad one is refused and changes nothing."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from jobwarden.contract import ErrorKind, LockMode, StartTimeoutAction
from jobwarden.v1 import job_pb2
from jobwarden.v1 import job_service_pb2 as js

from tests.conftest import EngineFactory, EngineHandle, Stubs
from tests.support import RawWorker
from tests.timers.helpers import lock, retry_policy, start_timeout, submit, timeouts
from tests.timers.test_restart import connected

X, SH = LockMode.EXCLUSIVE, LockMode.SHARED


def full_config(action: str = "transcode") -> job_pb2.ActionConfig:
    return job_pb2.ActionConfig(
        action=action,
        timeouts=timeouts(
            start=start_timeout(
                300,
                StartTimeoutAction.RETRY,
                retry_interval=10,
                exponential=True,
                retry_count=3,
                run_request=("alert", {"reason": "late"}, "ops"),
            ),
            heartbeat=30,
            takeover=60,
            execution=7200,
        ),
        retry_policy=retry_policy(3, 1, 1.5, maximum=60, non_retryable=[ErrorKind.JOB_ERROR]),
        max_running=4,
        max_queued=1000,
        lock_templates=[lock("asset:{input.asset_id}", X), lock("farm", SH)],
        paused=False,
    )


async def get_config(stubs: Stubs, action: str) -> job_pb2.ActionConfig:
    return (await stubs.jobs.GetActionConfig(js.GetActionConfigRequest(action=action))).config


async def set_config(stubs: Stubs, config: job_pb2.ActionConfig) -> job_pb2.ActionConfig:
    return (await stubs.jobs.SetActionConfig(js.SetActionConfigRequest(config=config))).config


async def test_an_unconfigured_action_has_the_defaults(stubs: Stubs) -> None:
    assert await get_config(stubs, "fresh") == job_pb2.ActionConfig(
        action="fresh", timeouts=job_pb2.JobTimeouts()
    )


async def test_set_get_round_trip_and_list(engine: EngineHandle, stubs: Stubs) -> None:
    config = full_config()
    saved = await set_config(stubs, config)
    assert saved == config
    assert await get_config(stubs, "transcode") == config
    await submit(stubs, "submitted-only")
    worker = await RawWorker(engine.address, ["served-only"]).connect()
    listed = await stubs.jobs.ListActions(js.ListActionsRequest())
    assert [c.action for c in listed.configs] == ["served-only", "submitted-only", "transcode"]
    assert [s.action for s in listed.stats] == ["served-only", "submitted-only", "transcode"]
    assert listed.configs[2] == config
    assert [s.queued for s in listed.stats] == [0, 1, 0]
    assert [s.workers for s in listed.stats] == [1, 0, 0]
    assert listed.stats[2].max_running == 4
    await worker.close()


async def test_set_replaces_the_whole_config_and_pause_keeps_it(stubs: Stubs) -> None:
    await set_config(stubs, full_config())
    paused = (await stubs.jobs.PauseAction(js.PauseActionRequest(action="transcode"))).config
    expected = full_config()
    expected.paused = True
    assert paused == expected
    assert await get_config(stubs, "transcode") == expected
    resumed = (await stubs.jobs.ResumeAction(js.ResumeActionRequest(action="transcode"))).config
    assert resumed == full_config()
    # Set is a replacement: what is not given is gone.
    smaller = await set_config(stubs, job_pb2.ActionConfig(action="transcode", max_running=2))
    assert smaller == job_pb2.ActionConfig(action="transcode", max_running=2, timeouts=job_pb2.JobTimeouts())


async def test_the_config_survives_a_restart(db_url: str, engine_factory: EngineFactory) -> None:
    # db_url first: fixtures end in reverse order, so the engines stop before the schema is dropped.
    first = await engine_factory(db_url=db_url)
    async with connected(first.address) as stubs:
        await set_config(stubs, full_config())
        await stubs.jobs.PauseAction(js.PauseActionRequest(action="paused-one", create_if_unknown=True))
    await first.server.stop(grace=0)
    second = await engine_factory(db_url=db_url)
    async with connected(second.address) as stubs:
        assert await get_config(stubs, "transcode") == full_config()
        assert (await get_config(stubs, "paused-one")).paused


async def test_raising_max_running_dispatches_at_once(engine: EngineHandle, stubs: Stubs) -> None:
    await set_config(stubs, job_pb2.ActionConfig(action="capped", max_running=1))
    worker = await RawWorker(engine.address, ["capped"], capacity=5).connect()
    for i in range(3):
        await submit(stubs, "capped", {"i": i})
    await worker.next_assignment()
    engine.core.dispatcher.dispatch()
    assert worker.assignments.empty()
    await set_config(stubs, job_pb2.ActionConfig(action="capped", max_running=3))
    await worker.next_assignment()
    await worker.next_assignment()
    assert engine.core.registry.active("capped") == 3
    await worker.close()


def _bad(**fields: Any) -> job_pb2.ActionConfig:
    return job_pb2.ActionConfig(**{"action": "transcode", **fields})


BAD = [
    ("no action", job_pb2.ActionConfig(max_running=1), "action is required"),
    ("bad action name", _bad(action="bad name"), "is not a valid action name"),
    ("negative max_running", _bad(max_running=-1), "max_running must be between 0"),
    ("absurd max_queued", _bad(max_queued=2_000_000_000), "max_queued must be between 0"),
    ("negative heartbeat", _bad(timeouts=timeouts(heartbeat=-1)), "heartbeat must be positive"),
    ("absurd execution", _bad(timeouts=timeouts(execution=1e12)), "absurd"),
    (
        "retry interval above its maximum",
        _bad(retry_policy=retry_policy(3, 120, maximum=60)),
        "initial_interval 120s exceeds max_interval 60s",
    ),
    (
        "RETRY without retries",
        _bad(timeouts=timeouts(start=start_timeout(5, StartTimeoutAction.RETRY))),
        "needs a retry_count",
    ),
    ("unknown lock mode", _bad(lock_templates=[lock("asset:{input.id}", 5)]), "unknown lock mode 5"),
    ("empty template", _bad(lock_templates=[lock("", X)]), "empty resource"),
    (
        "template naming a non-input field",
        _bad(lock_templates=[lock("asset:{asset_id}", X)]),
        "must name a field of the input",
    ),
    (
        "unknown error kind",
        _bad(retry_policy=job_pb2.RetryPolicy(max_attempts=2, non_retryable_kinds=[42])),  # type: ignore[list-item]  # an unknown kind on purpose
        "42",
    ),
]


@pytest.mark.parametrize(("config", "words"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
async def test_bad_config_is_refused_and_changes_nothing(
    stubs: Stubs, config: job_pb2.ActionConfig, words: str
) -> None:
    await set_config(stubs, full_config())
    before = await stubs.jobs.ListActions(js.ListActionsRequest())
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await set_config(stubs, config)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert words in (refused.value.details() or "")
    assert await stubs.jobs.ListActions(js.ListActionsRequest()) == before
    assert await get_config(stubs, "transcode") == full_config()


@pytest.mark.parametrize("action", ["", "bad name", "x" * 300])
async def test_pause_resume_get_refuse_a_bad_action(stubs: Stubs, action: str) -> None:
    before = await stubs.jobs.ListActions(js.ListActionsRequest())
    for call in (
        stubs.jobs.PauseAction(js.PauseActionRequest(action=action)),
        stubs.jobs.ResumeAction(js.ResumeActionRequest(action=action)),
        stubs.jobs.GetActionConfig(js.GetActionConfigRequest(action=action)),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert await stubs.jobs.ListActions(js.ListActionsRequest()) == before
