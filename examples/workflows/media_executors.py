"""The executors of the media-publish workflow (media-publish.toml): one per action.

    jobwarden worker examples.workflows.media_executors:EXECUTORS --capacity 8

The "work" is simulated (``asyncio.sleep``; ``MEDIA_STEP_SECONDS`` sets how long, default 0.3 s).
Two context variables of the workflow break things on purpose, to show the failure rules:

- ``broken_rendition=480p``: that transcode fails (JOB_ERROR). No failure edge leaves a transcode,
  so the failure is unhandled: ``package`` is SKIPPED and the run is FAILED, naming the step.
- ``flaky_publish=yes``: ``publish`` fails the first time for an asset (in this worker process),
  then succeeds. Its failure edge runs ``notify`` (a handled failure: the run is COMPLETED); retry
  the work order ``--from publish`` and only publish runs again, reusing the upstream results.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from jobwarden.sdk import Executor, JobContext, JobFailed

_SECONDS = float(os.environ.get("MEDIA_STEP_SECONDS", "0.3"))
#: assets whose publish already failed once in this process (flaky_publish)
_FAILED_ONCE: set[Any] = set()


async def _work(ctx: JobContext, what: str) -> None:
    for percent in (25, 50, 75):
        ctx.raise_if_cancelled()
        ctx.progress(percent, what)
        await asyncio.sleep(_SECONDS / 4)
    await asyncio.sleep(_SECONDS / 4)


class Ingest(Executor):
    action = "media.ingest"

    async def execute(self, ctx: JobContext) -> dict[str, Any]:
        asset = ctx.input.get("asset_id")
        if asset is None:
            raise JobFailed("input.asset_id is required", retryable=False)
        await _work(ctx, f"ingesting asset {asset}")
        ctx.set_job_variable("source_bytes", 48_000_000)
        return {"path": f"/media/in/{asset}.mov"}


class Transcode(Executor):
    action = "media.transcode"
    max_concurrency = 6

    async def execute(self, ctx: JobContext) -> dict[str, Any]:
        rendition = ctx.input["rendition"]
        if ctx.input.get("broken") == rendition:
            raise JobFailed(f"the {rendition} encoder crashed on {ctx.input['source']}", retryable=False)
        await _work(ctx, f"transcoding to {rendition}")
        return {"file": f"/media/out/{ctx.input['asset_id']}-{rendition}.mp4", "rendition": rendition}


class Package(Executor):
    action = "media.package"

    async def execute(self, ctx: JobContext) -> dict[str, Any]:
        files = list(ctx.input["files"])
        await _work(ctx, f"packaging {len(files)} renditions")
        return {"package": f"/media/pkg/{ctx.input['asset_id']}.m3u8", "renditions": len(files)}


class Publish(Executor):
    action = "media.publish"

    async def execute(self, ctx: JobContext) -> dict[str, Any]:
        asset = ctx.input["asset_id"]
        if ctx.input.get("flaky") == "yes" and asset not in _FAILED_ONCE:
            _FAILED_ONCE.add(asset)
            raise JobFailed(f"the CDN refused asset {asset} (try again)")
        await _work(ctx, f"publishing to {ctx.input['channel']}")
        ctx.set_workflow_variable("published_at", "now")
        return {"url": f"https://cdn.example/{ctx.input['channel']}/{asset}"}


class Notify(Executor):
    action = "media.notify"

    async def execute(self, ctx: JobContext) -> dict[str, Any]:
        ctx.log(f"{ctx.input['channel']}: {ctx.input['text']}")
        return {"notified": ctx.input["channel"]}


EXECUTORS = [Ingest, Transcode, Package, Publish, Notify]
