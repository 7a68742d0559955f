"""The one place where domain errors become gRPC statuses."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
from grpc import aio
from jobwarden.server.core import JobwardenError, NotLeader

__all__ = ["STATUS_CODES", "abort_with", "grpc_errors", "grpc_stream_errors", "status_code"]

log = logging.getLogger("jobwarden.api")

STATUS_CODES: dict[str, grpc.StatusCode] = {code.name: code for code in grpc.StatusCode}

Req = TypeVar("Req")
Resp = TypeVar("Resp")
Self = TypeVar("Self")


def status_code(name: str) -> grpc.StatusCode:
    return STATUS_CODES.get(name, grpc.StatusCode.INTERNAL)


async def abort_with(context: aio.ServicerContext[Any, Any], error: JobwardenError) -> None:
    if isinstance(error, NotLeader) and error.leader_address:
        # cluster_service.proto: clients given several engines try this one next.
        await context.abort(
            status_code(error.code),
            error.message,
            trailing_metadata=(("jobwarden-leader", error.leader_address),),
        )
    await context.abort(status_code(error.code), error.message)


def grpc_errors(
    handler: Callable[[Self, Req, aio.ServicerContext[Req, Resp]], Awaitable[Resp]],
) -> Callable[[Self, Req, aio.ServicerContext[Req, Resp]], Awaitable[Resp]]:
    """Turn a JobwardenError raised by a unary handler into its gRPC status (and nothing changes)."""

    @functools.wraps(handler)
    async def wrapper(self: Self, request: Req, context: aio.ServicerContext[Req, Resp]) -> Resp:
        try:
            return await handler(self, request, context)
        except JobwardenError as error:
            await abort_with(context, error)
            raise AssertionError("unreachable") from None

    return wrapper


def grpc_stream_errors(
    handler: Callable[[Self, Req, aio.ServicerContext[Req, Resp]], AsyncIterator[Resp]],
) -> Callable[[Self, Req, aio.ServicerContext[Req, Resp]], AsyncIterator[Resp]]:
    @functools.wraps(handler)
    async def wrapper(
        self: Self, request: Req, context: aio.ServicerContext[Req, Resp]
    ) -> AsyncIterator[Resp]:
        try:
            async for item in handler(self, request, context):
                yield item
        except JobwardenError as error:
            await abort_with(context, error)

    return wrapper
