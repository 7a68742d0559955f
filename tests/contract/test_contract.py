"""The contract module spells the proto enums exactly, and the state machine is whole."""

from __future__ import annotations

from enum import IntEnum

import pytest
from jobwarden import contract
from jobwarden.v1 import job_pb2, workflow_pb2

PAIRS: list[tuple[type[IntEnum], object, str]] = [
    (contract.JobStatus, job_pb2.JobStatus, "JOB_STATUS_"),
    (contract.ErrorKind, job_pb2.ErrorKind, "ERROR_KIND_"),
    (contract.LockMode, job_pb2.LockMode, "LOCK_MODE_"),
    (contract.ExecutionMode, job_pb2.ExecutionMode, "EXECUTION_MODE_"),
    (contract.StartTimeoutAction, job_pb2.StartTimeoutAction, "START_TIMEOUT_ACTION_"),
    (contract.JobEventType, job_pb2.JobEventType, "JOB_EVENT_TYPE_"),
    (contract.EdgeKind, workflow_pb2.EdgeKind, "EDGE_KIND_"),
    (contract.JoinMode, workflow_pb2.JoinMode, "JOIN_MODE_"),
    (contract.StepStatus, workflow_pb2.StepStatus, "STEP_STATUS_"),
    (contract.WorkflowRunStatus, workflow_pb2.WorkflowRunStatus, "WORKFLOW_RUN_STATUS_"),
    (contract.WorkflowEventType, workflow_pb2.WorkflowEventType, "WORKFLOW_EVENT_TYPE_"),
]


@pytest.mark.parametrize(("ours", "theirs", "prefix"), PAIRS)
def test_enums_mirror_the_proto(ours: type[IntEnum], theirs: object, prefix: str) -> None:
    proto = {name.removeprefix(prefix): value for name, value in theirs.items()}  # type: ignore[attr-defined]
    assert proto.pop("UNSPECIFIED") == 0
    assert {m.name: m.value for m in ours} == proto


def test_every_status_has_a_row_and_terminal_ones_only_lead_to_a_retry() -> None:
    assert set(contract.TRANSITIONS) == {None, *contract.JobStatus}
    for status in contract.TERMINAL_STATUSES:
        assert contract.TRANSITIONS[status] <= {contract.JobStatus.QUEUED}
    assert contract.can_transition(contract.JobStatus.FAILED, contract.JobStatus.QUEUED)
    assert not contract.can_transition(contract.JobStatus.COMPLETED, contract.JobStatus.QUEUED)
    assert not contract.can_transition(contract.JobStatus.RUNNING, contract.JobStatus.REJECTED)
