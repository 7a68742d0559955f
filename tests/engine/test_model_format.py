"""The model's dict form (``Model.to_dict`` / ``from_dict``, msgspec): enums as numbers, defaults left
out, unknown keys ignored, and a row written before the model was made of msgspec structs reads back
the same job, field by field."""

from __future__ import annotations

from typing import Any

import msgspec
import orjson
import pytest
from jobwarden.contract import (
    EdgeKind,
    ErrorKind,
    ExecutionMode,
    JobEventType,
    JobStatus,
    JoinMode,
    LockMode,
    StartTimeoutAction,
)
from jobwarden.server.core.model import (
    ActionConfig,
    Attempt,
    Checkpoint,
    CompletedStep,
    Deadlines,
    Event,
    Job,
    JobError,
    LockRequest,
    RetryPolicy,
    RunRequest,
    StartTimeout,
    StopRequest,
    Timeouts,
    WorkflowRunRequest,
)
from jobwarden.server.core.store import Store, WriteSet, dumps, job_row
from jobwarden.server.core.workflows.definitions import (
    ActionStepDef,
    DelayStepDef,
    EdgeDef,
    StepDef,
    SubWorkflowStepDef,
    WorkflowDef,
)

#: ``Job.to_dict(payloads=False)`` of the hand-written model (revision 6a1e4cb) for the job
#: ``expected_job`` makes: the ``doc`` column of a jobs row as engines before msgspec wrote it.
OLD_DOC: dict[str, Any] = {
    "id": "01JEXAMPLE0000000000000001",
    "action": "reports.build",
    "status": 4,
    "created_at": 1764770000.25,
    "updated_at": 1764770012.75,
    "priority": 5,
    "labels": {"team": "billing", "env": "prod"},
    "locks": [{"resource": "customer/acme", "mode": 2}, {"resource": "printer", "mode": 1}],
    "correlation_id": "corr-42",
    "idempotency_key": "idem-42",
    "run_at": 1764770001.25,
    "timeouts": {
        "start": {
            "duration": 30.0,
            "action": 2,
            "retry_interval": 2.5,
            "retry_backoff_exponential": True,
            "retry_count": 3,
            "run_request": {
                "action": "reports.fallback",
                "input": {"why": "late"},
                "correlation_id": "corr-fb",
                "workflow": {"workflow": "fallback-flow", "version": 2, "input": None, "context": {"k": "v"}},
            },
        },
        "heartbeat": 10.0,
        "takeover": 20.0,
        "execution": 300.0,
    },
    "retry_policy": {
        "max_attempts": 4,
        "initial_interval": 0.5,
        "backoff_coefficient": 3.0,
        "max_interval": 60.0,
        "non_retryable_kinds": [2, 3],
    },
    "error": {
        "kind": 1,
        "message": "boom: disk full",
        "stack_trace": "Traceback...\n  line 3",
        "step": "upload",
        "retryable": True,
    },
    "progress": 40,
    "message": "uploading",
    "step": "upload",
    "attempt": 2,
    "attempts": [
        {
            "number": 1,
            "status": 7,
            "worker_id": "worker-a",
            "mode": 1,
            "started_at": 1764770001.75,
            "finished_at": 1764770005.25,
            "error": {
                "kind": 1,
                "message": "boom: disk full",
                "stack_trace": "Traceback...\n  line 3",
                "step": "upload",
                "retryable": True,
            },
            "progress": 30,
            "message": "rendering",
            "step": "render",
        },
        {"number": 2, "status": 4, "worker_id": "worker-b", "mode": 3, "started_at": 1764770007.25},
    ],
    "job_variables": {"pages_done": "3"},
    "workflow_variables": {"run_note": "x"},
    "trace_context": {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
    "workflow_run_id": "run-7",
    "workflow_step": "build",
    "work_order_id": "wo-7",
    "worker_id": "worker-b",
    "cancel_requested": True,
    "stop_request": {
        "reason": "execution timeout of 300s passed",
        "error": {"kind": 3, "message": "killed", "stack_trace": "", "step": "", "retryable": False},
        "actor": "engine",
        "requested_at": 1764770011.25,
    },
    "checkpoint": [
        {"name": "fetch", "data": {"rows": 120}, "finished_at": 1764770007.75},
        {"name": "render", "data": {"pages": 3}, "finished_at": 1764770009.25},
    ],
    "started_at": 1764770001.75,
    "heartbeat_at": 1764770012.25,
    "mode": 3,
    "next_mode": 2,
    "status_reason": "retrying after failure",
    "locks_held": True,
    "deadlines": {"heartbeat": 1764770022.25, "execution": 1764770307.25},
    "start_retries": 1,
    "sequence": 9876,
    "queue_order": 321,
}
OLD_INPUT = {"customer": "acme", "month": "2026-11", "pages": [1, 2, 3], "options": {"pdf": True}}


def expected_job() -> Job:
    now = 1764770000.25
    err = JobError(ErrorKind.JOB_ERROR, "boom: disk full", "Traceback...\n  line 3", "upload", True)
    return Job(
        id="01JEXAMPLE0000000000000001",
        action="reports.build",
        status=JobStatus.RUNNING,
        input=dict(OLD_INPUT),
        created_at=now,
        updated_at=now + 12.5,
        priority=5,
        labels={"team": "billing", "env": "prod"},
        locks=[LockRequest("customer/acme", LockMode.EXCLUSIVE), LockRequest("printer", LockMode.SHARED)],
        correlation_id="corr-42",
        idempotency_key="idem-42",
        run_at=now + 1.0,
        timeouts=Timeouts(
            start=StartTimeout(
                30.0,
                StartTimeoutAction.RETRY,
                2.5,
                True,
                3,
                RunRequest(
                    "reports.fallback",
                    {"why": "late"},
                    "corr-fb",
                    WorkflowRunRequest("fallback-flow", 2, None, {"k": "v"}),
                ),
            ),
            heartbeat=10.0,
            takeover=20.0,
            execution=300.0,
        ),
        retry_policy=RetryPolicy(4, 0.5, 3.0, 60.0, frozenset({ErrorKind.KILLED, ErrorKind.CRASHED})),
        result=None,
        error=err,
        progress=40,
        message="uploading",
        step="upload",
        attempt=2,
        attempts=[
            Attempt(
                1,
                JobStatus.FAILED,
                "worker-a",
                ExecutionMode.EXECUTE,
                now + 1.5,
                now + 5.0,
                err,
                30,
                "rendering",
                "render",
            ),
            Attempt(2, JobStatus.RUNNING, "worker-b", ExecutionMode.RETRY, now + 7.0),
        ],
        job_variables={"pages_done": "3"},
        workflow_variables={"run_note": "x"},
        trace_context={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
        workflow_run_id="run-7",
        workflow_step="build",
        work_order_id="wo-7",
        worker_id="worker-b",
        cancel_requested=True,
        stop_request=StopRequest(
            "execution timeout of 300s passed",
            JobError(ErrorKind.KILLED, "killed", retryable=False),
            "engine",
            now + 11.0,
        ),
        checkpoint=Checkpoint(
            [
                CompletedStep("fetch", {"rows": 120}, now + 7.5),
                CompletedStep("render", {"pages": 3}, now + 9.0),
            ]
        ),
        started_at=now + 1.5,
        finished_at=None,
        heartbeat_at=now + 12.0,
        mode=ExecutionMode.RETRY,
        next_mode=ExecutionMode.RESUME,
        status_reason="retrying after failure",
        locks_held=True,
        deadlines=Deadlines(heartbeat=now + 22.0, execution=now + 307.0),
        start_retries=1,
        sequence=9876,
        queue_order=321,
    )


def assert_same_job(got: Job, want: Job) -> None:
    """Every field equal, enums as enums (``Job`` compares by identity, so field by field)."""
    names = msgspec.structs.fields(Job)
    assert len(names) == 42
    for f in names:
        assert getattr(got, f.name) == getattr(want, f.name), f.name
    assert got.status is JobStatus.RUNNING
    assert got.mode is ExecutionMode.RETRY
    assert got.next_mode is ExecutionMode.RESUME
    assert [a.status for a in got.attempts] == [JobStatus.FAILED, JobStatus.RUNNING]
    assert all(type(a.status) is JobStatus and type(a.mode) is ExecutionMode for a in got.attempts)
    assert [type(x.mode) for x in got.locks] == [LockMode, LockMode]
    assert got.retry_policy is not None
    assert got.retry_policy.non_retryable_kinds == {
        ErrorKind.KILLED,
        ErrorKind.CRASHED,
    }
    assert all(type(k) is ErrorKind for k in got.retry_policy.non_retryable_kinds)
    assert got.timeouts.start is not None
    assert got.timeouts.start.action is StartTimeoutAction.RETRY
    assert got.error is not None
    assert got.error.kind is ErrorKind.JOB_ERROR
    assert got.stop_request is not None
    assert got.stop_request.outcome == "KILLED"
    assert got.checkpoint.step == "render"
    assert got.checkpoint.data == {"pages": 3}
    assert got.live_attempt is not None
    assert got.live_attempt.worker_id == "worker-b"
    assert got.failures == 1


def test_a_job_row_written_by_the_hand_written_model_reads_back_field_by_field(sqlite_url: str) -> None:
    # A real SQLite file: the row's columns as today's job_row makes them, its doc, input and
    # result as the old model wrote them.
    store = Store(sqlite_url)
    store.create_schema()
    row = job_row(expected_job(), with_input=True)
    row.update(doc=orjson.dumps(OLD_DOC).decode(), input=orjson.dumps(OLD_INPUT).decode(), result=None)
    store.write(WriteSet(new_jobs=[row]))
    got = store.get_job(OLD_DOC["id"])
    store.close()
    assert got is not None
    assert_same_job(got, expected_job())


def test_the_old_dict_form_with_keys_a_newer_engine_added_reads_back() -> None:
    doc = {**OLD_DOC, "input": OLD_INPUT, "result": None, "a_new_field": {"x": 1}}
    doc["attempts"] = [{**a, "new": True} for a in OLD_DOC["attempts"]]
    doc["timeouts"] = {**OLD_DOC["timeouts"], "later": 1}
    assert_same_job(Job.from_dict(doc), expected_job())


def test_the_dict_form_has_enums_as_numbers_and_leaves_defaults_out() -> None:
    job = expected_job()
    snapshot = job.to_dict(payloads=False)
    assert "input" not in snapshot
    assert "result" not in snapshot
    assert type(snapshot["status"]) is int
    assert snapshot["status"] == 4
    assert [type(a["status"]) for a in snapshot["attempts"]] == [int, int]
    assert snapshot["retry_policy"]["non_retryable_kinds"] == [2, 3]
    # Defaults left out (the reader restores them): the error's retryable, the first attempt's mode.
    assert "retryable" not in snapshot["error"]
    assert "mode" not in snapshot["attempts"][0]
    assert "finished_at" not in snapshot
    assert "stack_trace" not in snapshot["stop_request"]["error"]
    # Everything the old form said, the new one says the same or leaves to its default.
    assert Job.from_dict({**snapshot, "input": OLD_INPUT}).to_dict() == job.to_dict()
    encoded = orjson.loads(dumps(job.to_dict()))
    assert encoded["input"] == OLD_INPUT
    assert encoded["result"] is None
    assert encoded["mode"] == 3
    # A job at its defaults: only what it must say, and its payloads when asked for.
    bare = Job(id="j", action="a", status=JobStatus.QUEUED, created_at=1.0, updated_at=1.0)
    assert bare.to_dict(payloads=False) == {
        "id": "j",
        "action": "a",
        "status": 1,
        "created_at": 1.0,
        "updated_at": 1.0,
        "timeouts": {},
        "checkpoint": [],
        "deadlines": {},
    }
    assert bare.to_dict()["input"] == {}
    assert bare.to_dict()["result"] is None


def test_the_last_event_is_never_serialized_and_its_snapshot_is_reused_until_the_job_changes() -> None:
    job = expected_job()
    ev = Event(
        job.sequence, job.id, JobEventType.UPDATED, 1.0, job.to_dict(payloads=False), snapshot_json="{}"
    )
    job.remember(ev)
    assert job.last_event is ev
    assert job.snapshot(payloads=False) is ev.snapshot
    assert job.snapshot_json() == "{}"
    assert job.snapshot()["input"] is job.input
    assert job.to_dict(payloads=False) == ev.snapshot
    # The payloads are neither encoded nor copied, either way.
    assert job.to_dict()["input"] is job.input
    assert Job.from_dict({**ev.snapshot, "input": OLD_INPUT}).input is OLD_INPUT
    assert "_last_event" not in orjson.dumps(job.to_dict()).decode()
    job.touched()
    assert job.last_event is None
    assert job.snapshot_json() is None
    assert job.snapshot(payloads=False) is not ev.snapshot
    job.remember(ev)
    job.sequence += 1  # a newer event the job has not been told about
    assert job.last_event is None


def test_an_action_config_reads_back_from_its_old_full_dict_form() -> None:
    old = {
        "action": "reports.build",
        "timeouts": {"heartbeat": 10.0},
        "retry_policy": {
            "max_attempts": 3,
            "initial_interval": 1.0,
            "backoff_coefficient": 2.0,
            "max_interval": 0.0,
            "non_retryable_kinds": [],
        },
        "max_running": 4,
        "max_queued": 0,
        "lock_templates": [{"resource": "customer/${input.c}", "mode": 2}],
        "paused": False,
    }
    config = ActionConfig.from_dict(old)
    assert config == ActionConfig(
        "reports.build",
        Timeouts(heartbeat=10.0),
        RetryPolicy(max_attempts=3),
        max_running=4,
        lock_templates=[LockRequest("customer/${input.c}", LockMode.EXCLUSIVE)],
    )
    assert ActionConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize("bad", [{"kind": 99, "message": "x"}, {"message": "no kind"}])
def test_a_dict_that_is_not_a_job_error_is_refused(bad: dict[str, object]) -> None:
    with pytest.raises(msgspec.ValidationError):
        JobError.from_dict(bad)


def test_a_definitions_digest_is_the_one_engines_computed_before() -> None:
    # The digest the hand-written model (revision 6a1e4cb) gave this definition: putting a stored
    # definition again must find it the same, not make a new version.
    definition = WorkflowDef(
        name="billing",
        description="monthly billing",
        steps=[
            StepDef(
                "fetch",
                "get rows",
                action=ActionStepDef(
                    "rows.fetch",
                    {"m": "${input.month}"},
                    3,
                    {"t": "b"},
                    [("cust/${input.c}", 2)],
                    Timeouts(
                        start=StartTimeout(
                            30.0,
                            StartTimeoutAction.RETRY,
                            2.0,
                            True,
                            2,
                            RunRequest("alt", {"a": 1}, "c", WorkflowRunRequest("wf", 1, None, {"x": "y"})),
                        ),
                        heartbeat=5.0,
                        execution=60.0,
                    ),
                    RetryPolicy(3, 0.5, 2.0, 10.0, frozenset({ErrorKind.CRASHED, ErrorKind.LOST})),
                ),
            ),
            StepDef(
                "plain",
                action=ActionStepDef(
                    "rows.plain", timeouts=Timeouts(start=StartTimeout(10.0)), retry_policy=RetryPolicy()
                ),
            ),
            StepDef("wait", delay=DelayStepDef(30.0)),
            StepDef(
                "child",
                workflow=SubWorkflowStepDef("child", 2, {"k": 1}),
                join=JoinMode.ANY,
                continue_on_crash=True,
            ),
        ],
        edges=[
            EdgeDef("fetch", "plain", EdgeKind.SUCCESS),
            EdgeDef("plain", "wait", EdgeKind.SUCCESS, "true"),
            EdgeDef("wait", "child", EdgeKind.SUCCESS),
        ],
        context={"b": "2", "a": "1"},
        output={"o": 1},
        run_timeout=600.0,
    )
    assert definition.content_digest() == "f15af0f16243ab1c0602d47afb178655817c0fc2bfdfdb839496a95aa67dd04f"
    back = WorkflowDef.from_dict(orjson.loads(dumps(definition.to_dict())))
    assert back == definition
    assert back.content_digest() == definition.content_digest()
