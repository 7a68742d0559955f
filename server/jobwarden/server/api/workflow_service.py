"""WorkflowService: define workflows, start and steer work orders and runs. A thin translation onto
the engine's workflow runner."""

from __future__ import annotations

from typing import Any

from grpc import aio
from jobwarden.contract import WorkflowRunStatus
from jobwarden.server.core import Engine, InvalidArgument, StartRequest, WorkflowRun, WorkOrderQuery
from jobwarden.v1 import workflow_pb2, workflow_service_pb2, workflow_service_pb2_grpc
from jobwarden.wire import struct_to_dict

from .errors import grpc_errors
from .identity import actor_of
from .workflow_convert import (
    definition_from_proto,
    definition_to_proto,
    order_to_proto,
    run_to_proto,
    with_edges,
)

__all__ = ["WorkflowService"]

Context = aio.ServicerContext[Any, Any]


class WorkflowService(workflow_service_pb2_grpc.WorkflowServiceServicer):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _run(self, run: WorkflowRun) -> workflow_pb2.WorkflowRun:
        message = run_to_proto(run, self.engine.workflows.live_jobs(run))
        try:
            definition = self.engine.get_workflow(run.workflow, run.version)
        except Exception:  # a run of a definition this engine no longer loads: its steps still show
            return message
        return with_edges(message, run, definition)

    @grpc_errors
    async def PutWorkflow(
        self, request: workflow_service_pb2.PutWorkflowRequest, context: Context
    ) -> workflow_service_pb2.PutWorkflowResponse:
        definition, created = await self.engine.put_workflow(
            definition_from_proto(request.definition), actor=actor_of(context)
        )
        return workflow_service_pb2.PutWorkflowResponse(
            definition=definition_to_proto(definition), created=created
        )

    @grpc_errors
    async def GetWorkflow(
        self, request: workflow_service_pb2.GetWorkflowRequest, context: Context
    ) -> workflow_service_pb2.GetWorkflowResponse:
        definition = self.engine.get_workflow(request.name, request.version)
        return workflow_service_pb2.GetWorkflowResponse(definition=definition_to_proto(definition))

    @grpc_errors
    async def ListWorkflows(
        self, request: workflow_service_pb2.ListWorkflowsRequest, context: Context
    ) -> workflow_service_pb2.ListWorkflowsResponse:
        definitions = self.engine.list_workflows(name=request.name, all_versions=request.all_versions)
        return workflow_service_pb2.ListWorkflowsResponse(
            definitions=[definition_to_proto(d) for d in definitions]
        )

    @grpc_errors
    async def StartWorkflow(
        self, request: workflow_service_pb2.StartWorkflowRequest, context: Context
    ) -> workflow_service_pb2.StartWorkflowResponse:
        order, run, duplicate = await self.engine.start_workflow(
            StartRequest(
                workflow=request.workflow,
                version=request.version,
                input=struct_to_dict(request.input),
                context=dict(request.context),
                labels=dict(request.labels),
                correlation_id=request.correlation_id,
                idempotency_key=request.idempotency_key,
            ),
            actor=actor_of(context),
        )
        return workflow_service_pb2.StartWorkflowResponse(
            order=order_to_proto(order), run=self._run(run), duplicate=duplicate
        )

    @grpc_errors
    async def GetWorkOrder(
        self, request: workflow_service_pb2.GetWorkOrderRequest, context: Context
    ) -> workflow_service_pb2.GetWorkOrderResponse:
        order = await self.engine.get_work_order(request.work_order_id)
        runs = await self.engine.work_order_runs(order)
        return workflow_service_pb2.GetWorkOrderResponse(
            order=order_to_proto(order), runs=[self._run(run) for run in runs]
        )

    @grpc_errors
    async def ListWorkOrders(
        self, request: workflow_service_pb2.ListWorkOrdersRequest, context: Context
    ) -> workflow_service_pb2.ListWorkOrdersResponse:
        statuses = []
        for value in request.statuses:
            try:
                statuses.append(int(WorkflowRunStatus(value)))
            except ValueError:
                raise InvalidArgument(f"statuses: unknown workflow run status {value}") from None
        orders, token = await self.engine.list_work_orders(
            WorkOrderQuery(
                workflow=request.workflow,
                statuses=statuses,
                correlation_id=request.correlation_id,
                before_id=request.page_token,
                limit=request.limit,
            )
        )
        return workflow_service_pb2.ListWorkOrdersResponse(
            orders=[order_to_proto(order) for order in orders], next_page_token=token
        )

    @grpc_errors
    async def GetWorkflowRun(
        self, request: workflow_service_pb2.GetWorkflowRunRequest, context: Context
    ) -> workflow_service_pb2.GetWorkflowRunResponse:
        run = await self.engine.get_workflow_run(request.run_id)
        return workflow_service_pb2.GetWorkflowRunResponse(run=self._run(run))

    @grpc_errors
    async def RetryWorkOrder(
        self, request: workflow_service_pb2.RetryWorkOrderRequest, context: Context
    ) -> workflow_service_pb2.RetryWorkOrderResponse:
        order, run = await self.engine.retry_work_order(
            request.work_order_id,
            from_step=request.from_step,
            latest_version=request.latest_version,
            actor=actor_of(context),
        )
        return workflow_service_pb2.RetryWorkOrderResponse(order=order_to_proto(order), run=self._run(run))

    @grpc_errors
    async def CancelWorkflowRun(
        self, request: workflow_service_pb2.CancelWorkflowRunRequest, context: Context
    ) -> workflow_service_pb2.CancelWorkflowRunResponse:
        run = await self.engine.cancel_workflow_run(
            request.run_id, reason=request.reason, actor=actor_of(context)
        )
        return workflow_service_pb2.CancelWorkflowRunResponse(run=self._run(run))
