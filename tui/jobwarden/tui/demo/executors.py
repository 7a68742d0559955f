"""The demo's executors: each one shows the console a different side of the engine.

They run in ordinary SDK workers (``jobwarden worker jobwarden.tui.demo.executors:WORKER_ONE``),
written the way a plugin author would write them. Timings are short so that a newcomer sees
every status within a minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import Any, Literal

from jobwarden.sdk import Executor, JobContext, JobFailed

#: the demo's action names, shared with the trickle that submits to them
TRANSCODE = "transcode"
PACKAGE = "package"
FLAKY = "flaky-upload"
PUBLISH = "publish"
THUMBNAIL = "thumbnail"
SILENT = "heartbeat-loss"
SLOW = "slow-export"
REPORT = "report"
#: an action no demo worker serves: its jobs queue, then are rejected past its queue limit
INGEST = "ingest"


async def _tick(ctx: JobContext, seconds: float) -> None:
    """Sleep; a cancel meanwhile ends the job at once (``JobCancelled``)."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(ctx.wait_cancelled(), timeout=seconds)
    ctx.raise_if_cancelled()


class Transcode(Executor):
    """Progress from 0 to 100 with a message, over ten seconds or so."""

    action = TRANSCODE

    async def execute(self, ctx: JobContext) -> dict[str, Any]:
        frames = int(ctx.input.get("frames", 240))
        ctx.log(f"transcoding {frames} frames of asset {ctx.input.get('asset_id')}")
        for done in range(0, frames + 1, frames // 20 or 1):
            ctx.progress(100 * done / frames, f"encoding 1080p, frame {done}/{frames}")
            await _tick(ctx, random.uniform(0.3, 0.6))
        ctx.log("done")
        return {"frames": frames, "profile": "1080p"}


class Package(Executor):
    """Four named steps, each checkpointed: a retry from a step runs that step and those after."""

    action = PACKAGE
    steps = ("download", "encode", "package", "upload")

    async def execute(self, ctx: JobContext) -> dict[str, Any]:
        results: dict[str, Any] = {}
        for number, name in enumerate(self.steps):
            results[name] = await ctx.step(name, self._run_step, ctx, name, number)
        ctx.set_job_variable("package_size", str(random.randint(10, 900)) + " MB")
        return results

    async def _run_step(self, ctx: JobContext, name: str, number: int) -> dict[str, Any]:
        ctx.log(f"step {name} starts")
        for part in range(5):
            ctx.progress(25 * number + 5 * part, f"{name} {20 * part}%")
            await _tick(ctx, 0.4)
        return {"step": name, "seconds": 2}


#: what a flaky upload does, as its input's ``plan`` says: "ok" succeeds; "retry" fails its first
#: attempt and succeeds on the next (DELAYED between); "doomed" fails every attempt (FAILED,
#: JOB_ERROR, once the retry policy is spent); "crash" raises an unhandled, chained exception on
#: every attempt (FAILED, CRASHED, with each attempt's stack trace)
FlakyPlan = Literal["ok", "retry", "doomed", "crash"]


class FlakyUpload(Executor):
    """Fails as its input's ``plan`` says (see ``FlakyPlan``); the action's retry policy (set by the
    trickle) brings a failed attempt back after a backoff (DELAYED)."""

    action = FLAKY

    async def execute(self, ctx: JobContext) -> dict[str, Any]:
        plan = ctx.input.get("plan", "ok")
        ctx.progress(10, f"attempt {ctx.attempt}: connecting")
        await _tick(ctx, 1.0)
        ctx.progress(50, "uploading")
        await _tick(ctx, 1.0)
        if plan == "doomed":
            raise JobFailed(f"the CDN refused the upload (attempt {ctx.attempt})")
        if plan == "crash":
            _upload_chunk(b"")
        if plan == "retry" and ctx.attempt == 1:
            raise JobFailed("connection reset by the CDN; retrying later")
        return {"uploaded": True, "attempts": ctx.attempt}


def _upload_chunk(chunk: bytes) -> None:
    try:
        if not chunk:
            raise ConnectionResetError("peer closed the connection during the upload")
    except ConnectionResetError as error:
        raise RuntimeError("upload failed") from error


class Publish(Executor):
    """Needs its asset EXCLUSIVE (the lock is given at submit): waits while thumbnails read it."""

    action = PUBLISH

    async def execute(self, ctx: JobContext) -> dict[str, Any]:
        for percent in range(0, 101, 20):
            ctx.progress(percent, f"publishing {ctx.input.get('asset')}")
            await _tick(ctx, 0.8)
        return {"published": True}


class Thumbnail(Executor):
    """Reads its asset SHARED: several run together, none while a publish holds the asset."""

    action = THUMBNAIL

    async def execute(self, ctx: JobContext) -> dict[str, Any]:
        for percent in range(0, 101, 25):
            ctx.progress(percent, f"thumbnail {percent // 25 + 1}/5")
            await _tick(ctx, 0.6)
        return {"thumbnails": 5}


class HeartbeatLoss(Executor):
    """Reports once, then falls silent: TIMED_OUT at the first deadline, FAILED (LOST) at the second."""

    action = SILENT
    # The worker must not vouch for this job in its heartbeats: its silence is the point.
    auto_heartbeat = False
    max_concurrency = 2

    async def execute(self, ctx: JobContext) -> dict[str, Any]:
        ctx.progress(15, "working… (this executor will stop reporting now)")
        ctx.log("going silent on purpose", level="WARNING")
        await _tick(ctx, 40.0)
        return {"silent": True}


class SlowExport(Executor):
    """Slow enough to cancel: a minute and a half, checking for a cancel as it goes."""

    action = SLOW

    async def execute(self, ctx: JobContext) -> dict[str, Any]:
        for second in range(90):
            ctx.progress(100 * second / 90, f"exporting, {90 - second}s left (press c to cancel)")
            await _tick(ctx, 1.0)
        return {"exported": True}

    async def on_cancelled(self, ctx: JobContext) -> None:
        ctx.log("export cancelled; partial files removed")


class Report(Executor):
    """Submitted with a ``run_at`` in the future: DELAYED first, then a quick run."""

    action = REPORT

    async def execute(self, ctx: JobContext) -> dict[str, Any]:
        ctx.progress(50, "summing up the hour")
        await _tick(ctx, 1.0)
        return {"rows": random.randint(100, 999)}


#: the executors of the first demo worker
WORKER_ONE = [Transcode, Package, FlakyUpload, Report]
#: the executors of the second demo worker
WORKER_TWO = [Publish, Thumbnail, HeartbeatLoss, SlowExport]
