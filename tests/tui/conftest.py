"""Fixtures of the console tests: the canned engine in a thread of its own, and a fixed clock."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
from tui_canned import CannedEngine

T = TypeVar("T")


class CannedThread:
    """A ``CannedEngine`` serving from its own event loop, so any test (sync or async) can use it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.engine = CannedEngine()
        self._thread = threading.Thread(target=self.loop.run_forever, name="canned-engine", daemon=True)
        self._thread.start()
        self.address = self.run(self.engine.start)

    def run(self, function: Callable[[], Any]) -> Any:
        """Run ``function`` (sync, or returning an awaitable) on the engine's loop and wait for it."""

        async def call() -> Any:
            result = function()
            if asyncio.iscoroutine(result):
                result = await result
            return result

        return asyncio.run_coroutine_threadsafe(call(), self.loop).result(timeout=10)

    def close(self) -> None:
        self.run(self.engine.stop)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


@pytest.fixture
def canned() -> Iterator[CannedThread]:
    engine = CannedThread()
    try:
        yield engine
    finally:
        engine.close()


@pytest.fixture
def utc() -> Iterator[None]:
    """Local time is UTC, so the times on screen are the same on every machine."""
    previous = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = previous
        time.tzset()
