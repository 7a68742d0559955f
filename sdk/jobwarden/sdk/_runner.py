"""Running, cancelling and detaching attempts: async executors as tasks on the event loop, plain ones
in a thread pool; each attempt traced (``trace_attempt``) where it runs.

A cancelled attempt is reported stopped (``cancel_ack``) only once its code has returned; past
``cancel_grace`` a warning says it ignores its cancel, and the engine keeps its locks meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any

from jobwarden.sdk._context import JobContext
from jobwarden.sdk._exceptions import JobCancelled, JobFailed
from jobwarden.sdk._ledger import Job, Ledger
from jobwarden.sdk._results import cancelled, completed, crash, failure, trace
from jobwarden.sdk._tracing import trace_attempt
from jobwarden.v1 import executor_service_pb2 as pb

__all__ = ["Runner"]

logger = logging.getLogger("jobwarden.worker")


class Runner:
    """Runs the ledger's jobs, for one ``Worker.run`` (``with runner:`` starts and stops its threads)."""

    def __init__(self, ledger: Ledger, *, worker_name: str, cancel_grace: float, threads: int) -> None:
        self.ledger = ledger
        self.worker_name = worker_name
        self.cancel_grace = cancel_grace
        self.threads = threads
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._background: set[asyncio.Task[Any]] = set()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "the runner is not started"
        return self._loop

    def __enter__(self) -> Runner:
        self._loop = asyncio.get_running_loop()
        self._pool = ThreadPoolExecutor(
            max_workers=self.threads, thread_name_prefix=f"jobwarden-{self.worker_name}"
        )
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        for job in list(self.ledger.running.values()):
            self.detach(job, "the worker stopped")
        for task in list(self._background):
            task.cancel()
        # Threads of sync jobs that were abandoned are not waited for.
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        """Run ``coroutine`` beside the jobs; it is cancelled when the worker stops."""
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def start(self, job: Job, method: Callable[[JobContext], Any]) -> None:
        """Run an attempt the ledger now holds."""
        job.task = self.loop.create_task(self._run(job, method))

    async def _run(self, job: Job, method: Callable[[JobContext], Any]) -> None:
        ctx = job.ctx
        method = trace_attempt(method, job.is_async, self.worker_name)
        try:
            if job.is_async:
                value = await method(ctx)
            else:
                value = await self.loop.run_in_executor(self._pool, method, ctx)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            if not await self._ended_regardless(job):
                raise
            return
        except JobCancelled:
            if not await self._ended_regardless(job):
                self._finish(job, cancelled(job.key))
            return
        except JobFailed as failed:
            if not await self._ended_regardless(job):
                result = failure(
                    job.key, failed.kind, failed.message, step=ctx.current_step, retryable=failed.retryable
                )
                self._finish(job, result)
            return
        except BaseException as error:
            if await self._ended_regardless(job):
                return
            if not isinstance(error, Exception):
                raise
            self._finish(job, crash(job.key, error, ctx.current_step))
            return
        if await self._ended_regardless(job):
            return
        result = completed(
            job.key,
            value,
            action=job.hosted.action,
            job_variables=ctx.job_variables,
            workflow_variables=ctx.workflow_variables,
        )
        self._finish(job, result)

    async def _ended_regardless(self, job: Job) -> bool:
        """Whether the attempt's end no longer depends on how its code ended: detached (it is not
        this worker's to report), or cancel requested (it ends CANCELLED, which this reports now)."""
        if job.detached:
            return True
        if job.cancel_requested:
            await self._finish_cancelled(job)
            return True
        return False

    def _finish(self, job: Job, result: pb.JobResult) -> None:
        if self.ledger.forget(job):
            self.ledger.send_result(result)

    def cancel(self, job: Job, reason: str) -> None:
        """Ask a running attempt to stop (its ``cancel()`` hook, its task); warn past the grace."""
        if job.cancel_requested:
            return
        job.cancel_requested = True
        job.ctx._request_cancel(reason)
        if job.hosted.overrides("cancel"):
            self.spawn(self._call_hook(job, "cancel"))
        if job.is_async and job.task is not None:
            job.task.cancel()
        job.grace = self.loop.call_later(self.cancel_grace, self._cancel_grace_over, job)

    def _cancel_grace_over(self, job: Job) -> None:
        """The executor ignores its cancel. It is never reported stopped while it runs: the engine keeps
        the job's locks (and its slot here) until it returns, so nobody else touches what it writes."""
        if self.ledger.running.get(job.key[0]) is not job:
            return
        why = (
            f"did not stop within {self.cancel_grace:g}s of its cancel; the executor ignores it, and the "
            "job's locks and its slot on this worker stay held until it returns"
        )
        logger.warning("worker %s: job %s %s", self.worker_name, job.key[0], why)
        job.ctx.log(why, level="WARNING")

    async def _finish_cancelled(self, job: Job) -> None:
        if job.hosted.overrides("on_cancelled"):
            await self._call_hook(job, "on_cancelled")
        ledger = self.ledger
        if ledger.forget(job):
            ledger.outbox.cancel_ack(job.key)
            ledger.finished_jobs += 1
            ledger.kick()
            ledger.check_idle()

    async def _call_hook(self, job: Job, name: str) -> None:
        hook = getattr(job.hosted.executor, name)
        try:
            if job.hosted.is_async[name]:
                await hook(job.ctx)
            else:
                await self.loop.run_in_executor(None, hook, job.ctx)
        except Exception as error:
            logger.exception("worker %s: %s() of job %s raised", self.worker_name, name, job.key[0])
            job.ctx.log(f"{name}() raised {type(error).__name__}: {error}\n{trace(error)}", level="ERROR")

    def detach(self, job: Job, why: str) -> None:
        """Stop a job this worker no longer owns, reporting nothing about it."""
        logger.info("worker %s: stopping job %s: %s", self.worker_name, job.key[0], why)
        job.detached = True
        job.ctx._request_cancel(why)
        self.ledger.forget(job)
        self.ledger.outbox.drop_job(job.key)
        if job.is_async and job.task is not None and not job.task.done():
            job.task.cancel()
        self.ledger.check_idle()
