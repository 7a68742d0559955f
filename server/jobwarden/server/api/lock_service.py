"""LockService: the lock table for external holders. A thin translation onto the engine."""

from __future__ import annotations

from typing import Any

from grpc import aio
from jobwarden.server.core import Engine, InvalidArgument
from jobwarden.v1 import lock_service_pb2 as pb
from jobwarden.v1 import lock_service_pb2_grpc
from jobwarden.wire import duration_seconds

from .convert import job_to_proto, lock_holding_to_proto
from .errors import grpc_errors
from .identity import actor_of

__all__ = ["LockService"]

Context = aio.ServicerContext[Any, Any]


class LockService(lock_service_pb2_grpc.LockServiceServicer):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @grpc_errors
    async def AcquireLock(self, request: pb.AcquireLockRequest, context: Context) -> pb.AcquireLockResponse:
        if not request.HasField("ttl"):
            raise InvalidArgument("ttl is required: external locks always expire")
        held = await self.engine.acquire_locks(
            request.holder,
            [(lock.resource, lock.mode) for lock in request.locks],
            duration_seconds(request.ttl),
            duration_seconds(request.wait) if request.HasField("wait") else None,
        )
        return pb.AcquireLockResponse(held=[lock_holding_to_proto(r, h) for r, h in held])

    @grpc_errors
    async def ReleaseLock(self, request: pb.ReleaseLockRequest, context: Context) -> pb.ReleaseLockResponse:
        released = await self.engine.release_locks(request.holder, list(request.resources))
        return pb.ReleaseLockResponse(released=released)

    @grpc_errors
    async def ListLocks(self, request: pb.ListLocksRequest, context: Context) -> pb.ListLocksResponse:
        return pb.ListLocksResponse(
            resources=[
                pb.ResourceLocks(
                    resource=view.resource,
                    holders=[
                        lock_holding_to_proto(view.resource, h, self.engine.lock_holder_note(h.job_id))
                        for h in view.holders
                    ],
                    waiters=[lock_holding_to_proto(view.resource, h) for h in view.waiters],
                )
                for view in self.engine.list_locks(request.prefix)
            ]
        )

    @grpc_errors
    async def ForceReleaseJobLocks(
        self, request: pb.ForceReleaseJobLocksRequest, context: Context
    ) -> pb.ForceReleaseJobLocksResponse:
        released, job = await self.engine.force_release_job_locks(
            request.job_id, request.reason, actor=actor_of(context)
        )
        return pb.ForceReleaseJobLocksResponse(released=released, job=job_to_proto(job))
