"""Waiting for the console to reach a state, with generous timeouts and no fixed sleeps."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable

from textual.pilot import Pilot


async def until(
    pilot: Pilot[object], condition: Callable[[], object], *, timeout: float = 20.0, what: str = ""
) -> None:
    """Let the app run until ``condition()`` is true; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        await pilot.pause(0.05)


async def settle(pilot: Pilot[object]) -> None:
    """Let a couple of flushes pass (the console draws stream changes a few times a second)."""
    app = pilot.app
    flushes = getattr(app, "flushes", 0)
    await until(pilot, lambda: getattr(app, "flushes", 0) >= flushes + 2, what="two flushes")
    await pilot.pause()
    await asyncio.sleep(0)


def closed_address() -> str:
    """An address where nothing listens (a port that was free a moment ago)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"127.0.0.1:{port}"
