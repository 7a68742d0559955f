"""Work orders, runs, their steps and edges, and workflow events: the state a run changes.

Every object is a ``msgspec.Struct`` (``Model``, core/model.py) and turns into a JSON-able dict and
back (how the store keeps it and how events carry a snapshot): fields at their default left out,
enums as numbers, unknown keys ignored on read. Times are POSIX seconds.
"""

from __future__ import annotations

from typing import Any, Self

import msgspec
from jobwarden.contract import (
    FINISHED_RUN_STATUSES,
    ErrorKind,
    StepStatus,
    WorkflowEventType,
    WorkflowRunStatus,
)
from jobwarden.server.core.model import Model

__all__ = ["EdgeRun", "StepRun", "WorkOrder", "WorkflowError", "WorkflowEvent", "WorkflowRun"]

JSONDict = dict[str, Any]


class WorkflowError(Model):
    message: str = ""
    step: str = ""
    kind: ErrorKind = ErrorKind.JOB_ERROR
    job_id: str = ""


class StepRun(Model):
    name: str
    status: StepStatus = StepStatus.PENDING
    job_id: str = ""
    child_run_id: str = ""
    started_at: float | None = None
    finished_at: float | None = None
    wake_at: float | None = None
    result: JSONDict | None = None
    job_variables: dict[str, str] = {}
    #: the context updates its job made (replayed into a rerun that reuses this step)
    workflow_variables: dict[str, str] = {}
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
        """Without its result and variables unless ``results``; the result is not copied."""
        if self.result is None and (results or not (self.job_variables or self.workflow_variables)):
            d: JSONDict = msgspec.to_builtins(self)  # nothing to leave out (the common case)
            return d
        if not results:
            bare = msgspec.structs.replace(self, result=None, job_variables={}, workflow_variables={})
            plain: JSONDict = msgspec.to_builtins(bare)
            return plain
        with_result: JSONDict = msgspec.to_builtins(msgspec.structs.replace(self, result=None))
        with_result["result"] = self.result
        return with_result


class EdgeRun(msgspec.Struct, array_like=True):
    """An edge's decision; in a run's dict form, ``[decided, taken]``."""

    decided: bool = False
    taken: bool = False


class WorkflowRun(Model, kw_only=True, eq=False):
    """A run of a workflow. Its dict form keeps ``steps`` as a list in the definition's order."""

    id: str
    work_order_id: str
    workflow: str
    version: int
    number: int = 1
    status: WorkflowRunStatus
    input: JSONDict = {}
    context: dict[str, str] = {}
    #: in the definition's order
    steps: dict[str, StepRun] = {}
    #: aligned with the definition's edges
    edges: list[EdgeRun] = []
    created_at: float = 0.0
    updated_at: float = 0.0
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
        """Every field not at its default; without input, output and step results unless
        ``payloads`` (with them, they are not copied); without steps and edges unless ``steps``."""
        bare = msgspec.structs.replace(self, input={}, output=None, steps={}, edges=[])
        d: JSONDict = msgspec.to_builtins(bare)
        if steps:
            d["steps"] = [s.to_dict(results=payloads) for s in self.steps.values()]
            d["edges"] = [[e.decided, e.taken] for e in self.edges]
        if payloads:
            d["input"] = self.input
            d["output"] = self.output
        return d

    @classmethod
    def from_dict(cls, d: JSONDict) -> Self:
        """The run a ``to_dict`` gave (today's or an earlier engine's); unknown keys are ignored."""
        rest = dict(d)
        steps = msgspec.convert(rest.pop("steps", None) or [], list[StepRun])
        run_input, output = rest.pop("input", None), rest.pop("output", None)
        run = msgspec.convert(rest, cls)
        run.steps = {s.name: s for s in steps}
        run.input = run_input or {}
        run.output = output
        return run


class WorkOrder(Model, kw_only=True, eq=False):
    id: str
    workflow: str
    status: WorkflowRunStatus
    input: JSONDict = {}
    created_at: float = 0.0
    updated_at: float = 0.0
    context: dict[str, str] = {}
    labels: dict[str, str] = {}
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
        """Every field not at its default; the input (not copied) only when ``payloads``."""
        d: JSONDict = msgspec.to_builtins(msgspec.structs.replace(self, input={}))
        if payloads:
            d["input"] = self.input
        return d

    @classmethod
    def from_dict(cls, d: JSONDict) -> Self:
        rest = dict(d)
        order_input = rest.pop("input", None)
        order = msgspec.convert(rest, cls)
        order.input = order_input or {}
        return order


class WorkflowEvent(Model, kw_only=True):
    """One change of a work order, a run or a step; numbered from the job events' sequence."""

    sequence: int
    type: WorkflowEventType
    time: float
    run_id: str = ""
    work_order_id: str = ""
    #: the run after the change, without input, output and step results
    run: JSONDict | None
    #: the work order after the change, without its input
    order: JSONDict | None
    step: str = ""
    previous_step_status: StepStatus | None = None
    previous_status: WorkflowRunStatus | None = None
    actor: str = "engine"
    reason: str = ""
    #: the wire form, cached by the API layer (encoded once for every watcher); never in the dict
    encoded: bytes | None = None

    def to_dict(self) -> JSONDict:
        d: JSONDict = msgspec.to_builtins(msgspec.structs.replace(self, encoded=None))
        return d
