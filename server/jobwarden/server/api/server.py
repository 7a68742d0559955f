"""The gRPC server: the jobwarden services, health and reflection, around one engine.

Health: the whole server ("") and JobService and ClusterService are SERVING on every engine that is
up (standbys serve reads); ``LEADER_HEALTH_SERVICE`` ("jobwarden.v1.Leader"), ExecutorService and
LockService are SERVING only on the engine that leads now: a load balancer health-checks
"jobwarden.v1.Leader" to send writes and workers to the leader (docs/high-availability.md).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from jobwarden.contract import Limits
from jobwarden.server.core import Engine, EngineConfig, EngineRole
from jobwarden.v1 import (
    cluster_service_pb2,
    cluster_service_pb2_grpc,
    executor_service_pb2,
    executor_service_pb2_grpc,
    job_service_pb2,
    lock_service_pb2,
    lock_service_pb2_grpc,
    workflow_service_pb2,
    workflow_service_pb2_grpc,
)

from .auth import AuthInterceptor, Tokens, lock_templates_only
from .cluster_service import ClusterService
from .decoding import DecodeInterceptor
from .executor_service import ExecutorService
from .handlers import job_service_handler
from .job_service import JobService
from .leader_guard import LeaderGuard
from .limits import DEFAULT_MAX_WATCHERS_PER_CLIENT, LimitsInterceptor
from .lock_service import LockService
from .tls import TlsFiles, server_credentials
from .workflow_service import WorkflowService

__all__ = ["LEADER_HEALTH_SERVICE", "EngineServer", "ServerOptions"]

log = logging.getLogger("jobwarden.server")

#: the worker stream, whose servicer refuses an undecodable message on the stream itself
CONNECT = "/jobwarden.v1.ExecutorService/Connect"

SERVICE_NAMES = (
    job_service_pb2.DESCRIPTOR.services_by_name["JobService"].full_name,
    executor_service_pb2.DESCRIPTOR.services_by_name["ExecutorService"].full_name,
    lock_service_pb2.DESCRIPTOR.services_by_name["LockService"].full_name,
    workflow_service_pb2.DESCRIPTOR.services_by_name["WorkflowService"].full_name,
    cluster_service_pb2.DESCRIPTOR.services_by_name["ClusterService"].full_name,
)
#: the health service name that is SERVING only on the engine leading now
LEADER_HEALTH_SERVICE = "jobwarden.v1.Leader"
#: SERVING on every engine that is up, leader or standby
_ALWAYS_SERVING = ("", SERVICE_NAMES[0], SERVICE_NAMES[3])
#: SERVING only on the leader
_LEADER_ONLY = (LEADER_HEALTH_SERVICE, SERVICE_NAMES[1], SERVICE_NAMES[2])


@dataclass(slots=True)
class ServerOptions:
    host: str = "127.0.0.1"
    port: int = 50051
    #: WatchJobs sends an empty batch this often, so a silent stream means a dead one
    watch_keepalive: float = 5.0
    #: TLS on the port (and mutual TLS when ``tls.client_ca`` is set); None: plaintext
    tls: TlsFiles | None = None
    #: token authentication with roles; None: anyone who reaches the port may do anything
    tokens: Tokens | None = None
    max_watchers_per_client: int = DEFAULT_MAX_WATCHERS_PER_CLIENT
    #: serve Prometheus metrics on this port (0 picks a free one); None: no metrics
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    #: record OpenTelemetry spans of traced jobs (needs the tracing extra)
    tracing: bool = False
    #: the OpenTelemetry SDK ``TracerProvider`` to record them with; None: one made from the
    #: ``OTEL_*`` variables (service ``jobwarden-engine``), shut down with the server
    tracer_provider: Any = None


class EngineServer:
    """An engine with its gRPC server. ``await start()``, then ``address``; ``await stop()``."""

    def __init__(self, config: EngineConfig, options: ServerOptions | None = None) -> None:
        self.config = config
        self.options = options or ServerOptions()
        self.engine = Engine.from_config(config)
        self.port = 0
        self._server: aio.Server | None = None
        self.auth: AuthInterceptor | None = None
        self.limits: LimitsInterceptor | None = None
        self.decoding: DecodeInterceptor | None = None
        self.leader_guard: LeaderGuard | None = None
        #: the metrics and their HTTP server, when ``metrics_port`` is set
        self.metrics: Any = None
        self.metrics_server: Any = None
        #: the ``JobTracer`` making spans of traced jobs, when ``tracing`` is set
        self.job_tracer: Any = None
        self._own_tracer_provider: Any = None
        self._health = health.aio.HealthServicer() if hasattr(health, "aio") else health.HealthServicer()

    @property
    def address(self) -> str:
        return f"{self.options.host}:{self.port}"

    async def start(self) -> None:
        options = self.options
        # Bad TLS files are refused before anything starts.
        credentials = server_credentials(options.tls) if options.tls is not None else None
        if options.tracing:
            self.job_tracer = self._job_tracer()
        # Outermost: a body that does not decode is refused before any other check reads it.
        self.decoding = DecodeInterceptor(own_refusals={CONNECT})
        interceptors: list[aio.ServerInterceptor] = [self.decoding]
        if options.tokens is not None or (options.tls is not None and options.tls.client_ca is not None):
            self.auth = AuthInterceptor(options.tokens, worker_config_check=lock_templates_only(self.engine))
            interceptors.append(self.auth)
        self.limits = LimitsInterceptor(max_watchers_per_client=options.max_watchers_per_client)
        interceptors.append(self.limits)
        # Innermost: a refused call was checked like any other first (auth, limits), then sent on.
        self.leader_guard = LeaderGuard(self.engine)
        interceptors.append(self.leader_guard)
        server = aio.server(
            interceptors=interceptors,
            options=[
                ("grpc.max_receive_message_length", Limits.MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", Limits.MAX_MESSAGE_BYTES),
                ("grpc.keepalive_time_ms", 20_000),
                ("grpc.keepalive_timeout_ms", 10_000),
                ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.so_reuseport", 0),
            ],
        )
        # The port is bound before the engine starts: a standby writes its address in the members
        # table, and a leader in the lease, before it answers anyone.
        listen = f"{self.options.host}:{self.options.port}"
        if credentials is not None:
            self.port = server.add_secure_port(listen, credentials)
        else:
            self.port = server.add_insecure_port(listen)
        if not self.port:
            raise OSError(f"cannot listen on {self.options.host}:{self.options.port}")
        self.engine.set_address(self.address)
        if self.engine.leadership is not None:
            self.engine.leadership.observe_roles(self._role_changed)
        await self.engine.start()
        await self._start_observability()
        server.add_generic_rpc_handlers(
            (job_service_handler(JobService(self.engine, keepalive_seconds=self.options.watch_keepalive)),)
        )
        executor_service_pb2_grpc.add_ExecutorServiceServicer_to_server(ExecutorService(self.engine), server)
        lock_service_pb2_grpc.add_LockServiceServicer_to_server(LockService(self.engine), server)
        workflow_service_pb2_grpc.add_WorkflowServiceServicer_to_server(WorkflowService(self.engine), server)
        cluster_service_pb2_grpc.add_ClusterServiceServicer_to_server(
            ClusterService(self.engine, address=self.address), server
        )
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(
            (
                *SERVICE_NAMES,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ),
            server,
        )
        await server.start()
        self._server = server
        await self._update_health()
        role = ""
        if self.engine.leadership is not None:
            role = f", engine {self.engine.engine_id} as {self.engine.role.name.lower()}"
        log.info(
            "jobwarden engine listening on %s (store %s%s%s%s)",
            self.address,
            self.config.shown_db_url,
            ", TLS" + (" with client certificates" if options.tls and options.tls.client_ca else "")
            if options.tls
            else ", plaintext",
            f", {len(options.tokens)} tokens" if options.tokens is not None else ", no authentication",
            role,
        )

    def _role_changed(self, role: EngineRole, epoch: int, reason: str) -> None:
        if self._server is not None:
            asyncio.get_running_loop().create_task(self._update_health())

    async def _update_health(self) -> None:
        serving = health_pb2.HealthCheckResponse.SERVING
        not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
        for name in _ALWAYS_SERVING:
            await _set_health(self._health, name, serving)
        leads = self.engine.is_leader
        for name in _LEADER_ONLY:
            await _set_health(self._health, name, serving if leads else not_serving)

    async def _start_observability(self) -> None:
        from jobwarden.server.observability import EngineMetrics, MetricsServer, observe

        if self.options.metrics_port is None:
            observe(self.engine, job_tracer=self.job_tracer)
            return
        refusals = {"limits": lambda: self.limits.refusals if self.limits else {}}
        refusals["auth"] = lambda: self.auth.refusals if self.auth else {}
        refusals["decoding"] = lambda: self.decoding.refusals if self.decoding else {}
        self.metrics = EngineMetrics(self.engine, refusals=refusals)
        observe(self.engine, self.metrics, self.job_tracer)
        self.metrics_server = MetricsServer(
            self.metrics.registry, self.options.metrics_host, self.options.metrics_port
        )
        await self.metrics_server.start()

    def _job_tracer(self) -> Any:
        """Raises ``TracingSetupError`` (before the port opens) when tracing cannot be set up."""
        from jobwarden.sdk._tracing import AVAILABLE, INSTALL_HINT, TracingSetupError, configure_tracing

        if not AVAILABLE:
            raise TracingSetupError(f"tracing needs OpenTelemetry: {INSTALL_HINT}")
        from jobwarden.server.observability._tracing import JobTracer

        provider = self.options.tracer_provider
        if provider is None:
            provider = self._own_tracer_provider = configure_tracing("jobwarden-engine")
        return JobTracer(provider)

    async def stop(self, grace: float = 1.0) -> None:
        if self.metrics_server is not None:
            await self.metrics_server.stop()
            self.metrics_server = None
        for name in (*_ALWAYS_SERVING, *_LEADER_ONLY):
            await _set_health(self._health, name, health_pb2.HealthCheckResponse.NOT_SERVING)
        if self._server is not None:
            # Close worker sessions first so their streams end instead of holding the grace period.
            await self.engine.stop()
            await self._server.stop(grace)
            self._server = None
        else:
            await self.engine.stop()
        if self._own_tracer_provider is not None:
            # Export what is still batched; a collector that is down costs at most its timeout.
            provider, self._own_tracer_provider = self._own_tracer_provider, None
            await asyncio.to_thread(provider.shutdown)

    async def wait(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()


async def _set_health(servicer: object, name: str, status: int) -> None:
    result = servicer.set(name, status)  # type: ignore[attr-defined]
    if result is not None and hasattr(result, "__await__"):
        await result
