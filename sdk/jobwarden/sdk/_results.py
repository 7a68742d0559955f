"""What a worker reports when an attempt ends: the ``JobResult`` of a return value, a failure, a crash."""

from __future__ import annotations

import traceback
from collections.abc import Mapping
from typing import Any

from jobwarden.contract import ErrorKind, Limits
from jobwarden.sdk._convert import normalize_object
from jobwarden.sdk._exceptions import JobFailed, JobwardenError
from jobwarden.sdk._outbox import JobKey
from jobwarden.v1 import executor_service_pb2 as pb
from jobwarden.v1 import job_pb2
from jobwarden.wire import dict_to_struct

__all__ = ["cancelled", "completed", "crash", "failure", "trace"]


def completed(
    key: JobKey,
    value: Any,
    *,
    action: str,
    job_variables: Mapping[str, str],
    workflow_variables: Mapping[str, str],
) -> pb.JobResult:
    """The result of an attempt that returned ``value``, or a CRASHED failure if it is not JSON or too big."""
    try:
        data = normalize_object(value)
        result = pb.JobResult(
            job_id=key[0],
            attempt=key[1],
            status=job_pb2.JOB_STATUS_COMPLETED,
            job_variables=job_variables,
            workflow_variables=workflow_variables,
        )
        if data is not None:
            dict_to_struct(data, result.result)
    except (TypeError, ValueError) as error:
        return failure(
            key,
            ErrorKind.CRASHED,
            f"{action}: the executor returned a result that is not JSON: {error}",
            retryable=False,
        )
    size = result.result.ByteSize()
    if size > Limits.MAX_PAYLOAD_BYTES:
        return failure(
            key,
            ErrorKind.CRASHED,
            f"the result is {size} bytes encoded, over the limit of {Limits.MAX_PAYLOAD_BYTES}",
            retryable=False,
        )
    return result


def cancelled(key: JobKey) -> pb.JobResult:
    """An attempt that stopped itself with ``JobCancelled`` when nobody had cancelled it."""
    return pb.JobResult(job_id=key[0], attempt=key[1], status=job_pb2.JOB_STATUS_CANCELLED)


def failure(
    key: JobKey,
    kind: ErrorKind,
    message: str,
    *,
    stack_trace: str = "",
    step: str | None = None,
    retryable: bool = True,
) -> pb.JobResult:
    return pb.JobResult(
        job_id=key[0],
        attempt=key[1],
        status=job_pb2.JOB_STATUS_FAILED,
        error=job_pb2.JobError(
            kind=job_pb2.ErrorKind.ValueType(kind),
            message=message[: Limits.MAX_MESSAGE_LENGTH],
            stack_trace=stack_trace,
            step=step or "",
            retryable=retryable,
        ),
    )


def crash(key: JobKey, error: BaseException, step: str | None) -> pb.JobResult:
    """A CRASHED failure for an exception the executor did not handle, with its whole stack trace."""
    message = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    if isinstance(error, JobwardenError) and not isinstance(error, JobFailed):
        message = f"{type(error).__name__}: {error.message}"
    return failure(key, ErrorKind.CRASHED, message, stack_trace=trace(error), step=step)


def trace(error: BaseException) -> str:
    """The whole stack trace with its cause chain, cut in the middle if it is over the limit."""
    text = "".join(traceback.format_exception(error))
    limit = Limits.MAX_STACK_TRACE_LENGTH
    if len(text) > limit:
        half = limit // 2 - 40
        text = f"{text[:half]}\n... ({len(text) - 2 * half} characters cut) ...\n{text[-half:]}"
    return text
