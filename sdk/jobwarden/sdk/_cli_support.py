"""What every client command of the ``jobwarden`` CLI shares: exit codes, usage errors, running a
command's coroutine with the engine's refusals turned into one line, and the client it talks through."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from jobwarden.sdk._address import engine_address
from jobwarden.sdk._client import JobClient
from jobwarden.sdk._exceptions import JobwardenError

__all__ = ["ENGINE_ERROR", "OK", "USAGE", "UsageError", "client_for", "runner"]

#: exit codes: done, the engine refused or could not be reached, a command line that cannot run
OK, ENGINE_ERROR, USAGE = 0, 1, 2


class UsageError(Exception):
    """A command line that cannot be run as given (exit code 2)."""


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
            return ENGINE_ERROR
        except BrokenPipeError:
            # The reader went away (`jobwarden jobs | head`): not an error; keep Python quiet about it.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return OK

    return main


def client_for(args: argparse.Namespace) -> JobClient:
    try:
        return JobClient(engine_address(args.engine))
    except ValueError as error:
        raise UsageError(str(error)) from None
