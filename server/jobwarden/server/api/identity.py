"""Who is calling: the actor recorded in job events (the audit trail)."""

from __future__ import annotations

import contextvars
from typing import Any

from grpc import aio

__all__ = ["actor_of", "set_identity"]

#: set by the authentication interceptor on the call's context when tokens are on (kept for callers
#: whose context object accepts attributes; grpc.aio's does not, hence the context variable below)
IDENTITY_ATTRIBUTE = "_jobwarden_identity"

# grpc.aio runs each call in its own task, so a value set by the interceptor before the handler runs
# belongs to that call alone.
_identity: contextvars.ContextVar[str] = contextvars.ContextVar("jobwarden_identity", default="")


def set_identity(identity: str) -> None:
    """Name the authenticated principal of the call being handled (the auth interceptor calls it)."""
    _identity.set(identity)


def actor_of(context: aio.ServicerContext[Any, Any]) -> str:
    """The authenticated principal, or ``anonymous@<peer host>`` when authentication is off."""
    identity = _identity.get() or getattr(context, IDENTITY_ATTRIBUTE, None)
    if identity:
        return str(identity)
    peer = context.peer() or "unknown"
    host = peer.rsplit(":", 1)[0] if peer.count(":") >= 2 else peer
    return f"anonymous@{host}"
