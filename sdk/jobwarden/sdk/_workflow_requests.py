"""Building ``WorkflowService`` requests from plain Python values (shared by the clients and the CLI)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from jobwarden.contract import FINISHED_RUN_STATUSES, WorkflowRunStatus
from jobwarden.sdk._convert import check_input
from jobwarden.sdk._requests import int32
from jobwarden.v1 import workflow_pb2, workflow_service_pb2
from jobwarden.wire import dict_to_struct

__all__ = [
    "RUN_TERMINAL_STATUSES",
    "RunStatusSpec",
    "run_statuses",
    "start_request",
]

#: a run status: a ``WorkflowRunStatus`` (the contract's or the proto's number), or its name with or
#: without its prefix (``"failed"``, ``"WORKFLOW_RUN_STATUS_FAILED"``)
RunStatusSpec = WorkflowRunStatus | int | str

_RUN_PREFIX = "WORKFLOW_RUN_STATUS_"

#: the run statuses after which nothing changes (but a retry, which makes a new run)
RUN_TERMINAL_STATUSES = frozenset(int(status) for status in FINISHED_RUN_STATUSES)


def run_statuses(values: Iterable[RunStatusSpec] | None) -> list[workflow_pb2.WorkflowRunStatus.ValueType]:
    """Run statuses from contract members, numbers or names; ``ValueError`` naming the ones there
    are for an unknown one."""
    out: list[workflow_pb2.WorkflowRunStatus.ValueType] = []
    known = ", ".join(status.name for status in WorkflowRunStatus)
    for value in values or ():
        try:
            if isinstance(value, str):
                member = WorkflowRunStatus[value.strip().upper().removeprefix(_RUN_PREFIX)]
            else:
                member = WorkflowRunStatus(value)
        except (KeyError, ValueError):
            raise ValueError(f"unknown run status {value!r}: use one of {known}") from None
        out.append(workflow_pb2.WorkflowRunStatus.ValueType(int(member)))
    return out


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
    check_input(input, "a workflow's")
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
