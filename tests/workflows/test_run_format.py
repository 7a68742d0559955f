"""Runs, work orders and workflow events in their dict form (msgspec structs, core/workflows/runs.py):
rows the hand-written model wrote read back field by field, defaults are left out, payloads and the
API layer's cached encoding never copied into a snapshot."""

from __future__ import annotations

from typing import Any

import msgspec
import orjson
from jobwarden.contract import ErrorKind, StepStatus, WorkflowEventType, WorkflowRunStatus
from jobwarden.server.core.workflows.rows import event_from_row, order_from_row, run_from_row
from jobwarden.server.core.workflows.runs import (
    EdgeRun,
    StepRun,
    WorkflowError,
    WorkflowEvent,
    WorkflowRun,
    WorkOrder,
)

_ERROR = {"message": "step 'b' failed: boom", "step": "b", "kind": 2, "job_id": "job-b"}

#: ``WorkflowRun.to_dict()`` of the hand-written model (revision 6a1e4cb): a runs row's doc
OLD_RUN: dict[str, Any] = {
    "id": "run-1",
    "work_order_id": "wo-1",
    "workflow": "billing",
    "version": 3,
    "number": 2,
    "status": 4,
    "context": {"k": "v"},
    "created_at": 1764770000.5,
    "updated_at": 1764770003.5,
    "error": _ERROR,
    "finished_at": 1764770003.5,
    "deadline": 1764770600.5,
    "rerun_from_step": "b",
    "previous_run_id": "run-0",
    "parent_run_id": "",
    "parent_step": "",
    "correlation_id": "corr",
    "cancel_requested": False,
    "status_reason": "step b failed",
    "sequence": 77,
    "depth": 1,
    "steps": [
        {
            "name": "a",
            "status": 4,
            "job_id": "job-a",
            "started_at": 1764770001.5,
            "finished_at": 1764770002.5,
            "attempt": 1,
            "result": {"rows": 3},
            "job_variables": {"jv": "1"},
            "workflow_variables": {"wv": "2"},
        },
        {
            "name": "b",
            "status": 5,
            "job_id": "job-b",
            "started_at": 1764770002.5,
            "finished_at": 1764770003.5,
            "attempt": 2,
            "error": _ERROR,
        },
        {"name": "c", "status": 1},
        {
            "name": "d",
            "status": 2,
            "child_run_id": "child-run",
            "started_at": 1764770002.5,
            "wake_at": 1764770060.5,
            "reused_from_run_id": "old-run",
        },
    ],
    "edges": [[True, True], [True, False], [False, False]],
    "input": {"month": "2026-11"},
    "output": {"o": [1, 2]},
}
OLD_ORDER: dict[str, Any] = {
    "id": "wo-1",
    "workflow": "billing",
    "status": 4,
    "created_at": 1764770000.5,
    "updated_at": 1764770003.5,
    "context": {"k": "v"},
    "labels": {"team": "x"},
    "correlation_id": "corr",
    "idempotency_key": "idem",
    "run_count": 2,
    "last_run_id": "run-1",
    "version": 3,
    "created_by": "alice",
    "sequence": 77,
    "requested_version": 0,
}
OLD_EVENT: dict[str, Any] = {
    "sequence": 77,
    "type": 4,
    "time": 1764770003.5,
    "run_id": "run-1",
    "work_order_id": "wo-1",
    "run": {"id": "run-1"},
    "order": None,
    "step": "b",
    "previous_step_status": 2,
    "previous_status": None,
    "actor": "engine",
    "reason": "crashed",
}


def expected() -> tuple[WorkflowRun, WorkOrder, WorkflowEvent]:
    now = 1764770000.5
    err = WorkflowError("step 'b' failed: boom", "b", ErrorKind.CRASHED, "job-b")
    steps = {
        "a": StepRun(
            "a",
            StepStatus.COMPLETED,
            job_id="job-a",
            started_at=now + 1,
            finished_at=now + 2,
            result={"rows": 3},
            job_variables={"jv": "1"},
            workflow_variables={"wv": "2"},
            attempt=1,
        ),
        "b": StepRun(
            "b",
            StepStatus.FAILED,
            job_id="job-b",
            started_at=now + 2,
            finished_at=now + 3,
            error=err,
            attempt=2,
        ),
        "c": StepRun("c", StepStatus.PENDING),
        "d": StepRun(
            "d",
            StepStatus.RUNNING,
            child_run_id="child-run",
            started_at=now + 2,
            wake_at=now + 60,
            reused_from_run_id="old-run",
        ),
    }
    run = WorkflowRun(
        id="run-1",
        work_order_id="wo-1",
        workflow="billing",
        version=3,
        number=2,
        status=WorkflowRunStatus.FAILED,
        input={"month": "2026-11"},
        context={"k": "v"},
        steps=steps,
        edges=[EdgeRun(True, True), EdgeRun(True, False), EdgeRun()],
        created_at=now,
        updated_at=now + 3,
        output={"o": [1, 2]},
        error=err,
        finished_at=now + 3,
        deadline=now + 600,
        rerun_from_step="b",
        previous_run_id="run-0",
        correlation_id="corr",
        status_reason="step b failed",
        sequence=77,
        depth=1,
    )
    order = WorkOrder(
        id="wo-1",
        workflow="billing",
        status=WorkflowRunStatus.FAILED,
        input={"month": "2026-11"},
        created_at=now,
        updated_at=now + 3,
        context={"k": "v"},
        labels={"team": "x"},
        correlation_id="corr",
        idempotency_key="idem",
        run_count=2,
        last_run_id="run-1",
        version=3,
        created_by="alice",
        sequence=77,
    )
    event = WorkflowEvent(
        sequence=77,
        type=WorkflowEventType.STEP_CHANGED,
        time=now + 3,
        run_id="run-1",
        work_order_id="wo-1",
        run={"id": "run-1"},
        order=None,
        step="b",
        previous_step_status=StepStatus.RUNNING,
        reason="crashed",
    )
    return run, order, event


def assert_same(got: msgspec.Struct, want: msgspec.Struct) -> None:
    assert type(got) is type(want)
    for f in msgspec.structs.fields(want):
        assert getattr(got, f.name) == getattr(want, f.name), f.name


def test_rows_the_hand_written_model_wrote_read_back_field_by_field() -> None:
    run, order, event = expected()
    got_run = run_from_row({"doc": orjson.dumps(OLD_RUN)})
    assert_same(got_run, run)
    assert list(got_run.steps) == ["a", "b", "c", "d"]
    assert got_run.status is WorkflowRunStatus.FAILED
    assert got_run.error is not None
    assert got_run.error.kind is ErrorKind.CRASHED
    assert [type(s.status) for s in got_run.steps.values()] == [StepStatus] * 4
    got_order = order_from_row({"doc": orjson.dumps(OLD_ORDER), "input": orjson.dumps({"month": "2026-11"})})
    assert_same(got_order, order)
    got_event = event_from_row({"doc": orjson.dumps({**OLD_EVENT, "added_later": 1})})
    assert_same(got_event, event)
    assert got_event.previous_step_status is StepStatus.RUNNING


def test_the_dict_forms_leave_defaults_out_and_say_what_the_old_ones_said() -> None:
    run, order, event = expected()
    d = run.to_dict()
    assert d["steps"][2] == {"name": "c"}
    assert d["edges"] == OLD_RUN["edges"]
    assert "parent_run_id" not in d
    assert "cancel_requested" not in d
    assert WorkflowRun.from_dict(d).to_dict() == d
    assert WorkflowRun.from_dict(OLD_RUN).to_dict() == d
    # Without payloads: no input, output nor step results; the header alone without steps.
    bare = run.to_dict(payloads=False)
    assert "input" not in bare
    assert "output" not in bare
    assert "result" not in bare["steps"][0]
    assert "job_variables" not in bare["steps"][0]
    assert "steps" not in run.to_dict(payloads=False, steps=False)
    assert d["input"] is run.input
    assert d["steps"][0]["result"] is run.steps["a"].result
    assert "input" not in order.to_dict(payloads=False)
    assert order.to_dict()["input"] is order.input
    event.encoded = b"wire form"
    assert "encoded" not in event.to_dict()
    assert event.to_dict() == {k: v for k, v in OLD_EVENT.items() if k not in ("previous_status", "actor")}
