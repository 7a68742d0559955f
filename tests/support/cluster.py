"""Several ``jobwarden serve`` processes on one PostgreSQL, and how a test finds which one leads.

cluster = EngineCluster(db_url, size=3, log_dir=tmp_path).start()
leader = await cluster.wait_for_leader()        # the EngineProcess that leads
cluster.kill(leader)                            # kill -9
new = await cluster.wait_for_leader(exclude={leader})
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from jobwarden.v1 import cluster_service_pb2 as cs
from jobwarden.v1 import cluster_service_pb2_grpc

from .engine_process import EngineProcess

__all__ = ["EngineCluster", "leads", "list_engines"]


async def leads(address: str, timeout: float = 2.0) -> bool:
    """Whether the engine at ``address`` takes writes now (health "jobwarden.v1.Leader" SERVING)."""
    async with grpc.aio.insecure_channel(address) as channel:
        try:
            answer = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="jobwarden.v1.Leader"), timeout=timeout
            )
        except grpc.aio.AioRpcError:
            return False
        return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)


async def list_engines(address: str, timeout: float = 2.0) -> cs.ListEnginesResponse | None:
    """ListEngines from one engine; None when it does not answer."""
    async with grpc.aio.insecure_channel(address) as channel:
        try:
            return await cluster_service_pb2_grpc.ClusterServiceStub(channel).ListEngines(
                cs.ListEnginesRequest(), timeout=timeout
            )
        except grpc.aio.AioRpcError:
            return None


class EngineCluster:
    def __init__(
        self,
        db_url: str,
        *,
        size: int = 3,
        log_dir: Path | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.db_url = db_url
        self.engines = [
            EngineProcess(
                db_url,
                extra_args=("--engine-id", f"engine-{index}", *extra_args),
                log_path=log_dir / f"engine-{index}.log" if log_dir else None,
            )
            for index in range(size)
        ]

    def start(self) -> EngineCluster:
        for engine in self.engines:
            engine.start()
        return self

    def stop(self) -> None:
        for engine in self.engines:
            engine.terminate()

    @property
    def addresses(self) -> list[str]:
        return [engine.address for engine in self.engines]

    def alive(self) -> list[EngineProcess]:
        return [e for e in self.engines if e.process is not None and e.process.poll() is None]

    def by_address(self, address: str) -> EngineProcess:
        return next(e for e in self.engines if e.address == address)

    async def wait_for_leader(
        self, *, exclude: set[EngineProcess] | frozenset[EngineProcess] = frozenset(), timeout: float = 30.0
    ) -> EngineProcess:
        """The engine every live engine names as the leader (not one of ``exclude``), once it takes
        writes."""
        deadline = time.monotonic() + timeout
        while True:
            live = [e for e in self.alive() if e not in exclude]
            answers = [await list_engines(e.address) for e in live]
            leaders = {a.leader_address for a in answers if a is not None}
            if len(leaders) == 1 and (address := leaders.pop()):
                candidates = [e for e in live if e.address == address]
                if candidates and all(a is not None for a in answers) and await leads(address):
                    return candidates[0]
            if time.monotonic() > deadline:
                raise AssertionError(f"no single leader within {timeout}s: {answers}")
            await asyncio.sleep(0.05)

    def __enter__(self) -> EngineCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
