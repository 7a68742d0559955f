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
        # No abbreviations: "--token SECRET" must be an error, not a prefix of --tokens-file.
        allow_abbrev=False,
    )
    serve.add_argument(
        "--db", help="database URL (default sqlite:///jobwarden.db; postgresql+psycopg://... too)"
    )
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument(
        "--port", type=_port, metavar="PORT", help="port to listen on (default 50051; 0 picks a free one)"
    )
    serve.add_argument("--config", help="a TOML config file ([engine] and [actions.NAME] sections)")
    serve.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="what the engine logs (default INFO; DEBUG adds APScheduler's own lines)",
    )
    serve.add_argument(
        "--log-format", default="text", choices=["text", "json"], help="log lines as text or JSON objects"
    )
    serve.add_argument("--tls-cert", metavar="FILE", help="serve TLS with this certificate chain (PEM)")
    serve.add_argument("--tls-key", metavar="FILE", help="the private key of --tls-cert (PEM)")
    serve.add_argument(
        "--tls-client-ca",
        metavar="FILE",
        help="mutual TLS: every client must present a certificate signed by this CA (PEM)",
    )
    serve.add_argument(
        "--tokens-file",
        metavar="FILE",
        help="token authentication with roles, from this TOML file (or $JOBWARDEN_TOKENS_FILE, "
        "$JOBWARDEN_TOKENS); tokens are never taken on the command line",
    )
    serve.add_argument(
        "--max-watchers-per-client",
        type=int,
        metavar="N",
        help="WatchJobs streams one client may hold open at once (default 256)",
    )
    serve.add_argument(
        "--metrics-port",
        type=_port,
        metavar="PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics",
    )
    serve.add_argument("--metrics-host", default="127.0.0.1", help="address of the metrics port")
    serve.add_argument(
        "--tracing",
        action="store_true",
        help="export OpenTelemetry spans of traced jobs as the OTEL_* variables say (on without this "
        "flag when OTEL_TRACES_EXPORTER or OTEL_EXPORTER_OTLP_ENDPOINT is set; needs jobwarden[tracing])",
    )
    ha = serve.add_argument_group(
        "several engines on one PostgreSQL (docs/high-availability.md)",
        "One engine leads (takes writes and workers); the others serve reads and take over when its "
        "lease ends. SQLite serves one engine only.",
    )
    ha.add_argument("--engine-id", help="this engine's id in `jobwarden engines` (default host-pid-random)")
    ha.add_argument(
        "--advertise",
        metavar="HOST:PORT",
        help="the address clients and workers reach this engine at (default the listen address)",
    )
    ha.add_argument(
        "--lease-duration",
        type=float,
        metavar="SECONDS",
        help="how long the leader's lease lasts without a renewal (default 2)",
    )
    ha.add_argument(
        "--lease-renew-interval",
        type=float,
        metavar="SECONDS",
        help="how often the leader renews it (default 0.5)",
    )
    ha.add_argument(
        "--lease-margin",
        type=float,
        metavar="SECONDS",
        help="the leader stops acknowledging this long before an unrenewed lease ends (default 0.5)",
    )
    ha.add_argument(
        "--standby-poll-interval",
        type=float,
        metavar="SECONDS",
        help="how often a standby looks at the lease (default 0.25)",
    )
    serve.set_defaults(func=_serve)


def _port(text: str) -> int:
    """An argparse type: a TCP port (gRPC would take 99999 as "any free port", without a word)."""
    value = int(text)
    if not 0 <= value <= 65535:
        raise ValueError(text)
    return value


_port.__name__ = "port (0 to 65535)"


def _serve(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .api import EngineServer, ServerOptions
    from .api.auth import TokenError, tokens_from_environment
    from .api.tls import TlsError, TlsFiles
    from .config import FileConfig, load_config
    from .core import EngineConfig, JobwardenError
    from .observability import configure_logging
    from .runtime import collect_when_idle, tune_gc

    configure_logging(args.log_level, args.log_format)
    tracing = _tracing_wanted(args.tracing)
    if tracing is None:
        return 2
    if bool(args.tls_cert) != bool(args.tls_key):
        print("jobwarden serve: --tls-cert and --tls-key go together", file=sys.stderr)
        return 2
    if args.tls_client_ca and not args.tls_cert:
        print("jobwarden serve: --tls-client-ca needs --tls-cert and --tls-key", file=sys.stderr)
        return 2
    tls = (
        TlsFiles(
            Path(args.tls_cert), Path(args.tls_key), Path(args.tls_client_ca) if args.tls_client_ca else None
        )
        if args.tls_cert
        else None
    )
    try:
        tokens = tokens_from_environment(args.tokens_file)
    except TokenError as error:
        print(f"jobwarden serve: {error}", file=sys.stderr)
        return 2
    try:
        file_config = load_config(args.config) if args.config else FileConfig(engine=EngineConfig())
    except JobwardenError as error:
        print(f"jobwarden serve: {error.message}", file=sys.stderr)
        return 2
    config = file_config.engine
    if args.db:
        config.db_url = args.db
    for name in ("engine_id", "advertise"):
        if getattr(args, name):
            setattr(config, name, getattr(args, name))
    for name in ("lease_duration", "lease_renew_interval", "lease_margin", "standby_poll_interval"):
        if getattr(args, name) is not None:
            setattr(config, name, getattr(args, name))
    problem = config.check_store() or config.check_lease()
    if problem:
        print(f"jobwarden serve: {problem}", file=sys.stderr)
        return 2
    options = ServerOptions(
        host=args.host or file_config.host,
        port=args.port if args.port is not None else file_config.port,
        tls=tls,
        tokens=tokens,
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
        tracing=tracing,
    )
    if args.max_watchers_per_client is not None:
        if args.max_watchers_per_client < 1:
            print("jobwarden serve: --max-watchers-per-client must be at least 1", file=sys.stderr)
            return 2
        options.max_watchers_per_client = args.max_watchers_per_client

    async def run() -> int:
        from jobwarden.sdk._tracing import TracingSetupError

        server = EngineServer(config, options)
        try:
            await server.start()
        except JobwardenError as error:
            print(f"jobwarden serve: {error.message}", file=sys.stderr)
            return 2
        except (TlsError, TracingSetupError) as error:
            print(f"jobwarden serve: {error}", file=sys.stderr)
            return 2
        except OSError as error:
            print(f"jobwarden serve: {error}", file=sys.stderr)
            return 1
        # The engine logs where it listens (on stderr); scripts and tests read it from stdout. A person
        # at a terminal sees both streams, and gets the line once.
        logged = logging.getLogger("jobwarden.server").isEnabledFor(logging.INFO)
        if not (logged and sys.stdout.isatty() and sys.stderr.isatty()):
            print(f"jobwarden engine listening on {server.address}", flush=True)
        if server.metrics_server is not None:
            print(f"jobwarden metrics on {server.metrics_server.url}", flush=True)
        if server.job_tracer is not None:
            print("jobwarden tracing: spans of traced jobs are exported as OTEL_* says", flush=True)
        tune_gc()
        collector = asyncio.get_running_loop().create_task(collect_when_idle(server.engine))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        collector.cancel()
        await server.stop()
        return 0

    try:
        return asyncio.run(run())
    except Exception as error:  # a start-up failure (database unreachable, ...) is one clear line
        logging.getLogger("jobwarden.server").debug("fatal", exc_info=True)
        cause = getattr(error, "orig", None)  # SQLAlchemy's wrapper of the driver's error
        if cause is not None:
            reason = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
            print(
                f"jobwarden serve: cannot use the database {config.shown_db_url}: {reason}", file=sys.stderr
            )
        else:
            print(f"jobwarden serve: {type(error).__name__}: {error}", file=sys.stderr)
        return 1


def _tracing_wanted(flag: bool) -> bool | None:
    """Whether to trace: ``--tracing``, or the ``OTEL_*`` variables when the tracing extra is there
    (without it they only earn a warning: they may be meant for another program). None: ``--tracing``
    without the extra, said on stderr."""
    from jobwarden.sdk._tracing import AVAILABLE, INSTALL_HINT, tracing_requested_by_environment

    if flag and not AVAILABLE:
        print(f"jobwarden serve: --tracing needs OpenTelemetry: {INSTALL_HINT}", file=sys.stderr)
        return None
    if flag:
        return True
    if not tracing_requested_by_environment():
        return False
    if not AVAILABLE:
        logging.getLogger("jobwarden.server").warning(
            "the OTEL_* variables ask for traces, but OpenTelemetry is not installed (%s): no traces",
            INSTALL_HINT,
        )
        return False
    return True
