"""How a run advances, as pure decisions over its state (no store, no timers, no jobs).

- An edge is decided when its source step finishes: taken if the source's outcome matches the
  edge's kind (SUCCESS: COMPLETED; FAILURE: FAILED; ALWAYS: either) and its condition, if any, gives
  true. A SKIPPED or CANCELLED source takes none of its edges.
- A PENDING step is decided once every incoming edge is: JOIN_MODE_ALL runs it only if every edge
  was taken, JOIN_MODE_ANY if one was; otherwise it is SKIPPED. A step without incoming edges is a
  first step and runs when the run starts.
- A run ends once every step has: COMPLETED when every FAILED step is handled (one of its FAILURE or
  ALWAYS edges was taken) and no step was CANCELLED outside a cancel of the run; FAILED naming the
  first step (in the definition's order) that is not.
"""

from __future__ import annotations

from typing import Any

from jobwarden.contract import EdgeKind, ErrorKind, JoinMode, StepStatus, WorkflowRunStatus

from .checks import CompiledWorkflow
from .expressions import to_cel
from .runs import StepRun, WorkflowError, WorkflowRun

__all__ = [
    "activation",
    "default_output",
    "edge_matches",
    "join_decision",
    "run_outcome",
    "step_view",
]


def edge_matches(kind: EdgeKind, source: StepStatus) -> bool:
    """Whether an edge of ``kind`` follows a source step that ended ``source`` (before its condition)."""
    if source is StepStatus.COMPLETED:
        return kind in (EdgeKind.SUCCESS, EdgeKind.ALWAYS)
    if source is StepStatus.FAILED:
        return kind in (EdgeKind.FAILURE, EdgeKind.ALWAYS)
    return False


def join_decision(join: JoinMode, incoming: list[tuple[bool, bool]]) -> bool | None:
    """None while some (decided, taken) incoming edge is undecided; then whether the step runs."""
    if any(not decided for decided, _ in incoming):
        return None
    taken = [t for _, t in incoming]
    return any(taken) if join is JoinMode.ANY else all(taken)


def step_view(step: StepRun) -> dict[str, Any]:
    """A finished step as expressions see it: ``steps.NAME``."""
    return {
        "status": step.status.name,
        "result": step.result or {},
        "variables": step.job_variables,
        "error": (
            {"kind": step.error.kind.name, "message": step.error.message, "step": step.error.step}
            if step.error
            else {}
        ),
    }


def activation(run: WorkflowRun, source: StepRun | None = None) -> dict[str, Any]:
    """The names an expression of ``run`` sees (``step`` on an edge from ``source``)."""
    finished = {name: step_view(s) for name, s in run.steps.items() if s.finished}
    names: dict[str, Any] = {
        "input": to_cel(run.input),
        "context": to_cel(run.context),
        "steps": to_cel(finished),
    }
    if source is not None:
        names["step"] = to_cel(step_view(source))
    return names


def _handled(run: WorkflowRun, compiled: CompiledWorkflow, name: str) -> bool:
    for index in compiled.graph.outgoing[name]:
        edge = compiled.definition.edges[index]
        if edge.kind in (EdgeKind.FAILURE, EdgeKind.ALWAYS) and run.edges[index].taken:
            return True
    return False


def run_outcome(
    run: WorkflowRun, compiled: CompiledWorkflow
) -> tuple[WorkflowRunStatus, WorkflowError | None] | None:
    """None while some step is unfinished; else COMPLETED, or FAILED with the error naming the step."""
    for step in run.steps.values():
        if not step.finished:
            return None
    for name in compiled.graph.names:
        step = run.steps[name]
        if step.status is StepStatus.FAILED and not _handled(run, compiled, name):
            error = step.error or WorkflowError(f"step {name!r} failed", step=name)
            return WorkflowRunStatus.FAILED, WorkflowError(
                message=f"step {name!r} failed: {error.message}",
                step=name,
                kind=error.kind,
                job_id=error.job_id,
            )
        if step.status is StepStatus.CANCELLED:
            return WorkflowRunStatus.FAILED, WorkflowError(
                message=f"step {name!r} was cancelled: "
                + (step.error.message if step.error else "its job was cancelled"),
                step=name,
                kind=ErrorKind.JOB_ERROR,
                job_id=step.job_id,
            )
    return WorkflowRunStatus.COMPLETED, None


def default_output(run: WorkflowRun, compiled: CompiledWorkflow) -> dict[str, Any]:
    """The results of the leaf steps that completed, by name."""
    return {
        name: run.steps[name].result or {}
        for name in compiled.leaves
        if run.steps[name].status is StepStatus.COMPLETED
    }
