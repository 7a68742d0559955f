"""The executors the benchmark's worker processes run
(``jobwarden worker jobwarden.bench._executors:Noop``).

Their action comes from ``$JOBWARDEN_BENCH_ACTION`` so each run uses an action of its own. ``Stamp``
appends ``job_id receipt_time`` to the file named by ``$JOBWARDEN_BENCH_STAMPS`` (one ``write`` per job
on an ``O_APPEND`` descriptor: cheap, and whole lines even with several worker processes).
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import ClassVar

from jobwarden.sdk import Executor, JobContext

__all__ = ["Hang", "Noop", "Stamp"]

_ACTION = os.environ.get("JOBWARDEN_BENCH_ACTION", "bench-noop")


class Noop(Executor):
    """Does nothing: what is measured is the engine and the protocol."""

    action = _ACTION

    async def execute(self, ctx: JobContext) -> None:
        return None


class Stamp(Executor):
    """Does nothing but note when the job reached the worker (for submit->start latency)."""

    action = _ACTION
    _fd: ClassVar[int | None] = None

    async def execute(self, ctx: JobContext) -> None:
        now = time.time()
        if Stamp._fd is None:
            path = os.environ["JOBWARDEN_BENCH_STAMPS"]
            Stamp._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.write(Stamp._fd, f"{ctx.job_id} {now:.6f}\n".encode())


class Hang(Executor):
    """Holds its job without a word (no heartbeat on its behalf), so its heartbeat deadline passes."""

    action = _ACTION
    auto_heartbeat = False

    async def execute(self, ctx: JobContext) -> None:
        await asyncio.Event().wait()
