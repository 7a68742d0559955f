"""The media-publish workflow built in Python: the same definition as media-publish.toml.

    python -m examples.workflows.media_publish        # put it, start a run, follow it to its end

See docs/workflows.md.
"""

from __future__ import annotations

import asyncio
import sys

from jobwarden.contract import StepStatus, WorkflowRunStatus
from jobwarden.sdk import JobClient, Workflow
from jobwarden.v1 import workflow_pb2

RENDITIONS = ("1080p", "720p", "480p")


def media_publish() -> Workflow:
    wf = Workflow(
        "media-publish",
        description="Ingest, transcode to 1080p/720p/480p, package, publish; notify on failure.",
        run_timeout="30m",
        context={
            "channel": "web",
            "notify_channel": "#media-ops",
            "notify_on_failure": "yes",
            "broken_rendition": "",
            "flaky_publish": "no",
        },
    )
    ingest = wf.action(
        "ingest",
        "media.ingest",
        locks=["asset:{{ input.asset_id }}"],
        timeouts={"heartbeat": "30s", "execution": "10m"},
        retry={"max_attempts": 3, "initial_interval": "1s", "backoff_coefficient": 2.0},
    )
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
            timeouts={"execution": "20m"},
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
    ingest.on_success(*transcodes)
    for transcode in transcodes:
        transcode.on_success(package)
    publish = wf.action(
        "publish",
        "media.publish",
        input={
            "asset_id": "{{ input.asset_id }}",
            "package": "{{ steps.package.result.package }}",
            "channel": "{{ context.channel }}",
            "flaky": "{{ context.flaky_publish }}",
        },
        locks=["channel:{{ context.channel }}:SHARED"],
        retry={"max_attempts": 1},
    )
    package.on_success(publish)
    notify = wf.action(
        "notify",
        "media.notify",
        join="any",
        input={
            "channel": "{{ context.notify_channel }}",
            "text": "media-publish failed for asset {{ input.asset_id }}",
        },
    )
    ingest.on_failure(notify)
    publish.on_failure(notify, when="context.notify_on_failure == 'yes'")
    return wf


async def main(asset_id: int = 42) -> int:
    async with JobClient() as client:
        put = await client.put_workflow(media_publish())
        print(f"media-publish version {put.definition.version} ({'new' if put.created else 'unchanged'})")
        started = await client.start_workflow("media-publish", {"asset_id": asset_id})
        print(f"work order {started.order.id}, run {started.run.id}")

        def show(event: workflow_pb2.WorkflowEvent) -> None:
            if event.step:
                step = next(s for s in event.run.steps if s.name == event.step)
                print(f"  {event.step:<16} {StepStatus(step.status).name}")

        run = await client.wait_workflow_run(started.run.id, on_change=show)
        print(f"run {run.id}: {WorkflowRunStatus(run.status).name}")
        return 0 if WorkflowRunStatus(run.status) is WorkflowRunStatus.COMPLETED else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 42)))
