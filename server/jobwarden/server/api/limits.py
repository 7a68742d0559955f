"""Limits the servicers do not check themselves: watchers per client and the sizes of request lists.

The domain core checks what it takes in (input size, labels, variables, string lengths, page size,
locks per job: ``jobwarden.server.core.validation``) and gRPC refuses a message over
``Limits.MAX_MESSAGE_BYTES`` with RESOURCE_EXHAUSTED. This interceptor adds, before the servicer runs:

- at most ``max_watchers_per_client`` WatchJobs streams open at once per client (the authenticated
  principal, or the peer's address when authentication is off): RESOURCE_EXHAUSTED beyond. A stream
  holds its slot until it ends, or until the servicer gives it back early (``watch_slot``: a watcher
  cut for falling behind frees it at once, even while gRPC still waits to write to it);
- bounded filter lists in WatchJobs and ListJobs, and bounded ReleaseLock / ListLocks arguments:
  INVALID_ARGUMENT beyond.
"""

from __future__ import annotations

import contextvars
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from grpc import aio
from jobwarden.contract import Limits

from ._intercept import Continuation, Handler, _aiter, guard
from .identity import actor_of

__all__ = [
    "DEFAULT_MAX_WATCHERS_PER_CLIENT",
    "MAX_FILTER_ITEMS",
    "LimitsInterceptor",
    "watch_slot",
]

log = logging.getLogger("jobwarden.api")

#: WatchJobs streams one client may hold open at once
DEFAULT_MAX_WATCHERS_PER_CLIENT = 256
#: job ids, actions or statuses in one WatchJobs or ListJobs filter
MAX_FILTER_ITEMS = 1000

_WATCH = "/jobwarden.v1.JobService/WatchJobs"
_LIST = "/jobwarden.v1.JobService/ListJobs"
_RELEASE = "/jobwarden.v1.LockService/ReleaseLock"
_LIST_LOCKS = "/jobwarden.v1.LockService/ListLocks"

Context = aio.ServicerContext[Any, Any]

# grpc.aio runs each call in its own task, so the slot set here before the servicer runs is this call's.
_watch_slot: contextvars.ContextVar[Callable[[], None] | None] = contextvars.ContextVar(
    "jobwarden_watch_slot", default=None
)


def watch_slot() -> Callable[[], None]:
    """What gives this WatchJobs call's per-client slot back (once; later calls do nothing)."""
    return _watch_slot.get() or _nothing


def _nothing() -> None:
    return None


def _client_of(context: Context) -> str:
    # The authenticated principal when there is one (actor_of), else the peer's address.
    actor = actor_of(context)
    return actor if not actor.startswith("anonymous@") else actor.removeprefix("anonymous@")


class LimitsInterceptor(aio.ServerInterceptor):
    def __init__(self, *, max_watchers_per_client: int = DEFAULT_MAX_WATCHERS_PER_CLIENT) -> None:
        if max_watchers_per_client < 1:
            raise ValueError("max_watchers_per_client must be at least 1")
        self.max_watchers_per_client = max_watchers_per_client
        #: open WatchJobs streams per client
        self.watchers: Counter[str] = Counter()
        #: refusals so far, by gRPC status code name (metrics read it)
        self.refusals: Counter[str] = Counter()

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None:
            return handler
        if method == _WATCH:
            return self._watch(handler)
        if method == _LIST:
            return guard(handler, self._check_list)
        if method == _RELEASE:
            return guard(handler, self._check_release)
        if method == _LIST_LOCKS:
            return guard(handler, self._check_list_locks)
        return handler

    async def _refuse(self, context: Context, code: grpc.StatusCode, message: str) -> None:
        self.refusals[code.name] += 1
        log.info("refused a call from %s: %s %s", context.peer(), code.name, message)
        await context.abort(code, message)

    async def _check_count(self, context: Context, what: str, items: Any, limit: int) -> None:
        if len(items) > limit:
            await self._refuse(
                context, grpc.StatusCode.INVALID_ARGUMENT, f"{what}: {len(items)} items, at most {limit}"
            )

    async def _check_list(self, request: Any, context: Context) -> None:
        await self._check_count(context, "statuses", request.statuses, MAX_FILTER_ITEMS)

    async def _check_release(self, request: Any, context: Context) -> None:
        await self._check_count(context, "resources", request.resources, Limits.MAX_LOCKS_PER_JOB)
        if any(len(r) > Limits.MAX_RESOURCE_LENGTH for r in request.resources):
            await self._refuse(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"resources: a resource is longer than {Limits.MAX_RESOURCE_LENGTH} characters",
            )

    async def _check_list_locks(self, request: Any, context: Context) -> None:
        if len(request.prefix) > Limits.MAX_RESOURCE_LENGTH:
            await self._refuse(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"prefix is longer than {Limits.MAX_RESOURCE_LENGTH} characters",
            )

    def _slot_of(self, client: str) -> Callable[[], None]:
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            self.watchers[client] -= 1
            if self.watchers[client] <= 0:
                del self.watchers[client]

        return release

    def _watch(self, handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
        h: Any = handler
        original = h.unary_stream

        async def watch(request: Any, context: Context) -> AsyncIterator[Any]:
            for what in ("job_ids", "actions", "statuses"):
                await self._check_count(context, what, getattr(request, what), MAX_FILTER_ITEMS)
            if any(len(a) > Limits.MAX_ACTION_LENGTH for a in request.actions):
                await self._refuse(
                    context,
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"actions: an action is longer than {Limits.MAX_ACTION_LENGTH} characters",
                )
            client = _client_of(context)
            if self.watchers[client] >= self.max_watchers_per_client:
                await self._refuse(
                    context,
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"{client} already has {self.watchers[client]} watchers open, "
                    f"at most {self.max_watchers_per_client} allowed",
                )
            self.watchers[client] += 1
            release = self._slot_of(client)
            _watch_slot.set(release)
            try:
                async for response in _aiter(original(request, context)):
                    yield response
            finally:
                release()

        return h._replace(unary_stream=watch)  # type: ignore[no-any-return]
