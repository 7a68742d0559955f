"""The demo's steady trickle of jobs, run as ``python -m jobwarden.tui.demo._trickle``.

It configures the demo actions through the API (a retry policy, heartbeat deadlines, a queue
limit), submits a first burst that shows every status and every failure kind the docs promise
within a minute, then keeps submitting a fixed cycle of jobs at ``--rate`` jobs a second,
cancelling every other slow export as an operator would. Nothing is left to chance: which job
fails, crashes or is cancelled follows the schedule, so every run shows the same story.

It also puts the media workflow (``media.py``) and starts a work order of it every
``MEDIA_EVERY`` seconds, two at once at first, in a fixed cycle: one that completes, one whose
publish fails and notifies (a handled failure), one that completes, one whose 480p transcode fails
(an unhandled one: the run FAILED, the steps after it SKIPPED).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import random
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from google.protobuf.duration_pb2 import Duration
from jobwarden.sdk import JobClient, JobwardenError
from jobwarden.v1 import job_pb2

from .executors import (
    FLAKY,
    INGEST,
    PACKAGE,
    PUBLISH,
    REPORT,
    SILENT,
    SLOW,
    THUMBNAIL,
    TRANSCODE,
    FlakyPlan,
)
from .media import WORKFLOW, media_workflow

#: seconds after which the trickle cancels a slow export it submitted
CANCEL_AFTER = 12.0


def _seconds(value: float) -> Duration:
    duration = Duration()
    duration.FromTimedelta(timedelta(seconds=value))
    return duration


async def configure(client: JobClient) -> None:
    """The action settings the demo shows, set through the API like any operator would."""
    await client.set_action_config(
        job_pb2.ActionConfig(
            action=FLAKY,
            retry_policy=job_pb2.RetryPolicy(
                max_attempts=3,
                initial_interval=_seconds(3),
                backoff_coefficient=2.0,
                max_interval=_seconds(20),
            ),
        )
    )
    await client.set_action_config(
        job_pb2.ActionConfig(
            action=SILENT, timeouts=job_pb2.JobTimeouts(heartbeat=_seconds(4), takeover=_seconds(6))
        )
    )
    # Nobody serves ingest: its jobs wait (the Actions screen warns), and past 3 they are REJECTED.
    await client.set_action_config(job_pb2.ActionConfig(action=INGEST, max_queued=3))


#: the context of the media work orders, in turn
MEDIA_CYCLE: tuple[dict[str, str], ...] = (
    {},
    {"flaky_publish": "yes"},
    {},
    {"broken_rendition": "480p"},
)
#: seconds between two media work orders
MEDIA_EVERY = 20.0

#: what the flaky uploads of the steady cycle do, in turn
FLAKY_CYCLE: tuple[FlakyPlan, ...] = ("retry", "ok", "doomed", "ok", "retry", "crash")


class Trickle:
    def __init__(self, client: JobClient, rate: float) -> None:
        self.client = client
        self.rate = rate
        self.asset = 100
        self.tasks: set[asyncio.Task[None]] = set()
        self._flaky_plans = itertools.cycle(FLAKY_CYCLE)
        self._cancel_next_slow = itertools.cycle((True, False))

    async def burst(self) -> None:
        """One of each, at once: every status and failure kind shows within the first minute."""
        await self.transcode()
        await self.transcode()
        await self.package()
        await self.flaky("doomed")  # FAILED, JOB_ERROR, after 3 attempts
        await self.flaky("crash")  # FAILED, CRASHED (a chained stack trace), after 3 attempts
        await self.flaky("retry")  # DELAYED after its first attempt, then COMPLETED
        await self.lock_group()  # WAIT LOCK
        for _ in range(4):
            await self.ingest()  # QUEUED, and the fourth REJECTED
        await self.report()  # DELAYED until its run_at
        await self.silent()  # TIMED OUT, then FAILED, LOST
        await self.slow(cancel=True)  # CANCELLED after 12 s
        await self.slow(cancel=False)

    def cycle(self) -> list[Callable[[], Awaitable[None]]]:
        """The steady mix, one turn of it: mostly transcodes, packages and uploads."""
        return [
            self.transcode,
            self.package,
            self.flaky,
            self.transcode,
            self.lock_group,
            self.transcode,
            self.package,
            self.flaky,
            self.report,
            self.transcode,
            self.silent,
            self.package,
            self.flaky,
            self.transcode,
            self.slow_cancelled,
            self.ingest,
        ]

    async def run(self) -> None:
        media = asyncio.create_task(self.media_orders())
        self.tasks.add(media)
        await self.burst()
        for submit in itertools.cycle(self.cycle()):
            await asyncio.sleep(1.0 / self.rate)
            if os.getppid() == 1:
                return  # the demo that started us is gone
            try:
                await submit()
            except JobwardenError as error:
                print(f"trickle: {error}", file=sys.stderr)

    async def media_orders(self) -> None:
        """Put the media workflow, then start its work orders (see the module docstring)."""
        try:
            await self.client.put_workflow(media_workflow())
        except JobwardenError as error:
            print(f"trickle: the media workflow was refused, so no work orders: {error}", file=sys.stderr)
            return
        plans = itertools.cycle(MEDIA_CYCLE)
        first = True
        while True:
            for _ in range(2 if first else 1):
                context = next(plans)
                asset = self._asset()
                with contextlib.suppress(JobwardenError):
                    await self.client.start_workflow(
                        WORKFLOW, {"asset_id": asset}, context=context, correlation_id=f"asset-{asset}"
                    )
            first = False
            await asyncio.sleep(MEDIA_EVERY)

    async def transcode(self) -> None:
        await self.client.submit(
            TRANSCODE, {"asset_id": self._asset(), "frames": random.choice([120, 240, 480])}
        )

    async def package(self) -> None:
        await self.client.submit(PACKAGE, {"asset_id": self._asset()})

    async def flaky(self, plan: FlakyPlan | None = None) -> None:
        plan = plan or next(self._flaky_plans)
        await self.client.submit(FLAKY, {"asset_id": self._asset(), "plan": plan})

    async def lock_group(self) -> None:
        """A publish needing its asset EXCLUSIVE between thumbnails that read it SHARED."""
        asset = f"asset:{self._asset()}"
        await self.client.submit(THUMBNAIL, {"asset": asset}, locks=[f"{asset}:SHARED"])
        await self.client.submit(PUBLISH, {"asset": asset}, locks=[asset])
        await self.client.submit(THUMBNAIL, {"asset": asset}, locks=[f"{asset}:SHARED"])
        await self.client.submit(THUMBNAIL, {"asset": asset}, locks=[f"{asset}:SHARED"])

    async def ingest(self) -> None:
        await self.client.submit(INGEST, {"asset_id": self._asset()})

    async def report(self) -> None:
        run_at = datetime.now(UTC) + timedelta(seconds=random.uniform(15, 30))
        await self.client.submit(REPORT, {"hour": run_at.hour}, run_at=run_at)

    async def silent(self) -> None:
        await self.client.submit(SILENT, {"asset_id": self._asset()})

    async def slow_cancelled(self) -> None:
        await self.slow(cancel=next(self._cancel_next_slow))

    async def slow(self, cancel: bool) -> None:
        job = await self.client.submit(SLOW, {"asset_id": self._asset()})
        if cancel:
            task = asyncio.create_task(self._cancel_later(job.id))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _cancel_later(self, job_id: str) -> None:
        await asyncio.sleep(CANCEL_AFTER)
        with contextlib.suppress(JobwardenError):
            await self.client.cancel(job_id, reason="the demo trickle changed its mind")

    def _asset(self) -> int:
        self.asset += 1
        return self.asset


async def main_async(engine: str, rate: float) -> None:
    async with JobClient(engine) as client:
        await configure(client)
        await Trickle(client, rate).run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobwarden.tui.demo._trickle")
    parser.add_argument("--engine", required=True)
    parser.add_argument("--rate", type=float, default=1.5)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main_async(args.engine, args.rate))
    return 0


if __name__ == "__main__":
    sys.exit(main())
