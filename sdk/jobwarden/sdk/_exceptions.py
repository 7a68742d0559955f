"""Every error the SDK raises, in one tree::

    JobwardenError                   anything jobwarden raises on purpose
    ├── EngineUnavailable            the engine cannot be reached (UNAVAILABLE, DEADLINE_EXCEEDED)
    ├── EngineError                  the engine answered with an error of its own (INTERNAL, UNKNOWN, ...)
    │   ├── InvalidRequest           INVALID_ARGUMENT: the request is malformed or out of limits
    │   ├── JobNotFound              NOT_FOUND: no such job (action, lock holder, workflow, run...)
    │   ├── InvalidTransition        FAILED_PRECONDITION: the state machine refused the change
    │   │   └── LockConflict         the locks asked for are held by someone else (also ABORTED)
    │   ├── Rejected                 RESOURCE_EXHAUSTED: an admission limit was reached
    │   └── PermissionDenied         UNAUTHENTICATED, PERMISSION_DENIED
    ├── ExecutorDefinitionError      an executor or a worker is set up wrongly (found before any job runs)
    ├── WorkflowDefinitionError      a workflow built or read from a file wrongly (found before it is sent)
    ├── StepError                    ``ctx.step`` misused (a name used twice in one attempt)
    ├── JobFailed                    raised by an executor: a handled failure (FAILED, JOB_ERROR)
    └── JobCancelled                 raised by an executor (or ``ctx.raise_if_cancelled``): stop, cancelled

Every error carries the gRPC ``code`` it stands for and, where there is one, the ``job_id`` it is
about. ``from_rpc_error`` is the one place that turns a gRPC error into this tree.

Every client sees only this tree: ``JobClient``, ``SyncJobClient``, the ``jobwarden`` CLI and the
console (which catches ``JobwardenError`` and shows its message). The engine's core has its own
domain errors (it imports no grpc), mapped to gRPC codes in one place, ``jobwarden.server.api.errors``;
a client never sees those classes, only the code and message they become.
"""

from __future__ import annotations

import grpc
from jobwarden.contract import ErrorKind

__all__ = [
    "EngineError",
    "EngineUnavailable",
    "ExecutorDefinitionError",
    "InvalidRequest",
    "InvalidTransition",
    "JobCancelled",
    "JobFailed",
    "JobNotFound",
    "JobwardenError",
    "LockConflict",
    "PermissionDenied",
    "Rejected",
    "StepError",
    "WorkflowDefinitionError",
    "from_rpc_error",
]


class JobwardenError(Exception):
    """The root of every error jobwarden raises on purpose."""

    #: the gRPC status code this error stands for
    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str, *, job_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.job_id = job_id

    def __str__(self) -> str:
        return self.message


class EngineUnavailable(JobwardenError):
    """The engine could not be reached (down, wrong address, or the call timed out)."""

    code = grpc.StatusCode.UNAVAILABLE


class EngineError(JobwardenError):
    """The engine answered with an error; ``message`` is the engine's own message."""

    code = grpc.StatusCode.INTERNAL


class InvalidRequest(EngineError):
    """The request was malformed or beyond a limit; nothing was changed."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class JobNotFound(EngineError):
    """No job with that id (or no such action, lock or holder)."""

    code = grpc.StatusCode.NOT_FOUND


class InvalidTransition(EngineError):
    """The state machine refused the change (e.g. retrying a running job); nothing was changed."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class LockConflict(InvalidTransition):
    """The requested locks are held by someone else."""

    code = grpc.StatusCode.ABORTED


class Rejected(EngineError):
    """An admission limit was reached (queue limit of the action, message size)."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class PermissionDenied(EngineError):
    """The caller is not authenticated or not allowed."""

    code = grpc.StatusCode.PERMISSION_DENIED


class ExecutorDefinitionError(JobwardenError, TypeError):
    """An executor class or a worker is set up wrongly; raised before any job runs."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class WorkflowDefinitionError(JobwardenError, ValueError):
    """A workflow definition built (``Workflow``) or read from a file wrongly; nothing was sent.

    The message names the file (``source``) or the workflow, the ``step`` and the field at fault:
    ``media.toml: step 'ingest': timeouts.heartbeat: 'soon' is not a duration (...)``.
    """

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        workflow: str | None = None,
        step: str | None = None,
        field: str | None = None,
    ) -> None:
        where = [source if source else f"workflow {workflow!r}" if workflow else ""]
        if step:
            where.append(f"step {step!r}")
        if field:
            where.append(field)
        super().__init__(": ".join([*filter(None, where), message]))
        #: the detail alone, without where it is
        self.detail = message
        self.source = source
        self.workflow = workflow
        self.step = step
        self.field = field


class StepError(JobwardenError, ValueError):
    """``ctx.step`` was misused, e.g. the same step name twice in one attempt."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class JobFailed(JobwardenError):
    """Raise from an executor for a handled failure: the job ends FAILED with this message only.

    ``kind`` is the error kind recorded (JOB_ERROR unless said otherwise); ``retryable=False`` tells
    the engine that retrying cannot help, so the retry policy is not applied.
    """

    code = grpc.StatusCode.ABORTED

    def __init__(
        self,
        message: str,
        *,
        kind: ErrorKind = ErrorKind.JOB_ERROR,
        retryable: bool = True,
        job_id: str | None = None,
    ) -> None:
        super().__init__(message, job_id=job_id)
        self.kind = ErrorKind(kind)
        self.retryable = retryable


class JobCancelled(JobwardenError):
    """Raise from an executor (or call ``ctx.raise_if_cancelled()``) to stop a job being cancelled."""

    code = grpc.StatusCode.CANCELLED


_BY_CODE: dict[grpc.StatusCode, type[JobwardenError]] = {
    grpc.StatusCode.UNAVAILABLE: EngineUnavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: EngineUnavailable,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidRequest,
    grpc.StatusCode.OUT_OF_RANGE: InvalidRequest,
    grpc.StatusCode.NOT_FOUND: JobNotFound,
    grpc.StatusCode.FAILED_PRECONDITION: InvalidTransition,
    grpc.StatusCode.ABORTED: LockConflict,
    grpc.StatusCode.ALREADY_EXISTS: LockConflict,
    grpc.StatusCode.RESOURCE_EXHAUSTED: Rejected,
    grpc.StatusCode.UNAUTHENTICATED: PermissionDenied,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
}


def from_rpc_error(
    error: grpc.RpcError, *, job_id: str | None = None, address: str | None = None
) -> JobwardenError:
    """The ``JobwardenError`` for a gRPC error, keeping the engine's message and the status code."""
    # grpc.aio's AioRpcError is not a grpc.Call, but both have code() and details().
    code_of = getattr(error, "code", None)
    details_of = getattr(error, "details", None)
    code = code_of() if callable(code_of) else grpc.StatusCode.UNKNOWN
    details = (details_of() if callable(details_of) else None) or str(error)
    cls = _BY_CODE.get(code, EngineError)
    if cls is EngineUnavailable:
        where = f" at {address}" if address else ""
        details = f"cannot reach the engine{where}: {details}"
    result = cls(details, job_id=job_id)
    result.code = code
    return result
