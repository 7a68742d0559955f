"""Who is calling: the actor recorded in job events (the audit trail)."""

from __future__ import annotations

from typing import Any

from grpc import aio

__all__ = ["actor_of"]

#: set by the authentication interceptor on the call's context when tokens are on
IDENTITY_ATTRIBUTE = "_jobwarden_identity"


def actor_of(context: aio.ServicerContext[Any, Any]) -> str:
    """The authenticated principal, or ``anonymous@<peer host>`` when authentication is off."""
    identity = getattr(context, IDENTITY_ATTRIBUTE, None)
    if identity:
        return str(identity)
    peer = context.peer() or "unknown"
    host = peer.rsplit(":", 1)[0] if peer.count(":") >= 2 else peer
    return f"anonymous@{host}"
