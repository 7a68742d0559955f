"""The demo's steady trickle of jobs, run as ``python -m jobwarden.tui.demo._trickle``.

It configures the demo actions through the API (a retry policy, heartbeat deadlines, a queue
limit), submits a first burst that shows every status within a minute, then keeps submitting
a mix at ``--rate`` jobs a second, cancelling an occasional slow export as an operator would.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import sys
from datetime import UTC, datetime, timedelta

from google.protobuf.duration_pb2 import Duration
from jobwarden.sdk import JobClient, JobwardenError
from jobwarden.v1 import job_pb2

from .executors import FLAKY, INGEST, PACKAGE, PUBLISH, REPORT, SILENT, SLOW, THUMBNAIL, TRANSCODE

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


class Trickle:
    def __init__(self, client: JobClient, rate: float) -> None:
        self.client = client
        self.rate = rate
        self.asset = 100
        self.tasks: set[asyncio.Task[None]] = set()

    async def burst(self) -> None:
        """One of each, at once: every status shows within the first minute."""
        await self.transcode()
        await self.transcode()
        await self.package()
        await self.flaky(doomed=True)
        await self.flaky(crash=True)
        await self.flaky()
        await self.lock_group()
        for _ in range(4):
            await self.ingest()
        await self.report()
        await self.silent()
        await self.slow(cancel=True)
        await self.slow(cancel=False)

    async def run(self) -> None:
        await self.burst()
        kinds = [
            (self.transcode, 5),
            (self.package, 3),
            (self.flaky, 3),
            (self.lock_group, 1),
            (self.report, 1),
            (self.silent, 1),
            (self.slow_cancelled, 1),
            (self.ingest, 1),
        ]
        functions = [function for function, _ in kinds]
        weights = [weight for _, weight in kinds]
        while True:
            await asyncio.sleep(random.expovariate(self.rate))
            if os.getppid() == 1:
                return  # the demo that started us is gone
            try:
                await random.choices(functions, weights)[0]()
            except JobwardenError as error:
                print(f"trickle: {error}", file=sys.stderr)

    async def transcode(self) -> None:
        await self.client.submit(
            TRANSCODE, {"asset_id": self._asset(), "frames": random.choice([120, 240, 480])}
        )

    async def package(self) -> None:
        await self.client.submit(PACKAGE, {"asset_id": self._asset()})

    async def flaky(self, doomed: bool = False, crash: bool = False) -> None:
        doomed = doomed or random.random() < 0.25
        await self.client.submit(FLAKY, {"asset_id": self._asset(), "doomed": doomed, "crash": crash})

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
        await self.slow(cancel=random.random() < 0.5)

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
