"""The one spelling of jobwarden's contract: statuses, error kinds, modes, transitions and limits.

The enums mirror the proto enums in ``protos/jobwarden/v1/job.proto`` value for value (a test
checks it), without their prefixes: ``JobStatus.QUEUED == job_pb2.JOB_STATUS_QUEUED``. The
server, the SDK and the console import them from here and nowhere else.

This module imports nothing but the standard library, so the domain core can use it.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum

__all__ = [
    "ACTIVE_STATUSES",
    "FINISHED_RUN_STATUSES",
    "FINISHED_STEP_STATUSES",
    "OPERATOR_RETRYABLE_STATUSES",
    "TERMINAL_STATUSES",
    "TRANSITIONS",
    "WAITING_STATUSES",
    "EdgeKind",
    "ErrorKind",
    "ExecutionMode",
    "JobEventType",
    "JobStatus",
    "JoinMode",
    "Limits",
    "LockMode",
    "StartTimeoutAction",
    "StepStatus",
    "WorkflowEventType",
    "WorkflowLimits",
    "WorkflowRunStatus",
    "can_transition",
]


class JobStatus(IntEnum):
    """The life cycle of a job; a job's status is its last attempt's status."""

    #: accepted, waiting for a worker with free capacity for its action
    QUEUED = 1
    #: waiting for a time: ``run_at`` in the future, or a retry backoff
    DELAYED = 2
    #: its locks are not all free; it waits in FIFO order
    WAITING_FOR_LOCK = 3
    #: assigned to a worker; progress and message are live
    RUNNING = 4
    #: no update by the first deadline; may resume until the second deadline
    TIMED_OUT = 5
    #: terminal: finished with progress 100, result and variables stored
    COMPLETED = 6
    #: terminal: with an ``ErrorKind``
    FAILED = 7
    #: terminal: cancelled by an operator, an API call or a timeout policy
    CANCELLED = 8
    #: terminal: refused at admission
    REJECTED = 9

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATUSES


class ErrorKind(IntEnum):
    """Why a job FAILED (after OpenFn's Failed / Crashed / Killed / Lost)."""

    #: the executor returned a handled failure with a structured message
    JOB_ERROR = 1
    #: an unhandled exception in the executor; the whole stack trace is kept
    CRASHED = 2
    #: the execution timeout passed and the engine cancelled the job
    KILLED = 3
    #: the worker went silent past the second deadline and no one took the job over
    LOST = 4
    #: not started within the start timeout
    START_TIMEOUT = 5
    #: an engine fault; never silent
    ENGINE = 6


class LockMode(IntEnum):
    #: any number of SHARED holders together
    SHARED = 1
    #: one holder alone
    EXCLUSIVE = 2


class ExecutionMode(IntEnum):
    #: a first attempt: ``execute()``
    EXECUTE = 1
    #: a timed-out attempt taken over or re-attached: ``resume()`` with the last checkpoint
    RESUME = 2
    #: a new attempt after a failure: ``retry()`` with the last checkpoint
    RETRY = 3


class StartTimeoutAction(IntEnum):
    #: the job ends FAILED(START_TIMEOUT)
    FAIL = 1
    #: re-queued after a backoff until ``retry_count`` is spent, then FAILED(START_TIMEOUT)
    RETRY = 2
    #: left as it is (the run request, if any, is still submitted)
    NONE = 3


class JobEventType(IntEnum):
    #: the job was submitted
    SUBMITTED = 1
    #: the status changed
    STATUS_CHANGED = 2
    #: progress, message, step, checkpoint or variables changed
    UPDATED = 3
    #: cancellation of a running job was requested; the worker has been told
    CANCEL_REQUESTED = 4


class EdgeKind(IntEnum):
    """Which outcome of its source step an edge follows (workflow.proto)."""

    #: the source step COMPLETED
    SUCCESS = 1
    #: the source step FAILED (a handled failure)
    FAILURE = 2
    #: the source step ended, COMPLETED or FAILED
    ALWAYS = 3


class JoinMode(IntEnum):
    #: once every incoming edge is decided, and only if every one was taken (else SKIPPED)
    ALL = 1
    #: once every incoming edge is decided, if at least one was taken
    ANY = 2


class StepStatus(IntEnum):
    #: not reached yet: some incoming edge is undecided
    PENDING = 1
    #: its job is queued, waiting for locks, running or timed out; or its sub-workflow run runs
    RUNNING = 2
    #: a delay step waiting, or its job DELAYED
    DELAYED = 3
    COMPLETED = 4
    FAILED = 5
    CANCELLED = 6
    #: no edge reached it: it will not run in this run
    SKIPPED = 7


class WorkflowRunStatus(IntEnum):
    #: some step is running
    RUNNING = 1
    #: nothing runs; at least one step waits for a time
    DELAYED = 2
    #: terminal: every leaf reached succeeded, or every failure was handled
    COMPLETED = 3
    #: terminal: the error names the step
    FAILED = 4
    #: terminal: cancelled by a caller
    CANCELLED = 5


class WorkflowEventType(IntEnum):
    ORDER_CREATED = 1
    RUN_STARTED = 2
    RUN_STATUS_CHANGED = 3
    STEP_CHANGED = 4
    CANCEL_REQUESTED = 5


#: a run in one of these has ended for good
FINISHED_RUN_STATUSES: frozenset[WorkflowRunStatus] = frozenset(
    {WorkflowRunStatus.COMPLETED, WorkflowRunStatus.FAILED, WorkflowRunStatus.CANCELLED}
)
#: a step in one of these will not change again in its run
FINISHED_STEP_STATUSES: frozenset[StepStatus] = frozenset(
    {StepStatus.COMPLETED, StepStatus.FAILED, StepStatus.CANCELLED, StepStatus.SKIPPED}
)


class WorkflowLimits:
    """Bounds on a workflow definition; beyond them PutWorkflow is refused with INVALID_ARGUMENT."""

    MAX_NAME_LENGTH = 128
    MAX_STEP_NAME_LENGTH = 64
    #: a 1,000-step fan-out and fan-in fits with room to spare
    MAX_STEPS = 2000
    MAX_EDGES = 10_000
    #: the definition's encoded size (its JSON form)
    MAX_DEFINITION_BYTES = 4 << 20
    MAX_EXPRESSION_LENGTH = 4096
    MAX_DESCRIPTION_LENGTH = 4096
    #: sub-workflow runs started inside one another
    MAX_NESTING = 8


TERMINAL_STATUSES: frozenset[JobStatus] = frozenset(
    {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.REJECTED}
)
#: statuses of jobs that wait to run
WAITING_STATUSES: frozenset[JobStatus] = frozenset(
    {JobStatus.QUEUED, JobStatus.DELAYED, JobStatus.WAITING_FOR_LOCK}
)
#: statuses of jobs a worker holds (or held until it went silent)
ACTIVE_STATUSES: frozenset[JobStatus] = frozenset({JobStatus.RUNNING, JobStatus.TIMED_OUT})
#: an operator may start a new attempt of a job in these statuses
OPERATOR_RETRYABLE_STATUSES: frozenset[JobStatus] = frozenset({JobStatus.FAILED, JobStatus.CANCELLED})

_S = JobStatus
#: Every allowed change of status; ``None`` is "not yet submitted". Anything else is refused.
TRANSITIONS: Mapping[JobStatus | None, frozenset[JobStatus]] = {
    None: frozenset({_S.QUEUED, _S.DELAYED, _S.REJECTED}),
    # DELAYED: a start-timeout RETRY; FAILED: a start-timeout FAIL.
    _S.QUEUED: frozenset({_S.WAITING_FOR_LOCK, _S.RUNNING, _S.CANCELLED, _S.DELAYED, _S.FAILED}),
    _S.DELAYED: frozenset({_S.QUEUED, _S.CANCELLED}),
    # QUEUED: its locks were granted and it waits for a worker, ahead of jobs without locks.
    _S.WAITING_FOR_LOCK: frozenset({_S.QUEUED, _S.RUNNING, _S.CANCELLED, _S.DELAYED, _S.FAILED}),
    # DELAYED: the attempt failed with retries left. QUEUED: a draining worker handed the job back.
    _S.RUNNING: frozenset({_S.COMPLETED, _S.FAILED, _S.CANCELLED, _S.TIMED_OUT, _S.DELAYED, _S.QUEUED}),
    # RUNNING: an update arrived in time, or another worker took it over.
    # DELAYED: LOST with retries left by the retry policy.
    _S.TIMED_OUT: frozenset({_S.RUNNING, _S.FAILED, _S.CANCELLED, _S.DELAYED, _S.QUEUED}),
    _S.COMPLETED: frozenset(),
    _S.FAILED: frozenset({_S.QUEUED}),
    _S.CANCELLED: frozenset({_S.QUEUED}),
    _S.REJECTED: frozenset(),
}


def can_transition(current: JobStatus | None, target: JobStatus) -> bool:
    """Whether the state machine allows ``current -> target``."""
    return target in TRANSITIONS[current]


class Limits:
    """Bounds on every input; beyond them a request is refused with INVALID_ARGUMENT."""

    #: encoded size of a job's input, or of a result
    MAX_PAYLOAD_BYTES = 1 << 20
    #: levels of objects and lists in a JSON payload (input, result, step data): ``{"a": 1}`` is 1,
    #: ``{"a": [1]}`` 2. Well within the 100 levels of message nesting protobuf decoders accept.
    MAX_PAYLOAD_DEPTH = 20
    #: a gRPC message, whole
    MAX_MESSAGE_BYTES = 8 << 20
    MAX_ACTION_LENGTH = 200
    MAX_LABELS = 64
    MAX_LABEL_KEY_LENGTH = 128
    MAX_LABEL_VALUE_LENGTH = 1024
    MAX_VARIABLES = 256
    MAX_VARIABLE_KEY_LENGTH = 256
    MAX_VARIABLE_VALUE_LENGTH = 64 * 1024
    MAX_LOCKS_PER_JOB = 32
    MAX_RESOURCE_LENGTH = 512
    MAX_MESSAGE_LENGTH = 4096
    MAX_STRING_LENGTH = 1024
    MAX_STACK_TRACE_LENGTH = 256 * 1024
    MAX_STEP_NAME_LENGTH = 256
    MAX_BATCH_SUBMIT = 10_000
    MAX_PAGE_SIZE = 1000
    DEFAULT_PAGE_SIZE = 50
    MAX_LOG_LINES_PER_MESSAGE = 1000
    MAX_LOG_LINE_LENGTH = 16 * 1024
    MAX_PRIORITY = 1_000_000
    #: a duration or an interval: about 10 years
    MAX_DURATION_SECONDS = 10 * 365 * 24 * 3600
    MAX_RETRY_ATTEMPTS = 1000
    MAX_WORKER_CAPACITY = 100_000
    #: a submit's trace context: traceparent, tracestate and perhaps baggage, with room to spare
    MAX_TRACE_CONTEXT_ENTRIES = 8
    MAX_TRACE_CONTEXT_KEY_LENGTH = 64
    MAX_TRACE_CONTEXT_VALUE_LENGTH = 2048
