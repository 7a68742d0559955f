"""ClusterService: which engines share the store, and which one leads. A thin translation."""

from __future__ import annotations

from typing import Any

from grpc import aio
from jobwarden.server.core import Engine, EngineMember
from jobwarden.v1 import cluster_service_pb2 as pb
from jobwarden.v1 import cluster_service_pb2_grpc

from .convert import timestamp, wire_enum
from .errors import grpc_errors

__all__ = ["ClusterService"]

Context = aio.ServicerContext[Any, Any]


def _engine_info(member: EngineMember) -> pb.EngineInfo:
    return pb.EngineInfo(
        engine_id=member.engine_id,
        address=member.address,
        role=wire_enum(member.role),
        epoch=member.epoch,
        started_at=timestamp(member.started_at),
        seen_at=timestamp(member.seen_at),
        lease_expires_at=timestamp(member.lease_expires_at),
        version=member.version,
    )


class ClusterService(cluster_service_pb2_grpc.ClusterServiceServicer):
    def __init__(self, engine: Engine, *, address: str = "") -> None:
        self.engine = engine
        #: this engine's address, for the one engine on a SQLite store (it keeps no members table)
        self.address = address

    @grpc_errors
    async def ListEngines(self, request: pb.ListEnginesRequest, context: Context) -> pb.ListEnginesResponse:
        view = await self.engine.cluster()
        engines = [_engine_info(member) for member in view.engines]
        leader_address = view.leader_address
        if self.engine.leadership is None:
            for info in engines:
                info.address = info.address or self.address
            leader_address = self.address
        return pb.ListEnginesResponse(
            engine_id=view.engine_id,
            engines=engines,
            leader_id=view.leader_id,
            leader_address=leader_address,
            epoch=view.epoch,
        )
