"""``jobwarden watch --workflows``: workflow events as they happen, a line each."""

from __future__ import annotations

import argparse
import json
import sys

from jobwarden.sdk import _format as fmt
from jobwarden.sdk._cli_support import OK, UsageError, client_for
from jobwarden.v1 import workflow_pb2
from jobwarden.wire import timestamp_datetime

__all__ = ["watch_workflows", "workflow_event_line"]


async def watch_workflows(args: argparse.Namespace) -> int:
    """``jobwarden watch --workflows [--order ID] [--run ID]``: a line per workflow event."""
    if args.status or args.action or args.job:
        raise UsageError("--status, --action and --job filter job events; they do not go with --workflows")
    async with client_for(args) as client:
        # Abbreviated ids resolve as `jobwarden order ID` does; the stream filters on whole ids.
        orders = [(await client.get_work_order(order_id)).order.id for order_id in args.order]
        async for event in client.watch_workflows(
            after_sequence=args.after, run_ids=args.run, work_order_ids=orders
        ):
            if args.json:
                print(json.dumps(fmt.message_json(event), sort_keys=True))
            else:
                print(workflow_event_line(event))
            sys.stdout.flush()
    return OK


_EVENT_TYPE_PREFIX = "WORKFLOW_EVENT_TYPE_"


def workflow_event_line(event: workflow_pb2.WorkflowEvent) -> str:
    """One workflow event for people: sequence, time, work order, run, what changed."""
    run = event.run
    moment = timestamp_datetime(event.time)
    when = moment.astimezone().strftime("%H:%M:%S.%f")[:-3] if moment else "-"
    try:
        kind = workflow_pb2.WorkflowEventType.Name(event.type).removeprefix(_EVENT_TYPE_PREFIX)
    except ValueError:
        kind = str(event.type)
    status = fmt.run_status_name(run.status)
    if event.type == workflow_pb2.WORKFLOW_EVENT_TYPE_STEP_CHANGED:
        step = next((s for s in run.steps if s.name == event.step), None)
        now = fmt.step_status_name(step.status) if step is not None else "?"
        change = f"{event.step}: {fmt.step_status_name(event.previous_step_status)}->{now}"
        if step is not None and step.job_id:
            change += f" job {step.job_id}"
        if step is not None and step.error.message:
            change += f" {step.error.message}"
    elif event.type == workflow_pb2.WORKFLOW_EVENT_TYPE_RUN_STATUS_CHANGED and event.previous_status:
        change = f"{fmt.run_status_name(event.previous_status)}->{status}"
        if run.error.message:
            change += f" {run.error.message}"
    else:
        change = status
    if event.reason:
        change += f" ({event.reason})"
    if event.actor and event.actor != "engine":
        change += f"  by {event.actor}"
    order_id = event.order.id or run.work_order_id
    return (
        f"{event.sequence:>8}  {when}  {order_id}  run {run.number:<3} {run.workflow:<16} {kind:<18} {change}"
    )
