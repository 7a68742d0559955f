"""``JobContext``: what an executor sees of its job, and how it reports back."""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, Unpack

from jobwarden.contract import ExecutionMode, Limits
from jobwarden.sdk._convert import encode_variable, normalize_object
from jobwarden.sdk._exceptions import JobCancelled, StepError
from jobwarden.sdk._outbox import JobUpdateFields
from jobwarden.sdk._tracing import step_span
from jobwarden.v1 import job_pb2
from jobwarden.wire import struct_to_dict

__all__ = ["Checkpoint", "JobContext"]

#: the key that wraps step data that is not a JSON object
_STEP_VALUE_KEY = "$value"


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """What an attempt continues from: the finished steps of earlier attempts, with their data."""

    #: the last finished step, or None
    step: str | None = None
    #: that step's data
    data: Any = None
    #: every finished step's data by name, in the order they finished
    steps: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_proto(cls, checkpoint: job_pb2.Checkpoint) -> Checkpoint:
        steps = {done.name: _unwrap(struct_to_dict(done.data)) for done in checkpoint.completed_steps}
        step = checkpoint.step or None
        if step is not None and step not in steps:
            steps[step] = _unwrap(struct_to_dict(checkpoint.data))
        return cls(step=step, data=steps.get(step) if step else None, steps=steps)


def _unwrap(data: dict[str, Any]) -> Any:
    if len(data) == 1 and _STEP_VALUE_KEY in data:
        return data[_STEP_VALUE_KEY]
    return data


class _Reporter(Protocol):
    """The worker side of a context: where its reports go (called on the event loop thread)."""

    def report_update(self, ctx: JobContext, **fields: Unpack[JobUpdateFields]) -> None: ...

    def report_log(self, ctx: JobContext, level: str, message: str, time: datetime) -> None: ...

    def report_heartbeat(self, ctx: JobContext, extend_execution: timedelta | None) -> None: ...


class JobContext:
    """One attempt of one job, as its executor sees it.

    Reports (``progress``, ``log``, variables, ``heartbeat``) never block: they are queued and
    sent with the next batch. Every method is safe to call from a plain (sync) executor running
    in the worker's thread pool.
    """

    def __init__(
        self,
        *,
        job: job_pb2.Job,
        attempt: int,
        mode: ExecutionMode,
        checkpoint: Checkpoint,
        reporter: _Reporter,
        loop: asyncio.AbstractEventLoop,
        sync: bool,
    ) -> None:
        #: the job's id
        self.job_id: str = job.id
        #: this attempt's number (a fencing token: every report carries it)
        self.attempt: int = attempt
        #: EXECUTE, RESUME or RETRY
        self.mode: ExecutionMode = mode
        #: the action of the job
        self.action: str = job.action
        #: the job's input, a JSON object
        self.input: dict[str, Any] = struct_to_dict(job.input)
        #: what earlier attempts finished (empty for a first attempt)
        self.checkpoint: Checkpoint = checkpoint
        #: the job as it was assigned (labels, priority, correlation id, deadlines, ...)
        self.job: job_pb2.Job = job
        #: the variables set by this attempt (sent again with the result)
        self.job_variables: dict[str, str] = {}
        self.workflow_variables: dict[str, str] = {}
        #: the step running now, if any
        self.current_step: str | None = None
        self._reporter = reporter
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self._sync = sync
        self._steps_seen: set[str] = set()
        self._cancel_requested = False
        self._cancel_reason = ""
        self._cancel_event: threading.Event | None = threading.Event() if sync else None
        self._cancel_waiters: asyncio.Event | None = None

    # -- reports ---------------------------------------------------------------------------
    def _post(self, function: Callable[..., None], *args: Any, **kwargs: Any) -> None:
        if threading.get_ident() == self._loop_thread:
            function(*args, **kwargs)
        else:
            self._loop.call_soon_threadsafe(lambda: function(*args, **kwargs))

    def progress(self, percent: float, message: str | None = None) -> None:
        """Report progress (0-100) and optionally a message; raises ``ValueError`` outside 0-100."""
        if isinstance(percent, bool) or not isinstance(percent, int | float):
            raise TypeError(f"progress must be a number from 0 to 100, got {percent!r}")
        if not 0 <= percent <= 100:
            raise ValueError(f"progress must be from 0 to 100, got {percent!r}")
        if message is not None:
            message = _check_message(message)
        self._post(self._reporter.report_update, self, progress=int(percent), message=message)

    def message(self, text: str) -> None:
        """Set the job's live status message."""
        self._post(self._reporter.report_update, self, message=_check_message(text))

    def log(self, message: str, *, level: str = "INFO") -> None:
        """Add a line to the job's log (kept with the job; batched with other lines)."""
        text = str(message)[: Limits.MAX_LOG_LINE_LENGTH]
        self._post(self._reporter.report_log, self, level.upper(), text, datetime.now(UTC))

    def set_job_variable(self, name: str, value: Any) -> None:
        """Set a variable of this job (strings stay as they are; other values are stored as JSON)."""
        encoded = _check_variable(name, value)
        self.job_variables[name] = encoded
        self._post(self._reporter.report_update, self, job_variables={name: encoded})

    def set_workflow_variable(self, name: str, value: Any) -> None:
        """Set a variable shared with the job's workflow (its correlation id's other jobs)."""
        encoded = _check_variable(name, value)
        self.workflow_variables[name] = encoded
        self._post(self._reporter.report_update, self, workflow_variables={name: encoded})

    def heartbeat(self, extend_execution: float | timedelta | None = None) -> None:
        """Tell the engine the job is alive now; ``extend_execution`` pushes its execution
        deadline that far past now (seconds or a timedelta)."""
        if extend_execution is not None and not isinstance(extend_execution, timedelta):
            extend_execution = timedelta(seconds=extend_execution)
        if extend_execution is not None and extend_execution <= timedelta(0):
            raise ValueError(f"extend_execution must be positive, got {extend_execution}")
        self._post(self._reporter.report_heartbeat, self, extend_execution)

    # -- cancellation ------------------------------------------------------------------------
    @property
    def cancel_requested(self) -> bool:
        """True once the engine asked to cancel this job: stop soon (return or raise)."""
        return self._cancel_requested

    @property
    def cancel_reason(self) -> str:
        return self._cancel_reason

    @property
    def cancel_event(self) -> threading.Event:
        """A ``threading.Event`` set on cancel: ``ctx.cancel_event.wait(5)`` in a sync executor."""
        if self._cancel_event is None:
            self._cancel_event = threading.Event()
            if self._cancel_requested:
                self._cancel_event.set()
        return self._cancel_event

    async def wait_cancelled(self) -> None:
        """Return once the engine asked to cancel this job (for async executors)."""
        if self._cancel_requested:
            return
        if self._cancel_waiters is None:
            self._cancel_waiters = asyncio.Event()
        await self._cancel_waiters.wait()

    def raise_if_cancelled(self) -> None:
        """Raise ``JobCancelled`` if the engine asked to cancel this job."""
        if self._cancel_requested:
            raise JobCancelled(f"job {self.job_id} was cancelled: {self._cancel_reason}", job_id=self.job_id)

    def _request_cancel(self, reason: str) -> None:
        """Mark the job cancelled (the worker calls this on the event loop)."""
        self._cancel_requested = True
        self._cancel_reason = reason
        if self._cancel_event is not None:
            self._cancel_event.set()
        if self._cancel_waiters is not None:
            self._cancel_waiters.set()

    # -- steps -------------------------------------------------------------------------------
    def step(self, name: str, function: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Run ``function(*args, **kwargs)`` as the step ``name``, once per job.

        A step finished by an earlier attempt is skipped and its recorded data returned; otherwise
        the function runs, its return value (JSON) is checkpointed with the engine, and returned.
        In an ``async def`` executor, ``await ctx.step(...)`` (the function may be async); in a
        plain one, ``ctx.step(...)`` returns the data directly.
        """
        self._begin_step(name)
        if self._sync and threading.get_ident() != self._loop_thread:
            if name in self.checkpoint.steps:
                return self.checkpoint.steps[name]
            self.current_step = name
            self._post(self._reporter.report_update, self, step=name)
            with step_span(self, name):
                return self._finish_step(name, function(*args, **kwargs))
        return self._step_async(name, function, args, kwargs)

    async def _step_async(
        self, name: str, function: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        if name in self.checkpoint.steps:
            return self.checkpoint.steps[name]
        self.current_step = name
        self._reporter.report_update(self, step=name)
        with step_span(self, name):
            value = function(*args, **kwargs)
            if inspect.isawaitable(value):
                value = await value
            return self._finish_step(name, value)

    def _begin_step(self, name: str) -> None:
        if not isinstance(name, str) or not name.strip():
            raise StepError(f"a step name must be a non-empty string, got {name!r}", job_id=self.job_id)
        if len(name) > Limits.MAX_STEP_NAME_LENGTH:
            raise StepError(
                f"step name is longer than {Limits.MAX_STEP_NAME_LENGTH} characters", job_id=self.job_id
            )
        if name in self._steps_seen:
            raise StepError(
                f"step {name!r} is used twice in one job: every step needs its own name",
                job_id=self.job_id,
            )
        self._steps_seen.add(name)

    def _finish_step(self, name: str, value: Any) -> Any:
        try:
            data = normalize_object(value, f"the data of step {name!r}")
        except (TypeError, ValueError) as error:
            raise StepError(str(error), job_id=self.job_id) from error
        if data is None:
            data = {}
        elif not isinstance(value, Mapping):
            data = {_STEP_VALUE_KEY: data["value"]}
        self.current_step = None
        self._post(self._reporter.report_update, self, completed_step=(name, data))
        return value

    def __repr__(self) -> str:
        return f"<JobContext {self.action} job={self.job_id} attempt={self.attempt} mode={self.mode.name}>"


def _check_message(text: str) -> str:
    if not isinstance(text, str):
        raise TypeError(f"a message must be a string, got {type(text).__name__}")
    return text[: Limits.MAX_MESSAGE_LENGTH]


def _check_variable(name: str, value: Any) -> str:
    if not isinstance(name, str) or not name:
        raise ValueError(f"a variable name must be a non-empty string, got {name!r}")
    if len(name) > Limits.MAX_VARIABLE_KEY_LENGTH:
        raise ValueError(f"variable name {name[:40]!r}... is longer than {Limits.MAX_VARIABLE_KEY_LENGTH}")
    encoded = encode_variable(value)
    if len(encoded) > Limits.MAX_VARIABLE_VALUE_LENGTH:
        raise ValueError(f"variable {name!r} is longer than {Limits.MAX_VARIABLE_VALUE_LENGTH} characters")
    return encoded
