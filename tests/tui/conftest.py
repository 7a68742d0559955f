"""Fixtures of the console tests: the canned engine in a thread of its own, and local time in UTC."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from tests.tui.canned import CannedThread


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
