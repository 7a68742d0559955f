"""The domain objects of the engine: jobs, attempts, errors, checkpoints, timeouts and policies.

Times are POSIX seconds (floats); durations are seconds. Every object is a ``msgspec.Struct`` and
turns into a JSON-able dict and back (``to_dict`` / ``from_dict``, one generic pair on ``Model``):
that is how the store keeps them and how events carry snapshots of a job. A dict leaves out the
fields that hold their default (snapshots are written three or more times per job), enums are their
numbers, and ``from_dict`` ignores keys it does not know (a row a newer engine wrote) and restores
the defaults of those it does not find.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Self

import msgspec
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
    "Model",
    "RetryPolicy",
    "RunRequest",
    "StartTimeout",
    "StopRequest",
    "Timeouts",
    "WorkflowRunRequest",
]

JSONDict = dict[str, Any]


def _enc_hook(obj: Any) -> Any:
    if isinstance(obj, Checkpoint):
        return obj.completed_steps
    raise NotImplementedError(f"cannot encode {type(obj).__name__}")


def _dec_hook(type_: type, obj: Any) -> Any:
    if type_ is Checkpoint:
        return Checkpoint.from_dict(obj)
    raise NotImplementedError(f"cannot decode {type_.__name__}")


class _Dicts:
    """The dict form of a struct: its fields without those at their default, enums as numbers."""

    __slots__ = ()

    def to_dict(self) -> JSONDict:
        d: JSONDict = msgspec.to_builtins(self, enc_hook=_enc_hook)
        return d

    @classmethod
    def from_dict(cls, d: JSONDict) -> Self:
        """The object a ``to_dict`` gave (today's or an earlier engine's); unknown keys are ignored."""
        return msgspec.convert(d, cls, dec_hook=_dec_hook)


class Model(_Dicts, msgspec.Struct, omit_defaults=True):
    """A domain object (a ``msgspec.Struct``) with its dict form."""


class JobError(Model):
    kind: ErrorKind
    message: str
    stack_trace: str = ""
    step: str = ""
    retryable: bool = True


class LockRequest(_Dicts, msgspec.Struct, omit_defaults=True, frozen=True):
    """A ``Model`` that never changes (hashable)."""

    resource: str
    mode: LockMode


class CompletedStep(Model):
    name: str
    data: JSONDict = {}
    finished_at: float = 0.0


class Checkpoint:
    """Every finished step, in order; a resumed or retried attempt skips past them.

    Not a ``Model``: its dict form is the list of its steps (``Model`` encodes it so)."""

    __slots__ = ("completed_steps",)

    def __init__(self, completed_steps: list[CompletedStep] | None = None) -> None:
        self.completed_steps: list[CompletedStep] = completed_steps if completed_steps is not None else []

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Checkpoint) and other.completed_steps == self.completed_steps

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Checkpoint({self.completed_steps!r})"

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
        steps: list[JSONDict] = msgspec.to_builtins(self.completed_steps)
        return steps

    @classmethod
    def from_dict(cls, d: list[JSONDict] | None) -> Checkpoint:
        return cls(msgspec.convert(d or [], list[CompletedStep]))


class WorkflowRunRequest(Model):
    """A workflow run a start timeout starts instead of a job (Unmeshed's ProcessRequest)."""

    workflow: str
    #: 0: the latest version
    version: int = 0
    #: None: the timed-out job's input
    input: JSONDict | None = None
    context: dict[str, str] = {}


class RunRequest(Model):
    """A job to submit when a start timeout fires, or (``workflow`` set) a workflow run to start."""

    action: str
    input: JSONDict = {}
    correlation_id: str = ""
    workflow: WorkflowRunRequest | None = None


class StartTimeout(Model):
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


class Timeouts(Model):
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


class RetryPolicy(Model):
    """Temporal's RetryPolicy. ``max_attempts`` counts the first attempt: 1 means no retry."""

    max_attempts: int = 1
    initial_interval: float = 1.0
    backoff_coefficient: float = 2.0
    max_interval: float = 0.0
    #: in a dict, a list in increasing order (small ints iterate so in a frozenset)
    non_retryable_kinds: frozenset[ErrorKind] = frozenset()

    def delay_before(self, failures: int) -> float:
        """The backoff before the attempt that follows ``failures`` failed attempts."""
        delay = self.initial_interval * (self.backoff_coefficient ** max(failures - 1, 0))
        cap = self.max_interval or self.initial_interval * 100
        return float(min(delay, cap))

    def allows_retry(self, failures: int, error: JobError) -> bool:
        return error.retryable and error.kind not in self.non_retryable_kinds and failures < self.max_attempts


class Attempt(Model):
    number: int
    status: JobStatus
    worker_id: str = ""
    mode: ExecutionMode = ExecutionMode.EXECUTE
    started_at: float = 0.0
    finished_at: float | None = None
    error: JobError | None = None
    #: the attempt's last report, copied from the job when it ended
    progress: int = 0
    message: str = ""
    step: str = ""


class Deadlines(Model):
    """The armed deadlines of a job (POSIX seconds); the store keeps them, timers follow them."""

    start: float | None = None
    heartbeat: float | None = None
    takeover: float | None = None
    execution: float | None = None
    #: when a DELAYED job becomes QUEUED (run_at, or the end of a retry backoff)
    wake: float | None = None


class StopRequest(Model):
    """The engine told the job's worker to stop it: how the job ends once its executor has stopped.

    Until then the job keeps its locks and its slot on the worker (it stays RUNNING, or TIMED_OUT
    once its worker's session is gone), so nobody else touches its resources while its code runs."""

    #: why, as the worker was told ("execution timeout of 5s passed", an operator's cancel reason)
    reason: str = ""
    #: the KILLED error of an execution timeout (FAILED through the retry policy); None: CANCELLED
    error: JobError | None = None
    actor: str = "engine"
    requested_at: float = 0.0

    @property
    def outcome(self) -> str:
        """What the job ends as, for people: KILLED or CANCELLED."""
        return "CANCELLED" if self.error is None else self.error.kind.name


class Job(Model, kw_only=True, eq=False, dict=True):
    """A job. Its dict form without ``input`` and ``result`` (``to_dict(payloads=False)``) is the
    snapshot its events carry and the store's ``doc`` column; the payloads have columns of their own.

    ``dict=True`` gives each job an attribute outside its fields (never serialized): the last event
    about it, while that event's snapshot is still the job's state (``remember`` / ``touched``)."""

    id: str
    action: str
    status: JobStatus
    input: JSONDict = {}
    created_at: float
    updated_at: float
    priority: int = 0
    labels: dict[str, str] = {}
    locks: list[LockRequest] = []
    correlation_id: str = ""
    idempotency_key: str = ""
    run_at: float | None = None
    timeouts: Timeouts = msgspec.field(default_factory=Timeouts)
    retry_policy: RetryPolicy | None = None
    result: JSONDict | None = None
    error: JobError | None = None
    progress: int = 0
    message: str = ""
    step: str = ""
    attempt: int = 0
    attempts: list[Attempt] = []
    job_variables: dict[str, str] = {}
    workflow_variables: dict[str, str] = {}
    #: the submitter's trace context (traceparent, tracestate), carried as it came
    trace_context: dict[str, str] = {}
    #: a workflow step's job: its run, the step's name and the run's work order
    workflow_run_id: str = ""
    workflow_step: str = ""
    work_order_id: str = ""
    worker_id: str = ""
    cancel_requested: bool = False
    #: set while the live attempt's executor is being stopped (execution timeout or cancel)
    stop_request: StopRequest | None = None
    checkpoint: Checkpoint = msgspec.field(default_factory=Checkpoint)
    started_at: float | None = None
    finished_at: float | None = None
    heartbeat_at: float | None = None
    mode: ExecutionMode = ExecutionMode.EXECUTE
    #: the mode the next attempt will run in
    next_mode: ExecutionMode = ExecutionMode.EXECUTE
    status_reason: str = ""
    locks_held: bool = False
    deadlines: Deadlines = msgspec.field(default_factory=Deadlines)
    #: start-timeout RETRY re-queues done so far
    start_retries: int = 0
    #: the sequence of the last event about this job
    sequence: int = 0
    #: FIFO order among jobs of equal priority (set each time the job is queued)
    queue_order: int = 0

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

    @property
    def last_event(self) -> Event | None:
        """The last event about this job while its snapshot is the job's state, else None."""
        event: Event | None = self.__dict__.get("_last_event")
        return event if event is not None and event.sequence == self.sequence else None

    def remember(self, event: Event) -> None:
        """``event`` (about this job, its snapshot just taken) is the job's state until it changes."""
        self.__dict__["_last_event"] = event

    def touched(self) -> None:
        """Changed without an event of its own: the last event's snapshot is stale."""
        self.__dict__.pop("_last_event", None)

    def snapshot(self, *, payloads: bool = True) -> JSONDict:
        """``to_dict``, reusing the snapshot the last event took when nothing changed since (the
        common case: it saves building the dict again). Callers must not change what they get."""
        event = self.last_event
        if event is None:
            return self.to_dict(payloads=payloads)
        if not payloads:
            return event.snapshot
        return {**event.snapshot, "input": self.input, "result": self.result}

    def snapshot_json(self) -> str | None:
        """The snapshot without payloads as JSON, when the last event's is still current."""
        event = self.last_event
        return event.snapshot_json if event is not None else None

    def to_dict(self, *, payloads: bool = True) -> JSONDict:
        """Every field not at its default; ``input`` and ``result`` always when ``payloads``, never
        when it is false (event snapshots)."""
        # The payloads are never encoded: they may be large, and a snapshot leaves them out. A shallow
        # copy without them is (it costs a fraction of a microsecond); with payloads they are added
        # as they are, not copied.
        bare = msgspec.structs.replace(self, input={}, result=None)
        d: JSONDict = msgspec.to_builtins(bare, enc_hook=_enc_hook)
        if payloads:
            d["input"] = self.input
            d["result"] = self.result
        return d

    @classmethod
    def from_dict(cls, d: JSONDict) -> Self:
        """The job a ``to_dict`` gave (today's or an earlier engine's); unknown keys are ignored. The
        payloads are taken as they are, not copied (they are JSON objects already)."""
        rest = dict(d)
        job_input, result = rest.pop("input", None), rest.pop("result", None)
        job = msgspec.convert(rest, cls, dec_hook=_dec_hook)
        job.input = job_input or {}
        job.result = result
        return job


class ActionConfig(Model):
    """Per-action defaults and limits; jobs override timeouts and the retry policy at submit."""

    action: str
    timeouts: Timeouts = msgspec.field(default_factory=Timeouts)
    retry_policy: RetryPolicy | None = None
    #: most jobs RUNNING or TIMED_OUT at once across all workers; 0 is unlimited
    max_running: int = 0
    #: most jobs waiting (QUEUED, DELAYED, WAITING_FOR_LOCK); beyond it a submit is REJECTED; 0 is unlimited
    max_queued: int = 0
    lock_templates: list[LockRequest] = []
    paused: bool = False


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
