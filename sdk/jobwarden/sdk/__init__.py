"""jobwarden's plugin SDK: write executors, run them in a worker, and drive jobs with a client.

An executor is plugin code for one action::

    from jobwarden.sdk import Executor, JobContext, JobFailed, Worker

    class Resize(Executor):
        action = "resize"

        async def execute(self, ctx: JobContext) -> dict[str, str]:
            path = await ctx.step("download", download, ctx.input["url"])
            ctx.progress(50, "downloaded")
            return {"thumbnail": await ctx.step("resize", resize, path)}

    Worker([Resize], capacity=8).run_sync()

and a client submits and follows jobs::

    async with JobClient() as client:
        job = await client.submit("resize", {"url": "https://..."})
        done = await client.wait(job.id)

and a workflow joins steps (each a job) by edges::

    wf = Workflow("publish")
    wf.action("ingest", "media.ingest").on_success(wf.action("publish", "media.publish"))
    await client.put_workflow(wf)
    started = await client.start_workflow("publish", {"asset_id": 42})

This package needs neither the server nor the console.
"""

from jobwarden.sdk._client import JobClient, WatchStream
from jobwarden.sdk._context import Checkpoint, JobContext
from jobwarden.sdk._credentials import ClientSecurity, caller_role
from jobwarden.sdk._exceptions import (
    EngineError,
    EngineUnavailable,
    ExecutorDefinitionError,
    InvalidRequest,
    InvalidTransition,
    JobCancelled,
    JobFailed,
    JobNotFound,
    JobwardenError,
    LockConflict,
    PermissionDenied,
    Rejected,
    StepError,
    WorkflowDefinitionError,
)
from jobwarden.sdk._executor import Executor
from jobwarden.sdk._sync_client import SyncJobClient
from jobwarden.sdk._worker import Worker
from jobwarden.sdk._workflow import Step, Workflow
from jobwarden.sdk._workflow_files import load_workflow

__all__ = [
    "Checkpoint",
    "ClientSecurity",
    "EngineError",
    "EngineUnavailable",
    "Executor",
    "ExecutorDefinitionError",
    "InvalidRequest",
    "InvalidTransition",
    "JobCancelled",
    "JobClient",
    "JobContext",
    "JobFailed",
    "JobNotFound",
    "JobwardenError",
    "LockConflict",
    "PermissionDenied",
    "Rejected",
    "Step",
    "StepError",
    "SyncJobClient",
    "WatchStream",
    "Worker",
    "Workflow",
    "WorkflowDefinitionError",
    "caller_role",
    "load_workflow",
]
