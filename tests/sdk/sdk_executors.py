"""Executors that the SDK tests run in real worker processes (``jobwarden worker sdk_executors:ALL``).

Tests steer them through files named in the job's input: ``trace`` (each executor appends what it
did, one line each, so a test sees which steps ran in which attempt) and ``gate`` (a step waits
until that file exists, so a test can kill or cancel a job at a known point).
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from jobwarden.sdk import Executor, JobCancelled, JobContext, JobFailed


def trace(ctx: JobContext, what: str) -> None:
    path = ctx.input.get("trace")
    if path:
        with open(path, "a") as file:
            file.write(f"{what} attempt={ctx.attempt} mode={ctx.mode.name} pid={os.getpid()}\n")


async def wait_gate(ctx: JobContext) -> None:
    gate = ctx.input.get("gate")
    # A test's gate file, checked between sleeps.
    while gate and not Path(gate).exists():  # noqa: ASYNC110, ASYNC240
        await asyncio.sleep(0.02)


def wait_gate_sync(ctx: JobContext) -> None:
    gate = ctx.input.get("gate")
    while gate and not Path(gate).exists():
        if ctx.cancel_event.wait(0.02):
            return


class AsyncSteps(Executor):
    """Three steps; the second waits for the gate. Resumable (defines ``resume``)."""

    action = "sdk-steps"

    async def execute(self, ctx: JobContext) -> dict[str, Any]:
        trace(ctx, "execute")
        one = await ctx.step("one", self.one, ctx)
        two = await ctx.step("two", self.two, ctx)
        three = await ctx.step("three", self.three, ctx, one, two)
        return {"one": one, "two": two, "three": three, "attempt": ctx.attempt}

    async def resume(self, ctx: JobContext) -> dict[str, Any]:
        trace(ctx, f"resume after={','.join(ctx.checkpoint.steps)}")
        return await self.execute(ctx)

    async def one(self, ctx: JobContext) -> dict[str, Any]:
        trace(ctx, "step one")
        ctx.progress(10, "one")
        return {"pid": os.getpid()}

    async def two(self, ctx: JobContext) -> int:
        trace(ctx, "step two")
        ctx.progress(40, "two")
        await wait_gate(ctx)
        return 2

    async def three(self, ctx: JobContext, one: dict[str, Any], two: int) -> str:
        trace(ctx, "step three")
        ctx.progress(90, "three")
        return f"{one['pid']}-{two}"


class SyncSteps(Executor):
    """The same in a plain (thread pool) executor; stops when cancelled."""

    action = "sdk-sync"

    def execute(self, ctx: JobContext) -> dict[str, Any]:
        trace(ctx, "execute")
        first = ctx.step("first", lambda: {"tid": "thread"})
        ctx.progress(30, "first done")
        ctx.log("waiting for the gate")
        wait_gate_sync(ctx)
        if ctx.cancel_requested:
            trace(ctx, "saw cancel")
            raise JobCancelled("stopping")
        second = ctx.step("second", lambda: 2)
        ctx.set_job_variable("answer", 42)
        ctx.set_workflow_variable("seen_by", "sync")
        return {"first": first, "second": second, "sum": sum(ctx.input.get("numbers", []))}

    def on_cancelled(self, ctx: JobContext) -> None:
        trace(ctx, "on_cancelled")


class Flaky(Executor):
    """Fails its second step on the first attempt; a retry skips the first step."""

    action = "sdk-flaky"

    async def execute(self, ctx: JobContext) -> dict[str, Any]:
        trace(ctx, "execute")
        prepared = await ctx.step("prepare", self.prepare, ctx)
        return {"prepared": prepared, "worked": await ctx.step("work", self.work, ctx)}

    async def retry(self, ctx: JobContext) -> dict[str, Any]:
        trace(ctx, f"retry after={','.join(ctx.checkpoint.steps)}")
        return await self.execute(ctx)

    async def prepare(self, ctx: JobContext) -> str:
        trace(ctx, "step prepare")
        return "ready"

    async def work(self, ctx: JobContext) -> str:
        trace(ctx, "step work")
        if ctx.attempt == 1:
            raise JobFailed("the upstream service said 503", retryable=True)
        return "done"


class Crash(Executor):
    action = "sdk-crash"

    async def execute(self, ctx: JobContext) -> None:
        try:
            empty: dict[str, int] = {}
            empty["missing"]
        except KeyError as error:
            raise RuntimeError("could not read the manifest") from error


class Refuse(Executor):
    action = "sdk-refuse"

    def execute(self, ctx: JobContext) -> None:
        raise JobFailed("asset 7 does not exist", retryable=False)


class BadResult(Executor):
    action = "sdk-bad-result"

    async def execute(self, ctx: JobContext) -> dict[str, Any]:
        return {"when": datetime(2024, 1, 1)}


class BadProgress(Executor):
    action = "sdk-bad-progress"

    async def execute(self, ctx: JobContext) -> None:
        ctx.progress(140)


class StepTwice(Executor):
    action = "sdk-step-twice"

    async def execute(self, ctx: JobContext) -> None:
        await ctx.step("a", lambda: 1)
        await ctx.step("a", lambda: 2)


class BadCancel(Executor):
    """Waits until cancelled; its ``cancel`` hook raises."""

    action = "sdk-bad-cancel"

    async def execute(self, ctx: JobContext) -> None:
        trace(ctx, "execute")
        ctx.progress(1, "waiting to be cancelled")
        await asyncio.Event().wait()

    async def cancel(self, ctx: JobContext) -> None:
        trace(ctx, "cancel hook")
        raise RuntimeError("the encoder did not answer")


class Stubborn(Executor):
    """A sync executor that ignores cancel until its gate opens (tests the cancel grace)."""

    action = "sdk-stubborn"

    def execute(self, ctx: JobContext) -> str:
        trace(ctx, "execute")
        gate = ctx.input.get("gate")
        while gate and not Path(gate).exists():
            time.sleep(0.02)
        return "finished anyway"


def stamp(ctx: JobContext, what: str) -> None:
    """``<job> <attempt> <start|stop> <time>`` in ``input.stamps``: the executor's own account of when it
    touched its asset, which a test checks for overlaps."""
    with open(ctx.input["stamps"], "a") as file:
        file.write(f"{ctx.job_id} {ctx.attempt} {what} {time.time():.6f}\n")


def writing_seconds(ctx: JobContext) -> float:
    """``input.seconds`` on the first attempt, ``input.retry_seconds`` (default the same) on later ones."""
    seconds = float(ctx.input.get("seconds", 1.5))
    return float(ctx.input.get("retry_seconds", seconds)) if ctx.attempt > 1 else seconds


class DeafWriter(Executor):
    """A sync executor that "writes its asset" for ``writing_seconds`` in a loop of sleeps and never
    looks at its cancel: only its return lets the asset go. Resumable, so a takeover would be allowed."""

    action = "sdk-deaf-writer"
    supports_resume = True

    def execute(self, ctx: JobContext) -> str:
        stamp(ctx, "start")
        until = time.monotonic() + writing_seconds(ctx)
        while time.monotonic() < until:
            time.sleep(0.05)
        stamp(ctx, "stop")
        return "written"


class SwallowingWriter(Executor):
    """The async kind: it swallows every ``CancelledError`` and writes on until it is done."""

    action = "sdk-swallowing-writer"

    async def execute(self, ctx: JobContext) -> str:
        stamp(ctx, "start")
        until = time.monotonic() + writing_seconds(ctx)
        while (left := until - time.monotonic()) > 0:
            try:
                await asyncio.sleep(left)
            except asyncio.CancelledError:
                trace(ctx, "swallowed a cancel")
        stamp(ctx, "stop")
        return "written"


class Sleeper(Executor):
    """Sleeps ``input.seconds`` (for drain tests); vouched for by the worker's heartbeats."""

    action = "sdk-sleep"

    async def execute(self, ctx: JobContext) -> dict[str, Any]:
        trace(ctx, "execute")
        await asyncio.sleep(float(ctx.input.get("seconds", 0.5)))
        await wait_gate(ctx)
        trace(ctx, "finished")
        return {"slept": ctx.input.get("seconds", 0.5)}


class Silent(Executor):
    """Never reports and is not vouched for: its jobs time out when it goes quiet."""

    action = "sdk-silent"
    auto_heartbeat = False

    async def execute(self, ctx: JobContext) -> str:
        trace(ctx, "execute")
        await wait_gate(ctx)
        return "late"


class Extender(Executor):
    """Runs past its execution timeout, pushing the deadline with heartbeats when ``input.extend``."""

    action = "sdk-extend"

    async def execute(self, ctx: JobContext) -> str:
        for _ in range(int(ctx.input.get("rounds", 6))):
            if ctx.input.get("extend"):
                ctx.heartbeat(extend_execution=2.0)
            await asyncio.sleep(0.25)
        return "outlived the first deadline"


class OneAtATime(Executor):
    """``max_concurrency = 1``: the worker never runs two of these at once, whatever its capacity."""

    action = "sdk-one-at-a-time"
    max_concurrency = 1

    async def execute(self, ctx: JobContext) -> None:
        trace(ctx, "start")
        await wait_gate(ctx)


class Noop(Executor):
    action = "sdk-noop"

    async def execute(self, ctx: JobContext) -> None:
        return None


ALL = [
    AsyncSteps,
    SyncSteps,
    Flaky,
    Crash,
    Refuse,
    BadResult,
    BadProgress,
    StepTwice,
    BadCancel,
    Stubborn,
    DeafWriter,
    SwallowingWriter,
    Sleeper,
    Silent,
    Extender,
    OneAtATime,
    Noop,
]


class NoAction(Executor):
    """Not in ALL: an executor that forgot its action (a worker must refuse it)."""

    async def execute(self, ctx: JobContext) -> None:
        return None
