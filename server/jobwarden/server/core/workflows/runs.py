"""Work orders, runs, their steps and edges, and workflow events: the state a run changes.

Every object turns into a JSON-able dict and back (how the store keeps it and how events carry a
snapshot). Times are POSIX seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jobwarden.contract import (
    FINISHED_RUN_STATUSES,
    ErrorKind,
    StepStatus,
    WorkflowEventType,
    WorkflowRunStatus,
)

__all__ = ["EdgeRun", "StepRun", "WorkOrder", "WorkflowError", "WorkflowEvent", "WorkflowRun"]

JSONDict = dict[str, Any]


@dataclass(slots=True)
class WorkflowError:
    message: str
    step: str = ""
    kind: ErrorKind = ErrorKind.JOB_ERROR
    job_id: str = ""

    def to_dict(self) -> JSONDict:
        return {"message": self.message, "step": self.step, "kind": int(self.kind), "job_id": self.job_id}

    @classmethod
    def from_dict(cls, d: JSONDict) -> WorkflowError:
        return cls(
            message=d.get("message", ""),
            step=d.get("step", ""),
            kind=ErrorKind(d.get("kind") or ErrorKind.JOB_ERROR),
            job_id=d.get("job_id", ""),
        )


@dataclass(slots=True)
class StepRun:
    name: str
    status: StepStatus = StepStatus.PENDING
    job_id: str = ""
    child_run_id: str = ""
    started_at: float | None = None
    finished_at: float | None = None
    wake_at: float | None = None
    result: JSONDict | None = None
    job_variables: dict[str, str] = field(default_factory=dict)
    #: the context updates its job made (replayed into a rerun that reuses this step)
    workflow_variables: dict[str, str] = field(default_factory=dict)
    error: WorkflowError | None = None
    reused_from_run_id: str = ""
    attempt: int = 0

    @property
    def finished(self) -> bool:
        return self.status in (
            StepStatus.COMPLETED,
            StepStatus.FAILED,
            StepStatus.CANCELLED,
            StepStatus.SKIPPED,
        )

    def to_dict(self, *, results: bool = True) -> JSONDict:
        d: JSONDict = {"name": self.name, "status": int(self.status)}
        # Spelled out, not a getattr loop: every step change of every run goes through here.
        if self.job_id:
            d["job_id"] = self.job_id
        if self.child_run_id:
            d["child_run_id"] = self.child_run_id
        if self.started_at:
            d["started_at"] = self.started_at
        if self.finished_at:
            d["finished_at"] = self.finished_at
        if self.wake_at:
            d["wake_at"] = self.wake_at
        if self.reused_from_run_id:
            d["reused_from_run_id"] = self.reused_from_run_id
        if self.attempt:
            d["attempt"] = self.attempt
        if self.error is not None:
            d["error"] = self.error.to_dict()
        if results:
            if self.result is not None:
                d["result"] = self.result
            if self.job_variables:
                d["job_variables"] = self.job_variables
            if self.workflow_variables:
                d["workflow_variables"] = self.workflow_variables
        return d

    @classmethod
    def from_dict(cls, d: JSONDict) -> StepRun:
        error = d.get("error")
        return cls(
            name=d["name"],
            status=StepStatus(d.get("status") or StepStatus.PENDING),
            job_id=d.get("job_id", ""),
            child_run_id=d.get("child_run_id", ""),
            started_at=d.get("started_at"),
            finished_at=d.get("finished_at"),
            wake_at=d.get("wake_at"),
            result=d.get("result"),
            job_variables=d.get("job_variables") or {},
            workflow_variables=d.get("workflow_variables") or {},
            error=WorkflowError.from_dict(error) if error else None,
            reused_from_run_id=d.get("reused_from_run_id", ""),
            attempt=d.get("attempt", 0),
        )


@dataclass(slots=True)
class EdgeRun:
    decided: bool = False
    taken: bool = False

    def to_dict(self) -> list[bool]:
        return [self.decided, self.taken]

    @classmethod
    def from_dict(cls, d: list[bool]) -> EdgeRun:
        return cls(decided=bool(d[0]), taken=bool(d[1]))


@dataclass(slots=True, eq=False)
class WorkflowRun:
    id: str
    work_order_id: str
    workflow: str
    version: int
    number: int
    status: WorkflowRunStatus
    input: JSONDict
    context: dict[str, str]
    #: in the definition's order
    steps: dict[str, StepRun]
    #: aligned with the definition's edges
    edges: list[EdgeRun]
    created_at: float
    updated_at: float
    output: JSONDict | None = None
    error: WorkflowError | None = None
    finished_at: float | None = None
    deadline: float | None = None
    rerun_from_step: str = ""
    previous_run_id: str = ""
    parent_run_id: str = ""
    parent_step: str = ""
    correlation_id: str = ""
    cancel_requested: bool = False
    status_reason: str = ""
    sequence: int = 0
    #: how deep in sub-workflows this run is (0: a work order's own run)
    depth: int = 0

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_RUN_STATUSES

    def to_dict(self, *, payloads: bool = True, steps: bool = True) -> JSONDict:
        """Every field; without input, output and step results unless ``payloads``; without steps
        and edges unless ``steps``."""
        d: JSONDict = {
            "id": self.id,
            "work_order_id": self.work_order_id,
            "workflow": self.workflow,
            "version": self.version,
            "number": self.number,
            "status": int(self.status),
            "context": dict(self.context),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "error": self.error.to_dict() if self.error else None,
            "finished_at": self.finished_at,
            "deadline": self.deadline,
            "rerun_from_step": self.rerun_from_step,
            "previous_run_id": self.previous_run_id,
            "parent_run_id": self.parent_run_id,
            "parent_step": self.parent_step,
            "correlation_id": self.correlation_id,
            "cancel_requested": self.cancel_requested,
            "status_reason": self.status_reason,
            "sequence": self.sequence,
            "depth": self.depth,
        }
        if steps:
            d["steps"] = [s.to_dict(results=payloads) for s in self.steps.values()]
            d["edges"] = [e.to_dict() for e in self.edges]
        if payloads:
            d["input"] = self.input
            d["output"] = self.output
        return d

    @classmethod
    def from_dict(cls, d: JSONDict) -> WorkflowRun:
        error = d.get("error")
        steps = [StepRun.from_dict(s) for s in d.get("steps") or ()]
        return cls(
            id=d["id"],
            work_order_id=d["work_order_id"],
            workflow=d["workflow"],
            version=d["version"],
            number=d.get("number", 1),
            status=WorkflowRunStatus(d["status"]),
            input=d.get("input") or {},
            context=d.get("context") or {},
            steps={s.name: s for s in steps},
            edges=[EdgeRun.from_dict(e) for e in d.get("edges") or ()],
            created_at=d.get("created_at", 0.0),
            updated_at=d.get("updated_at", 0.0),
            output=d.get("output"),
            error=WorkflowError.from_dict(error) if error else None,
            finished_at=d.get("finished_at"),
            deadline=d.get("deadline"),
            rerun_from_step=d.get("rerun_from_step", ""),
            previous_run_id=d.get("previous_run_id", ""),
            parent_run_id=d.get("parent_run_id", ""),
            parent_step=d.get("parent_step", ""),
            correlation_id=d.get("correlation_id", ""),
            cancel_requested=d.get("cancel_requested", False),
            status_reason=d.get("status_reason", ""),
            sequence=d.get("sequence", 0),
            depth=d.get("depth", 0),
        )


@dataclass(slots=True, eq=False)
class WorkOrder:
    id: str
    workflow: str
    status: WorkflowRunStatus
    input: JSONDict
    created_at: float
    updated_at: float
    context: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    correlation_id: str = ""
    idempotency_key: str = ""
    run_count: int = 0
    last_run_id: str = ""
    version: int = 0
    created_by: str = ""
    sequence: int = 0
    #: the version the work order was started with (0: the latest at the time), for idempotency
    requested_version: int = 0

    def to_dict(self, *, payloads: bool = True) -> JSONDict:
        d: JSONDict = {
            "id": self.id,
            "workflow": self.workflow,
            "status": int(self.status),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "context": self.context,
            "labels": self.labels,
            "correlation_id": self.correlation_id,
            "idempotency_key": self.idempotency_key,
            "run_count": self.run_count,
            "last_run_id": self.last_run_id,
            "version": self.version,
            "created_by": self.created_by,
            "sequence": self.sequence,
            "requested_version": self.requested_version,
        }
        if payloads:
            d["input"] = self.input
        return d

    @classmethod
    def from_dict(cls, d: JSONDict) -> WorkOrder:
        return cls(
            id=d["id"],
            workflow=d["workflow"],
            status=WorkflowRunStatus(d["status"]),
            input=d.get("input") or {},
            created_at=d.get("created_at", 0.0),
            updated_at=d.get("updated_at", 0.0),
            context=d.get("context") or {},
            labels=d.get("labels") or {},
            correlation_id=d.get("correlation_id", ""),
            idempotency_key=d.get("idempotency_key", ""),
            run_count=d.get("run_count", 0),
            last_run_id=d.get("last_run_id", ""),
            version=d.get("version", 0),
            created_by=d.get("created_by", ""),
            sequence=d.get("sequence", 0),
            requested_version=d.get("requested_version", 0),
        )


@dataclass(slots=True)
class WorkflowEvent:
    """One change of a work order, a run or a step; numbered from the job events' sequence."""

    sequence: int
    type: WorkflowEventType
    time: float
    run_id: str
    work_order_id: str
    #: the run after the change, without input, output and step results
    run: JSONDict | None
    #: the work order after the change, without its input
    order: JSONDict | None
    step: str = ""
    previous_step_status: StepStatus | None = None
    previous_status: WorkflowRunStatus | None = None
    actor: str = "engine"
    reason: str = ""
    #: the wire form, cached by the API layer (encoded once for every watcher)
    encoded: bytes | None = None

    def to_dict(self) -> JSONDict:
        return {
            "sequence": self.sequence,
            "type": int(self.type),
            "time": self.time,
            "run_id": self.run_id,
            "work_order_id": self.work_order_id,
            "run": self.run,
            "order": self.order,
            "step": self.step,
            "previous_step_status": int(self.previous_step_status) if self.previous_step_status else None,
            "previous_status": int(self.previous_status) if self.previous_status else None,
            "actor": self.actor,
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, d: JSONDict) -> WorkflowEvent:
        previous_step, previous = d.get("previous_step_status"), d.get("previous_status")
        return cls(
            sequence=d["sequence"],
            type=WorkflowEventType(d["type"]),
            time=d["time"],
            run_id=d.get("run_id", ""),
            work_order_id=d.get("work_order_id", ""),
            run=d.get("run"),
            order=d.get("order"),
            step=d.get("step", ""),
            previous_step_status=StepStatus(previous_step) if previous_step else None,
            previous_status=WorkflowRunStatus(previous) if previous else None,
            actor=d.get("actor", "engine"),
            reason=d.get("reason", ""),
        )
