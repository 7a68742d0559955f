"""Workflow objects as rows of the store's tables, and back (shared by the SQL and memory stores)."""

from __future__ import annotations

from typing import Any

import orjson

from .definitions import WorkflowDef
from .runs import WorkflowEvent, WorkflowRun, WorkOrder

__all__ = [
    "definition_from_row",
    "definition_row",
    "event_from_row",
    "event_row",
    "order_from_row",
    "order_row",
    "run_from_row",
    "run_row",
]


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def definition_row(definition: WorkflowDef) -> dict[str, Any]:
    return {
        "name": definition.name,
        "version": definition.version,
        "digest": definition.digest,
        "created_at": definition.created_at,
        "doc": _dumps(definition.to_dict()),
    }


def definition_from_row(row: Any) -> WorkflowDef:
    return WorkflowDef.from_dict(orjson.loads(row["doc"]))


def order_row(order: WorkOrder) -> dict[str, Any]:
    return {
        "id": order.id,
        "workflow": order.workflow,
        "status": int(order.status),
        "created_at": order.created_at,
        "updated_at": order.updated_at,
        "idempotency_key": order.idempotency_key or None,
        "correlation_id": order.correlation_id,
        "doc": _dumps(order.to_dict(payloads=False)),
        "input": _dumps(order.input),
    }


def order_from_row(row: Any, *, payloads: bool = True) -> WorkOrder:
    doc = orjson.loads(row["doc"])
    if payloads and row.get("input"):
        doc["input"] = orjson.loads(row["input"])
    return WorkOrder.from_dict(doc)


def run_row(run: WorkflowRun) -> dict[str, Any]:
    return {
        "id": run.id,
        "work_order_id": run.work_order_id,
        "status": int(run.status),
        "created_at": run.created_at,
        "doc": _dumps(run.to_dict()),
    }


def run_from_row(row: Any) -> WorkflowRun:
    return WorkflowRun.from_dict(orjson.loads(row["doc"]))


def event_row(event: WorkflowEvent) -> dict[str, Any]:
    return {
        "sequence": event.sequence,
        "run_id": event.run_id,
        "work_order_id": event.work_order_id,
        "type": int(event.type),
        "time": event.time,
        "doc": _dumps(event.to_dict()),
    }


def event_from_row(row: Any) -> WorkflowEvent:
    return WorkflowEvent.from_dict(orjson.loads(row["doc"]))
