"""The executors a worker hosts: one instance per action, checked before the worker connects."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from jobwarden.contract import ExecutionMode
from jobwarden.sdk._context import JobContext
from jobwarden.sdk._exceptions import ExecutorDefinitionError
from jobwarden.sdk._executor import Executor, method_for, overrides, validate

__all__ = ["Hosted", "hosted_executors"]

Executors = Iterable[Executor | type[Executor]] | Executor | type[Executor]


@dataclass(slots=True)
class Hosted:
    """An executor instance and what the worker knows of it."""

    executor: Executor
    action: str
    is_async: dict[str, bool]
    running: int = 0
    methods: dict[ExecutionMode, tuple[Callable[[JobContext], Any], bool]] = field(default_factory=dict)

    @classmethod
    def of(cls, executor: Executor) -> Hosted:
        is_async = {
            name: inspect.iscoroutinefunction(getattr(executor, name))
            for name in ("execute", "resume", "retry", "cancel", "on_cancelled")
        }
        return cls(executor=executor, action=executor.action, is_async=is_async)

    def overrides(self, name: str) -> bool:
        return overrides(type(self.executor), name)

    def method(self, mode: ExecutionMode) -> tuple[Callable[[JobContext], Any], bool]:
        """The method that runs an attempt in ``mode``, and whether it is async (cached per mode)."""
        found = self.methods.get(mode)
        if found is None:
            method = method_for(self.executor, mode)
            found = self.methods[mode] = (method, inspect.iscoroutinefunction(method))
        return found


def hosted_executors(executors: Executors) -> dict[str, Hosted]:
    """The executors by action; ``ExecutorDefinitionError`` for a bad one, two for one action, or none."""
    hosted: dict[str, Hosted] = {}
    for executor in _instances(executors):
        validate(executor)
        if executor.action in hosted:
            raise ExecutorDefinitionError(
                f"two executors serve action {executor.action!r}: "
                f"{type(hosted[executor.action].executor).__qualname__} "
                f"and {type(executor).__qualname__}"
            )
        hosted[executor.action] = Hosted.of(executor)
    if not hosted:
        raise ExecutorDefinitionError("a worker needs at least one executor")
    return hosted


def _instances(executors: Executors) -> list[Executor]:
    items: Iterable[Any]
    items = [executors] if isinstance(executors, Executor | type) else executors
    out: list[Executor] = []
    for item in items:
        if isinstance(item, type) and issubclass(item, Executor):
            out.append(item())
        elif isinstance(item, Executor):
            out.append(item)
        else:
            raise ExecutorDefinitionError(
                f"{item!r} is not an Executor subclass or instance (subclass jobwarden.sdk.Executor)"
            )
    return out
