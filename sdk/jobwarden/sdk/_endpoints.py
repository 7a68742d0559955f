"""Several engines on one database: which one to call, and where to go when a call fails.

Engines that share a PostgreSQL database elect one leader; the others are hot standbys that serve
reads and refuse writes and worker sessions with ``UNAVAILABLE``, the message "engine <id> is a
standby; the leader is <address>" and the leader's address in the trailing metadata
``jobwarden-leader`` (see ``cluster_service.proto``). A client given several addresses
(``--engine a:50051,b:50051`` or ``$JOBWARDEN_ENGINE``) keeps an ``Endpoints``: the address it calls
now (the leader, as far as it knows), and on a failure the address to try next: the leader a
standby named, else the next in the list, round and round.

Whether a failed call may be sent again depends on whether the engine could have carried it out:
``never_delivered`` is true only for a standby's refusal and for a connection that was never made;
anything else (the leader died or was fenced mid-call, a deadline) is ambiguous, and only calls that
are safe to repeat (a submit with an idempotency key, a cancel, a read) are repeated then.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import grpc
from jobwarden.sdk._address import DEFAULT_ENGINE, ENGINE_ENV, engine_address

__all__ = [
    "FAILOVER_CODES",
    "LEADER_METADATA",
    "Endpoints",
    "engine_addresses",
    "leader_hint",
    "never_delivered",
]

#: the trailing metadata key in which a standby names the leader's address
LEADER_METADATA = "jobwarden-leader"

#: errors after which another engine may answer (with several addresses, or a standby's hint)
FAILOVER_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})

# What gRPC says when no connection could be made: nothing was sent.
_NOT_CONNECTED = ("failed to connect to all addresses", "connection refused", "dns resolution failed")


def engine_addresses(value: str | Sequence[str] | None = None) -> tuple[str, ...]:
    """The engines' ``HOST:PORT`` addresses, in order and without repeats: from ``value`` (one
    address, several separated by commas, or a list of them), else ``$JOBWARDEN_ENGINE`` (the same
    form), else the default. ``ValueError`` names an address that is not ``HOST:PORT``."""
    if value is None or (isinstance(value, str) and not value.strip()):
        value = os.environ.get(ENGINE_ENV, "").strip() or DEFAULT_ENGINE
    parts = value.split(",") if isinstance(value, str) else list(value)
    addresses: list[str] = []
    for part in parts:
        if not isinstance(part, str) or not part.strip():
            raise ValueError(f"engine addresses must be HOST:PORT separated by commas, got {value!r}")
        address = engine_address(part)
        if address not in addresses:
            addresses.append(address)
    return tuple(addresses)


def leader_hint(error: BaseException) -> str | None:
    """The leader's address a standby named in its refusal, or None (no refusal, no leader yet)."""
    trailing = getattr(error, "trailing_metadata", None)
    if not callable(trailing):
        return None
    try:
        metadata = trailing() or ()
    except Exception:  # a call that never got an answer has no metadata to read
        return None
    for key, value in metadata:
        if key == LEADER_METADATA:
            text = value.decode() if isinstance(value, bytes) else str(value)
            return text.strip() or None
    return None


def refused_by_standby(error: BaseException) -> bool:
    """Whether ``error`` is a standby's refusal (it carried nothing out)."""
    if leader_hint(error) is not None:
        return True
    return _code(error) is grpc.StatusCode.UNAVAILABLE and "is a standby" in _details(error)


def never_delivered(error: BaseException) -> bool:
    """Whether the engine certainly did not carry the call out: a standby refused it, or no
    connection was made. A leader that died mid-call may have committed it."""
    if refused_by_standby(error):
        return True
    details = _details(error).lower()
    return _code(error) is grpc.StatusCode.UNAVAILABLE and any(text in details for text in _NOT_CONNECTED)


class Endpoints:
    """The addresses of the engines and the one to call now (the leader, as far as this client
    knows). One address behaves as a client always did: no failover, only a standby's redirect."""

    __slots__ = ("addresses", "current")

    def __init__(self, addresses: tuple[str, ...]) -> None:
        if not addresses:
            raise ValueError("at least one engine address is required")
        self.addresses: list[str] = list(addresses)
        #: the address calls go to now
        self.current = self.addresses[0]

    @property
    def several(self) -> bool:
        """More than one engine to fail over to."""
        return len(self.addresses) > 1

    def describe(self) -> str:
        return ", ".join(self.addresses)

    def answered(self, address: str) -> None:
        """``address`` answered a call: keep calling it."""
        self.current = address

    def next_after(self, address: str, error: BaseException) -> str | None:
        """Where to send a call that failed at ``address`` with ``error``: the leader a standby
        named, else the next address; None when there is nowhere else (one address, no hint)."""
        hint = leader_hint(error)
        if hint is not None and hint != address:
            try:
                hint = engine_address(hint)
            except ValueError:
                hint = None
            if hint is not None:
                if hint not in self.addresses:
                    # The leader advertises an address the caller did not list: it is the same
                    # cluster (a standby of it said so), so it joins the rotation.
                    self.addresses.append(hint)
                self.current = hint
                return hint
        if not self.several:
            return None
        index = self.addresses.index(address) if address in self.addresses else -1
        self.current = self.addresses[(index + 1) % len(self.addresses)]
        return self.current


def _code(error: BaseException) -> grpc.StatusCode | None:
    code_of = getattr(error, "code", None)
    if not callable(code_of):
        return None
    code = code_of()
    return code if isinstance(code, grpc.StatusCode) else None


def _details(error: BaseException) -> str:
    details_of = getattr(error, "details", None)
    text = details_of() if callable(details_of) else None
    return str(text or error)
