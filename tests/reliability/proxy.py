"""A small asyncio TCP proxy that plays a bad network between a worker and the engine.

Modes, switched at any moment for every connection through it:

- ``PASS``: bytes flow both ways;
- ``STALL``: nothing is read any more (both ways); the bytes wait, TCP's windows fill, the peers see
  silence (a partition); back to ``PASS`` and they flow again, in order, as TCP would deliver them;
- ``DROP``: the network drops the connections: every open one is reset and every new one is reset as
  soon as it is accepted, until the mode changes (a flapping link, a firewall that rejects);

and ``cut()`` resets every open connection once, ``cut_worker_side()`` only their worker's side (the
engine's side stays open and silent: a NAT or a load balancer that lost its state). (TCP never loses
bytes in the middle of a connection without breaking it, so the proxy does not either: a test that
threw bytes away would test a network that does not exist.)
"""

from __future__ import annotations

import asyncio
import contextlib
import enum


class Mode(enum.Enum):
    PASS = "pass"
    DROP = "drop"
    STALL = "stall"


class FaultyProxy:
    def __init__(self, target: str) -> None:
        host, _, port = target.rpartition(":")
        self._target = (host, int(port))
        self._server: asyncio.Server | None = None
        self._links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._pumps: set[asyncio.Task[None]] = set()
        #: engine-side connections left open by ``cut_worker_side``
        self._orphans: set[asyncio.StreamWriter] = set()
        self._changed = asyncio.Event()
        self.mode = Mode.PASS
        #: connections accepted so far
        self.connections = 0
        #: bytes relayed; connections reset as soon as they came (DROP)
        self.relayed = 0
        self.dropped = 0
        self.cuts = 0
        self.address = ""

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.address = f"127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self.address

    def set_mode(self, mode: Mode) -> None:
        self.mode = mode
        self._changed.set()
        self._changed = asyncio.Event()
        if mode is Mode.DROP:
            self._reset_all()

    async def cut(self) -> None:
        """Reset every connection through the proxy now."""
        self.cuts += 1
        self._reset_all()
        await asyncio.sleep(0)

    async def cut_worker_side(self) -> None:
        """Reset every connection on the worker's side only: the engine's side stays open, and nothing
        more comes through it, so the engine does not know yet that the worker has gone."""
        self.cuts += 1
        for client, upstream in list(self._links):
            self._orphans.add(upstream)
            with contextlib.suppress(Exception):
                client.transport.abort()
        self._links.clear()
        await asyncio.sleep(0)

    def _reset_all(self) -> None:
        for client, upstream in list(self._links):
            for writer in (client, upstream):
                with contextlib.suppress(Exception):
                    writer.transport.abort()  # an abortive close: the peers see a reset
        self._links.clear()

    async def stop(self) -> None:
        await self.cut()
        for orphan in self._orphans:
            with contextlib.suppress(Exception):
                orphan.transport.abort()
        self._orphans.clear()
        for pump in list(self._pumps):
            pump.cancel()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.mode is Mode.DROP:
            self.dropped += 1
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        link = (writer, up_writer)
        self._links.add(link)
        loop = asyncio.get_running_loop()
        pumps = [
            loop.create_task(self._pump(reader, up_writer)),
            loop.create_task(self._pump(up_reader, writer)),
        ]
        self._pumps.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
                self._pumps.discard(pump)
            self._links.discard(link)
            for w in link:
                if w not in self._orphans:
                    with contextlib.suppress(Exception):
                        w.close()

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while True:
                while self.mode is Mode.STALL:
                    await self._changed.wait()
                data = await source.read(65536)
                if not data:
                    return
                while self.mode is Mode.STALL:
                    await self._changed.wait()  # read just before the stall: hold it until it ends
                self.relayed += len(data)
                sink.write(data)
                await sink.drain()
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            return
