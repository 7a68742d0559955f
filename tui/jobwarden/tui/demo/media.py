"""The demo's media workflow: its definition (built with the SDK's ``Workflow``) and its executors.

The same shape as examples/workflows/media-publish.toml (ingest → three transcodes at once →
package, a join of all three → publish; a failure of ingest or publish goes to notify), with
executors slow enough to watch: every step reports progress about twice a second for a few seconds.
Two context variables break things on purpose, so the console shows both failure rules:

- ``broken_rendition=480p``: that transcode fails (JOB_ERROR). No edge handles a transcode's
  failure, so ``package`` and what follows are SKIPPED and the run is FAILED, naming the step;
- ``flaky_publish=yes``: ``publish`` fails the first time for an asset; its failure edge runs
  ``notify``, a handled failure, so the run is COMPLETED. Rerun the work order from ``publish``
  (``R`` in the run view): only publish runs again, reusing the upstream results, and succeeds.

The actions are ``media.*``, apart from the job demo's own ``ingest`` and ``publish``.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from jobwarden.sdk import Executor, JobContext, JobFailed, Workflow

WORKFLOW = "media-publish"
RENDITIONS = ("1080p", "720p", "480p")
#: seconds each step takes (a transcode: by rendition, the biggest slowest)
#: assets whose flaky publish has failed once in this process
_REFUSED_ONCE: set[Any] = set()
_SECONDS = {"ingest": 4.0, "1080p": 12.0, "720p": 8.0, "480p": 6.0, "package": 4.0, "publish": 3.0}


def media_workflow() -> Workflow:
    wf = Workflow(
        WORKFLOW,
        description="Ingest, transcode to 1080p/720p/480p, package, publish; notify on failure.",
        run_timeout="10m",
        context={
            "channel": "web",
            "notify_channel": "#media-ops",
            "broken_rendition": "",
            "flaky_publish": "no",
        },
    )
    ingest = wf.action("ingest", "media.ingest", locks=["asset:{{ input.asset_id }}"])
    transcodes = [
        wf.action(
            f"transcode_{rendition}",
            "media.transcode",
            input={
                "asset_id": "{{ input.asset_id }}",
                "source": "{{ steps.ingest.result.path }}",
                "rendition": rendition,
                "broken": "{{ context.broken_rendition }}",
            },
        )
        for rendition in RENDITIONS
    ]
    package = wf.action(
        "package",
        "media.package",
        join="all",
        input={
            "asset_id": "{{ input.asset_id }}",
            "files": [f"{{{{ steps.{step.name}.result.file }}}}" for step in transcodes],
        },
    )
    publish = wf.action(
        "publish",
        "media.publish",
        input={
            "asset_id": "{{ input.asset_id }}",
            "package": "{{ steps.package.result.package }}",
            "channel": "{{ context.channel }}",
            "flaky": "{{ context.flaky_publish }}",
        },
        retry={"max_attempts": 1},
    )
    notify = wf.action(
        "notify",
        "media.notify",
        join="any",
        input={
            "channel": "{{ context.notify_channel }}",
            "text": "media-publish failed for {{ input.asset_id }}",
        },
    )
    ingest.on_success(*transcodes)
    for transcode in transcodes:
        transcode.on_success(package)
    package.on_success(publish)
    ingest.on_failure(notify)
    publish.on_failure(notify)
    return wf


async def _work(ctx: JobContext, seconds: float, what: str) -> None:
    """Progress from 0 to 100 over ``seconds``, twice a second; a cancel ends it at once."""
    ticks = max(1, int(seconds * 2))
    for tick in range(ticks):
        ctx.progress(100 * tick // ticks, what)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ctx.wait_cancelled(), timeout=seconds / ticks)
        ctx.raise_if_cancelled()


class Ingest(Executor):
    action = "media.ingest"

    async def execute(self, ctx: JobContext) -> dict[str, Any]:
        asset = ctx.input["asset_id"]
        await _work(ctx, _SECONDS["ingest"], f"fetching asset {asset}")
        return {"path": f"/media/in/{asset}.mov"}


class Transcode(Executor):
    action = "media.transcode"

    async def execute(self, ctx: JobContext) -> dict[str, Any]:
        rendition = ctx.input["rendition"]
        if ctx.input.get("broken") == rendition:
            await _work(ctx, 2.0, f"encoding {rendition}")
            raise JobFailed(f"the {rendition} encoder crashed on frame 1812", retryable=False)
        await _work(ctx, _SECONDS[rendition], f"encoding {rendition}")
        return {"file": f"/media/out/{ctx.input['asset_id']}-{rendition}.mp4"}


class Package(Executor):
    action = "media.package"

    async def execute(self, ctx: JobContext) -> dict[str, Any]:
        files = list(ctx.input["files"])
        await _work(ctx, _SECONDS["package"], f"packaging {len(files)} renditions")
        return {"package": f"/media/pkg/{ctx.input['asset_id']}.m3u8"}


class Publish(Executor):
    action = "media.publish"

    async def execute(self, ctx: JobContext) -> dict[str, Any]:
        await _work(ctx, _SECONDS["publish"], f"publishing to {ctx.input['channel']}")
        asset = ctx.input["asset_id"]
        # Fails the first time for an asset (in this worker process): a rerun from publish succeeds.
        if ctx.input.get("flaky") == "yes" and asset not in _REFUSED_ONCE:
            _REFUSED_ONCE.add(asset)
            raise JobFailed("the CDN refused the upload (HTTP 503)", retryable=False)
        return {"url": f"https://cdn.example/{ctx.input['channel']}/{ctx.input['asset_id']}"}


class Notify(Executor):
    action = "media.notify"

    async def execute(self, ctx: JobContext) -> dict[str, Any]:
        await _work(ctx, 1.0, "paging the media team")
        ctx.log(f"{ctx.input['channel']}: {ctx.input['text']}")
        return {"notified": ctx.input["channel"]}


#: the executors of the demo's media worker
MEDIA_WORKER = [Ingest, Transcode, Package, Publish, Notify]
