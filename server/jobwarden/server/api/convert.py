"""Translation between the wire (``jobwarden.v1`` messages) and the domain core. Nothing else."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from google.protobuf import duration_pb2, timestamp_pb2
from jobwarden import wire
from jobwarden.contract import ErrorKind, ExecutionMode, JobStatus, StartTimeoutAction
from jobwarden.server.core import (
    ActionConfig,
    ActionStatsView,
    Event,
    InvalidArgument,
    JobError,
    LockHolding,
    LogLine,
    RetryPolicy,
    RunRequest,
    StartTimeout,
    SubmitSpec,
    Timeouts,
    WorkflowRunRequest,
    check_lock_requests,
)
from jobwarden.v1 import job_pb2, job_service_pb2, lock_service_pb2
from jobwarden.wire import dict_to_struct, duration, duration_seconds, struct_to_dict, timestamp_seconds

__all__ = [
    "action_config_from_proto",
    "action_config_to_proto",
    "action_stats_to_proto",
    "event_to_proto",
    "job_to_proto",
    "lock_holding_to_proto",
    "log_line_to_proto",
    "retry_policy_from_proto",
    "submit_spec_from_proto",
    "timeouts_from_proto",
    "timestamp",
    "wire_enum",
]


def wire_enum(value: int) -> Any:
    """A contract enum as a proto enum field value: the numbers are the same (a test checks it); the
    generated stubs only type each enum apart."""
    return int(value)


def timestamp(seconds: float | None) -> timestamp_pb2.Timestamp | None:
    return None if seconds is None else wire.timestamp(seconds)


def _duration(seconds: float | None) -> duration_pb2.Duration | None:
    return None if seconds is None else duration(seconds)


def _optional_duration(message: Any, name: str) -> float | None:
    return duration_seconds(getattr(message, name)) if message.HasField(name) else None


# -- inbound --------------------------------------------------------------------------------------


def timeouts_from_proto(message: job_pb2.JobTimeouts) -> Timeouts:
    start = None
    if message.HasField("start"):
        s = message.start
        if not s.HasField("duration"):
            raise InvalidArgument("timeouts.start.duration is required")
        run_request = None
        if s.HasField("run_request"):
            workflow = None
            if s.run_request.HasField("workflow"):
                w = s.run_request.workflow
                workflow = WorkflowRunRequest(
                    workflow=w.workflow,
                    version=w.version,
                    input=struct_to_dict(w.input) if w.HasField("input") else None,
                    context=dict(w.context),
                )
            run_request = RunRequest(
                action=s.run_request.action,
                input=struct_to_dict(s.run_request.input),
                correlation_id=s.run_request.correlation_id,
                workflow=workflow,
            )
        action = s.action or StartTimeoutAction.FAIL
        try:
            start_action = StartTimeoutAction(action)
        except ValueError:
            raise InvalidArgument(f"timeouts.start.action: unknown start timeout action {action}") from None
        start = StartTimeout(
            duration=duration_seconds(s.duration),
            action=start_action,
            retry_interval=duration_seconds(s.retry_interval),
            retry_backoff_exponential=s.retry_backoff_exponential,
            retry_count=s.retry_count,
            run_request=run_request,
        )
    return Timeouts(
        start=start,
        heartbeat=_optional_duration(message, "heartbeat"),
        takeover=_optional_duration(message, "takeover"),
        execution=_optional_duration(message, "execution"),
    )


def retry_policy_from_proto(message: job_pb2.RetryPolicy) -> RetryPolicy:
    kinds = set()
    for kind in message.non_retryable_kinds:
        try:
            kinds.add(ErrorKind(kind))
        except ValueError:
            raise InvalidArgument(f"retry_policy.non_retryable_kinds: unknown error kind {kind}") from None
    return RetryPolicy(
        max_attempts=message.max_attempts or 1,
        initial_interval=duration_seconds(message.initial_interval)
        if message.HasField("initial_interval")
        else 1.0,
        backoff_coefficient=message.backoff_coefficient or 2.0,
        max_interval=duration_seconds(message.max_interval),
        non_retryable_kinds=frozenset(kinds),
    )


def submit_spec_from_proto(request: job_service_pb2.SubmitJobRequest) -> SubmitSpec:
    return SubmitSpec(
        action=request.action,
        input=struct_to_dict(request.input),
        priority=request.priority,
        labels=dict(request.labels),
        locks=[(lock.resource, lock.mode) for lock in request.locks],
        timeouts=timeouts_from_proto(request.timeouts),
        retry_policy=retry_policy_from_proto(request.retry_policy)
        if request.HasField("retry_policy")
        else None,
        run_at=timestamp_seconds(request.run_at) if request.HasField("run_at") else None,
        correlation_id=request.correlation_id,
        idempotency_key=request.idempotency_key,
        workflow_variables=dict(request.workflow_variables),
        trace_context=dict(request.trace_context),
    )


def action_config_from_proto(message: job_pb2.ActionConfig) -> ActionConfig:
    templates = []
    for lock in message.lock_templates:
        templates.append((lock.resource, int(lock.mode)))
    return ActionConfig(
        action=message.action,
        timeouts=timeouts_from_proto(message.timeouts),
        retry_policy=retry_policy_from_proto(message.retry_policy)
        if message.HasField("retry_policy")
        else None,
        max_running=message.max_running,
        max_queued=message.max_queued,
        lock_templates=check_lock_requests(templates, "lock_templates"),
        paused=message.paused,
    )


# -- outbound -------------------------------------------------------------------------------------


def _timeouts_to_proto(t: Mapping[str, Any] | None) -> job_pb2.JobTimeouts:
    if not t:
        return job_pb2.JobTimeouts()
    message = job_pb2.JobTimeouts(
        heartbeat=_duration(t.get("heartbeat")),
        takeover=_duration(t.get("takeover")),
        execution=_duration(t.get("execution")),
    )
    start = t.get("start")
    if start:
        run_request = start.get("run_request")
        message.start.CopyFrom(
            job_pb2.StartTimeout(
                duration=_duration(start["duration"]),
                action=start.get("action", StartTimeoutAction.FAIL),
                retry_interval=_duration(start.get("retry_interval") or 0.0),
                retry_backoff_exponential=start.get("retry_backoff_exponential", False),
                retry_count=start.get("retry_count", 0),
                run_request=_run_request_to_proto(run_request) if run_request else None,
            )
        )
    return message


def _run_request_to_proto(r: Mapping[str, Any]) -> job_pb2.RunRequest:
    message = job_pb2.RunRequest(
        action=r["action"], input=dict_to_struct(r.get("input")), correlation_id=r.get("correlation_id", "")
    )
    workflow = r.get("workflow")
    if workflow:
        message.workflow.workflow = workflow["workflow"]
        message.workflow.version = workflow.get("version", 0)
        message.workflow.context.update(workflow.get("context") or {})
        if workflow.get("input") is not None:
            dict_to_struct(workflow["input"], message.workflow.input)
    return message


def _retry_policy_to_proto(p: Mapping[str, Any] | None) -> job_pb2.RetryPolicy | None:
    return _retry_policy(p) if p else None


def _retry_policy(p: Mapping[str, Any]) -> job_pb2.RetryPolicy:
    return job_pb2.RetryPolicy(
        max_attempts=p.get("max_attempts", 1),
        initial_interval=_duration(p.get("initial_interval", 1.0)),
        backoff_coefficient=p.get("backoff_coefficient", 2.0),
        max_interval=_duration(p.get("max_interval") or 0.0),
        non_retryable_kinds=p.get("non_retryable_kinds", []),
    )


def _error_to_proto(e: Mapping[str, Any] | None) -> job_pb2.JobError | None:
    return _job_error(e) if e else None


def _job_error(e: Mapping[str, Any]) -> job_pb2.JobError:
    return job_pb2.JobError(
        kind=e["kind"],
        message=e.get("message", ""),
        stack_trace=e.get("stack_trace", ""),
        step=e.get("step", ""),
        retryable=e.get("retryable", True),
    )


def job_error_from_proto(message: job_pb2.JobError) -> JobError:
    kind = message.kind or ErrorKind.JOB_ERROR
    return JobError(
        kind=ErrorKind(kind) if kind in ErrorKind._value2member_map_ else ErrorKind.JOB_ERROR,
        message=message.message,
        stack_trace=message.stack_trace,
        step=message.step,
        retryable=message.retryable,
    )


def _checkpoint_to_proto(steps: Iterable[Mapping[str, Any]] | None) -> job_pb2.Checkpoint:
    steps = list(steps or ())
    if not steps:
        return job_pb2.Checkpoint()
    completed = [
        job_pb2.CompletedStep(
            name=s["name"], data=dict_to_struct(s.get("data")), finished_at=timestamp(s.get("finished_at"))
        )
        for s in steps
    ]
    return job_pb2.Checkpoint(
        step=steps[-1]["name"], data=dict_to_struct(steps[-1].get("data")), completed_steps=completed
    )


#: fields copied as they are from a job's dict form to its proto
_JOB_PLAIN = frozenset(
    {
        "id", "action", "status", "progress", "message", "attempt", "priority", "correlation_id",
        "idempotency_key", "worker_id", "cancel_requested", "step", "status_reason", "locks_held", "sequence",
        "labels", "job_variables", "workflow_variables", "trace_context", "workflow_run_id", "workflow_step",
        "work_order_id",
    }
)  # fmt: skip
_JOB_TIMES = frozenset({"created_at", "updated_at", "started_at", "finished_at", "run_at", "heartbeat_at"})
_DEADLINES = ("start", "heartbeat", "takeover", "execution")


def job_to_proto(d: Mapping[str, Any]) -> job_pb2.Job:
    """A job from its dict form (``Job.to_dict``, which leaves defaults out); input and result only
    when the dict has them. Only what is there is set: this runs for every answer and assignment."""
    plain = {k: v for k, v in d.items() if k in _JOB_PLAIN}
    job = job_pb2.Job(**plain)
    for key in _JOB_TIMES.intersection(d):
        value = d[key]
        if value is not None:
            wire.timestamp(value, getattr(job, key))
    if d.get("attempt"):
        job.mode = d.get("mode", ExecutionMode.EXECUTE)
    error = d.get("error")
    if error:
        job.error.CopyFrom(_job_error(error))
    attempts = d.get("attempts")
    if attempts:
        for a in attempts:
            attempt = job.attempts.add(
                number=a["number"],
                status=a["status"],
                worker_id=a.get("worker_id", ""),
                mode=a.get("mode", ExecutionMode.EXECUTE),
                progress=a.get("progress", 0),
                message=a.get("message", ""),
                step=a.get("step", ""),
            )
            if a.get("started_at") is not None:
                wire.timestamp(a["started_at"], attempt.started_at)
            if a.get("finished_at") is not None:
                wire.timestamp(a["finished_at"], attempt.finished_at)
            if a.get("error"):
                attempt.error.CopyFrom(_job_error(a["error"]))
    locks = d.get("locks")
    if locks:
        job.locks.extend(job_pb2.LockRequest(resource=x["resource"], mode=x["mode"]) for x in locks)
    checkpoint = d.get("checkpoint")
    if checkpoint:
        job.checkpoint.CopyFrom(_checkpoint_to_proto(checkpoint))
    timeouts = d.get("timeouts")
    if timeouts:
        job.timeouts.CopyFrom(_timeouts_to_proto(timeouts))
    retry_policy = d.get("retry_policy")
    if retry_policy:
        job.retry_policy.CopyFrom(_retry_policy(retry_policy))
    deadlines = d.get("deadlines")
    if deadlines:
        for name in _DEADLINES:
            value = deadlines.get(name)
            if value is not None:
                wire.timestamp(value, getattr(job.deadlines, name))
    job_input = d.get("input")
    if job_input:
        job.input.update(job_input)
    if d.get("result") is not None:
        job.result.update(d["result"])
    return job


def event_to_proto(ev: Event) -> job_pb2.JobEvent:
    return job_pb2.JobEvent(
        sequence=ev.sequence,
        job_id=ev.job_id,
        type=wire_enum(ev.type),
        job=job_to_proto(ev.snapshot),
        time=timestamp(ev.time),
        previous_status=wire_enum(ev.previous_status or 0),
        actor=ev.actor,
        reason=ev.reason,
    )


def log_line_to_proto(line: LogLine) -> job_pb2.LogLine:
    return job_pb2.LogLine(
        index=line.index,
        time=timestamp(line.time),
        level=line.level,
        message=line.message,
        attempt=line.attempt,
    )


def action_config_to_proto(config: ActionConfig) -> job_pb2.ActionConfig:
    return job_pb2.ActionConfig(
        action=config.action,
        timeouts=_timeouts_to_proto(config.timeouts.to_dict()),
        retry_policy=_retry_policy_to_proto(config.retry_policy.to_dict() if config.retry_policy else None),
        max_running=config.max_running,
        max_queued=config.max_queued,
        lock_templates=[
            job_pb2.LockRequest(resource=t.resource, mode=wire_enum(t.mode)) for t in config.lock_templates
        ],
        paused=config.paused,
    )


def action_stats_to_proto(view: ActionStatsView) -> job_pb2.ActionStats:
    c = view.counts
    return job_pb2.ActionStats(
        action=view.action,
        queued=c.get(JobStatus.QUEUED, 0),
        delayed=c.get(JobStatus.DELAYED, 0),
        waiting_for_lock=c.get(JobStatus.WAITING_FOR_LOCK, 0),
        running=c.get(JobStatus.RUNNING, 0),
        timed_out=c.get(JobStatus.TIMED_OUT, 0),
        completed=c.get(JobStatus.COMPLETED, 0),
        failed=c.get(JobStatus.FAILED, 0),
        cancelled=c.get(JobStatus.CANCELLED, 0),
        rejected=c.get(JobStatus.REJECTED, 0),
        paused=view.paused,
        workers=view.workers,
        free_capacity=view.free_capacity,
        max_running=view.max_running,
    )


def lock_holding_to_proto(resource: str, holding: LockHolding, note: str = "") -> lock_service_pb2.LockHolder:
    return lock_service_pb2.LockHolder(
        resource=resource,
        mode=wire_enum(holding.mode),
        holder=holding.holder,
        job_id=holding.job_id or "",
        since=timestamp(holding.since),
        expires_at=timestamp(holding.expires_at),
        holder_note=note,
    )
