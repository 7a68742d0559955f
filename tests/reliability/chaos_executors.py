"""The executors of the chaos tests, run by ``jobwarden worker tests.reliability.chaos_executors:ALL``.

Each execution appends what it did to ``$JOBWARDEN_CHAOS_LOG/<pid>.jsonl`` (start and end, the job,
the attempt, a token of its own, the exclusive lock it runs under), so the test can tell afterwards
which executions ran, whether two of them held one lock at once, and whose result stood.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

from jobwarden.sdk import Executor, JobContext, JobFailed

__all__ = ["ALL", "ChaosFailOnce", "ChaosWork"]


def _record(kind: str, ctx: JobContext, token: str, **extra: Any) -> None:
    directory = os.environ.get("JOBWARDEN_CHAOS_LOG")
    if not directory:
        return
    line = {
        "kind": kind,
        "job": ctx.job_id,
        "attempt": ctx.attempt,
        "token": token,
        "t": time.time(),
        **extra,
    }
    # One write of one line to a file opened for appending: lines of one process never interleave.
    with (Path(directory) / f"{os.getpid()}.jsonl").open("a") as log:
        log.write(json.dumps(line) + "\n")


class ChaosWork(Executor):
    """Works for ``input.seconds``; the result carries the execution's token."""

    action = "chaos-work"
    supports_resume = True

    async def execute(self, ctx: JobContext) -> dict[str, Any]:
        token = uuid.uuid4().hex
        lock = str(ctx.input.get("lock", ""))
        _record("start", ctx, token, lock=lock)
        await asyncio.sleep(float(ctx.input.get("seconds", 0.05)))
        _record("end", ctx, token, lock=lock)
        return {"token": token, "attempt": ctx.attempt}

    async def resume(self, ctx: JobContext) -> dict[str, Any]:
        return await self.execute(ctx)


class ChaosFailOnce(Executor):
    """Fails its first attempt for good (so an operator retries it); later attempts complete."""

    action = "chaos-fail-once"

    async def execute(self, ctx: JobContext) -> dict[str, Any]:
        token = uuid.uuid4().hex
        _record("start", ctx, token, lock="")
        if ctx.attempt == 1:
            _record("end", ctx, token, lock="", failed=True)
            raise JobFailed("the first attempt fails on purpose", retryable=False)
        _record("end", ctx, token, lock="")
        return {"token": token, "attempt": ctx.attempt}

    async def retry(self, ctx: JobContext) -> dict[str, Any]:
        return await self.execute(ctx)


ALL = [ChaosWork, ChaosFailOnce]
