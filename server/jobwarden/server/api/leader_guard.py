"""Several engines on one PostgreSQL: a standby serves reads, and refuses everything else.

The one place that decides it (no check in each servicer): a call to a jobwarden service that is not
in ``STANDBY_READS``, made to an engine that does not lead now, fails with UNAVAILABLE, the message
"engine <id> is a standby; the leader is <address>", and the leader's address in the trailing
metadata key ``jobwarden-leader`` (absent while no engine holds the lease), as
cluster_service.proto documents. Health and reflection are not jobwarden services: they pass.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import grpc
from grpc import aio
from jobwarden.server.core import Engine

from ._intercept import Continuation, Handler, guard
from .errors import abort_with

__all__ = ["LEADER_METADATA_KEY", "STANDBY_READS", "LeaderGuard"]

log = logging.getLogger("jobwarden.api")

#: the trailing metadata key that names the leader in a standby's refusal
LEADER_METADATA_KEY = "jobwarden-leader"

#: what a standby answers from the store (everything else in jobwarden.v1 needs the leader)
STANDBY_READS = frozenset(
    {
        "/jobwarden.v1.JobService/GetJob",
        "/jobwarden.v1.JobService/ListJobs",
        "/jobwarden.v1.JobService/GetJobEvents",
        "/jobwarden.v1.JobService/GetJobLogs",
        "/jobwarden.v1.JobService/GetStats",
        "/jobwarden.v1.JobService/WatchJobs",
        "/jobwarden.v1.JobService/GetActionConfig",
        "/jobwarden.v1.JobService/ListActions",
        "/jobwarden.v1.ClusterService/ListEngines",
        # (Not GetWorkflow and ListWorkflows: definitions are loaded when an engine starts to lead.)
        "/jobwarden.v1.WorkflowService/GetWorkOrder",
        "/jobwarden.v1.WorkflowService/ListWorkOrders",
        "/jobwarden.v1.WorkflowService/GetWorkflowRun",
    }
)

_JOBWARDEN = "/jobwarden.v1."

Context = aio.ServicerContext[Any, Any]


class LeaderGuard(aio.ServerInterceptor):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        #: refusals so far, by gRPC status code name (metrics read it)
        self.refusals: Counter[str] = Counter()

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or not method.startswith(_JOBWARDEN) or method in STANDBY_READS:
            return handler
        return guard(handler, self._check_leader)

    async def _check_leader(self, request: Any, context: Context) -> None:
        engine = self.engine
        if engine.is_leader:
            return
        error = engine.not_leader()
        self.refusals["UNAVAILABLE"] += 1
        log.debug("refused a call from %s: %s", context.peer(), error.message)
        await abort_with(context, error)
