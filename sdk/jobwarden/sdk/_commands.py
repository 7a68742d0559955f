"""The client commands of ``jobwarden``: submit, jobs, get, cancel, retry, events, logs, watch, worker,
workers and stats (registered through the ``jobwarden.commands`` entry point ``client``)."""

from __future__ import annotations

import argparse
import asyncio
import difflib
import importlib
import json
import logging
import sys
from collections.abc import Callable, Coroutine, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from jobwarden.contract import TERMINAL_STATUSES, JobStatus
from jobwarden.sdk import _format as fmt
from jobwarden.sdk._cli_support import (
    ENGINE_ERROR,
    OK,
    UsageError,
    client_for,
    engine_option,
    first_pages,
    key_values,
    parse_json,
    print_json,
    print_table,
    runner,
    seconds,
    status_filter,
)
from jobwarden.sdk._client import JobClient
from jobwarden.sdk._convert import check_depth
from jobwarden.sdk._endpoints import engine_addresses
from jobwarden.sdk._exceptions import ExecutorDefinitionError
from jobwarden.sdk._executor import Executor
from jobwarden.sdk._requests import int64, lock_request, statuses
from jobwarden.sdk._workflow_watch import watch_workflows
from jobwarden.v1 import cluster_service_pb2, job_pb2
from jobwarden.wire import parse_duration

__all__ = ["load_executors", "register"]


def register(subparsers: Any) -> None:
    """Add the client commands to ``jobwarden``'s sub-command parsers."""
    common = engine_option()
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="print JSON instead of text")

    def add(
        name: str, run: Callable[[argparse.Namespace], Coroutine[Any, Any, int]], help: str, *parents: Any
    ) -> Any:
        parser = subparsers.add_parser(
            name, help=help, description=help, parents=[common, *parents], formatter_class=_Formatter
        )
        parser.set_defaults(func=runner(run))
        return parser

    submit = add("submit", _submit, "Submit a job.", as_json)
    submit.add_argument("action", help="the action to run, e.g. transcode")
    submit.add_argument(
        "--input",
        "-i",
        default=None,
        metavar="JSON|@FILE|-",
        help="the input: a JSON object, @file, or - for stdin",
    )
    submit.add_argument(
        "--priority",
        "-p",
        type=int,
        default=0,
        metavar="N",
        help="higher runs first: -1000000 to 1000000 (default 0)",
    )
    submit.add_argument(
        "--label", "-l", action="append", default=[], metavar="KEY=VALUE", help="a label (repeatable)"
    )
    submit.add_argument(
        "--lock",
        action="append",
        default=[],
        metavar="RESOURCE[:MODE]",
        help="a lock to hold while running (repeatable): RESOURCE alone is EXCLUSIVE, RESOURCE:SHARED "
        "shares it. Resources may contain colons; only a last :SHARED or :EXCLUSIVE (any case) is "
        "a mode, and another last part in capitals (asset:1:WRITE) is refused as a mistyped mode",
    )
    submit.add_argument(
        "--run-at", metavar="WHEN", help="not before: an ISO 8601 time, or +30s / +5m / +2h / +1d from now"
    )
    submit.add_argument(
        "--idempotency-key",
        default="",
        help="the same submit repeated with this key returns the first job; a different one is refused",
    )
    submit.add_argument("--correlation-id", default="", help="groups jobs of one workflow")
    submit.add_argument(
        "--max-attempts",
        type=int,
        default=None,
        metavar="N",
        help="retry policy: attempts in all (1 to 1000)",
    )
    submit.add_argument(
        "--wait",
        action="store_true",
        help="wait until the job finishes, saying on stderr what it waits for; exit 1 unless it COMPLETED",
    )

    jobs = add("jobs", _jobs, "List jobs, newest first.", as_json)
    jobs.add_argument(
        "--status", "-s", action="append", default=[], help="only these statuses (repeatable, or a,b)"
    )
    jobs.add_argument("--action", "-a", default="", help="only this action")
    jobs.add_argument("--label", default="", metavar="KEY[=VALUE]", help="only jobs with this label")
    jobs.add_argument("--text", "-t", default="", help="text in the id, action, message or error")
    jobs.add_argument(
        "--limit", "-n", type=int, default=50, metavar="N", help="most jobs to show (default 50)"
    )

    get = add("get", _get, "Show one job: status, input, result, error with its stack trace.", as_json)
    get.add_argument("job_id", help=_JOB_ID_HELP)

    cancel = add("cancel", _cancel, "Cancel a job (a running one through its worker).", as_json)
    cancel.add_argument("job_id", help=_JOB_ID_HELP)
    cancel.add_argument("--reason", default="", help="why (kept with the job)")

    retry = add("retry", _retry, "Start a new attempt of a FAILED or CANCELLED job.", as_json)
    retry.add_argument("job_id", help=_JOB_ID_HELP)
    retry.add_argument(
        "--from-step",
        default="",
        metavar="STEP",
        help="re-run from this step (default: after the last checkpoint)",
    )
    retry.add_argument("--reason", default="", help="why (kept with the job)")

    events = add("events", _events, "Show a job's history.", as_json)
    events.add_argument("job_id", help=_JOB_ID_HELP)

    logs = add("logs", _logs, "Show the lines a job's executor logged.", as_json)
    logs.add_argument("job_id", help=_JOB_ID_HELP)
    logs.add_argument(
        "--follow", "-f", action="store_true", help="keep printing new lines until the job ends"
    )

    watch = add(
        "watch",
        _watch,
        "Tail the stream of job events, or with --workflows of workflow events (reconnects from its "
        "last sequence).",
        as_json,
    )
    watch.add_argument(
        "--after", type=_sequence, default=None, metavar="SEQ", help="replay events after SEQ first (0: all)"
    )
    watch.add_argument(
        "--status", "-s", action="append", default=[], help="only events of jobs in these statuses"
    )
    watch.add_argument("--action", "-a", action="append", default=[], help="only this action (repeatable)")
    watch.add_argument(
        "--job",
        action="append",
        default=[],
        metavar="JOB_ID",
        help="only this job (repeatable; a unique first or last 8+ characters will do)",
    )
    watch.add_argument(
        "--workflows",
        action="store_true",
        help="workflow events instead: work orders, runs and their steps as they change",
    )
    watch.add_argument(
        "--order",
        action="append",
        default=[],
        metavar="ORDER_ID",
        help="workflow events of this work order only (repeatable; implies --workflows; an id "
        "abbreviation will do)",
    )
    watch.add_argument(
        "--run",
        action="append",
        default=[],
        metavar="RUN_ID",
        help="workflow events of this run only (repeatable; implies --workflows)",
    )

    worker = add("worker", _worker, "Run a worker with the executors found at MODULE:ATTR.")
    worker.add_argument(
        "target",
        metavar="MODULE:ATTR",
        help="an Executor subclass, an instance, or a list of them, e.g. myapp.executors:Transcode",
    )
    worker.add_argument(
        "--capacity", "-c", type=int, default=10, metavar="N", help="most jobs at once (default 10)"
    )
    worker.add_argument("--name", default=None, help="the worker's name (default host:pid)")
    worker.add_argument(
        "--drain-timeout",
        type=seconds,
        default=30.0,
        metavar="SECONDS",
        help="seconds to finish running jobs on SIGTERM or Ctrl+C (default 30); a second one stops at once",
    )
    worker.add_argument(
        "--cancel-grace",
        type=seconds,
        metavar="SECONDS",
        default=10.0,
        help="seconds a cancelled job gets to stop before a warning that it ignores the cancel; it is "
        "reported stopped (and its locks pass on) only when its code returns (default 10)",
    )
    worker.add_argument(
        "--connect-timeout",
        type=seconds,
        metavar="SECONDS",
        default=None,
        help="give up when the engine cannot be reached for this long at start (default: keep trying)",
    )
    worker.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="what the worker logs (default INFO)",
    )
    worker.add_argument(
        "--tracing",
        action="store_true",
        help="export OpenTelemetry spans of attempts and steps as the OTEL_* variables say "
        "(on without this flag when OTEL_TRACES_EXPORTER or OTEL_EXPORTER_OTLP_ENDPOINT is set)",
    )

    add("workers", _workers, "List the connected workers.", as_json)
    add("stats", _stats, "Counts per status and per action.", as_json)
    add(
        "engines",
        _engines,
        "List the engines on the engine's database: which leads, its epoch and lease, the standbys.",
        as_json,
    )


class _Formatter(argparse.RawDescriptionHelpFormatter):
    pass


_JOB_ID_HELP = "the job's id, or a unique first or last 8+ characters of it (the console shows the last 8)"


def _sequence(text: str) -> int:
    value = int(text)
    int64(value, "SEQ", 0)
    return value


_sequence.__name__ = "event sequence (a whole number >= 0)"


# -- submit ------------------------------------------------------------------------------------------
def _parse_input(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    source = "--input"
    if text == "-":
        text, source = sys.stdin.read(), "stdin"
    elif text.startswith("@"):
        path = Path(text[1:])
        try:
            text, source = path.read_text(), str(path)
        except OSError as error:
            raise UsageError(f"cannot read the input file {path}: {error.strerror}") from None
    value = parse_json(text, f"the input from {source}")
    if not isinstance(value, dict):
        raise UsageError(f"the input must be a JSON object ({{...}}), got {type(value).__name__}")
    try:
        check_depth(value, "the input")
    except ValueError as error:
        raise UsageError(f"{error} (from {source})") from None
    return value


def _parse_labels(items: list[str]) -> dict[str, str]:
    return key_values(items, "a label")


_RUN_AT_FORMS = "an ISO 8601 time or +30s/+5m/+1h30m/+1d"


def _parse_time(text: str) -> datetime:
    relative = text.strip()
    if relative.startswith("+"):
        try:
            later = parse_duration(relative[1:])
        except ValueError:
            raise UsageError(f"--run-at takes {_RUN_AT_FORMS}, got {text!r}") from None
        try:
            return datetime.now(UTC) + timedelta(seconds=later)
        except OverflowError:
            raise UsageError(f"--run-at {text}: too far in the future") from None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"--run-at takes {_RUN_AT_FORMS}, got {text!r}") from None
    try:
        return moment if moment.tzinfo else moment.astimezone()
    except (OverflowError, ValueError):
        raise UsageError(f"--run-at {text}: not a time this machine can represent") from None


async def _submit(args: argparse.Namespace) -> int:
    payload = _parse_input(args.input)
    labels = _parse_labels(args.label)
    try:
        locks = [lock_request(lock) for lock in args.lock]
    except ValueError as error:
        raise UsageError(str(error)) from None
    run_at = _parse_time(args.run_at) if args.run_at else None
    policy = {"max_attempts": args.max_attempts} if args.max_attempts is not None else None
    async with client_for(args) as client:
        try:
            job = await client.submit(
                args.action,
                payload,
                priority=args.priority,
                labels=labels,
                locks=locks,
                run_at=run_at,
                idempotency_key=args.idempotency_key,
                correlation_id=args.correlation_id,
                retry_policy=policy,
            )
        except (TypeError, ValueError) as error:
            # The SDK refuses what the wire cannot hold (a number out of its field's range, NaN).
            raise UsageError(str(error)) from None
        warning = await _unserved_warning(client, job.action)
        if warning:
            print(f"jobwarden submit: warning: {warning}", file=sys.stderr, flush=True)
        if not args.wait:
            if args.json:
                print_json(fmt.message_json(job))
            else:
                print(f"{job.id}  {fmt.status_name(job.status)}  {job.action}")
            return OK
        if not args.json:
            print(f"{job.id}  submitted, waiting...", file=sys.stderr)
        job = await client.wait(job.id, on_change=_WaitReport(client))
    if args.json:
        print_json(fmt.message_json(job))
    else:
        print(fmt.job_detail(job))
    return OK if JobStatus(job.status) is JobStatus.COMPLETED else ENGINE_ERROR


async def _unserved_warning(client: JobClient, action: str) -> str:
    """What to tell whoever submits a job no connected worker serves ('' when one does): a typo in the
    action is the usual cause, and the job would wait for ever without a word."""
    stats = await client.stats()
    by_action = {entry.action: entry for entry in stats.actions}
    entry = by_action.get(action)
    if entry is not None and entry.workers:
        return ""
    served = sorted(name for name, item in by_action.items() if item.workers)
    guess = difflib.get_close_matches(action, served or list(by_action), n=1)
    text = f"no connected worker serves {action!r}"
    if entry is None or not entry.completed:
        text += f", and no {action!r} job has ever completed on this engine"
    if guess and guess[0] != action:
        text += f" (did you mean {guess[0]!r}?)"
    text += "; the job is submitted and waits until a worker for it connects"
    if served:
        text += f" (workers now serve: {', '.join(served)})"
    return text


class _WaitReport:
    """``--wait``'s account on stderr of what the job waits for, each time its status or reason changes."""

    def __init__(self, client: JobClient) -> None:
        self._client = client
        self._last: tuple[int, str] | None = None

    async def __call__(self, job: job_pb2.Job) -> None:
        status = JobStatus(job.status)
        reason = job.status_reason
        if status is JobStatus.RUNNING:
            reason = f"on worker {job.worker_id}" + (f", attempt {job.attempt}" if job.attempt > 1 else "")
        if (job.status, reason) == self._last or status in TERMINAL_STATUSES:
            return
        self._last = (job.status, reason)
        if status is JobStatus.QUEUED and not reason:
            stats = await self._client.stats()
            if job.action in stats.actions_without_workers:
                reason = f"no connected worker serves {job.action!r}"
        print(f"{job.id}  {status.name}" + (f": {reason}" if reason else ""), file=sys.stderr, flush=True)


# -- reading jobs ------------------------------------------------------------------------------------
async def _jobs(args: argparse.Namespace) -> int:
    wanted = status_filter(args, statuses)
    async with client_for(args) as client:

        async def page(size: int, token: str) -> tuple[Iterable[job_pb2.Job], str]:
            response = await client.list(
                statuses=wanted,
                action=args.action,
                label=args.label,
                text=args.text,
                page_size=size,
                page_token=token,
                summary=not args.json,
            )
            return response.jobs, response.next_page_token

        found = await first_pages(args.limit, page)
    if args.json:
        print_json([fmt.message_json(job) for job in found])
    else:
        print_table(*fmt.job_rows(found), empty="no jobs")
    return OK


async def _get(args: argparse.Namespace) -> int:
    async with client_for(args) as client:
        job = await client.get(args.job_id)
    if args.json:
        print_json(fmt.message_json(job))
    else:
        print(fmt.job_detail(job))
    return OK


async def _cancel(args: argparse.Namespace) -> int:
    async with client_for(args) as client:
        job = await client.cancel(args.job_id, args.reason)
    if args.json:
        print_json(fmt.message_json(job))
    elif JobStatus(job.status) is JobStatus.CANCELLED:
        print(f"{job.id}  CANCELLED")
    else:
        print(f"{job.id}  {fmt.status_name(job.status)}  cancel requested: the worker is stopping it")
    return OK


async def _retry(args: argparse.Namespace) -> int:
    async with client_for(args) as client:
        job = await client.retry(args.job_id, from_step=args.from_step, reason=args.reason)
    if args.json:
        print_json(fmt.message_json(job))
    else:
        # The new attempt's number is the job's once it starts; until then the job shows the last one.
        print(f"{job.id}  {fmt.status_name(job.status)} for attempt {job.attempt + 1}")
    return OK


async def _events(args: argparse.Namespace) -> int:
    async with client_for(args) as client:
        history = await client.events(args.job_id)
    if args.json:
        print_json([fmt.message_json(event) for event in history])
    else:
        for event in history:
            print(fmt.event_line(event))
    return OK


async def _logs(args: argparse.Namespace) -> int:
    async with client_for(args) as client:
        index = 0
        while True:
            lines = await client.logs(args.job_id, after_index=index)
            for line in lines:
                index = max(index, line.index)
                if args.json:
                    print(json.dumps(fmt.message_json(line), sort_keys=True))
                else:
                    moment = line.time.ToDatetime(tzinfo=UTC).astimezone()
                    print(f"{moment:%H:%M:%S} {line.level:<7} #{line.attempt} {line.message}")
            sys.stdout.flush()
            if not args.follow:
                return OK
            if lines:
                continue
            job = await client.get(args.job_id)
            if JobStatus(job.status) in TERMINAL_STATUSES:
                # One last read: lines may have landed between the two calls.
                if not await client.logs(args.job_id, after_index=index):
                    return OK
                continue
            await asyncio.sleep(0.5)


async def _watch(args: argparse.Namespace) -> int:
    if args.workflows or args.order or args.run:
        return await watch_workflows(args)
    wanted = status_filter(args, statuses)
    async with client_for(args) as client:
        async for event in client.watch(
            after_sequence=args.after, statuses=wanted, actions=args.action, job_ids=args.job
        ):
            if args.json:
                print(json.dumps(fmt.message_json(event), sort_keys=True))
            else:
                print(fmt.event_line(event))
            sys.stdout.flush()
    return OK


async def _workers(args: argparse.Namespace) -> int:
    async with client_for(args) as client:
        workers = await client.workers()
    if args.json:
        print_json([fmt.message_json(worker) for worker in workers])
        return OK
    rows = [
        [
            worker.id,
            worker.name,
            ",".join(spec.action for spec in worker.executors),
            f"{len(worker.jobs)}/{worker.capacity}",
            "draining" if worker.draining else "",
            fmt.ago(worker.last_heartbeat_at),
        ]
        for worker in workers
    ]
    print_table(["ID", "NAME", "ACTIONS", "JOBS", "STATE", "HEARTBEAT"], rows, empty="no workers connected")
    return OK


async def _engines(args: argparse.Namespace) -> int:
    async with client_for(args) as client:
        cluster = await client.engines()
    if args.json:
        print_json(fmt.message_json(cluster))
        return OK
    rows = [
        [
            engine.engine_id + (" *" if engine.engine_id == cluster.engine_id else ""),
            engine.address,
            fmt.engine_role(engine.role),
            str(engine.epoch),
            fmt.ago(engine.seen_at),
            fmt.until(engine.lease_expires_at)
            if engine.role == cluster_service_pb2.ENGINE_ROLE_LEADER
            else "-",
        ]
        for engine in cluster.engines
    ]
    print(fmt.table(["ENGINE", "ADDRESS", "ROLE", "EPOCH", "SEEN", "LEASE ENDS"], rows))
    if not cluster.leader_id:
        print("no engine leads now: writes and workers wait for the next leader", file=sys.stderr)
    print(f"(* answered: {cluster.engine_id})", file=sys.stderr)
    return OK


async def _stats(args: argparse.Namespace) -> int:
    async with client_for(args) as client:
        stats = await client.stats()
    if args.json:
        print_json(fmt.message_json(stats))
        return OK
    counts = ", ".join(
        f"{fmt.status_name(item.status)} {item.count}" for item in stats.statuses if item.count
    )
    print(f"jobs: {counts or 'none'}")
    print(f"workers: {stats.workers}  watchers: {stats.watchers}  throughput: {stats.throughput:.1f} jobs/s")
    if stats.actions:
        rows = [
            [
                item.action,
                str(item.queued),
                str(item.running),
                str(item.completed),
                str(item.failed),
                str(item.workers),
                "paused" if item.paused else "",
            ]
            for item in stats.actions
        ]
        print(fmt.table(["ACTION", "QUEUED", "RUNNING", "COMPLETED", "FAILED", "WORKERS", ""], rows))
    if stats.actions_without_workers:
        print("waiting with no worker: " + ", ".join(stats.actions_without_workers))
    return OK


# -- worker ------------------------------------------------------------------------------------------
def load_executors(target: str) -> list[Executor | type[Executor]]:
    """The executors named by ``MODULE:ATTR`` (a class, an instance, or a list of them).

    Raises ``UsageError`` saying what is wrong: a malformed target, a module that does not
    import, a missing attribute, or something that is not an executor.
    """
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise UsageError(
            f"the worker target must be MODULE:ATTR (e.g. myapp.executors:Resize), got {target!r}"
        )
    # Like `python -m`, find modules in the current directory.
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise UsageError(f"cannot import module {module_name!r}: {error}") from error
    except Exception as error:
        raise UsageError(
            f"importing module {module_name!r} failed: {type(error).__name__}: {error}"
        ) from error
    value: Any = module
    for part in attr.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise UsageError(f"module {module_name!r} has no attribute {attr!r}") from None
    items = list(value) if isinstance(value, list | tuple) else [value]
    for item in items:
        if not (isinstance(item, Executor) or (isinstance(item, type) and issubclass(item, Executor))):
            raise UsageError(
                f"{target} is {item!r}, not an Executor subclass, an instance, or a list of them"
            )
    if not items:
        raise UsageError(f"{target} is an empty list: no executor to run")
    return items


async def _worker(args: argparse.Namespace) -> int:
    from jobwarden.sdk._worker import Worker

    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    executors = load_executors(args.target)
    try:
        worker = Worker(
            executors,
            engine=engine_addresses(args.engine),
            capacity=args.capacity,
            name=args.name,
            drain_timeout=args.drain_timeout,
            cancel_grace=args.cancel_grace,
            connect_timeout=args.connect_timeout,
        )
    except (ExecutorDefinitionError, ValueError) as error:
        raise UsageError(str(error)) from None
    provider = _worker_tracing(args, worker.name)
    print(
        f"jobwarden worker {worker.name}: serving {', '.join(worker.actions)} "
        f"(capacity {worker.capacity}) with the engine at {', '.join(worker.addresses)}",
        file=sys.stderr,
        flush=True,
    )
    try:
        await worker.run(handle_signals=True)
    finally:
        if provider is not None:
            provider.shutdown()
    print(f"jobwarden worker {worker.name}: stopped after {worker.finished_jobs} job(s)", file=sys.stderr)
    return OK


def _worker_tracing(args: argparse.Namespace, worker_name: str) -> Any:
    """The worker's tracer provider, if tracing is asked for: its service is the worker's name
    (``jobwarden-worker`` when it has the default ``host:pid`` one, which is then the instance)."""
    from jobwarden.sdk._tracing import TracingSetupError, tracing_for_command

    try:
        return tracing_for_command(
            args.tracing, args.name or "jobwarden-worker", instance_id=worker_name, set_global=True
        )
    except TracingSetupError as error:
        raise UsageError(str(error)) from None
