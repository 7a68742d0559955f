"""The domain objects of the engine: jobs, attempts, errors, checkpoints, timeouts and policies.

Times are POSIX seconds (floats); durations are seconds. Every object turns into a JSON-able dict
and back (``to_dict`` / ``from_dict``): that is how the store keeps them and how events carry
snapshots of a job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jobwarden.contract import (
    ACTIVE_STATUSES,
    ErrorKind,
    ExecutionMode,
    JobEventType,
    JobStatus,
    LockMode,
    StartTimeoutAction,
)

__all__ = [
    "ActionConfig",
    "Attempt",
    "Checkpoint",
    "CompletedStep",
    "Deadlines",
    "Event",
    "Job",
    "JobError",
    "LockRequest",
    "LogLine",
    "RetryPolicy",
    "RunRequest",
    "StartTimeout",
    "StopRequest",
    "Timeouts",
    "WorkflowRunRequest",
]

JSONDict = dict[str, Any]


def _compact(d: JSONDict) -> JSONDict:
    """Without the entries that hold their default: snapshots are written three or more times per job,
    and ``from_dict`` restores the defaults. Only for objects whose every default is a false value
    (None, "", 0, False, empty) and whose false values are all defaults."""
    return {k: v for k, v in d.items() if v}


@dataclass(slots=True)
class JobError:
    kind: ErrorKind
    message: str
    stack_trace: str = ""
    step: str = ""
    retryable: bool = True

    def to_dict(self) -> JSONDict:
        return {
            "kind": int(self.kind),
            "message": self.message,
            "stack_trace": self.stack_trace,
            "step": self.step,
            "retryable": self.retryable,
        }

    @classmethod
    def from_dict(cls, d: JSONDict) -> JobError:
        return cls(
            kind=ErrorKind(d["kind"]),
            message=d["message"],
            stack_trace=d.get("stack_trace", ""),
            step=d.get("step", ""),
            retryable=d.get("retryable", True),
        )


@dataclass(slots=True, frozen=True)
class LockRequest:
    resource: str
    mode: LockMode

    def to_dict(self) -> JSONDict:
        return {"resource": self.resource, "mode": int(self.mode)}

    @classmethod
    def from_dict(cls, d: JSONDict) -> LockRequest:
        return cls(resource=d["resource"], mode=LockMode(d["mode"]))


@dataclass(slots=True)
class CompletedStep:
    name: str
    data: JSONDict
    finished_at: float

    def to_dict(self) -> JSONDict:
        return {"name": self.name, "data": self.data, "finished_at": self.finished_at}

    @classmethod
    def from_dict(cls, d: JSONDict) -> CompletedStep:
        return cls(name=d["name"], data=d.get("data") or {}, finished_at=d.get("finished_at", 0.0))


@dataclass(slots=True)
class Checkpoint:
    """Every finished step, in order; a resumed or retried attempt skips past them."""

    completed_steps: list[CompletedStep] = field(default_factory=list)

    @property
    def step(self) -> str:
        return self.completed_steps[-1].name if self.completed_steps else ""

    @property
    def data(self) -> JSONDict:
        return self.completed_steps[-1].data if self.completed_steps else {}

    def has_step(self, name: str) -> bool:
        return any(s.name == name for s in self.completed_steps)

    def truncated_before(self, name: str) -> Checkpoint:
        """The checkpoint as it was before step ``name`` finished."""
        for index, step in enumerate(self.completed_steps):
            if step.name == name:
                return Checkpoint(list(self.completed_steps[:index]))
        return Checkpoint(list(self.completed_steps))

    def to_dict(self) -> list[JSONDict]:
        return [s.to_dict() for s in self.completed_steps]

    @classmethod
    def from_dict(cls, d: list[JSONDict] | None) -> Checkpoint:
        return cls([CompletedStep.from_dict(s) for s in d or ()])


@dataclass(slots=True)
class WorkflowRunRequest:
    """A workflow run a start timeout starts instead of a job (Unmeshed's ProcessRequest)."""

    workflow: str
    #: 0: the latest version
    version: int = 0
    #: None: the timed-out job's input
    input: JSONDict | None = None
    context: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> JSONDict:
        return {
            "workflow": self.workflow,
            "version": self.version,
            "input": self.input,
            "context": self.context,
        }

    @classmethod
    def from_dict(cls, d: JSONDict) -> WorkflowRunRequest:
        return cls(
            workflow=d["workflow"],
            version=d.get("version", 0),
            input=d.get("input"),
            context=d.get("context") or {},
        )


@dataclass(slots=True)
class RunRequest:
    """A job to submit when a start timeout fires, or (``workflow`` set) a workflow run to start."""

    action: str
    input: JSONDict = field(default_factory=dict)
    correlation_id: str = ""
    workflow: WorkflowRunRequest | None = None

    def to_dict(self) -> JSONDict:
        d: JSONDict = {"action": self.action, "input": self.input, "correlation_id": self.correlation_id}
        if self.workflow is not None:
            d["workflow"] = self.workflow.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: JSONDict) -> RunRequest:
        workflow = d.get("workflow")
        return cls(
            action=d["action"],
            input=d.get("input") or {},
            correlation_id=d.get("correlation_id", ""),
            workflow=WorkflowRunRequest.from_dict(workflow) if workflow else None,
        )


@dataclass(slots=True)
class StartTimeout:
    """Unmeshed's StartTimeoutConfiguration."""

    duration: float
    action: StartTimeoutAction = StartTimeoutAction.FAIL
    retry_interval: float = 0.0
    retry_backoff_exponential: bool = False
    retry_count: int = 0
    run_request: RunRequest | None = None

    def retry_delay(self, retries_done: int) -> float:
        """The wait before re-queueing after ``retries_done`` earlier start-timeout retries."""
        if self.retry_backoff_exponential:
            return float(self.retry_interval * (2**retries_done))
        return self.retry_interval

    def to_dict(self) -> JSONDict:
        return {
            "duration": self.duration,
            "action": int(self.action),
            "retry_interval": self.retry_interval,
            "retry_backoff_exponential": self.retry_backoff_exponential,
            "retry_count": self.retry_count,
            "run_request": self.run_request.to_dict() if self.run_request else None,
        }

    @classmethod
    def from_dict(cls, d: JSONDict) -> StartTimeout:
        run_request = d.get("run_request")
        return cls(
            duration=d["duration"],
            action=StartTimeoutAction(d.get("action", StartTimeoutAction.FAIL)),
            retry_interval=d.get("retry_interval", 0.0),
            retry_backoff_exponential=d.get("retry_backoff_exponential", False),
            retry_count=d.get("retry_count", 0),
            run_request=RunRequest.from_dict(run_request) if run_request else None,
        )


@dataclass(slots=True)
class Timeouts:
    """Timeouts of a job or an action; ``None`` means "not set here" (inherit, or none)."""

    start: StartTimeout | None = None
    heartbeat: float | None = None
    takeover: float | None = None
    execution: float | None = None

    def over(self, base: Timeouts) -> Timeouts:
        """These timeouts, with every unset field taken from ``base``."""
        if base.is_empty():
            return self
        if self.is_empty():
            return base
        return Timeouts(
            start=self.start if self.start is not None else base.start,
            heartbeat=self.heartbeat if self.heartbeat is not None else base.heartbeat,
            takeover=self.takeover if self.takeover is not None else base.takeover,
            execution=self.execution if self.execution is not None else base.execution,
        )

    def is_empty(self) -> bool:
        return (
            self.start is None and self.heartbeat is None and self.takeover is None and self.execution is None
        )

    def to_dict(self) -> JSONDict:
        return _compact(
            {
                "start": self.start.to_dict() if self.start else None,
                "heartbeat": self.heartbeat,
                "takeover": self.takeover,
                "execution": self.execution,
            }
        )

    @classmethod
    def from_dict(cls, d: JSONDict | None) -> Timeouts:
        if not d:
            return cls()
        start = d.get("start")
        return cls(
            start=StartTimeout.from_dict(start) if start else None,
            heartbeat=d.get("heartbeat"),
            takeover=d.get("takeover"),
            execution=d.get("execution"),
        )


@dataclass(slots=True)
class RetryPolicy:
    """Temporal's RetryPolicy. ``max_attempts`` counts the first attempt: 1 means no retry."""

    max_attempts: int = 1
    initial_interval: float = 1.0
    backoff_coefficient: float = 2.0
    max_interval: float = 0.0
    non_retryable_kinds: frozenset[ErrorKind] = frozenset()

    def delay_before(self, failures: int) -> float:
        """The backoff before the attempt that follows ``failures`` failed attempts."""
        delay = self.initial_interval * (self.backoff_coefficient ** max(failures - 1, 0))
        cap = self.max_interval or self.initial_interval * 100
        return float(min(delay, cap))

    def allows_retry(self, failures: int, error: JobError) -> bool:
        return error.retryable and error.kind not in self.non_retryable_kinds and failures < self.max_attempts

    def to_dict(self) -> JSONDict:
        return {
            "max_attempts": self.max_attempts,
            "initial_interval": self.initial_interval,
            "backoff_coefficient": self.backoff_coefficient,
            "max_interval": self.max_interval,
            "non_retryable_kinds": sorted(int(k) for k in self.non_retryable_kinds),
        }

    @classmethod
    def from_dict(cls, d: JSONDict) -> RetryPolicy:
        return cls(
            max_attempts=d.get("max_attempts", 1),
            initial_interval=d.get("initial_interval", 1.0),
            backoff_coefficient=d.get("backoff_coefficient", 2.0),
            max_interval=d.get("max_interval", 0.0),
            non_retryable_kinds=frozenset(ErrorKind(k) for k in d.get("non_retryable_kinds", ())),
        )


@dataclass(slots=True)
class Attempt:
    number: int
    status: JobStatus
    worker_id: str
    mode: ExecutionMode
    started_at: float
    finished_at: float | None = None
    error: JobError | None = None
    #: the attempt's last report, copied from the job when it ended
    progress: int = 0
    message: str = ""
    step: str = ""

    def to_dict(self) -> JSONDict:
        return _compact(
            {
                "number": self.number,
                "status": int(self.status),
                "worker_id": self.worker_id,
                "mode": int(self.mode),
                "started_at": self.started_at,
                "finished_at": self.finished_at,
                "error": self.error.to_dict() if self.error else None,
                "progress": self.progress,
                "message": self.message,
                "step": self.step,
            }
        )

    @classmethod
    def from_dict(cls, d: JSONDict) -> Attempt:
        error = d.get("error")
        return cls(
            number=d["number"],
            status=JobStatus(d["status"]),
            worker_id=d.get("worker_id", ""),
            mode=ExecutionMode(d.get("mode", ExecutionMode.EXECUTE)),
            started_at=d.get("started_at", 0.0),
            finished_at=d.get("finished_at"),
            error=JobError.from_dict(error) if error else None,
            progress=d.get("progress", 0),
            message=d.get("message", ""),
            step=d.get("step", ""),
        )


@dataclass(slots=True)
class Deadlines:
    """The armed deadlines of a job (POSIX seconds); the store keeps them, timers follow them."""

    start: float | None = None
    heartbeat: float | None = None
    takeover: float | None = None
    execution: float | None = None
    #: when a DELAYED job becomes QUEUED (run_at, or the end of a retry backoff)
    wake: float | None = None

    def to_dict(self) -> JSONDict:
        return _compact(
            {
                "start": self.start,
                "heartbeat": self.heartbeat,
                "takeover": self.takeover,
                "execution": self.execution,
                "wake": self.wake,
            }
        )

    @classmethod
    def from_dict(cls, d: JSONDict | None) -> Deadlines:
        d = d or {}
        return cls(
            start=d.get("start"),
            heartbeat=d.get("heartbeat"),
            takeover=d.get("takeover"),
            execution=d.get("execution"),
            wake=d.get("wake"),
        )


@dataclass(slots=True)
class StopRequest:
    """The engine told the job's worker to stop it: how the job ends once its executor has stopped.

    Until then the job keeps its locks and its slot on the worker (it stays RUNNING, or TIMED_OUT
    once its worker's session is gone), so nobody else touches its resources while its code runs."""

    #: why, as the worker was told ("execution timeout of 5s passed", an operator's cancel reason)
    reason: str
    #: the KILLED error of an execution timeout (FAILED through the retry policy); None: CANCELLED
    error: JobError | None = None
    actor: str = "engine"
    requested_at: float = 0.0

    @property
    def outcome(self) -> str:
        """What the job ends as, for people: KILLED or CANCELLED."""
        return "CANCELLED" if self.error is None else self.error.kind.name

    def to_dict(self) -> JSONDict:
        return {
            "reason": self.reason,
            "error": self.error.to_dict() if self.error else None,
            "actor": self.actor,
            "requested_at": self.requested_at,
        }

    @classmethod
    def from_dict(cls, d: JSONDict) -> StopRequest:
        error = d.get("error")
        return cls(
            reason=d.get("reason", ""),
            error=JobError.from_dict(error) if error else None,
            actor=d.get("actor", "engine"),
            requested_at=d.get("requested_at", 0.0),
        )


@dataclass(slots=True, eq=False)
class Job:
    id: str
    action: str
    status: JobStatus
    input: JSONDict
    created_at: float
    updated_at: float
    priority: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    locks: list[LockRequest] = field(default_factory=list)
    correlation_id: str = ""
    idempotency_key: str = ""
    run_at: float | None = None
    timeouts: Timeouts = field(default_factory=Timeouts)
    retry_policy: RetryPolicy | None = None
    result: JSONDict | None = None
    error: JobError | None = None
    progress: int = 0
    message: str = ""
    step: str = ""
    attempt: int = 0
    attempts: list[Attempt] = field(default_factory=list)
    job_variables: dict[str, str] = field(default_factory=dict)
    workflow_variables: dict[str, str] = field(default_factory=dict)
    #: the submitter's trace context (traceparent, tracestate), carried as it came
    trace_context: dict[str, str] = field(default_factory=dict)
    #: a workflow step's job: its run, the step's name and the run's work order
    workflow_run_id: str = ""
    workflow_step: str = ""
    work_order_id: str = ""
    worker_id: str = ""
    cancel_requested: bool = False
    #: set while the live attempt's executor is being stopped (execution timeout or cancel)
    stop_request: StopRequest | None = None
    checkpoint: Checkpoint = field(default_factory=Checkpoint)
    started_at: float | None = None
    finished_at: float | None = None
    heartbeat_at: float | None = None
    mode: ExecutionMode = ExecutionMode.EXECUTE
    #: the mode the next attempt will run in
    next_mode: ExecutionMode = ExecutionMode.EXECUTE
    status_reason: str = ""
    locks_held: bool = False
    deadlines: Deadlines = field(default_factory=Deadlines)
    #: start-timeout RETRY re-queues done so far
    start_retries: int = 0
    #: the sequence of the last event about this job
    sequence: int = 0
    #: FIFO order among jobs of equal priority (set each time the job is queued)
    queue_order: int = 0
    #: the last event about this job; its snapshot is the job's state until something changes again
    last_event: Event | None = field(default=None, repr=False)
    #: changed since ``last_event`` without an event of its own (so that snapshot is stale)
    touched: bool = False

    @property
    def failures(self) -> int:
        """Attempts that ended FAILED (what a retry policy counts)."""
        return sum(1 for a in self.attempts if a.status is JobStatus.FAILED)

    @property
    def stopping(self) -> bool:
        """Its worker was told to stop it and has not confirmed that the executor stopped."""
        return self.stop_request is not None and self.status in ACTIVE_STATUSES

    @property
    def live_attempt(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts and self.attempts[-1].number == self.attempt else None

    def snapshot(self, *, payloads: bool = True) -> JSONDict:
        """``to_dict``, reusing the snapshot the last event took when nothing changed since (the
        common case: it saves building the dict again). Callers must not change what they get."""
        event = self.last_event
        if event is None or event.sequence != self.sequence or self.touched:
            return self.to_dict(payloads=payloads)
        if not payloads:
            return event.snapshot
        return {**event.snapshot, "input": self.input, "result": self.result}

    def snapshot_json(self) -> str | None:
        """The snapshot without payloads as JSON, when the last event's is still current."""
        event = self.last_event
        if event is None or event.sequence != self.sequence or self.touched:
            return None
        return event.snapshot_json

    def to_dict(self, *, payloads: bool = True) -> JSONDict:
        """Every field; without ``input`` and ``result`` when ``payloads`` is false (event snapshots)."""
        d: JSONDict = _compact(
            {
                "id": self.id,
                "action": self.action,
                "status": int(self.status),
                "created_at": self.created_at,
                "updated_at": self.updated_at,
                "priority": self.priority,
                "labels": self.labels,
                "locks": [lock.to_dict() for lock in self.locks],
                "correlation_id": self.correlation_id,
                "idempotency_key": self.idempotency_key,
                "run_at": self.run_at,
                "timeouts": self.timeouts.to_dict(),
                "retry_policy": self.retry_policy.to_dict() if self.retry_policy else None,
                "error": self.error.to_dict() if self.error else None,
                "progress": self.progress,
                "message": self.message,
                "step": self.step,
                "attempt": self.attempt,
                "attempts": [a.to_dict() for a in self.attempts],
                "job_variables": self.job_variables,
                "workflow_variables": self.workflow_variables,
                "trace_context": self.trace_context,
                "workflow_run_id": self.workflow_run_id,
                "workflow_step": self.workflow_step,
                "work_order_id": self.work_order_id,
                "worker_id": self.worker_id,
                "cancel_requested": self.cancel_requested,
                "stop_request": self.stop_request.to_dict() if self.stop_request else None,
                "checkpoint": self.checkpoint.to_dict(),
                "started_at": self.started_at,
                "finished_at": self.finished_at,
                "heartbeat_at": self.heartbeat_at,
                "mode": int(self.mode),
                "next_mode": int(self.next_mode),
                "status_reason": self.status_reason,
                "locks_held": self.locks_held,
                "deadlines": self.deadlines.to_dict(),
                "start_retries": self.start_retries,
                "sequence": self.sequence,
                "queue_order": self.queue_order,
            }
        )
        if payloads:
            d["input"] = self.input
            d["result"] = self.result
        return d

    @classmethod
    def from_dict(cls, d: JSONDict) -> Job:
        error = d.get("error")
        retry_policy = d.get("retry_policy")
        stop_request = d.get("stop_request")
        return cls(
            id=d["id"],
            action=d["action"],
            status=JobStatus(d["status"]),
            input=d.get("input") or {},
            created_at=d["created_at"],
            updated_at=d["updated_at"],
            priority=d.get("priority", 0),
            labels=d.get("labels") or {},
            locks=[LockRequest.from_dict(x) for x in d.get("locks") or ()],
            correlation_id=d.get("correlation_id", ""),
            idempotency_key=d.get("idempotency_key", ""),
            run_at=d.get("run_at"),
            timeouts=Timeouts.from_dict(d.get("timeouts")),
            retry_policy=RetryPolicy.from_dict(retry_policy) if retry_policy else None,
            result=d.get("result"),
            error=JobError.from_dict(error) if error else None,
            progress=d.get("progress", 0),
            message=d.get("message", ""),
            step=d.get("step", ""),
            attempt=d.get("attempt", 0),
            attempts=[Attempt.from_dict(a) for a in d.get("attempts") or ()],
            job_variables=d.get("job_variables") or {},
            workflow_variables=d.get("workflow_variables") or {},
            trace_context=d.get("trace_context") or {},
            workflow_run_id=d.get("workflow_run_id", ""),
            workflow_step=d.get("workflow_step", ""),
            work_order_id=d.get("work_order_id", ""),
            worker_id=d.get("worker_id", ""),
            cancel_requested=d.get("cancel_requested", False),
            stop_request=StopRequest.from_dict(stop_request) if stop_request else None,
            checkpoint=Checkpoint.from_dict(d.get("checkpoint")),
            started_at=d.get("started_at"),
            finished_at=d.get("finished_at"),
            heartbeat_at=d.get("heartbeat_at"),
            mode=ExecutionMode(d.get("mode", ExecutionMode.EXECUTE)),
            next_mode=ExecutionMode(d.get("next_mode", ExecutionMode.EXECUTE)),
            status_reason=d.get("status_reason", ""),
            locks_held=d.get("locks_held", False),
            deadlines=Deadlines.from_dict(d.get("deadlines")),
            start_retries=d.get("start_retries", 0),
            sequence=d.get("sequence", 0),
            queue_order=d.get("queue_order", 0),
        )


@dataclass(slots=True)
class ActionConfig:
    """Per-action defaults and limits; jobs override timeouts and the retry policy at submit."""

    action: str
    timeouts: Timeouts = field(default_factory=Timeouts)
    retry_policy: RetryPolicy | None = None
    #: most jobs RUNNING or TIMED_OUT at once across all workers; 0 is unlimited
    max_running: int = 0
    #: most jobs waiting (QUEUED, DELAYED, WAITING_FOR_LOCK); beyond it a submit is REJECTED; 0 is unlimited
    max_queued: int = 0
    lock_templates: list[LockRequest] = field(default_factory=list)
    paused: bool = False

    def to_dict(self) -> JSONDict:
        return {
            "action": self.action,
            "timeouts": self.timeouts.to_dict(),
            "retry_policy": self.retry_policy.to_dict() if self.retry_policy else None,
            "max_running": self.max_running,
            "max_queued": self.max_queued,
            "lock_templates": [t.to_dict() for t in self.lock_templates],
            "paused": self.paused,
        }

    @classmethod
    def from_dict(cls, d: JSONDict) -> ActionConfig:
        retry_policy = d.get("retry_policy")
        return cls(
            action=d["action"],
            timeouts=Timeouts.from_dict(d.get("timeouts")),
            retry_policy=RetryPolicy.from_dict(retry_policy) if retry_policy else None,
            max_running=d.get("max_running", 0),
            max_queued=d.get("max_queued", 0),
            lock_templates=[LockRequest.from_dict(t) for t in d.get("lock_templates") or ()],
            paused=d.get("paused", False),
        )


@dataclass(slots=True)
class Event:
    """One change of a job. ``snapshot`` is the job after the change, without input and result."""

    sequence: int
    job_id: str
    type: JobEventType
    time: float
    snapshot: JSONDict
    previous_status: JobStatus | None = None
    actor: str = "engine"
    reason: str = ""
    #: ``snapshot`` as JSON, made once when first needed (the event row and the job row share it)
    snapshot_json: str | None = None
    #: the event in the API layer's wire form, cached there so a watched event is encoded only once
    encoded: bytes | None = None

    @property
    def status(self) -> JobStatus:
        return JobStatus(self.snapshot["status"])

    @property
    def action(self) -> str:
        action: str = self.snapshot["action"]
        return action


@dataclass(slots=True)
class LogLine:
    job_id: str
    index: int
    attempt: int
    time: float
    level: str
    message: str
