"""The gRPC server: the three jobwarden services, health and reflection, around one engine."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from jobwarden.contract import Limits
from jobwarden.server.core import Engine, EngineConfig
from jobwarden.v1 import (
    executor_service_pb2,
    executor_service_pb2_grpc,
    job_service_pb2,
    job_service_pb2_grpc,
    lock_service_pb2,
    lock_service_pb2_grpc,
)

from .executor_service import ExecutorService
from .job_service import JobService
from .lock_service import LockService

__all__ = ["EngineServer", "ServerOptions"]

log = logging.getLogger("jobwarden.server")

SERVICE_NAMES = (
    job_service_pb2.DESCRIPTOR.services_by_name["JobService"].full_name,
    executor_service_pb2.DESCRIPTOR.services_by_name["ExecutorService"].full_name,
    lock_service_pb2.DESCRIPTOR.services_by_name["LockService"].full_name,
)


@dataclass(slots=True)
class ServerOptions:
    host: str = "127.0.0.1"
    port: int = 50051
    #: WatchJobs sends an empty batch this often, so a silent stream means a dead one
    watch_keepalive: float = 5.0


class EngineServer:
    """An engine with its gRPC server. ``await start()``, then ``address``; ``await stop()``."""

    def __init__(self, config: EngineConfig, options: ServerOptions | None = None) -> None:
        self.config = config
        self.options = options or ServerOptions()
        self.engine = Engine(config)
        self.port = 0
        self._server: aio.Server | None = None
        self._health = health.aio.HealthServicer() if hasattr(health, "aio") else health.HealthServicer()

    @property
    def address(self) -> str:
        return f"{self.options.host}:{self.port}"

    async def start(self) -> None:
        await self.engine.start()
        server = aio.server(
            options=[
                ("grpc.max_receive_message_length", Limits.MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", Limits.MAX_MESSAGE_BYTES),
                ("grpc.keepalive_time_ms", 20_000),
                ("grpc.keepalive_timeout_ms", 10_000),
                ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.so_reuseport", 0),
            ]
        )
        job_service_pb2_grpc.add_JobServiceServicer_to_server(
            JobService(self.engine, keepalive_seconds=self.options.watch_keepalive), server
        )
        executor_service_pb2_grpc.add_ExecutorServiceServicer_to_server(ExecutorService(self.engine), server)
        lock_service_pb2_grpc.add_LockServiceServicer_to_server(LockService(self.engine), server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(
            (
                *SERVICE_NAMES,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ),
            server,
        )
        self.port = server.add_insecure_port(f"{self.options.host}:{self.options.port}")
        if not self.port:
            raise OSError(f"cannot listen on {self.options.host}:{self.options.port}")
        await server.start()
        self._server = server
        for name in ("", *SERVICE_NAMES):
            await _set_health(self._health, name, health_pb2.HealthCheckResponse.SERVING)
        log.info("jobwarden engine listening on %s (store %s)", self.address, _redact(self.config.db_url))

    async def stop(self, grace: float = 1.0) -> None:
        for name in ("", *SERVICE_NAMES):
            await _set_health(self._health, name, health_pb2.HealthCheckResponse.NOT_SERVING)
        if self._server is not None:
            # Close worker sessions first so their streams end instead of holding the grace period.
            await self.engine.stop()
            await self._server.stop(grace)
            self._server = None
        else:
            await self.engine.stop()

    async def wait(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()


async def _set_health(servicer: object, name: str, status: int) -> None:
    result = servicer.set(name, status)  # type: ignore[attr-defined]
    if result is not None and hasattr(result, "__await__"):
        await result


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url
