"""The workflow commands of ``jobwarden``: ``workflows apply|list|show``, ``start``, ``orders`` and
``order ID`` / ``order retry ID`` / ``order cancel ID``.

Registered through the ``jobwarden.commands`` entry point ``workflows``. Exit codes: 0 done, 1 the
engine refused (its reason is printed) or could not be reached, or a waited-for run did not
complete, 2 the command line (or a workflow file) is wrong and nothing was sent.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from jobwarden.sdk import _format as fmt
from jobwarden.sdk._cli_support import (
    ENGINE_ERROR,
    OK,
    UsageError,
    client_for,
    command_group,
    engine_option,
    first_pages,
    key_values,
    print_json,
    print_table,
    runner,
    status_filter,
)
from jobwarden.sdk._client import JobClient
from jobwarden.sdk._commands import _parse_input, _parse_labels
from jobwarden.sdk._exceptions import JobwardenError, WorkflowDefinitionError
from jobwarden.sdk._workflow_files import SUFFIXES, load_workflow
from jobwarden.sdk._workflow_requests import run_statuses
from jobwarden.v1 import workflow_pb2, workflow_service_pb2
from jobwarden.wire import duration_seconds, format_duration, struct_to_dict, timestamp_datetime

__all__ = ["register"]

_ORDER_ID_HELP = "the work order's id, or a unique first or last 8+ characters of it"


def register(subparsers: Any) -> None:
    """Add ``jobwarden workflows``, ``start``, ``orders`` and ``order``."""
    add = command_group(
        subparsers,
        "workflows",
        help="put workflow definitions from files; list and show them",
        description="Workflow definitions: named, versioned, immutable graphs of steps.",
    )
    apply = add(
        "apply",
        _apply,
        "Store each file's definition as its workflow's next version (the same content as the latest "
        "version stores nothing). Every file is read and checked before any is sent.",
    )
    apply.add_argument("files", nargs="+", metavar="FILE", help=f"a definition ({', '.join(SUFFIXES)})")
    listing = add("list", _list, "The latest version of each workflow.")
    listing.add_argument("--all-versions", action="store_true", help="every version, not only the latest")
    listing.add_argument("--name", default="", help="only this workflow")
    show = add("show", _show, "One definition: its steps, their edges and settings.")
    show.add_argument("name", help="the workflow's name")
    show.add_argument(
        "--version", type=int, default=0, metavar="N", help="this version (default: the latest)"
    )

    common = engine_option()
    common.add_argument("--json", action="store_true", help="print JSON instead of text")

    def top(name: str, run: Any, text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = subparsers.add_parser(
            name, help=text, description=text, parents=[common]
        )
        parser.set_defaults(func=runner(run))
        return parser

    start = top("start", _start, "Start a workflow: a work order and its first run.")
    start.add_argument("workflow", help="the workflow's name")
    start.add_argument(
        "--input",
        "-i",
        default=None,
        metavar="JSON|@FILE|-",
        help="the run's input: a JSON object, @file, or -",
    )
    start.add_argument(
        "--context",
        "-c",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a context variable, over the definition's (repeatable)",
    )
    start.add_argument(
        "--version", type=int, default=0, metavar="N", help="this version (default: the latest)"
    )
    start.add_argument("--label", "-l", action="append", default=[], metavar="KEY=VALUE", help="a label")
    start.add_argument("--correlation-id", default="", help="an id of your own to find the work order by")
    start.add_argument(
        "--idempotency-key",
        default="",
        help="the same start repeated with this key returns the first work order; a different one is refused",
    )
    _wait_option(start)

    orders = top("orders", _orders, "List work orders, newest first.")
    orders.add_argument("--workflow", "-w", default="", help="only this workflow's")
    orders.add_argument(
        "--status", "-s", action="append", default=[], help="only these statuses (repeatable, or a,b)"
    )
    orders.add_argument("--correlation-id", default="", help="only work orders with this correlation id")
    orders.add_argument("--limit", "-n", type=int, default=50, metavar="N", help="most to show (default 50)")

    order = top(
        "order",
        _order,
        "Show a work order and its runs, step by step (`order ID`); start a new run of it "
        "(`order retry ID [--from STEP] [--latest]`); cancel its running run (`order cancel ID`).",
    )
    order.usage = "jobwarden order [retry|cancel] ID [options]"
    order.add_argument("words", nargs="+", metavar="[retry|cancel] ID", help=_ORDER_ID_HELP)
    order.add_argument(
        "--from",
        dest="from_step",
        default="",
        metavar="STEP",
        help="retry: run this step and everything downstream again, reusing the other steps' outcomes",
    )
    order.add_argument(
        "--latest",
        action="store_true",
        help="retry: run the workflow's latest version, not the one the last run was pinned to",
    )
    order.add_argument("--reason", default="", help="cancel: why (kept with the run)")
    _wait_option(order, "retry: ")


def _wait_option(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    parser.add_argument(
        "--wait",
        action="store_true",
        help=f"{prefix}wait until the run ends, printing each step's changes on stderr; exit 1 unless "
        "it COMPLETED",
    )


# -- workflows ---------------------------------------------------------------------------------------
async def _apply(args: argparse.Namespace) -> int:
    definitions: list[tuple[str, workflow_pb2.WorkflowDefinition]] = []
    for name in args.files:
        try:
            definitions.append((name, load_workflow(name).definition()))
        except WorkflowDefinitionError as error:
            raise UsageError(f"{error}; nothing was applied") from None
    results = []
    async with client_for(args) as client:
        for index, (name, definition) in enumerate(definitions):
            try:
                put = await client.put_workflow(definition)
            except JobwardenError as error:
                applied = [file for file, _ in definitions[:index]]
                done = f" ({', '.join(applied)} applied before it)" if applied else ""
                error.message = f"{name}: {error.message}{done}"
                error.args = (error.message,)
                raise
            results.append(put)
            if not args.json:
                what = "created" if put.created else "unchanged: the same as the latest version"
                print(f"{put.definition.name}  version {put.definition.version}  {what}  ({name})")
    if args.json:
        print_json([fmt.message_json(put) for put in results])
    return OK


async def _list(args: argparse.Namespace) -> int:
    async with client_for(args) as client:
        definitions = await client.list_workflows(name=args.name, all_versions=args.all_versions)
    if args.json:
        print_json([fmt.message_json(d) for d in definitions])
        return OK
    rows = [
        [d.name, str(d.version), str(len(d.steps)), fmt.ago(d.created_at), d.description[:60]]
        for d in definitions
    ]
    print_table(["NAME", "VERSION", "STEPS", "AGE", "DESCRIPTION"], rows, empty="no workflows")
    return OK


async def _show(args: argparse.Namespace) -> int:
    async with client_for(args) as client:
        definition = await client.get_workflow(args.name, version=args.version)
    if args.json:
        print_json(fmt.message_json(definition))
    else:
        print(definition_text(definition))
    return OK


def definition_text(definition: workflow_pb2.WorkflowDefinition) -> str:
    """A definition as a person reads it: settings, then a step a line with its edges out."""
    lines = [f"name:        {definition.name}", f"version:     {definition.version}"]
    if definition.description:
        lines.append(f"description: {definition.description}")
    if definition.created_at.seconds:
        lines.append(f"created:     {fmt.ago(definition.created_at)} ago" + _by(definition.created_by))
    if definition.HasField("run_timeout") and duration_seconds(definition.run_timeout):
        lines.append(f"run timeout: {format_duration(duration_seconds(definition.run_timeout))}")
    if definition.continue_on_crash:
        lines.append("on crash:    continue (failure edges)")
    if definition.context:
        lines.append(f"context:     {json.dumps(dict(definition.context), sort_keys=True)}")
    if definition.HasField("output"):
        lines.append(f"output:      {json.dumps(struct_to_dict(definition.output), sort_keys=True)}")
    rows = []
    for step in definition.steps:
        out = [edge for edge in definition.edges if edge.source == step.name]
        edges = ", ".join(
            f"{_edge_word(edge.kind)} → {edge.target}" + (f" if {edge.condition}" if edge.condition else "")
            for edge in out
        )
        # A join mode matters only where several edges meet.
        joins = sum(edge.target == step.name for edge in definition.edges) > 1
        rows.append([step.name, _step_kind(step), _join_word(step.join) if joins else "", edges])
    lines.append("")
    lines.append(fmt.table(["STEP", "RUNS", "JOIN", "EDGES"], rows))
    return "\n".join(lines)


def _by(who: str) -> str:
    return f" by {who}" if who else ""


def _step_kind(step: workflow_pb2.WorkflowStep) -> str:
    kind = step.WhichOneof("kind")
    if kind == "action":
        return f"action {step.action.action}"
    if kind == "delay":
        return f"delay {format_duration(duration_seconds(step.delay.duration))}"
    if kind == "workflow":
        version = f" v{step.workflow.version}" if step.workflow.version else ""
        return f"workflow {step.workflow.workflow}{version}"
    return "-"


_EDGE_WORDS: dict[int, str] = {
    workflow_pb2.EDGE_KIND_SUCCESS: "success",
    workflow_pb2.EDGE_KIND_FAILURE: "failure",
    workflow_pb2.EDGE_KIND_ALWAYS: "always",
}
_JOIN_WORDS: dict[int, str] = {workflow_pb2.JOIN_MODE_ALL: "all", workflow_pb2.JOIN_MODE_ANY: "any"}


def _edge_word(kind: int) -> str:
    return _EDGE_WORDS.get(kind, str(kind))


def _join_word(join: int) -> str:
    return _JOIN_WORDS.get(join, "")


# -- start, and waiting for a run --------------------------------------------------------------------
async def _start(args: argparse.Namespace) -> int:
    payload = _parse_input(args.input)
    context = key_values(args.context, "a context variable")
    labels = _parse_labels(args.label)
    if args.version < 0:
        raise UsageError("--version must be 0 (the latest) or more")
    async with client_for(args) as client:
        try:
            started = await client.start_workflow(
                args.workflow,
                payload,
                version=args.version,
                context=context,
                labels=labels,
                correlation_id=args.correlation_id,
                idempotency_key=args.idempotency_key,
            )
        except (TypeError, ValueError) as error:
            raise UsageError(str(error)) from None
        return await _started(
            args, client, started.order, started.run, " (duplicate)" if started.duplicate else ""
        )


async def _started(
    args: argparse.Namespace,
    client: JobClient,
    order: workflow_pb2.WorkOrder,
    run: workflow_pb2.WorkflowRun,
    note: str = "",
) -> int:
    if not args.wait:
        if args.json:
            print_json({"order": fmt.message_json(order), "run": fmt.message_json(run)})
        else:
            print(
                f"{order.id}  run {run.number} {run.id}  {fmt.run_status_name(run.status)}  "
                f"{run.workflow} v{run.version}{note}"
            )
        return OK
    if not args.json:
        print(f"{order.id}  run {run.number} {run.id}  started, waiting...", file=sys.stderr, flush=True)
    run = await client.wait_workflow_run(run.id, on_change=_StepReport())
    if args.json:
        print_json(fmt.message_json(run))
    else:
        print(run_text(run))
    return OK if run.status == workflow_pb2.WORKFLOW_RUN_STATUS_COMPLETED else ENGINE_ERROR


class _StepReport:
    """``--wait``'s account on stderr: a line each time a step's status changes."""

    def __call__(self, event: workflow_pb2.WorkflowEvent) -> None:
        if event.type != workflow_pb2.WORKFLOW_EVENT_TYPE_STEP_CHANGED or not event.step:
            return
        step = next((s for s in event.run.steps if s.name == event.step), None)
        if step is None:
            return
        status = fmt.step_status_name(step.status)
        if step.status == workflow_pb2.STEP_STATUS_FAILED and step.error.message:
            line = f"{status}: {step.error.message}"
        elif step.reused_from_run_id:
            line = f"{status:<10} reused from run {step.reused_from_run_id}"
        elif step.job_id:
            line = f"{status:<10} job {step.job_id}"
        else:
            line = status
        print(f"  {step.name:<20} {line}", file=sys.stderr, flush=True)


# -- work orders -------------------------------------------------------------------------------------
async def _orders(args: argparse.Namespace) -> int:
    wanted = status_filter(args, run_statuses)
    async with client_for(args) as client:

        async def page(size: int, token: str) -> tuple[Iterable[workflow_pb2.WorkOrder], str]:
            response = await client.list_work_orders(
                workflow=args.workflow,
                statuses=wanted,
                correlation_id=args.correlation_id,
                limit=size,
                page_token=token,
            )
            return response.orders, response.next_page_token

        found = await first_pages(args.limit, page)
    if args.json:
        print_json([fmt.message_json(order) for order in found])
        return OK
    rows = [
        [
            order.id,
            order.workflow,
            str(order.version),
            fmt.run_status_name(order.status),
            str(order.run_count),
            fmt.ago(order.created_at),
            order.correlation_id,
        ]
        for order in found
    ]
    headers = ["ID", "WORKFLOW", "VERSION", "STATUS", "RUNS", "AGE", "CORRELATION"]
    print_table(headers, rows, empty="no work orders")
    return OK


async def _order(args: argparse.Namespace) -> int:
    words = list(args.words)
    verb = words.pop(0) if words[0] in ("retry", "cancel", "show") else "show"
    if len(words) != 1:
        raise UsageError(
            f"takes one work order id: jobwarden order [retry|cancel] ID, got {' '.join(args.words)!r}"
        )
    order_id = words[0]
    if verb != "retry" and (args.from_step or args.latest or args.wait):
        raise UsageError("--from, --latest and --wait go with `jobwarden order retry ID`")
    if verb != "cancel" and args.reason:
        raise UsageError("--reason goes with `jobwarden order cancel ID`")
    async with client_for(args) as client:
        if verb == "retry":
            retried = await client.retry_work_order(
                order_id, from_step=args.from_step, latest_version=args.latest
            )
            note = f" (from {retried.run.rerun_from_step})" if retried.run.rerun_from_step else ""
            return await _started(args, client, retried.order, retried.run, note)
        found = await client.get_work_order(order_id)
        if verb == "cancel":
            return await _cancel(args, client, found)
    if args.json:
        print_json(fmt.message_json(found))
    else:
        print(order_text(found))
    return OK


async def _cancel(
    args: argparse.Namespace, client: JobClient, found: workflow_service_pb2.GetWorkOrderResponse
) -> int:
    """Cancel the work order's last run (the engine refuses a finished one, saying so)."""
    order = found.order
    if not found.runs:
        raise UsageError(f"work order {order.id} has no run to cancel")
    run = await client.cancel_workflow_run(found.runs[-1].id, args.reason)
    if args.json:
        print_json(fmt.message_json(run))
    else:
        print(f"{order.id}  run {run.number} {run.id}  {fmt.run_status_name(run.status)}")
    return OK


def order_text(found: workflow_service_pb2.GetWorkOrderResponse) -> str:
    order = found.order
    lines = [
        f"work order:  {order.id}",
        f"workflow:    {order.workflow} v{order.version}",
        f"status:      {fmt.run_status_name(order.status)} (its last run's)",
        f"runs:        {order.run_count}",
        f"created:     {fmt.ago(order.created_at)} ago" + _by(order.created_by),
    ]
    if order.correlation_id:
        lines.append(f"correlation: {order.correlation_id}")
    if order.labels:
        lines.append("labels:      " + ", ".join(f"{k}={v}" for k, v in sorted(order.labels.items())))
    lines.append(f"input:       {json.dumps(struct_to_dict(order.input), sort_keys=True)}")
    if order.context:
        lines.append(f"context:     {json.dumps(dict(order.context), sort_keys=True)}")
    for run in found.runs:
        lines.append("")
        lines.append(run_text(run))
    return "\n".join(lines)


def run_text(run: workflow_pb2.WorkflowRun, now: datetime | None = None) -> str:
    """A run: its status and error (naming the step), then a step a line."""
    head = f"run {run.number}  {run.id}  {fmt.run_status_name(run.status)}  {run.workflow} v{run.version}"
    if run.rerun_from_step:
        head += f"  rerun from {run.rerun_from_step}"
    elif run.previous_run_id:
        head += "  rerun from the start"
    lines = [head]
    error = run.error
    completed = run.status == workflow_pb2.WORKFLOW_RUN_STATUS_COMPLETED
    if run.status_reason and run.status_reason != error.message and not completed:
        lines.append(f"  reason: {run.status_reason}")
    if error.message or error.step:
        # The engine's message usually names the step already; name it once.
        named = error.step and f"{error.step!r}" in error.message
        where = f"step {error.step!r}: " if error.step and not named else ""
        job = f" (job {error.job_id})" if error.job_id else ""
        lines.append(f"  error: {where}{error.message}{job}")
    if run.HasField("output") and run.status == workflow_pb2.WORKFLOW_RUN_STATUS_COMPLETED:
        lines.append(f"  output: {json.dumps(struct_to_dict(run.output), sort_keys=True)}")
    rows = [
        [
            step.name,
            fmt.step_status_name(step.status),
            _step_duration(step, now),
            step.job_id or step.child_run_id or "-",
            str(step.attempt) if step.attempt else "-",
            _step_note(step),
        ]
        for step in run.steps
    ]
    if rows:
        table = fmt.table(["STEP", "STATUS", "DURATION", "JOB", "ATTEMPT", "NOTE"], rows)
        lines.extend("  " + line for line in table.splitlines())
    return "\n".join(lines)


def _step_duration(step: workflow_pb2.StepRun, now: datetime | None) -> str:
    started = timestamp_datetime(step.started_at)
    if started is None:
        return "-"
    finished = timestamp_datetime(step.finished_at) or now or datetime.now(UTC)
    seconds = max(0.0, (finished - started).total_seconds())
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def _step_note(step: workflow_pb2.StepRun) -> str:
    if step.reused_from_run_id:
        return f"reused from run {step.reused_from_run_id}"
    if step.error.message:
        return step.error.message.replace("\n", " ")[:80]
    if step.status == workflow_pb2.STEP_STATUS_DELAYED and step.wake_at.seconds:
        wake = timestamp_datetime(step.wake_at)
        return f"until {wake.astimezone():%H:%M:%S}" if wake else ""
    note = step.message
    if step.status == workflow_pb2.STEP_STATUS_RUNNING and step.job_status:
        note = f"{fmt.status_name(step.job_status)} {step.progress}% {note}".strip()
    return note.replace("\n", " ")[:80]
