"""``jobwarden console`` and ``jobwarden demo``, plugged in through the ``jobwarden.commands`` group."""

from __future__ import annotations

import argparse
import math
import os
import sys
from typing import Any

__all__ = ["register"]

_DEFAULT_ENGINE = "127.0.0.1:50051"


def register(subparsers: Any) -> None:
    console = subparsers.add_parser(
        "console",
        help="the live operations console (Textual)",
        description="Watch and steer an engine's jobs, workers, locks and actions.",
    )
    console.add_argument(
        "--engine",
        default=os.environ.get("JOBWARDEN_ENGINE", _DEFAULT_ENGINE),
        metavar="HOST:PORT[,HOST:PORT...]",
        help=(
            "the engine's gRPC address, or several engines' on one database (the console follows "
            f"the leader); default: $JOBWARDEN_ENGINE or {_DEFAULT_ENGINE}"
        ),
    )
    console.add_argument(
        "--read-only", action="store_true", help="hide and refuse every action that changes state"
    )
    console.add_argument(
        "--keep-finished",
        type=_positive,
        default=1000,
        metavar="N",
        help="finished jobs kept in the table besides every unfinished one (default: 1000)",
    )
    console.set_defaults(func=_console)

    demo = subparsers.add_parser(
        "demo",
        help="an engine, demo workers, a trickle of jobs and the console, all in one",
        description=(
            "Start an engine on a throw-away SQLite file, workers running demo executors and a "
            "steady trickle of jobs, then open the console on it. Quitting the console stops it all."
        ),
    )
    demo.add_argument("--port", type=_port, default=0, help="engine port (default: a free one)")
    demo.add_argument(
        "--rate", type=_rate, default=1.5, metavar="JOBS_PER_SECOND", help="trickle rate (default: 1.5)"
    )
    demo.add_argument(
        "--no-console",
        action="store_true",
        help="run engine, workers and trickle without the console (until Ctrl+C)",
    )
    demo.set_defaults(func=_demo)


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def _port(value: str) -> int:
    number = int(value)
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0 to 65535, got {value}")
    return number


def _rate(value: str) -> float:
    number = float(value)
    if not math.isfinite(number) or number <= 0:
        raise argparse.ArgumentTypeError(f"jobs per second must be a number above 0, got {value}")
    return number


def _console(args: argparse.Namespace) -> int:
    from jobwarden.sdk import caller_role, engine_addresses

    from ._app import ConsoleApp

    try:
        addresses = engine_addresses(args.engine)
    except ValueError as error:
        print(f"jobwarden console: {str(error).replace('engine address', '--engine')}", file=sys.stderr)
        return 2
    address = ",".join(addresses)
    role = None
    try:
        for one in addresses:  # the first engine that answers says (every engine serves reads)
            role = caller_role(one)
            if role is not None:
                break
    except ValueError as error:  # JOBWARDEN_TOKEN_FILE or JOBWARDEN_TLS_* unusable
        print(f"jobwarden console: {error}")
        return 2
    # A viewer's token may change nothing: the console hides those actions, as with --read-only.
    read_only = args.read_only or role in ("viewer", "worker")
    reason = "--read-only" if args.read_only else f"the token's role is {role}"
    ConsoleApp(address, read_only=read_only, read_only_reason=reason, keep_finished=args.keep_finished).run()
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    code: int = run_demo(port=args.port, rate=args.rate, console=not args.no_console)
    return code
