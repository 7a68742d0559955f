"""The ``jobwarden`` command.

Each part of jobwarden plugs its commands in through the ``jobwarden.commands`` entry point
group: an entry point names a ``register(subparsers)`` function that adds one or more
subcommands, each with ``set_defaults(func=...)`` where ``func(args) -> int`` is the exit code.
The SDK never imports the server or the console; a command whose extra is not installed says
which extra to install.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points

__all__ = ["build_parser", "main"]

#: the extra that provides each command group, for the message when it is missing
_EXTRA_OF_GROUP = {"server": "server", "bench": "server", "console": "tui", "demo": "all"}
#: the extra that installs each third-party package a command may need
_EXTRA_OF_PACKAGE = {
    "grpc_health": "server",
    "grpc_reflection": "server",
    "sqlalchemy": "server",
    "sqlmodel": "server",
    "apscheduler": "server",
    "orjson": "server",
    "psycopg": "server",
    "prometheus_client": "server",
    "textual": "tui",
    "rich": "tui",
    "yaml": "yaml",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jobwarden",
        description="jobwarden: a job execution engine, its workers and its console.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for entry_point in sorted(entry_points(group="jobwarden.commands"), key=lambda e: e.name):
        try:
            register = entry_point.load()
        except ImportError as error:
            extra = _EXTRA_OF_GROUP.get(entry_point.name, "all")
            missing = subparsers.add_parser(
                entry_point.name, help=f"(needs: pip install 'jobwarden[{extra}]')"
            )
            missing.set_defaults(func=_missing_extra(entry_point.name, extra, error))
            continue
        register(subparsers)
    return parser


def _missing_extra(name: str, extra: str, error: ImportError) -> object:
    def run(_args: argparse.Namespace) -> int:
        print(
            f"jobwarden: the '{name}' commands need the '{extra}' extra "
            f"(pip install 'jobwarden[{extra}]'): {error}",
            file=sys.stderr,
        )
        return 2

    return run


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    except ModuleNotFoundError as error:
        package = (error.name or "").split(".")[0]
        extra = _EXTRA_OF_PACKAGE.get(package)
        if extra is None:
            raise
        print(
            f"jobwarden {args.command}: needs the '{extra}' extra, which is not installed "
            f"(pip install 'jobwarden[{extra}]'): no module named {package}",
            file=sys.stderr,
        )
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
