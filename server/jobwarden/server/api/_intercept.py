"""Wrapping a gRPC method handler so a check runs before the servicer sees the call.

A check (a ``Gate``) gets the request (``None`` when the client streams its requests) and the call's
context; it refuses the call by aborting the context, so the servicer never runs and nothing changes.
For client streams a ``FirstMessageGate`` may look at the first message before the servicer does.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias

import grpc
from grpc import aio

__all__ = ["Continuation", "FirstMessageGate", "Gate", "Handler", "ResponseHook", "guard"]

Context = aio.ServicerContext[Any, Any]
# (strings: grpc's classes take no subscript at run time)
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
#: what a ``ServerInterceptor`` is handed: the next interceptor (or the server), a method's handler
Continuation: TypeAlias = "Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]]"
Gate = Callable[[Any, Context], Awaitable[None]]
#: (first message or None when the stream ended at once, context)
FirstMessageGate = Callable[[Any, Context], Awaitable[None]]
ResponseHook = Callable[[Any, Context], None]

#: how long the first message of a client stream may take before the check gives up waiting
FIRST_MESSAGE_TIMEOUT = 30.0


async def _prepend(first: Any, rest: AsyncIterator[Any]) -> AsyncIterator[Any]:
    yield first
    async for message in rest:
        yield message


async def _empty() -> AsyncIterator[Any]:
    return
    yield  # an async generator that yields nothing


def guard(
    handler: grpc.RpcMethodHandler[Any, Any],
    gate: Gate,
    *,
    first_message: FirstMessageGate | None = None,
    on_response: ResponseHook | None = None,
) -> grpc.RpcMethodHandler[Any, Any]:
    """``handler`` with ``gate`` run before it (and ``first_message`` on a client stream's first
    message, ``on_response`` on each streamed response)."""
    h: Any = handler
    if h.unary_unary is not None:
        unary_unary = h.unary_unary

        async def unary_unary_guarded(request: Any, context: Context) -> Any:
            await gate(request, context)
            result = unary_unary(request, context)
            return await result if inspect.isawaitable(result) else result

        return h._replace(unary_unary=unary_unary_guarded)  # type: ignore[no-any-return]

    if h.unary_stream is not None:
        unary_stream = h.unary_stream

        async def unary_stream_guarded(request: Any, context: Context) -> AsyncIterator[Any]:
            await gate(request, context)
            async for response in _aiter(unary_stream(request, context)):
                if on_response is not None:
                    on_response(response, context)
                yield response

        return h._replace(unary_stream=unary_stream_guarded)  # type: ignore[no-any-return]

    if h.stream_unary is not None:
        stream_unary = h.stream_unary

        async def stream_unary_guarded(requests: AsyncIterator[Any], context: Context) -> Any:
            await gate(None, context)
            requests = await _check_first(requests, context, first_message)
            result = stream_unary(requests, context)
            return await result if inspect.isawaitable(result) else result

        return h._replace(stream_unary=stream_unary_guarded)  # type: ignore[no-any-return]

    stream_stream = h.stream_stream

    async def stream_stream_guarded(requests: AsyncIterator[Any], context: Context) -> AsyncIterator[Any]:
        await gate(None, context)
        requests = await _check_first(requests, context, first_message)
        async for response in _aiter(stream_stream(requests, context)):
            if on_response is not None:
                on_response(response, context)
            yield response

    return h._replace(stream_stream=stream_stream_guarded)  # type: ignore[no-any-return]


async def _check_first(
    requests: AsyncIterator[Any], context: Context, first_message: FirstMessageGate | None
) -> AsyncIterator[Any]:
    if first_message is None:
        return requests
    iterator = aiter(requests)
    try:
        first = await asyncio.wait_for(anext(iterator), FIRST_MESSAGE_TIMEOUT)
    except (StopAsyncIteration, TimeoutError):
        await first_message(None, context)
        return _empty()
    await first_message(first, context)
    return _prepend(first, iterator)


async def _aiter(result: Any) -> AsyncIterator[Any]:
    if inspect.isawaitable(result):
        result = await result
    if hasattr(result, "__aiter__"):
        async for item in result:
            yield item
    elif result is not None:
        for item in result:
            yield item
