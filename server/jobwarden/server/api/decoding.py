"""Request bodies that do not decode: INVALID_ARGUMENT with a plain message, not gRPC's UNKNOWN.

Left alone, grpcio answers a body its deserializer cannot parse (garbage bytes, messages nested
beyond the decoder's depth) with UNKNOWN ("Unexpected <class 'DecodeError'>") and logs an ERROR with
a traceback for each. Here every handler's deserializer is wrapped: a body that does not decode
becomes an ``Undecodable`` that says why, and the call is refused with INVALID_ARGUMENT, logged in
one WARNING line, before any servicer sees it. A client-streaming method may take the ``Undecodable``
messages itself instead (``Connect`` answers each with a Refusal, and the stream goes on).
"""

from __future__ import annotations

import inspect
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable, Collection
from typing import Any

import grpc
from grpc import aio
from jobwarden.contract import Limits

from ._intercept import Continuation, Handler, _aiter

__all__ = ["DecodeInterceptor", "Undecodable", "tolerant"]

log = logging.getLogger("jobwarden.api")

Context = aio.ServicerContext[Any, Any]


class Undecodable:
    """What a request body that does not decode is read as; ``message`` says so in plain words."""

    __slots__ = ("message",)

    def __init__(self, type_name: str, error: Exception) -> None:
        self.message = f"the request body is not a valid {type_name}: {_reason(error)}"

    def __repr__(self) -> str:
        return f"Undecodable({self.message!r})"


def _reason(error: Exception) -> str:
    text = str(error)
    if text.startswith("Error parsing message") and ": " in text:
        # "Error parsing message with type 'X': why": the type is named already.
        text = text.split(": ", 1)[1]
    if isinstance(error, RecursionError) or "MaxDepth" in text:
        return (
            "its messages nest deeper than the decoder allows (a JSON payload may nest at most "
            f"{Limits.MAX_PAYLOAD_DEPTH} levels)"
        )
    return text or type(error).__name__


def _type_name(deserializer: Callable[[bytes], Any]) -> str:
    # A generated message class's FromString is bound to the class, which names the type.
    owner = getattr(deserializer, "__self__", None)
    descriptor = getattr(owner, "DESCRIPTOR", None)
    return str(getattr(descriptor, "full_name", "request"))


def tolerant(deserializer: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    """``deserializer``, answering a body it cannot parse with an ``Undecodable`` instead of raising."""
    type_name = _type_name(deserializer)

    def decode(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception as error:  # any failure to parse bytes means the same: not a valid body
            return Undecodable(type_name, error)

    return decode


class DecodeInterceptor(aio.ServerInterceptor):
    """Refuses undecodable request bodies with INVALID_ARGUMENT before the servicer runs.

    ``own_refusals`` names client-streaming methods whose servicer takes ``Undecodable`` messages
    itself (and refuses each on its stream).
    """

    def __init__(self, *, own_refusals: Collection[str] = ()) -> None:
        self.own_refusals = frozenset(own_refusals)
        #: refusals so far, by gRPC status code name (metrics read it)
        self.refusals: Counter[str] = Counter()
        #: the wrapped handler of each method, made on its first call (a method's handler is the same
        #: object every call: wrapping it anew per call cost a few closures each)
        self._wrapped: dict[str, tuple[Any, Any]] = {}

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler | None:
        handler: Any = await continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler  # type: ignore[no-any-return]
        method: str = handler_call_details.method
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]  # type: ignore[no-any-return]
        wrapped = handler._replace(request_deserializer=tolerant(handler.request_deserializer))
        if method not in self.own_refusals:
            wrapped = self._refusing(wrapped, method)
        self._wrapped[method] = (handler, wrapped)
        return wrapped  # type: ignore[no-any-return]

    async def refuse(self, context: Context, method: str, undecodable: Undecodable) -> None:
        """End the call with INVALID_ARGUMENT and the reason (one WARNING line, no traceback)."""
        self.refusals[grpc.StatusCode.INVALID_ARGUMENT.name] += 1
        log.warning("refused %s from %s: INVALID_ARGUMENT %s", method, context.peer(), undecodable.message)
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, undecodable.message)

    def _refusing(self, handler: Any, method: str) -> grpc.RpcMethodHandler[Any, Any]:
        if handler.unary_unary is not None:
            unary_unary = handler.unary_unary

            async def unary_unary_checked(request: Any, context: Context) -> Any:
                if isinstance(request, Undecodable):
                    await self.refuse(context, method, request)
                result = unary_unary(request, context)
                return await result if inspect.isawaitable(result) else result

            return handler._replace(unary_unary=unary_unary_checked)  # type: ignore[no-any-return]
        if handler.unary_stream is not None:
            unary_stream = handler.unary_stream

            async def unary_stream_checked(request: Any, context: Context) -> AsyncIterator[Any]:
                if isinstance(request, Undecodable):
                    await self.refuse(context, method, request)
                async for response in _aiter(unary_stream(request, context)):
                    yield response

            return handler._replace(unary_stream=unary_stream_checked)  # type: ignore[no-any-return]
        if handler.stream_unary is not None:
            stream_unary = handler.stream_unary

            async def stream_unary_checked(requests: AsyncIterator[Any], context: Context) -> Any:
                found: list[Undecodable] = []
                result = stream_unary(_until_undecodable(requests, found), context)
                response = await result if inspect.isawaitable(result) else result
                if found:
                    await self.refuse(context, method, found[0])
                return response

            return handler._replace(stream_unary=stream_unary_checked)  # type: ignore[no-any-return]
        stream_stream = handler.stream_stream

        async def stream_stream_checked(requests: AsyncIterator[Any], context: Context) -> AsyncIterator[Any]:
            found: list[Undecodable] = []
            async for response in _aiter(stream_stream(_until_undecodable(requests, found), context)):
                yield response
            if found:
                await self.refuse(context, method, found[0])

        return handler._replace(stream_stream=stream_stream_checked)  # type: ignore[no-any-return]


async def _until_undecodable(requests: AsyncIterator[Any], found: list[Undecodable]) -> AsyncIterator[Any]:
    """The stream's messages up to the first that does not decode (kept in ``found``)."""
    async for request in requests:
        if isinstance(request, Undecodable):
            found.append(request)
            return
        yield request
