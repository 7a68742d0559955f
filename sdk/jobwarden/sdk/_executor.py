"""The ``Executor`` base class: plugin code for one action."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from jobwarden.contract import ExecutionMode, Limits
from jobwarden.sdk._exceptions import ExecutorDefinitionError
from jobwarden.sdk._requests import LockSpec, lock_request

if TYPE_CHECKING:
    from jobwarden.sdk._context import JobContext

__all__ = ["Executor"]

_HOOKS = ("execute", "resume", "retry", "cancel", "on_cancelled")


class Executor:
    """Plugin code for one action. Subclass it, set ``action`` and define ``execute(ctx)``.

    Every method may be ``async def`` or a plain ``def``: plain ones run in the worker's thread
    pool, so a blocking executor never stalls the session. ``execute`` returns the job's result
    (a JSON object, ``None``, or another JSON value, which is stored as ``{"value": ...}``), raises
    ``JobFailed`` for a handled failure, or raises anything else to crash (the whole stack trace
    is kept).

    Optional methods:

    - ``resume(ctx)``: called for an attempt taken over after a timeout (mode RESUME). Defining it
      makes ``supports_resume`` true; without it ``execute`` runs again (``ctx.step`` skips the
      finished steps).
    - ``retry(ctx)``: called for a new attempt after a failure (mode RETRY); ``execute`` by default.
    - ``cancel(ctx)``: called as soon as the engine asks to cancel the job (before an async
      ``execute`` is cancelled), e.g. to kill a subprocess.
    - ``on_cancelled(ctx)``: called once the job stopped because it was cancelled.
    """

    #: the action this executor serves (required, e.g. ``"transcode"``)
    action: ClassVar[str]
    #: most jobs of this action at once on one worker; 0 is the worker's capacity
    max_concurrency: ClassVar[int] = 0
    #: whether a timed-out attempt may be resumed here; by default, whether ``resume`` is defined
    supports_resume: ClassVar[bool]
    #: locks every job of this action takes, as templates expanded from the job's input:
    #: ``"asset:{input.asset_id}"`` (EXCLUSIVE), ``"asset:{input.asset_id}:SHARED"`` or a
    #: ``(template, mode)`` pair. The worker
    #: adds them to the action's configuration on the engine when it connects.
    locks: ClassVar[Sequence[LockSpec]] = ()
    #: when False the worker does not vouch for this executor's jobs in its heartbeats: a job must
    #: report progress or call ``ctx.heartbeat()`` often enough, or it times out
    auto_heartbeat: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "supports_resume" not in cls.__dict__:
            cls.supports_resume = overrides(cls, "resume")
        for name in _HOOKS:
            method = getattr(cls, name)
            if inspect.isasyncgenfunction(method) or inspect.isgeneratorfunction(method):
                raise ExecutorDefinitionError(
                    f"{cls.__qualname__}.{name} is a generator; it must be a plain or an async function"
                )

    def execute(self, ctx: JobContext) -> Any:
        """Run the job; return its result. Must be defined by every executor."""
        raise NotImplementedError

    def resume(self, ctx: JobContext) -> Any:
        """Continue a job taken over after a timeout (defaults to ``execute``)."""
        return self.execute(ctx)

    def retry(self, ctx: JobContext) -> Any:
        """Run a new attempt after a failure (defaults to ``execute``)."""
        return self.execute(ctx)

    def cancel(self, ctx: JobContext) -> Any:
        """Called when the engine asks to cancel the job; nothing by default."""

    def on_cancelled(self, ctx: JobContext) -> Any:
        """Called once the job stopped after a cancel; nothing by default."""


Executor.supports_resume = False


def overrides(cls: type[Executor], name: str) -> bool:
    """Whether ``cls`` defines its own ``name`` rather than ``Executor``'s."""
    return getattr(cls, name) is not getattr(Executor, name)


def validate(executor: Executor) -> None:
    """Raise ``ExecutorDefinitionError`` when ``executor`` cannot be hosted, saying why."""
    cls = type(executor)
    name = cls.__qualname__
    action = getattr(executor, "action", None)
    if not isinstance(action, str) or not action.strip():
        raise ExecutorDefinitionError(f'executor {name} has no action: set `action = "name"` on the class')
    if len(action) > Limits.MAX_ACTION_LENGTH:
        raise ExecutorDefinitionError(
            f"executor {name}: action is longer than {Limits.MAX_ACTION_LENGTH} characters"
        )
    if not overrides(cls, "execute"):
        raise ExecutorDefinitionError(f"executor {name} (action {action!r}) does not define execute(ctx)")
    if isinstance(executor.locks, str):
        raise ExecutorDefinitionError(f"executor {name}: locks must be a list of templates, not a string")
    for template in executor.locks:
        try:
            lock_request(template)
        except (TypeError, ValueError) as error:
            raise ExecutorDefinitionError(
                f"executor {name}: bad lock template {template!r}: {error}"
            ) from None
    max_concurrency = executor.max_concurrency
    if not isinstance(max_concurrency, int) or max_concurrency < 0:
        raise ExecutorDefinitionError(
            f"executor {name}: max_concurrency must be an int >= 0, got {max_concurrency!r}"
        )


def method_for(executor: Executor, mode: ExecutionMode) -> Callable[[JobContext], Any]:
    """The method that runs an attempt in ``mode``."""
    cls = type(executor)
    if mode == ExecutionMode.RESUME and overrides(cls, "resume"):
        return executor.resume
    if mode == ExecutionMode.RETRY and overrides(cls, "retry"):
        return executor.retry
    return executor.execute
