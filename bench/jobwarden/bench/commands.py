"""``jobwarden bench SCENARIO``: measure this deployment. Registered through the
``jobwarden.commands`` entry point ``bench``; everything heavy is imported only when it runs."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["register"]

# The `jobwarden` command reports an ImportError here as "install the server extra"; nothing heavy
# is imported until a scenario runs, so other commands start as fast as without the bench.
for _needed in ("sqlalchemy", "rich", "grpc_health"):
    if importlib.util.find_spec(_needed) is None:
        raise ImportError(f"jobwarden bench needs {_needed} (the server extra)")

_SCENARIO_HELP = {
    "throughput": "N no-op jobs through W worker processes: jobs/s from first submit to last COMPLETED",
    "latency": "a steady submit rate: submit->start and submit->complete p50/p90/p99/max",
    "fanout": "S watchers during a throughput run: events/s each, lag, and that each got every event",
    "locks": "jobs contending on a few resources, SHARED and EXCLUSIVE mixed: jobs/s and lock waits",
    "timers": "T pending deadlines: memory, arming rate, firing lateness",
    "depth": "submit and dispatch rates with 0, 100k and 1M jobs already stored",
    "console": "the console's CPU following 10,000 running jobs at 1,000 events/s (headless)",
    "workflow": "a 10-step linear workflow of no-op steps (runs/s, steps/s, a step's cost against a job's), "
    "a 1,000-step fan-out/fan-in run, and Celery chains of 10 tasks in the same run",
}

_SIZE_HELP = {
    "jobs": "jobs submitted",
    "workers": "worker processes",
    "capacity": "jobs each worker runs at once",
    "batch": "jobs per SubmitJobs call",
    "inflight": "SubmitJobs calls in flight at once",
    "rate": "per second",
    "seconds": "seconds measured",
    "warmup": "seconds not counted at the start",
    "watchers": "WatchJobs streams, each on its own connection",
    "watcher_processes": "processes the watchers are spread over",
    "resources": "resources the jobs contend on",
    "exclusive": "share of lock requests that are EXCLUSIVE",
    "second": "share of jobs asking for a second resource",
    "sample": "jobs whose history is read for their lock wait",
    "timers": "deadlines pending at once",
    "fire": "deadlines that fire during the window (the others stay pending)",
    "window": "seconds the firing deadlines are spread over",
    "start_share": "share of start-timeout deadlines",
    "wake_share": "share of run_at/backoff wake-ups (heartbeat deadlines take the rest)",
    "stored": "comma-separated numbers of jobs already stored",
    "runs": "runs of the linear workflow",
    "steps": "no-op steps of the linear workflow (and tasks per Celery chain)",
    "fanout_steps": "steps of the fan-out/fan-in run",
    "celery_chains": "Celery chains run for comparison (0: none)",
}


def register(subparsers: Any) -> None:
    from . import SCENARIOS
    from ._sizes import SIZES

    common = argparse.ArgumentParser(add_help=False)
    where = common.add_argument_group("where")
    where.add_argument(
        "--engine", metavar="HOST:PORT", help="measure this running engine instead of starting one"
    )
    where.add_argument(
        "--db",
        metavar="URL",
        help="database of the engines the bench starts (default: SQLite in a temp dir; "
        "use an empty database: depth grows it by a million rows)",
    )
    output = common.add_argument_group("output")
    output.add_argument("--json", action="store_true", help="print the results as JSON")
    output.add_argument("--markdown", action="store_true", help="print the results as Markdown tables")
    output.add_argument("--no-progress", action="store_true", help="no progress bar")
    output.add_argument("--save", metavar="FILE", type=Path, help="also write the results as JSON to FILE")
    output.add_argument(
        "--profile",
        metavar="FILE",
        type=Path,
        help="sample the engine's process with py-spy while measuring (.svg flamegraph, "
        ".json speedscope, anything else raw collapsed stacks)",
    )
    output.add_argument(
        "--profile-gil", action="store_true", help="with --profile: sample only the thread holding the GIL"
    )
    output.add_argument("--workdir", type=Path, help="where temp dirs go (default: the system's)")
    output.add_argument("--keep", action="store_true", help="keep the temp dirs (databases, worker logs)")

    bench = subparsers.add_parser(
        "bench",
        help="measure this deployment (throughput, latency, fanout, locks, timers, depth, console, workflow)",
        description="Measure jobwarden on this machine. Engines the bench starts run in its own process "
        "(SQLite, durable, in a temp dir); workers and clients run in processes of their own.",
    )
    scenarios = bench.add_subparsers(dest="scenario", metavar="SCENARIO", required=True)
    for name in SCENARIOS:
        parser = scenarios.add_parser(
            name, parents=[common], help=_SCENARIO_HELP[name], description=_SCENARIO_HELP[name]
        )
        group = parser.add_argument_group("sizes")
        defaults = SIZES[name]()
        for size in dataclasses.fields(defaults):
            default = getattr(defaults, size.name)
            flag = "--" + size.name.replace("_", "-")
            text = f"{_SIZE_HELP.get(size.name, size.name)} (default {_show(default)})"
            if isinstance(default, list):
                group.add_argument(flag, dest=size.name, type=_int_list, default=None, help=text)
            else:
                group.add_argument(flag, dest=size.name, type=type(default), default=None, help=text)
        parser.set_defaults(func=_run, sizes_of=name)
    everything = scenarios.add_parser(
        "all",
        parents=[common],
        help="every scenario in turn, sized to take under ten minutes on two cores",
        description="Every scenario in turn, sized to take under ten minutes on two cores; "
        "ends with a table of the issue's targets.",
    )
    everything.add_argument(
        "--skip", action="append", default=[], choices=SCENARIOS, help="leave a scenario out (repeatable)"
    )
    everything.set_defaults(func=_run_all)


def _show(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def _int_list(text: str) -> list[int]:
    try:
        values = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers") from None
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError("give one or more numbers >= 0")
    return values


def _setup(args: argparse.Namespace) -> Any:
    from ._target import BenchSetup

    return BenchSetup(
        engine=args.engine,
        db=args.db,
        workdir=args.workdir,
        progress=not args.no_progress,
        profile=args.profile,
        profile_gil=args.profile_gil,
        keep=args.keep,
    )


def _check_sizes(sizes: Any) -> str | None:
    for size in dataclasses.fields(sizes):
        value = getattr(sizes, size.name)
        values = value if isinstance(value, list) else [value]
        if size.name in ("exclusive", "second", "start_share", "wake_share"):
            if not all(0.0 <= v <= 1.0 for v in values):
                return f"--{size.name.replace('_', '-')} must be between 0 and 1"
        elif size.name not in ("stored", "warmup", "celery_chains") and not all(v > 0 for v in values):
            return f"--{size.name.replace('_', '-')} must be positive"
    if getattr(sizes, "start_share", 0) + getattr(sizes, "wake_share", 0) > 1.0:
        return "--start-share plus --wake-share must not be more than 1"
    return None


def _run(args: argparse.Namespace) -> int:
    from ._progress import make_progress
    from ._results import ScenarioUnavailable
    from ._runner import default_sizes, run_scenario

    sizes = default_sizes(args.sizes_of)
    for size in dataclasses.fields(sizes):
        value = getattr(args, size.name, None)
        if value is not None:
            setattr(sizes, size.name, value)
    if (problem := _check_sizes(sizes)) is not None:
        print(f"jobwarden bench {args.sizes_of}: {problem}", file=sys.stderr)
        return 2
    setup = _setup(args)
    progress = make_progress(args.sizes_of, setup.progress)

    async def run() -> Any:
        if progress is None:
            return await run_scenario(args.sizes_of, sizes, setup)
        with progress:
            return await run_scenario(args.sizes_of, sizes, setup, progress)

    try:
        result = asyncio.run(run())
    except ScenarioUnavailable as error:
        print(f"jobwarden bench {args.sizes_of}: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"jobwarden bench {args.sizes_of}: interrupted", file=sys.stderr)
        return 130
    except (RuntimeError, TimeoutError, OSError) as error:
        print(f"jobwarden bench {args.sizes_of}: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    document = result.to_json()
    if args.save:
        args.save.write_text(json.dumps(document, indent=2) + "\n")
    if args.json:
        print(json.dumps(document, indent=2))
    elif args.markdown:
        from ._render import markdown

        print(markdown([result]))
    else:
        from ._render import print_results

        print_results([result])
    return 0


def _run_all(args: argparse.Namespace) -> int:
    from rich.console import Console

    from ._progress import make_progress
    from ._render import markdown, print_results, print_summary
    from ._runner import run_all

    setup = _setup(args)
    progress = make_progress("all", setup.progress)
    console = Console()

    def show(result: Any) -> None:
        if not (args.json or args.markdown) and not ({"skipped", "failed"} & set(result.details)):
            # Through the bar's own console, so the table lands above the bar.
            print_results([result], progress.console if progress is not None else console)

    async def run() -> Any:
        if progress is None:
            return await run_all(setup=setup, skip=frozenset(args.skip), on_result=show)
        with progress:
            return await run_all(setup=setup, progress=progress, skip=frozenset(args.skip), on_result=show)

    try:
        results = asyncio.run(run())
    except KeyboardInterrupt:
        print("jobwarden bench all: interrupted", file=sys.stderr)
        return 130
    except (RuntimeError, TimeoutError, OSError) as error:
        print(f"jobwarden bench all: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    document = {"results": [r.to_json() for r in results]}
    if args.save:
        args.save.write_text(json.dumps(document, indent=2) + "\n")
    if args.json:
        print(json.dumps(document, indent=2))
    elif args.markdown:
        print(markdown(results))
    else:
        print_summary(results, console)
        for result in results:
            for outcome in ("skipped", "failed"):
                if outcome in result.details:
                    console.print(f"{result.scenario}: {outcome}: {result.details[outcome]}")
    return 0
