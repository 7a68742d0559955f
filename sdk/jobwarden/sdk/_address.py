"""Where the engine is: ``HOST:PORT``, from the caller, ``$JOBWARDEN_ENGINE``, or the default."""

from __future__ import annotations

import os

from jobwarden.contract import Limits

__all__ = ["CHANNEL_OPTIONS", "DEFAULT_ENGINE", "ENGINE_ENV", "engine_address"]

DEFAULT_ENGINE = "127.0.0.1:50051"
ENGINE_ENV = "JOBWARDEN_ENGINE"

#: options of every channel the SDK opens
CHANNEL_OPTIONS: list[tuple[str, int]] = [
    ("grpc.max_send_message_length", Limits.MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", Limits.MAX_MESSAGE_BYTES),
    # Reconnect quickly when the engine comes back: workers and watchers have their own backoff.
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 5000),
    # A connection dropped without a FIN (a dead NAT, a pulled cable) is noticed within ~15 s rather than
    # at the next write: a worker would otherwise hold its capacity for a session the engine gave up on.
    # The engine accepts pings every 5 s or more.
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
]


def engine_address(address: str | None = None) -> str:
    """The engine's ``HOST:PORT``: ``address`` if given, else ``$JOBWARDEN_ENGINE``, else the default.

    Raises ``ValueError`` for an address without a port.
    """
    chosen = (address or os.environ.get(ENGINE_ENV) or DEFAULT_ENGINE).strip()
    for prefix in ("grpc://", "http://"):
        chosen = chosen.removeprefix(prefix)
    host, sep, port = chosen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"engine address must be HOST:PORT, got {chosen!r}")
    return chosen
