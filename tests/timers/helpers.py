"""Small helpers for the timer, lock and config suites: build requests, read jobs, wait for statuses."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from typing import Any

from google.protobuf import duration_pb2, struct_pb2, timestamp_pb2
from jobwarden.contract import ErrorKind, JobStatus, LockMode, StartTimeoutAction
from jobwarden.v1 import executor_service_pb2 as pb
from jobwarden.v1 import job_pb2
from jobwarden.v1 import job_service_pb2 as js

from tests.conftest import Stubs
from tests.support import RawWorker, wait_for_async


def struct(data: dict[str, Any] | None = None) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(data or {})
    return s


def dur(seconds: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromNanoseconds(round(seconds * 1e9))
    return d


def stamp(seconds: float) -> timestamp_pb2.Timestamp:
    t = timestamp_pb2.Timestamp()
    t.FromNanoseconds(round(seconds * 1e9))
    return t


def seconds(ts: timestamp_pb2.Timestamp | duration_pb2.Duration) -> float:
    return ts.seconds + ts.nanos / 1e9


def start_timeout(
    duration: float,
    action: StartTimeoutAction = StartTimeoutAction.FAIL,
    *,
    retry_interval: float = 0.0,
    exponential: bool = False,
    retry_count: int = 0,
    run_request: tuple[str, dict[str, Any], str] | None = None,
) -> job_pb2.StartTimeout:
    message = job_pb2.StartTimeout(
        duration=dur(duration),
        action=int(action),  # type: ignore[arg-type]
        retry_interval=dur(retry_interval),
        retry_backoff_exponential=exponential,
        retry_count=retry_count,
    )
    if run_request is not None:
        action_name, job_input, correlation_id = run_request
        message.run_request.CopyFrom(
            job_pb2.RunRequest(action=action_name, input=struct(job_input), correlation_id=correlation_id)
        )
    return message


def timeouts(
    *,
    start: job_pb2.StartTimeout | None = None,
    heartbeat: float | None = None,
    takeover: float | None = None,
    execution: float | None = None,
) -> job_pb2.JobTimeouts:
    message = job_pb2.JobTimeouts()
    if start is not None:
        message.start.CopyFrom(start)
    if heartbeat is not None:
        message.heartbeat.CopyFrom(dur(heartbeat))
    if takeover is not None:
        message.takeover.CopyFrom(dur(takeover))
    if execution is not None:
        message.execution.CopyFrom(dur(execution))
    return message


def retry_policy(
    max_attempts: int,
    initial: float,
    coefficient: float = 2.0,
    maximum: float = 0.0,
    non_retryable: Iterable[ErrorKind] = (),
) -> job_pb2.RetryPolicy:
    return job_pb2.RetryPolicy(
        max_attempts=max_attempts,
        initial_interval=dur(initial),
        backoff_coefficient=coefficient,
        max_interval=dur(maximum),
        non_retryable_kinds=[int(k) for k in non_retryable],  # type: ignore[misc]
    )


def lock(resource: str, mode: LockMode | int = LockMode.EXCLUSIVE) -> job_pb2.LockRequest:
    return job_pb2.LockRequest(resource=resource, mode=int(mode))  # type: ignore[arg-type]


def submit_request(
    action: str, job_input: dict[str, Any] | None = None, **fields: Any
) -> js.SubmitJobRequest:
    return js.SubmitJobRequest(action=action, input=struct(job_input), **fields)


async def submit(
    stubs: Stubs, action: str, job_input: dict[str, Any] | None = None, **fields: Any
) -> job_pb2.Job:
    response = await stubs.jobs.SubmitJob(submit_request(action, job_input, **fields))
    return response.job


async def get(stubs: Stubs, job_id: str) -> job_pb2.Job:
    return (await stubs.jobs.GetJob(js.GetJobRequest(job_id=job_id))).job


async def wait_status(stubs: Stubs, job_id: str, *statuses: JobStatus, timeout: float = 15.0) -> job_pb2.Job:
    """Poll GetJob until the job is in one of ``statuses``; return it."""
    wanted = {int(s) for s in statuses}
    found: list[job_pb2.Job] = []

    async def reached() -> bool:
        job = await get(stubs, job_id)
        found[:] = [job]
        return job.status in wanted

    try:
        await wait_for_async(reached, timeout=timeout)
    except AssertionError:
        last = JobStatus(found[0].status).name if found else "?"
        names = ", ".join(s.name for s in statuses)
        raise AssertionError(
            f"job {job_id} never became {names} (last {last}: {found[0].status_reason if found else ''})"
        ) from None
    # GetJob answers from memory; wait until the change is in the stored history too.
    job = found[0]

    async def recorded() -> bool:
        history = await events(stubs, job_id)
        return bool(history) and history[-1].sequence >= job.sequence

    await wait_for_async(recorded, timeout=timeout, message=f"the events of job {job_id} to be stored")
    return job


async def events(stubs: Stubs, job_id: str) -> list[job_pb2.JobEvent]:
    return list((await stubs.jobs.GetJobEvents(js.GetJobEventsRequest(job_id=job_id))).events)


async def status_path(stubs: Stubs, job_id: str) -> list[JobStatus]:
    """The statuses the job went through, each change once (updates that keep the status dropped)."""
    path: list[JobStatus] = []
    for event in await events(stubs, job_id):
        status = JobStatus(event.job.status)
        if not path or path[-1] is not status:
            path.append(status)
    return path


class Completer:
    """Runs a RawWorker's assignments: each completes after ``hold`` seconds (a task per job)."""

    def __init__(self, worker: RawWorker, hold: Callable[[], float] = lambda: 0.0) -> None:
        self.worker = worker
        self.hold = hold
        self.done: list[str] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None

    def start(self) -> Completer:
        self._loop_task = asyncio.get_running_loop().create_task(self._loop())
        return self

    async def _loop(self) -> None:
        while True:
            assignment = await self.worker.assignments.get()
            task = asyncio.get_running_loop().create_task(self._run(assignment))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, assignment: pb.Assignment) -> None:
        delay = self.hold()
        if delay:
            await asyncio.sleep(delay)
        await self.worker.complete(assignment, {"by": self.worker.name})
        self.done.append(assignment.job_id)

    async def stop(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
        for task in [*self._tasks, *([self._loop_task] if self._loop_task else [])]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.worker.close()


async def max_concurrent(stubs: Stubs, job_ids: Iterable[str], statuses: frozenset[JobStatus]) -> int:
    """Replay the jobs' events in sequence order; the most of them in ``statuses`` at any one point."""
    merged: list[job_pb2.JobEvent] = []
    for job_id in job_ids:
        merged.extend(await events(stubs, job_id))
    merged.sort(key=lambda e: e.sequence)
    current: dict[str, int] = {}
    most = 0
    for event in merged:
        current[event.job_id] = event.job.status
        most = max(most, sum(1 for s in current.values() if s in statuses))
    return most


async def wait_path(stubs: Stubs, job_id: str, *prefix: JobStatus, timeout: float = 15.0) -> list[JobStatus]:
    """Wait until the job's stored history starts with ``prefix`` (no window to miss, unlike polling
    for a status that lasts only a few milliseconds)."""
    found: list[JobStatus] = []

    async def reached() -> bool:
        found[:] = await status_path(stubs, job_id)
        return found[: len(prefix)] == list(prefix)

    try:
        await wait_for_async(reached, timeout=timeout)
    except AssertionError:
        raise AssertionError(
            f"job {job_id} went {[s.name for s in found]}, not {[s.name for s in prefix]}"
        ) from None
    return found
