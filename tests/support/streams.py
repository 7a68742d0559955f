"""Reading a gRPC stream in a test: the next message, typed, or a clear failure."""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar, cast

import grpc

Response = TypeVar("Response")


async def next_message(
    call: grpc.aio.StreamStreamCall[Any, Response] | grpc.aio.UnaryStreamCall[Any, Response],
    timeout: float = 15.0,
) -> Response:
    """The stream's next message; an AssertionError (not a silent EOF object) if the engine ended it."""
    message = await asyncio.wait_for(call.read(), timeout)
    if message is grpc.aio.EOF:
        raise AssertionError("the engine ended the stream")
    return cast(Response, message)


def raw_unary(channel: grpc.aio.Channel, path: str) -> grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]:
    """A unary call of ``path`` that sends and returns bytes: for bodies no message class would write."""
    return cast("grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]", channel.unary_unary(path))


def raw_unary_stream(channel: grpc.aio.Channel, path: str) -> grpc.aio.UnaryStreamMultiCallable[bytes, bytes]:
    """A server-streaming call of ``path`` that sends bytes and yields bytes."""
    return cast("grpc.aio.UnaryStreamMultiCallable[bytes, bytes]", channel.unary_stream(path))
