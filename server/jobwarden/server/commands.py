"""``jobwarden serve``: run the engine. Registered through the ``jobwarden.commands`` entry points."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import Any

__all__ = ["register"]


def register(subparsers: Any) -> None:
    serve = subparsers.add_parser(
        "serve",
        help="run the engine (gRPC server)",
        description="Run the jobwarden engine: JobService, ExecutorService, LockService, health, reflection.",
    )
    serve.add_argument(
        "--db", help="database URL (default sqlite:///jobwarden.db; postgresql+psycopg://... too)"
    )
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 50051; 0 picks a free one)")
    serve.add_argument("--config", help="a TOML config file ([engine] and [actions.NAME] sections)")
    serve.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    serve.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    from .api import EngineServer, ServerOptions
    from .config import FileConfig, load_config
    from .core import EngineConfig, JobwardenError

    logging.basicConfig(
        level=args.log_level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        file_config = load_config(args.config) if args.config else FileConfig(engine=EngineConfig())
    except JobwardenError as error:
        print(f"jobwarden serve: {error.message}", file=sys.stderr)
        return 2
    config = file_config.engine
    if args.db:
        config.db_url = args.db
    options = ServerOptions(
        host=args.host or file_config.host,
        port=args.port if args.port is not None else file_config.port,
    )

    async def run() -> int:
        server = EngineServer(config, options)
        try:
            await server.start()
        except JobwardenError as error:
            print(f"jobwarden serve: {error.message}", file=sys.stderr)
            return 2
        except OSError as error:
            print(f"jobwarden serve: {error}", file=sys.stderr)
            return 1
        print(f"jobwarden engine listening on {server.address}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await server.stop()
        return 0

    try:
        return asyncio.run(run())
    except Exception as error:  # a start-up failure (database unreachable, ...) is one clear line
        logging.getLogger("jobwarden.server").debug("fatal", exc_info=True)
        print(f"jobwarden serve: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
