"""``/metrics`` over HTTP, served in the engine's event loop.

Serving from the loop (rather than prometheus-client's thread) means a scrape reads the engine's state
between two of its steps, never in the middle of one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

__all__ = ["MetricsServer"]

log = logging.getLogger("jobwarden.observability")

_MAX_REQUEST_BYTES = 16 * 1024
_REQUEST_TIMEOUT = 10.0


class MetricsServer:
    """``GET /metrics`` (Prometheus text format) on ``host:port``; ``await start()``, ``await stop()``."""

    def __init__(self, registry: CollectorRegistry, host: str = "127.0.0.1", port: int = 0) -> None:
        self.registry = registry
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None
        self.scrapes = 0

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("metrics on %s", self.url)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _REQUEST_TIMEOUT)
            if len(head) > _MAX_REQUEST_BYTES:
                raise ValueError("request too large")
            method, _, rest = head.split(b"\r\n", 1)[0].decode("latin-1").partition(" ")
            path = rest.split(" ", 1)[0].split("?", 1)[0]
            if method not in ("GET", "HEAD"):
                await self._reply(writer, 405, b"method not allowed\n", "text/plain")
            elif path == "/metrics":
                self.scrapes += 1
                body = generate_latest(self.registry)
                await self._reply(writer, 200, b"" if method == "HEAD" else body, CONTENT_TYPE_LATEST)
            elif path == "/":
                await self._reply(writer, 200, b"jobwarden engine: see /metrics\n", "text/plain")
            else:
                await self._reply(writer, 404, b"not found\n", "text/plain")
        except (
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            TimeoutError,
            ValueError,
            ConnectionError,
        ):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    @staticmethod
    async def _reply(writer: asyncio.StreamWriter, status: int, body: bytes, content_type: str) -> None:
        reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed"}[status]
        writer.write(
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode("latin-1")
            + body
        )
        await writer.drain()
