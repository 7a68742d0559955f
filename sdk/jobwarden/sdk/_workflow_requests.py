"""Building ``WorkflowService`` requests from plain Python values (shared by the clients and the CLI)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from jobwarden.sdk._convert import _check_json
from jobwarden.sdk._requests import int32
from jobwarden.v1 import workflow_pb2, workflow_service_pb2
from jobwarden.wire import dict_to_struct

__all__ = [
    "RUN_TERMINAL_STATUSES",
    "RunStatusSpec",
    "run_status_name",
    "run_statuses",
    "start_request",
    "step_status_name",
]

#: a run status: a ``WorkflowRunStatus`` number, or its name with or without its prefix (``"failed"``)
RunStatusSpec = int | str

_RUN_PREFIX = "WORKFLOW_RUN_STATUS_"
_STEP_PREFIX = "STEP_STATUS_"

#: the run statuses after which nothing changes (but a retry, which makes a new run)
RUN_TERMINAL_STATUSES = frozenset(
    {
        workflow_pb2.WORKFLOW_RUN_STATUS_COMPLETED,
        workflow_pb2.WORKFLOW_RUN_STATUS_FAILED,
        workflow_pb2.WORKFLOW_RUN_STATUS_CANCELLED,
    }
)


def run_statuses(values: Iterable[RunStatusSpec] | None) -> list[workflow_pb2.WorkflowRunStatus.ValueType]:
    """Run statuses from numbers or names (``"failed"``, ``"WORKFLOW_RUN_STATUS_FAILED"``);
    ``ValueError`` naming the ones there are for an unknown one."""
    out: list[workflow_pb2.WorkflowRunStatus.ValueType] = []
    for value in values or ():
        if isinstance(value, str):
            name = value.strip().upper()
            name = name if name.startswith(_RUN_PREFIX) else _RUN_PREFIX + name
            try:
                out.append(workflow_pb2.WorkflowRunStatus.Value(name))
            except ValueError:
                raise ValueError(
                    f"unknown run status {value!r}: use one of {_known_run_statuses()}"
                ) from None
        else:
            if value not in workflow_pb2.WorkflowRunStatus.values() or value == 0:
                raise ValueError(f"unknown run status {value!r}: use one of {_known_run_statuses()}")
            out.append(workflow_pb2.WorkflowRunStatus.ValueType(value))
    return out


def _known_run_statuses() -> str:
    return ", ".join(run_status_name(v) for v in workflow_pb2.WorkflowRunStatus.values() if v)


def run_status_name(value: int) -> str:
    """``"COMPLETED"`` for ``WORKFLOW_RUN_STATUS_COMPLETED``; the number for one this SDK does not know."""
    try:
        return workflow_pb2.WorkflowRunStatus.Name(value).removeprefix(_RUN_PREFIX)  # type: ignore[arg-type]
    except ValueError:
        return str(value)


def step_status_name(value: int) -> str:
    """``"SKIPPED"`` for ``STEP_STATUS_SKIPPED``; the number for one this SDK does not know."""
    try:
        return workflow_pb2.StepStatus.Name(value).removeprefix(_STEP_PREFIX)  # type: ignore[arg-type]
    except ValueError:
        return str(value)


def start_request(
    workflow: str,
    input: Mapping[str, Any] | None = None,
    *,
    version: int = 0,
    context: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    correlation_id: str = "",
    idempotency_key: str = "",
) -> workflow_service_pb2.StartWorkflowRequest:
    """A ``StartWorkflowRequest``; ``TypeError``/``ValueError`` naming what the wire cannot hold."""
    if input is not None and not isinstance(input, Mapping):
        raise TypeError(f"a workflow's input must be a JSON object (a dict), got {type(input).__name__}")
    if input:
        _check_json(input, "input")
    for what, mapping in (("context", context), ("labels", labels)):
        for key, value in (mapping or {}).items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise TypeError(f"{what} maps strings to strings, got {key!r}: {value!r}")
    request = workflow_service_pb2.StartWorkflowRequest(
        workflow=workflow,
        version=int32(version, "version", 0),
        context=dict(context or {}),
        labels=dict(labels or {}),
        correlation_id=correlation_id,
        idempotency_key=idempotency_key,
    )
    dict_to_struct(input, request.input)
    return request
