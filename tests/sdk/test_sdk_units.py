"""The SDK's parts that need no engine: conversions, requests, executor checks, the context, batching."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from jobwarden.contract import ExecutionMode, LockMode
from jobwarden.sdk import (
    Checkpoint,
    EngineUnavailable,
    Executor,
    ExecutorDefinitionError,
    InvalidTransition,
    JobContext,
    JobNotFound,
    StepError,
    Worker,
)
from jobwarden.sdk._cli_support import UsageError, first_pages
from jobwarden.sdk._convert import normalize_object
from jobwarden.sdk._exceptions import from_rpc_error
from jobwarden.sdk._outbox import Outbox
from jobwarden.sdk._requests import lock_request, retry_policy, statuses, submit_request, timeouts
from jobwarden.v1 import job_pb2
from jobwarden.wire import dict_to_struct, struct_to_dict


class Recorder:
    """A reporter that keeps what a context reports, to look at it."""

    def __init__(self) -> None:
        self.updates: list[dict[str, Any]] = []
        self.logs: list[tuple[str, str]] = []
        self.beats: list[timedelta | None] = []

    def report_update(self, ctx: JobContext, **fields: Any) -> None:
        self.updates.append({k: v for k, v in fields.items() if v is not None})

    def report_log(self, ctx: JobContext, level: str, message: str, time: datetime) -> None:
        self.logs.append((level, message))

    def report_heartbeat(self, ctx: JobContext, extend_execution: timedelta | None) -> None:
        self.beats.append(extend_execution)


def make_context(*, sync: bool = False, checkpoint: Checkpoint | None = None) -> tuple[JobContext, Recorder]:
    job = job_pb2.Job(id="job-1", action="demo")
    job.input.update({"n": 3, "name": "x"})
    recorder = Recorder()
    ctx = JobContext(
        job=job,
        attempt=2,
        mode=ExecutionMode.RESUME,
        checkpoint=checkpoint or Checkpoint(),
        reporter=recorder,
        loop=asyncio.get_event_loop_policy().get_event_loop(),
        sync=sync,
    )
    return ctx, recorder


# -- conversions ---------------------------------------------------------------------------------------
def test_struct_round_trip_keeps_ints_and_nesting() -> None:
    data = {"a": 1, "b": 2.5, "c": [1, "x", None, True], "d": {"e": {"f": -7}}}
    assert struct_to_dict(dict_to_struct(data)) == data


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ({"k": 1}, {"k": 1}),
        (3, {"value": 3}),
        ([1, 2], {"value": [1, 2]}),
        ("s", {"value": "s"}),
    ],
)
def test_results_are_json_objects(value: Any, expected: Any) -> None:
    assert normalize_object(value) == expected


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ({"when": datetime(2020, 1, 1)}, "the result.when is a datetime"),
        ({"x": {1: 2}}, "has a key 1 of type int"),
        ({"nan": float("nan")}, "which JSON cannot hold"),
        (object(), "not JSON-serializable"),
    ],
)
def test_non_json_results_are_refused_naming_the_part(value: Any, fragment: str) -> None:
    with pytest.raises((TypeError, ValueError), match=fragment):
        normalize_object(value)


# -- requests ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("spec", "resource", "mode"),
    [
        ("asset:1", "asset:1", LockMode.EXCLUSIVE),
        ("asset:1:shared", "asset:1", LockMode.SHARED),
        ("asset:1:EXCLUSIVE", "asset:1", LockMode.EXCLUSIVE),
        (("db", "SHARED"), "db", LockMode.SHARED),
        ("plain", "plain", LockMode.EXCLUSIVE),
    ],
)
def test_lock_specs(spec: Any, resource: str, mode: LockMode) -> None:
    lock = lock_request(spec)
    assert (lock.resource, lock.mode) == (resource, mode)


def test_bad_lock_specs_say_why() -> None:
    with pytest.raises(ValueError, match="unknown lock mode 'READ'"):
        lock_request(("asset:1", "READ"))
    with pytest.raises(ValueError, match="needs a resource"):
        lock_request(("", "SHARED"))


def test_status_names_and_unknown_status() -> None:
    assert statuses(["failed", "RUNNING", 6]) == [7, 4, 6]
    with pytest.raises(ValueError, match="unknown status 'DONE'"):
        statuses(["DONE"])


def test_submit_request_carries_everything() -> None:
    run_at = datetime(2030, 1, 1, tzinfo=UTC)
    request = submit_request(
        "resize",
        {"w": 10},
        priority=5,
        labels={"team": "a"},
        locks=["asset:1:SHARED"],
        run_at=run_at,
        idempotency_key="k1",
        timeouts={
            "heartbeat": 30,
            "execution": timedelta(minutes=5),
            "start": {"duration": 10, "action": "FAIL"},
        },
        retry_policy={"max_attempts": 3, "initial_interval": 1, "non_retryable_kinds": ["JOB_ERROR"]},
    )
    assert request.action == "resize"
    assert struct_to_dict(request.input) == {"w": 10}
    assert request.locks[0].mode == LockMode.SHARED
    assert request.run_at.ToDatetime(tzinfo=UTC) == run_at
    assert request.timeouts.execution.seconds == 300
    assert request.timeouts.start.action == 1
    assert request.retry_policy.max_attempts == 3
    assert list(request.retry_policy.non_retryable_kinds) == [1]


def test_submit_request_refuses_non_object_input_and_unknown_timeouts() -> None:
    with pytest.raises(TypeError, match="must be a JSON object"):
        submit_request("a", [1, 2])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown timeout"):
        timeouts({"hearbeat": 3})
    assert retry_policy(None) is None


# -- errors --------------------------------------------------------------------------------------------
class FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


def test_rpc_errors_map_to_the_tree_keeping_the_engines_message() -> None:
    error = from_rpc_error(FakeRpcError(grpc.StatusCode.NOT_FOUND, "no job x"), job_id="x")
    assert isinstance(error, JobNotFound)
    assert (error.message, error.job_id, error.code) == ("no job x", "x", grpc.StatusCode.NOT_FOUND)
    refused = from_rpc_error(FakeRpcError(grpc.StatusCode.FAILED_PRECONDITION, "job is RUNNING"))
    assert isinstance(refused, InvalidTransition)
    down = from_rpc_error(FakeRpcError(grpc.StatusCode.UNAVAILABLE, "refused"), address="h:1")
    assert isinstance(down, EngineUnavailable)
    assert str(down) == "cannot reach the engine at h:1: refused"


# -- executor definitions ------------------------------------------------------------------------------
def test_supports_resume_follows_resume_or_the_declaration() -> None:
    class Plain(Executor):
        action = "plain"

        def execute(self, ctx: JobContext) -> None: ...

    class Resumable(Plain):
        async def resume(self, ctx: JobContext) -> None: ...

    class Declared(Plain):
        supports_resume = True

    assert (Plain.supports_resume, Resumable.supports_resume, Declared.supports_resume) == (False, True, True)


def test_bad_executors_are_refused_before_any_job_runs() -> None:
    class NoAction(Executor):
        def execute(self, ctx: JobContext) -> None: ...

    class NoExecute(Executor):
        action = "x"

    class First(Executor):
        action = "same"

        def execute(self, ctx: JobContext) -> None: ...

    class Second(First): ...

    class BadLock(First):
        action = "bad-lock"
        locks = (("asset:{input.id}", "READ"),)

    with pytest.raises(ExecutorDefinitionError, match="has no action"):
        Worker([NoAction])
    with pytest.raises(ExecutorDefinitionError, match="does not define execute"):
        Worker([NoExecute])
    with pytest.raises(ExecutorDefinitionError, match="two executors serve action 'same'"):
        Worker([First, Second])
    with pytest.raises(ExecutorDefinitionError, match="bad lock template"):
        Worker([BadLock])
    with pytest.raises(ExecutorDefinitionError, match="needs at least one executor"):
        Worker([])
    with pytest.raises(ExecutorDefinitionError, match="not an Executor"):
        Worker([print])  # type: ignore[list-item]
    with pytest.raises(ExecutorDefinitionError, match="capacity must be"):
        Worker([First], capacity=0)
    with pytest.raises(ExecutorDefinitionError, match="is a generator"):

        class Generator(Executor):
            action = "gen"

            async def execute(self, ctx: JobContext) -> Any:
                yield 1


# -- the context ---------------------------------------------------------------------------------------
async def test_progress_outside_0_100_is_a_clear_error() -> None:
    ctx, recorder = make_context()
    with pytest.raises(ValueError, match="progress must be from 0 to 100, got 140"):
        ctx.progress(140)
    with pytest.raises(TypeError, match="must be a number"):
        ctx.progress("50")  # type: ignore[arg-type]
    ctx.progress(40.7, "working")
    assert recorder.updates == [{"progress": 40, "message": "working"}]


async def test_steps_run_once_and_are_checkpointed() -> None:
    ctx, recorder = make_context()

    async def fetch(n: int) -> dict[str, int]:
        return {"size": n}

    assert await ctx.step("fetch", fetch, 5) == {"size": 5}
    assert await ctx.step("count", lambda: 7) == 7
    assert recorder.updates == [
        {"step": "fetch"},
        {"completed_step": ("fetch", {"size": 5})},
        {"step": "count"},
        {"completed_step": ("count", {"$value": 7})},
    ]
    with pytest.raises(StepError, match="step 'fetch' is used twice"):
        await ctx.step("fetch", fetch, 1)


async def test_finished_steps_are_skipped_returning_their_data() -> None:
    proto = job_pb2.Checkpoint(step="b")
    for name, data in (("a", {"x": 1}), ("b", {"$value": [1, 2]})):
        done = proto.completed_steps.add(name=name)
        done.data.update(data)
    ctx, recorder = make_context(checkpoint=Checkpoint.from_proto(proto))
    assert ctx.checkpoint.step == "b"
    assert ctx.checkpoint.data == [1, 2]
    ran: list[str] = []
    assert await ctx.step("a", lambda: ran.append("a")) == {"x": 1}
    assert await ctx.step("b", lambda: ran.append("b")) == [1, 2]
    assert await ctx.step("c", lambda: "new") == "new"
    assert ran == []
    assert recorder.updates == [{"step": "c"}, {"completed_step": ("c", {"$value": "new"})}]


async def test_step_data_that_is_not_json_is_a_step_error() -> None:
    ctx, _ = make_context()
    with pytest.raises(StepError, match="the data of step 'when' is a datetime"):
        await ctx.step("when", lambda: datetime.now())


async def test_sync_steps_run_in_the_executor_thread() -> None:
    ctx, recorder = make_context(sync=True)
    value = await asyncio.to_thread(ctx.step, "blocking", lambda: {"ok": True})
    assert value == {"ok": True}
    await asyncio.sleep(0)  # reports from a thread are handed to the loop
    assert recorder.updates[-1] == {"completed_step": ("blocking", {"ok": True})}


async def test_cancel_reaches_flag_event_and_waiters() -> None:
    ctx, _ = make_context(sync=True)
    waiter = asyncio.ensure_future(ctx.wait_cancelled())
    await asyncio.sleep(0)
    assert not ctx.cancel_requested
    ctx._request_cancel("operator")
    await asyncio.wait_for(waiter, 1)
    assert ctx.cancel_requested
    assert ctx.cancel_event.is_set()
    with pytest.raises(Exception, match="was cancelled: operator"):
        ctx.raise_if_cancelled()


async def test_variables_and_heartbeat() -> None:
    ctx, recorder = make_context()
    ctx.set_job_variable("out", "a.mp4")
    ctx.set_workflow_variable("count", 3)
    ctx.heartbeat(extend_execution=30)
    assert ctx.job_variables == {"out": "a.mp4"}
    assert ctx.workflow_variables == {"count": "3"}
    assert recorder.beats == [timedelta(seconds=30)]
    with pytest.raises(ValueError, match="must be positive"):
        ctx.heartbeat(extend_execution=0)


# -- batching ------------------------------------------------------------------------------------------
def test_outbox_merges_updates_and_batches_results() -> None:
    from jobwarden.v1 import executor_service_pb2 as pb

    outbox = Outbox()
    outbox.update(("a", 1), progress=10)
    outbox.update(("a", 1), progress=20, message="m")
    outbox.update(("a", 1), step="s1")
    outbox.update(("a", 1), completed_step=("s1", {"k": 1}))
    outbox.update(("a", 1), progress=60)
    outbox.update(("b", 1), progress=5)
    outbox.log(("a", 1), "INFO", "hello", datetime.now(UTC))
    for job in ("a", "b", "c"):
        outbox.result(pb.JobResult(job_id=job, attempt=1, status=job_pb2.JOB_STATUS_COMPLETED))
    messages = outbox.take(vouched=[])
    kinds = [message.WhichOneof("message") for message in messages]
    assert kinds == ["job_log", "job_updates", "job_results"]
    updates = messages[1].job_updates.updates
    assert [(u.job_id, u.progress, u.step, u.completed_step.name) for u in updates] == [
        ("a", 20, "s1", ""),
        ("a", 0, "", "s1"),
        ("a", 60, "", ""),
        ("b", 5, "", ""),
    ]
    assert len(messages[2].job_results.results) == 3
    assert not outbox


def test_outbox_heartbeat_lists_vouched_jobs_with_extensions() -> None:
    outbox = Outbox()
    outbox.heartbeat(("x", 1), timedelta(seconds=9))
    outbox.set_draining()
    (message,) = outbox.take(vouched=[("w", 2), ("x", 1)])
    beat = message.heartbeat
    assert beat.draining
    assert [(job.job_id, job.extend_execution.seconds) for job in beat.jobs] == [("w", 0), ("x", 9)]


def test_outbox_splits_what_would_not_fit_in_one_message() -> None:
    from jobwarden.contract import Limits
    from jobwarden.v1 import executor_service_pb2 as pb

    outbox = Outbox()
    for n in range(2500):
        outbox.log(("chatty", 1), "INFO", f"line {n}", datetime.now(UTC))
    big = "x" * 900_000
    for n in range(9):
        result = pb.JobResult(job_id=f"j{n}", attempt=1, status=job_pb2.JOB_STATUS_COMPLETED)
        result.result.update({"blob": big})
        outbox.result(result)
    messages = outbox.take(vouched=[])
    logs = [m.job_log for m in messages if m.WhichOneof("message") == "job_log"]
    assert [len(log.lines) for log in logs] == [1000, 1000, 500]
    batches = [m for m in messages if m.WhichOneof("message") in ("job_results", "job_result")]
    assert len(batches) > 1
    assert all(m.ByteSize() < Limits.MAX_MESSAGE_BYTES for m in batches)
    ids = [r.job_id for m in batches for r in (m.job_results.results or [m.job_result])]
    assert ids == [f"j{n}" for n in range(9)]


def test_a_relative_run_at_reads_durations_as_the_rest_of_jobwarden_does() -> None:
    from jobwarden.sdk._cli_support import UsageError
    from jobwarden.sdk._commands import _parse_time

    before = datetime.now(UTC)
    later = _parse_time("+1h30m")
    assert 5400 <= (later - before).total_seconds() < 5400 + 60
    with pytest.raises(UsageError, match=r"--run-at takes an ISO 8601 time or \+30s"):
        _parse_time("+soon")


async def test_the_cli_reads_pages_until_its_limit_asking_no_more_than_it_still_wants() -> None:
    items = [f"job-{i}" for i in range(7)]
    asked: list[tuple[int, str]] = []

    async def page(size: int, token: str) -> tuple[list[str], str]:
        asked.append((size, token))
        start = int(token or 0)
        end = min(start + min(size, 2), len(items))  # the engine answers at most 2 a page here
        return items[start:end], (str(end) if end < len(items) else "")

    assert await first_pages(5, page) == items[:5]
    assert asked == [(5, ""), (3, "2"), (1, "4")]
    asked.clear()
    assert await first_pages(100, page) == items
    assert asked == [(100, ""), (98, "2"), (96, "4"), (94, "6")]
    asked.clear()
    assert await first_pages(3000, page) == items
    assert asked[0] == (1000, "")
    with pytest.raises(UsageError, match="--limit must be at least 1"):
        await first_pages(0, page)
