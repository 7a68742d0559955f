"""Executors for the worker-crash tests, run in real worker processes (``jobwarden worker``).

Every step run is appended to ``$CRASH_DIR/trace`` (``job step pid``); while ``$CRASH_DIR/hold``
exists, the ``transcode`` step waits, so a test can kill the worker in the middle of it.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from jobwarden.sdk import Executor, JobContext


def _dir() -> Path:
    return Path(os.environ["CRASH_DIR"])


def _trace(job_id: str, step: str) -> dict[str, Any]:
    with (_dir() / "trace").open("a") as trace:
        trace.write(f"{job_id} {step} {os.getpid()}\n")
    return {"pid": os.getpid()}


async def _transcode(job_id: str) -> dict[str, Any]:
    _trace(job_id, "transcode")
    while True:
        if not (_dir() / "hold").exists():
            break
        await asyncio.sleep(0.05)
    return {"pid": os.getpid()}


class Resumable(Executor):
    """Three steps; a job taken over after its worker died continues after its last finished step."""

    action = "crash-resumable"

    async def execute(self, ctx: JobContext) -> dict[str, Any]:
        downloaded = await ctx.step("download", _trace, ctx.job_id, "download")
        await ctx.step("transcode", _transcode, ctx.job_id)
        await ctx.step("upload", _trace, ctx.job_id, "upload")
        return {"download_pid": downloaded["pid"], "finished_pid": os.getpid()}

    async def resume(self, ctx: JobContext) -> dict[str, Any]:
        return await self.execute(ctx)


class Plain(Executor):
    """No resume: a job whose worker died is LOST."""

    action = "crash-plain"

    async def execute(self, ctx: JobContext) -> dict[str, Any]:
        await ctx.step("download", _trace, ctx.job_id, "download")
        await ctx.step("transcode", _transcode, ctx.job_id)
        return {"finished_pid": os.getpid()}


ALL = [Resumable, Plain]
