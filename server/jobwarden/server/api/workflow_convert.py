"""Translation between the workflow messages (``workflow.proto``) and the core's workflow objects."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jobwarden import wire
from jobwarden.contract import EdgeKind, ErrorKind, JoinMode, StepStatus
from jobwarden.server.core import (
    ActionStepDef,
    DelayStepDef,
    EdgeDef,
    InvalidArgument,
    Job,
    StepDef,
    SubWorkflowStepDef,
    WorkflowDef,
    WorkflowEvent,
    WorkflowRun,
    WorkOrder,
)
from jobwarden.v1 import workflow_pb2
from jobwarden.wire import dict_to_struct, duration, duration_seconds, struct_to_dict

from .convert import _retry_policy_to_proto, _timeouts_to_proto, retry_policy_from_proto, timeouts_from_proto

__all__ = [
    "definition_from_proto",
    "definition_to_proto",
    "order_to_proto",
    "run_to_proto",
    "workflow_event_to_proto",
]


def _struct_or_none(message: Any, name: str) -> dict[str, Any] | None:
    return struct_to_dict(getattr(message, name)) if message.HasField(name) else None


# -- inbound --------------------------------------------------------------------------------------


def definition_from_proto(message: workflow_pb2.WorkflowDefinition) -> WorkflowDef:
    steps = []
    for index, step in enumerate(message.steps):
        where = f"steps[{index}] ({step.name or '?'})"
        kind = step.WhichOneof("kind")
        action = delay = sub = None
        try:
            if kind == "action":
                a = step.action
                action = ActionStepDef(
                    action=a.action,
                    input=_struct_or_none(a, "input"),
                    priority=a.priority,
                    labels=dict(a.labels),
                    locks=[(lock.resource, int(lock.mode) or 2) for lock in a.locks],
                    timeouts=timeouts_from_proto(a.timeouts),
                    retry_policy=retry_policy_from_proto(a.retry_policy)
                    if a.HasField("retry_policy")
                    else None,
                )
            elif kind == "delay":
                if not step.delay.HasField("duration"):
                    raise InvalidArgument("delay.duration is required")
                delay = DelayStepDef(duration_seconds(step.delay.duration))
            elif kind == "workflow":
                w = step.workflow
                sub = SubWorkflowStepDef(
                    workflow=w.workflow, version=w.version, input=_struct_or_none(w, "input")
                )
        except InvalidArgument as error:
            raise InvalidArgument(f"{where}: {error.message}") from None
        try:
            join = JoinMode(step.join or JoinMode.ALL)
        except ValueError:
            raise InvalidArgument(f"{where}: unknown join mode {step.join}") from None
        steps.append(
            StepDef(
                name=step.name,
                description=step.description,
                action=action,
                delay=delay,
                workflow=sub,
                join=join,
                continue_on_crash=step.continue_on_crash,
            )
        )
    edges = []
    for index, edge in enumerate(message.edges):
        try:
            kind_value = EdgeKind(edge.kind or EdgeKind.SUCCESS)
        except ValueError:
            raise InvalidArgument(
                f"edges[{index}] ({edge.source} -> {edge.target}): unknown edge kind {edge.kind}"
            ) from None
        edges.append(
            EdgeDef(source=edge.source, target=edge.target, kind=kind_value, condition=edge.condition)
        )
    return WorkflowDef(
        name=message.name,
        steps=steps,
        edges=edges,
        description=message.description,
        context=dict(message.context),
        output=_struct_or_none(message, "output"),
        run_timeout=duration_seconds(message.run_timeout) if message.HasField("run_timeout") else None,
        continue_on_crash=message.continue_on_crash,
    )


# -- outbound -------------------------------------------------------------------------------------


def definition_to_proto(definition: WorkflowDef) -> workflow_pb2.WorkflowDefinition:
    message = workflow_pb2.WorkflowDefinition(
        name=definition.name,
        version=definition.version,
        description=definition.description,
        context=definition.context,
        continue_on_crash=definition.continue_on_crash,
        created_by=definition.created_by,
        digest=definition.digest,
    )
    if definition.created_at:
        wire.timestamp(definition.created_at, message.created_at)
    if definition.run_timeout is not None:
        message.run_timeout.CopyFrom(duration(definition.run_timeout))
    if definition.output is not None:
        dict_to_struct(definition.output, message.output)
    for step in definition.steps:
        out = message.steps.add(
            name=step.name,
            description=step.description,
            join=int(step.join),
            continue_on_crash=step.continue_on_crash,
        )
        if step.action is not None:
            a = step.action
            out.action.action = a.action
            out.action.priority = a.priority
            out.action.labels.update(a.labels)
            if a.input is not None:
                dict_to_struct(a.input, out.action.input)
            for resource, mode in a.locks:
                out.action.locks.add(resource=resource, mode=mode)
            out.action.timeouts.CopyFrom(_timeouts_to_proto(a.timeouts.to_dict()))
            policy = _retry_policy_to_proto(a.retry_policy.to_dict() if a.retry_policy else None)
            if policy is not None:
                out.action.retry_policy.CopyFrom(policy)
        elif step.delay is not None:
            out.delay.duration.CopyFrom(duration(step.delay.duration))
        elif step.workflow is not None:
            out.workflow.workflow = step.workflow.workflow
            out.workflow.version = step.workflow.version
            if step.workflow.input is not None:
                dict_to_struct(step.workflow.input, out.workflow.input)
    for edge in definition.edges:
        message.edges.add(
            source=edge.source, target=edge.target, kind=int(edge.kind), condition=edge.condition
        )
    return message


def _error(message: Any, error: Mapping[str, Any] | None) -> None:
    if error:
        message.error.CopyFrom(
            workflow_pb2.WorkflowError(
                step=error.get("step", ""),
                message=error.get("message", ""),
                kind=error.get("kind", ErrorKind.JOB_ERROR),
                job_id=error.get("job_id", ""),
            )
        )


def _times(message: Any, d: Mapping[str, Any], names: tuple[str, ...]) -> None:
    for name in names:
        value = d.get(name)
        if value:
            wire.timestamp(value, getattr(message, name))


def run_dict_to_proto(
    d: Mapping[str, Any], live: Mapping[str, Job] | None = None
) -> workflow_pb2.WorkflowRun:
    """A run from its dict form (``WorkflowRun.to_dict``, perhaps without payloads), with the live
    status of its steps' unfinished jobs when ``live`` has them."""
    run = workflow_pb2.WorkflowRun(
        id=d["id"],
        work_order_id=d["work_order_id"],
        workflow=d["workflow"],
        version=d["version"],
        number=d.get("number", 1),
        status=d["status"],
        context=d.get("context") or {},
        rerun_from_step=d.get("rerun_from_step", ""),
        previous_run_id=d.get("previous_run_id", ""),
        parent_run_id=d.get("parent_run_id", ""),
        parent_step=d.get("parent_step", ""),
        correlation_id=d.get("correlation_id", ""),
        cancel_requested=d.get("cancel_requested", False),
        status_reason=d.get("status_reason", ""),
        sequence=d.get("sequence", 0),
    )
    _times(run, d, ("created_at", "updated_at", "finished_at", "deadline"))
    _error(run, d.get("error"))
    if d.get("input"):
        dict_to_struct(d["input"], run.input)
    if d.get("output") is not None:
        dict_to_struct(d["output"], run.output)
    live = live or {}
    for s in d.get("steps") or ():
        step = run.steps.add(
            name=s["name"],
            status=s.get("status", StepStatus.PENDING),
            job_id=s.get("job_id", ""),
            child_run_id=s.get("child_run_id", ""),
            reused_from_run_id=s.get("reused_from_run_id", ""),
            attempt=s.get("attempt", 0),
            job_variables=s.get("job_variables") or {},
        )
        _times(step, s, ("started_at", "finished_at", "wake_at"))
        _error(step, s.get("error"))
        if s.get("result") is not None:
            dict_to_struct(s["result"], step.result)
        job = live.get(s["name"])
        if job is not None:
            step.job_status = int(job.status)  # type: ignore[assignment]
            step.progress = job.progress
            step.message = job.message
            step.attempt = job.attempt
            if job.status.name == "DELAYED" and s.get("status") == StepStatus.RUNNING:
                step.status = int(StepStatus.DELAYED)  # type: ignore[assignment]
                if job.deadlines.wake:
                    wire.timestamp(job.deadlines.wake, step.wake_at)
    return run


def run_to_proto(run: WorkflowRun, live: Mapping[str, Job] | None = None) -> workflow_pb2.WorkflowRun:
    message = run_dict_to_proto(run.to_dict(), live)
    # Edges carry their definition's ends: the run keeps only their decisions.
    return message


def with_edges(
    message: workflow_pb2.WorkflowRun, run: WorkflowRun, definition: WorkflowDef
) -> workflow_pb2.WorkflowRun:
    for edge, state in zip(definition.edges, run.edges, strict=False):
        message.edges.add(
            source=edge.source,
            target=edge.target,
            kind=int(edge.kind),
            decided=state.decided,
            taken=state.taken,
        )
    return message


def order_dict_to_proto(d: Mapping[str, Any]) -> workflow_pb2.WorkOrder:
    order = workflow_pb2.WorkOrder(
        id=d["id"],
        workflow=d["workflow"],
        status=d["status"],
        context=d.get("context") or {},
        labels=d.get("labels") or {},
        correlation_id=d.get("correlation_id", ""),
        idempotency_key=d.get("idempotency_key", ""),
        run_count=d.get("run_count", 0),
        last_run_id=d.get("last_run_id", ""),
        version=d.get("version", 0),
        created_by=d.get("created_by", ""),
        sequence=d.get("sequence", 0),
    )
    _times(order, d, ("created_at", "updated_at"))
    if d.get("input"):
        dict_to_struct(d["input"], order.input)
    return order


def order_to_proto(order: WorkOrder) -> workflow_pb2.WorkOrder:
    return order_dict_to_proto(order.to_dict())


def workflow_event_to_proto(ev: WorkflowEvent) -> workflow_pb2.WorkflowEvent:
    message = workflow_pb2.WorkflowEvent(
        sequence=ev.sequence,
        type=int(ev.type),  # type: ignore[arg-type]
        step=ev.step,
        previous_step_status=int(ev.previous_step_status or 0),  # type: ignore[arg-type]
        previous_status=int(ev.previous_status or 0),  # type: ignore[arg-type]
        actor=ev.actor,
        reason=ev.reason,
    )
    wire.timestamp(ev.time, message.time)
    if ev.run is not None:
        message.run.CopyFrom(run_dict_to_proto(ev.run))
    if ev.order is not None:
        message.order.CopyFrom(order_dict_to_proto(ev.order))
    return message
