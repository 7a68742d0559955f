"""One ``Connect`` stream of a worker: register (presenting the last session's token), then read the
engine's messages, write the outbox and heartbeat until the stream ends."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio
from jobwarden.sdk._address import CHANNEL_OPTIONS
from jobwarden.sdk._credentials import aio_channel
from jobwarden.sdk._dispatch import Dispatcher
from jobwarden.sdk._exceptions import EngineUnavailable
from jobwarden.sdk._heartbeats import Heartbeats
from jobwarden.sdk._ledger import Ledger
from jobwarden.v1 import executor_service_pb2 as pb
from jobwarden.v1 import executor_service_pb2_grpc

__all__ = ["Fatal", "Identity", "Session"]

logger = logging.getLogger("jobwarden.worker")


class Fatal(Exception):
    """The engine refused this worker; reconnecting would not help."""


@dataclass(slots=True)
class Identity:
    """Who the worker is to the engine, kept across sessions."""

    #: the id the engine gave this worker
    worker_id: str = ""
    # The secret of the session: a reconnect presents it to replace a session the engine still
    # thinks alive (a cut it has not noticed yet); without it that worker id is refused.
    session_token: str = ""


class Session:
    """The worker's streams with the engine, one at a time: ``await session.once()`` runs one.

    ``register`` is the worker's ``Register`` without what changes between sessions (its jobs, its
    id and token); ``on_registered`` is called each time the engine has accepted a registration.
    """

    def __init__(
        self,
        address: str,
        *,
        identity: Identity,
        ledger: Ledger,
        dispatcher: Dispatcher,
        heartbeats: Heartbeats,
        register: pb.Register,
        stopping: asyncio.Event,
        connected: asyncio.Event,
        on_registered: Callable[[], None],
        worker_name: str,
    ) -> None:
        self.address = address
        self.identity = identity
        self.ledger = ledger
        self.dispatcher = dispatcher
        self.heartbeats = heartbeats
        self.register = register
        self.stopping = stopping
        self.connected = connected
        self.on_registered = on_registered
        self.worker_name = worker_name
        #: the current stream got as far as ``Registered``
        self.registered = False
        self._call: Any = None

    def cancel(self) -> None:
        """End the current stream now."""
        if self._call is not None:
            self._call.cancel()

    async def once(self) -> None:
        """One ``Connect`` stream, until it ends (``registered`` says if it got that far)."""
        self.registered = False
        async with aio_channel(self.address, options=CHANNEL_OPTIONS) as channel:
            stub = executor_service_pb2_grpc.ExecutorServiceStub(channel)
            call = stub.Connect(wait_for_ready=False)
            self._call = call
            tasks: list[asyncio.Task[None]] = []
            try:
                await call.write(pb.ConnectRequest(register=self._register_message()))
                first = await call.read()
                if not isinstance(first, pb.ConnectResponse):  # grpc.aio.EOF
                    raise EngineUnavailable(
                        f"the engine at {self.address} closed the stream before Registered"
                    )
                if first.WhichOneof("message") != "registered":
                    raise Fatal(f"the engine answered Register with {first.WhichOneof('message')!r}")
                self.identity.worker_id = first.registered.worker_id
                self.identity.session_token = first.registered.session_token
                self.dispatcher.on_registered(first.registered)
                self.registered = True
                self.on_registered()
                self.connected.set()
                tasks = [
                    asyncio.create_task(self._write_loop(call)),
                    asyncio.create_task(self.heartbeats.beat()),
                ]
                on_message = self.dispatcher.on_message
                while True:
                    message = await call.read()
                    if not isinstance(message, pb.ConnectResponse):  # grpc.aio.EOF
                        break
                    on_message(message)
            except asyncio.CancelledError:
                if not self.stopping.is_set():
                    raise
            except grpc.RpcError as error:
                if not (self.stopping.is_set() and error.code() == grpc.StatusCode.CANCELLED):
                    raise
            finally:
                self._call = None
                for task in tasks:
                    task.cancel()
                call.cancel()

    def _register_message(self) -> pb.Register:
        running = [
            pb.RunningJob(job_id=job.key[0], attempt=job.key[1]) for job in self.ledger.running.values()
        ]
        # A job whose result was not acknowledged is still ours: re-attach it so the result lands.
        running += [pb.RunningJob(job_id=job_id, attempt=attempt) for job_id, attempt in self.ledger.unacked]
        message = pb.Register()
        message.CopyFrom(self.register)
        message.running_jobs.extend(running)
        message.worker_id = self.identity.worker_id
        message.session_token = self.identity.session_token
        return message

    async def _write_loop(self, call: Any) -> None:
        ledger = self.ledger
        while True:
            await ledger.wake.wait()
            ledger.wake.clear()
            # One more turn of the loop lets reports made together leave together.
            await asyncio.sleep(0)
            try:
                for message in ledger.outbox.take(self.heartbeats.vouched()):
                    await call.write(message)
            except (grpc.RpcError, grpc.aio.UsageError, asyncio.InvalidStateError) as error:
                # The stream broke: the reader sees it and reconnects; unacknowledged results are
                # sent again on the next session.
                logger.debug("worker %s: write failed: %r", self.worker_name, error)
                return
            if not ledger.outbox:
                ledger.flushed.set()
