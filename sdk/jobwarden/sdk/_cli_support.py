"""What every client command of the ``jobwarden`` CLI shares: exit codes, usage errors, running a
command's coroutine with the engine's refusals turned into one line, and the client it talks through."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from typing import Any, TypeVar

import grpc
from jobwarden.contract import Limits
from jobwarden.sdk import _format as fmt
from jobwarden.sdk._address import DEFAULT_ENGINE, ENGINE_ENV
from jobwarden.sdk._client import JobClient
from jobwarden.sdk._endpoints import engine_addresses
from jobwarden.sdk._exceptions import EngineUnavailable, JobwardenError

__all__ = [
    "ENGINE_ERROR",
    "OK",
    "USAGE",
    "UsageError",
    "client_for",
    "engine_option",
    "first_pages",
    "key_values",
    "parse_json",
    "print_json",
    "print_table",
    "runner",
    "seconds",
    "status_filter",
]

T = TypeVar("T")

#: exit codes: done, the engine refused or could not be reached, a command line that cannot run
OK, ENGINE_ERROR, USAGE = 0, 1, 2


class UsageError(Exception):
    """A command line that cannot be run as given (exit code 2)."""


#: a sub-command's body: the parsed arguments in, the exit code out
Command = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]


def engine_option() -> argparse.ArgumentParser:
    """A parent parser with ``--engine``, the option every command that talks to an engine has."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument(
        "--engine",
        metavar="HOST:PORT[,HOST:PORT...]",
        help=(
            f"the engine's address, or several engines' on one database (the leader is found); "
            f"default: ${ENGINE_ENV} or {DEFAULT_ENGINE}"
        ),
    )
    return parser


def command_group(
    subparsers: Any, group: str, help: str, description: str
) -> Callable[[str, Command, str], argparse.ArgumentParser]:
    """``jobwarden GROUP``: returns ``add(name, run, text)``, which adds ``jobwarden GROUP NAME`` with
    the options every engine command has (``--engine``, ``--json``)."""
    common = engine_option()
    common.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser = subparsers.add_parser(group, help=help, description=description)
    dest = f"{group}_command"
    commands = parser.add_subparsers(dest=dest, metavar="SUBCOMMAND", required=True)

    def add(name: str, run: Command, text: str) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = commands.add_parser(
            name, help=text, description=text, parents=[common]
        )
        sub.set_defaults(func=runner(run, lambda args: f"jobwarden {group} {getattr(args, dest)}"))
        return sub

    return add


def runner(
    run: Callable[[argparse.Namespace], Coroutine[Any, Any, int]],
    name: Callable[[argparse.Namespace], str] = lambda args: f"jobwarden {args.command}",
) -> Callable[[argparse.Namespace], int]:
    """``run`` as a command: its exit code, or one line on stderr naming the command and the problem."""

    def main(args: argparse.Namespace) -> int:
        try:
            return asyncio.run(run(args))
        except UsageError as error:
            print(f"{name(args)}: {error}", file=sys.stderr)
            return USAGE
        except JobwardenError as error:
            print(f"{name(args)}: {error}", file=sys.stderr)
            if isinstance(error, EngineUnavailable) and error.code is grpc.StatusCode.UNAVAILABLE:
                print(
                    f"  is the engine running? Start one with `jobwarden serve`, or name where it is "
                    f"with --engine HOST:PORT or ${ENGINE_ENV}.",
                    file=sys.stderr,
                )
            return ENGINE_ERROR
        except BrokenPipeError:
            # The reader went away (`jobwarden jobs | head`): not an error; keep Python quiet about it.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return OK

    return main


def client_for(args: argparse.Namespace) -> JobClient:
    try:
        return JobClient(engine_addresses(args.engine))
    except ValueError as error:
        raise UsageError(str(error)) from None


def status_filter(args: argparse.Namespace, parse: Callable[[list[str]], T]) -> T:
    """``--status`` (repeatable, each comma-separated) as ``parse`` reads the names; a name it
    refuses is a usage error."""
    wanted = [part for item in args.status for part in item.split(",") if part]
    try:
        return parse(wanted)
    except ValueError as error:
        raise UsageError(str(error)) from None


async def first_pages(limit: int, page: Callable[[int, str], Awaitable[tuple[Iterable[T], str]]]) -> list[T]:
    """The first ``limit`` items of a paged listing (``--limit``): ``page(size, token)`` answers one
    page, at most ``size`` items (never more than 1000 asked at once), and the next page's token."""
    if limit < 1:
        raise UsageError("--limit must be at least 1")
    found: list[T] = []
    token = ""
    while len(found) < limit:
        items, token = await page(min(limit - len(found), 1000), token)
        found.extend(items)
        if not token:
            break
    return found


def print_json(value: Any) -> None:
    """``--json``'s output: ``value`` indented, keys sorted."""
    print(json.dumps(value, indent=2, sort_keys=True))


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, empty: str) -> None:
    """A listing's table, or, when it has no row, ``empty`` on stderr (stdout stays a table or nothing)."""
    if rows:
        print(fmt.table(headers, rows))
    else:
        print(empty, file=sys.stderr)


def key_values(items: list[str], what: str) -> dict[str, str]:
    """``KEY=VALUE`` options (``--label``, ``--context``) as a dict; ``what`` names one in the error."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"{what} is KEY=VALUE, got {item!r}")
        out[key] = value
    return out


def parse_json(text: str, source: str) -> Any:
    """``text`` as JSON, refusing NaN and Infinity (Python's json takes them; JSON does not)."""

    def refuse(constant: str) -> Any:
        raise UsageError(f"{source} is not valid JSON: {constant} is not a JSON number")

    try:
        return json.loads(text, parse_constant=refuse)
    except json.JSONDecodeError as error:
        raise UsageError(f"{source} is not valid JSON: {error}") from None
    except RecursionError:
        raise UsageError(
            f"{source} nests objects and lists deeper than the engine takes "
            f"(at most {Limits.MAX_PAYLOAD_DEPTH} levels)"
        ) from None


def seconds(text: str) -> float:
    """An argparse type: a finite, non-negative number of seconds, at most the engine's longest duration."""
    value = float(text)
    if not math.isfinite(value) or not 0 <= value <= Limits.MAX_DURATION_SECONDS:
        raise ValueError(text)
    return value


seconds.__name__ = f"number of seconds (0 to {Limits.MAX_DURATION_SECONDS})"
