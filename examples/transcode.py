"""A complete jobwarden executor: a media "transcode" in three resumable steps.

Run it against an engine and submit a job::

    jobwarden serve &
    jobwarden worker examples.transcode:Transcode --capacity 4
    jobwarden submit transcode --input '{"asset_id": 42, "formats": ["720p", "480p"]}' --wait

What it shows:

- ``action``, ``max_concurrency`` and ``locks``: every job takes an EXCLUSIVE lock on its asset
  (``asset:{input.asset_id}``), so two jobs never transcode the same asset at once.
- ``ctx.step``: download, transcode and publish are checkpointed steps. If the worker dies mid-job,
  the engine hands the job to another worker, which calls ``resume``; the steps already finished
  are skipped and their recorded data returned.
- ``ctx.progress``, ``ctx.log`` and a job variable; ``JobFailed`` for a handled failure (an unknown
  format), which is not retried; a cancel stops the job between chunks of work.

The "work" is simulated with ``asyncio.sleep``: ``input.seconds_per_format`` sets how long each
format takes (default 0.2 s).
"""

from __future__ import annotations

import asyncio
from typing import Any

from jobwarden.sdk import Executor, JobContext, JobFailed

KNOWN_FORMATS = {"1080p", "720p", "480p", "audio"}


class Transcode(Executor):
    action = "transcode"
    max_concurrency = 4
    locks = ("asset:{input.asset_id}",)

    async def execute(self, ctx: JobContext) -> dict[str, Any]:
        asset = ctx.input.get("asset_id")
        if asset is None:
            raise JobFailed("input.asset_id is required", retryable=False)
        formats = list(ctx.input.get("formats", ["720p"]))
        unknown = sorted(set(formats) - KNOWN_FORMATS)
        if unknown:
            raise JobFailed(f"unknown format(s): {', '.join(unknown)}", retryable=False)

        source = await ctx.step("download", self.download, ctx, asset)
        outputs = await ctx.step("transcode", self.transcode, ctx, source, formats)
        url = await ctx.step("publish", self.publish, ctx, asset, outputs)
        ctx.set_job_variable("published_url", url)
        ctx.progress(100, "published")
        return {"asset_id": asset, "url": url, "outputs": outputs}

    async def resume(self, ctx: JobContext) -> dict[str, Any]:
        done = ", ".join(ctx.checkpoint.steps) or "nothing"
        ctx.log(f"resuming attempt {ctx.attempt}; already done: {done}")
        return await self.execute(ctx)

    async def download(self, ctx: JobContext, asset: Any) -> dict[str, Any]:
        ctx.progress(5, f"downloading asset {asset}")
        await asyncio.sleep(self._pace(ctx) / 2)
        return {"path": f"/tmp/assets/{asset}/source.mov", "bytes": 1_048_576}

    async def transcode(self, ctx: JobContext, source: dict[str, Any], formats: list[str]) -> list[str]:
        outputs = []
        for index, name in enumerate(formats):
            ctx.progress(10 + 80 * index // len(formats), f"transcoding {name}")
            await asyncio.sleep(self._pace(ctx))
            outputs.append(source["path"].replace("source.mov", f"{name}.mp4"))
            ctx.log(f"wrote {outputs[-1]}")
        return outputs

    async def publish(self, ctx: JobContext, asset: Any, outputs: list[str]) -> str:
        ctx.progress(95, "publishing")
        await asyncio.sleep(self._pace(ctx) / 2)
        return f"https://cdn.example.com/assets/{asset}/"

    async def cancel(self, ctx: JobContext) -> None:
        # The running step is cancelled by the worker; a real executor would stop its encoder here.
        ctx.log(f"cancel requested: {ctx.cancel_reason}", level="WARNING")

    @staticmethod
    def _pace(ctx: JobContext) -> float:
        return float(ctx.input.get("seconds_per_format", 0.2))
