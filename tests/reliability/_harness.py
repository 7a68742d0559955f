"""What the fault tests share: a ledger of what the engine acknowledged, workers that ride out any
fault the way the protocol allows, and the invariants checked afterwards.

The ledger holds only what the engine *acknowledged*: a submit whose response arrived, a result whose
``ResultAck`` said accepted. A call that failed (the engine died under it) promised nothing, so it is
counted but never held against the engine; every job found in the store is checked all the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import grpc
from jobwarden.contract import TERMINAL_STATUSES, ErrorKind, JobEventType, JobStatus
from jobwarden.v1 import executor_service_pb2 as pb
from jobwarden.v1 import job_pb2, job_service_pb2_grpc, lock_service_pb2, lock_service_pb2_grpc
from jobwarden.v1 import job_service_pb2 as js

from tests.engine.helpers import struct
from tests.support import RawWorker

NON_TERMINAL = [job_pb2.JobStatus.ValueType(s) for s in JobStatus if s not in TERMINAL_STATUSES]


@dataclass
class Ledger:
    #: ids of jobs whose submit the engine answered
    submitted: list[str] = field(default_factory=list)
    #: submit calls that failed (engine down, ...): their outcome was never promised
    submit_errors: int = 0
    #: job id -> attempts whose result the engine acknowledged as accepted
    acked: dict[str, list[int]] = field(default_factory=dict)
    #: acks that said "refused" (a stale attempt): the worker drops the result
    refused_acks: int = 0
    #: results sent, counting re-sends after a reconnect
    results_sent: int = 0
    #: (job id, attempt) -> how many times it was assigned
    assignments: Counter[tuple[str, int]] = field(default_factory=Counter)
    reconnects: int = 0


class ResilientWorker:
    """A worker on the raw protocol that survives engine crashes, cut connections and stalls: it
    reconnects with the same worker id, reports the jobs it still holds (``running_jobs``), sends again
    the results not yet acknowledged, and records every ack in the ledger."""

    def __init__(
        self,
        address: str,
        action: str,
        ledger: Ledger,
        *,
        capacity: int = 4,
        name: str = "resilient",
        work_seconds: tuple[float, float] = (0.0, 0.05),
        heartbeat_every: float = 0.3,
    ) -> None:
        self.address = address
        self.action = action
        self.ledger = ledger
        self.capacity = capacity
        self.name = name
        self.work_seconds = work_seconds
        self.heartbeat_every = heartbeat_every
        self.worker_id = ""
        self.session_token = ""
        #: job id -> attempt of jobs being worked on
        self.held: dict[str, int] = {}
        #: (job id, attempt) -> the result sent and not yet acknowledged
        self.pending: dict[tuple[str, int], dict[str, Any]] = {}
        self.sessions = 0
        self._raw: RawWorker | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    def start(self) -> ResilientWorker:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"worker-{self.name}")
        return self

    async def stop(self) -> None:
        self._stop.set()
        if self._raw is not None:
            with contextlib.suppress(Exception):
                await self._raw.drop()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _run(self) -> None:
        delay = 0.05
        while not self._stop.is_set():
            try:
                await self._session()
                delay = 0.05
            except asyncio.CancelledError:
                raise
            except Exception:
                delay = min(delay * 2, 0.5)
            if self._raw is not None:
                with contextlib.suppress(Exception):
                    await self._raw.drop()
                self._raw = None
            if not self._stop.is_set():
                await asyncio.sleep(delay)

    async def _session(self) -> None:
        running = dict(self.held)
        for job_id, attempt in self.pending:
            running[job_id] = attempt
        raw = RawWorker(
            self.address,
            [(self.action, True, 0)],
            capacity=self.capacity,
            name=self.name,
            worker_id=self.worker_id,
            running_jobs=list(running.items()),
            session_token=self.session_token,
        )
        self._raw = raw
        await raw.connect()
        assert raw.registered is not None
        if self.sessions:
            self.ledger.reconnects += 1
        self.sessions += 1
        self.worker_id = raw.worker_id
        self.session_token = raw.session_token
        for job in raw.registered.rejected_jobs:
            self.held.pop(job.job_id, None)
            self.pending.pop((job.job_id, job.attempt), None)
        for job in raw.registered.resumed_jobs:
            result = self.pending.get((job.job_id, job.attempt))
            if result is not None:
                await self._send_result(raw, job.job_id, job.attempt, result)
            elif job.job_id in self.held:
                asyncio.get_running_loop().create_task(self._work(raw, job.job_id, job.attempt))
        tasks = [
            asyncio.get_running_loop().create_task(coro)
            for coro in (self._assignments(raw), self._acks(raw), self._cancels(raw), self._heartbeats(raw))
        ]
        reader = raw._reader
        assert reader is not None
        stopping = asyncio.get_running_loop().create_task(self._stop.wait())
        try:
            await asyncio.wait({reader, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in [*tasks, stopping]:
                task.cancel()

    async def _assignments(self, raw: RawWorker) -> None:
        while True:
            a = await raw.assignments.get()
            self.ledger.assignments[(a.job_id, a.attempt)] += 1
            self.held[a.job_id] = a.attempt
            asyncio.get_running_loop().create_task(self._work(raw, a.job_id, a.attempt))

    async def _work(self, raw: RawWorker, job_id: str, attempt: int) -> None:
        await asyncio.sleep(random.uniform(*self.work_seconds))
        if self.held.get(job_id) != attempt or raw is not self._raw:
            return  # cancelled, taken over, or the session ended: a later session takes it from here
        result = {"job": job_id, "attempt": attempt, "worker": self.name}
        self.pending[(job_id, attempt)] = result
        await self._send_result(raw, job_id, attempt, result)

    async def _send_result(self, raw: RawWorker, job_id: str, attempt: int, result: dict[str, Any]) -> None:
        self.ledger.results_sent += 1
        await raw.send(
            pb.ConnectRequest(
                job_result=pb.JobResult(
                    job_id=job_id, attempt=attempt, status=job_pb2.JOB_STATUS_COMPLETED, result=struct(result)
                )
            )
        )

    async def _acks(self, raw: RawWorker) -> None:
        while True:
            ack = await raw.acks.get()
            self.pending.pop((ack.job_id, ack.attempt), None)
            if self.held.get(ack.job_id) == ack.attempt:
                del self.held[ack.job_id]
            if ack.accepted:
                self.ledger.acked.setdefault(ack.job_id, []).append(ack.attempt)
            else:
                self.ledger.refused_acks += 1

    async def _cancels(self, raw: RawWorker) -> None:
        while True:
            cancel = await raw.cancels.get()
            if self.held.get(cancel.job_id) == cancel.attempt:
                del self.held[cancel.job_id]
            self.pending.pop((cancel.job_id, cancel.attempt), None)

    async def _heartbeats(self, raw: RawWorker) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_every)
            await raw.send(
                pb.ConnectRequest(
                    heartbeat=pb.Heartbeat(
                        jobs=[pb.JobHeartbeat(job_id=j, attempt=a) for j, a in self.held.items()]
                    )
                )
            )


@dataclass
class Figures:
    jobs: int = 0
    acknowledged_submits: int = 0
    acknowledged_results: int = 0
    events: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    #: why the FAILED jobs failed ("KIND: message"), so an unexpected failure says what it was
    failures: Counter[str] = field(default_factory=Counter)
    #: every invariant broken, with the job it is about
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        statuses = ", ".join(f"{k} {v}" for k, v in sorted(self.by_status.items()))
        return (
            f"{self.jobs} jobs checked ({statuses}); {self.acknowledged_submits} acknowledged submits, "
            f"{self.acknowledged_results} acknowledged results, {self.events} events gap-free; "
            f"{len(self.problems)} problems"
        )


async def all_jobs(jobs: job_service_pb2_grpc.JobServiceAsyncStub, **filters: Any) -> list[job_pb2.Job]:
    out: list[job_pb2.Job] = []
    token = ""
    while True:
        page = await jobs.ListJobs(
            js.ListJobsRequest(page_size=1000, page_token=token, summary=True, **filters)
        )
        out.extend(page.jobs)
        token = page.next_page_token
        if not token:
            return out


async def wait_all_terminal(jobs: job_service_pb2_grpc.JobServiceAsyncStub, timeout: float = 90.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        page = await jobs.ListJobs(js.ListJobsRequest(statuses=NON_TERMINAL, page_size=5, summary=True))
        if not page.jobs:
            return
        if asyncio.get_running_loop().time() > deadline:
            left = ", ".join(f"{j.id} {JobStatus(j.status).name}" for j in page.jobs)
            story = await jobs.GetJobEvents(js.GetJobEventsRequest(job_id=page.jobs[0].id))
            lines = "\n".join(
                f"  {ev.sequence} {JobEventType(ev.type).name} {JobStatus(ev.job.status).name} "
                f"attempt {ev.job.attempt} worker {ev.job.worker_id} by {ev.actor}: {ev.reason}"
                for ev in story.events
            )
            raise AssertionError(
                f"jobs still unfinished after {timeout}s: {left}; the first one's story:\n{lines}"
            )
        await asyncio.sleep(0.1)


async def check_invariants(channel: grpc.aio.Channel, ledger: Ledger) -> Figures:
    """Every acknowledged submit exists and ended in exactly one terminal status; every acknowledged
    result is the job's result; no job completed twice; no lock is held; the event history is gap-free."""
    jobs = job_service_pb2_grpc.JobServiceStub(channel)
    locks = lock_service_pb2_grpc.LockServiceStub(channel)
    figures = Figures(
        acknowledged_submits=len(ledger.submitted),
        acknowledged_results=sum(len(v) for v in ledger.acked.values()),
    )
    problems = figures.problems
    stored = {job.id: job for job in await all_jobs(jobs)}
    figures.jobs = len(stored)
    for job_id in ledger.submitted:
        if job_id not in stored:
            problems.append(f"acknowledged submit {job_id} is not in the store")
    for job_id, attempts in ledger.acked.items():
        if len(attempts) > 1:
            problems.append(f"job {job_id}: results of attempts {attempts} were all accepted")
        job = (await jobs.GetJob(js.GetJobRequest(job_id=job_id))).job
        if job.status != JobStatus.COMPLETED:
            problems.append(f"job {job_id}: acknowledged result lost ({JobStatus(job.status).name})")
        elif job.attempt != attempts[0] or (
            "attempt" in job.result.fields and job.result["attempt"] != attempts[0]
        ):
            problems.append(
                f"job {job_id}: the result of attempt {job.attempt} stands, {attempts[0]} was acked"
            )
    # The whole history, replayed from the start: gap-free, and each job's story is allowed.
    head = (await jobs.GetStats(js.GetStatsRequest())).head_sequence
    sequences: list[int] = []
    story: dict[str, list[job_pb2.JobEvent]] = {}
    if head:
        call = jobs.WatchJobs(js.WatchJobsRequest(after_sequence=0))
        async for response in call:
            for ev in response.events:
                sequences.append(ev.sequence)
                story.setdefault(ev.job_id, []).append(ev)
            if sequences and sequences[-1] >= head:
                break
        call.cancel()
    figures.events = len(sequences)
    if sequences != list(range(1, head + 1)):
        missing = sorted(set(range(1, head + 1)) - set(sequences))[:10]
        problems.append(
            f"event sequence has gaps or repeats: {len(sequences)} events up to {head}, missing {missing}"
        )
    for job_id, job in stored.items():
        status = JobStatus(job.status)
        figures.by_status[status.name] += 1
        if status is JobStatus.FAILED:
            figures.failures[f"{ErrorKind(job.error.kind).name}: {job.error.message[:160]}"] += 1
        if status not in TERMINAL_STATUSES:
            problems.append(f"job {job_id} is still {status.name}")
        events = story.get(job_id, [])
        terminal = [ev for ev in events if _entered(ev) in TERMINAL_STATUSES]
        completed = [ev for ev in events if _entered(ev) is JobStatus.COMPLETED]
        if len(terminal) != 1:
            problems.append(f"job {job_id} entered {len(terminal)} terminal statuses")
        if len(completed) > 1:
            problems.append(f"job {job_id} completed {len(completed)} times")
        entered = [s for s in map(_entered, events) if s is not None]
        if not entered or entered[-1] is not status:
            problems.append(f"job {job_id}: its events end in {entered[-1:]}, the job is {status.name}")
    held = await locks.ListLocks(lock_service_pb2.ListLocksRequest())
    for resource in held.resources:
        if resource.holders or resource.waiters:
            problems.append(
                f"lock {resource.resource} left with {len(resource.holders)} holders, "
                f"{len(resource.waiters)} waiters"
            )
    return figures


def _entered(ev: job_pb2.JobEvent) -> JobStatus | None:
    if ev.type in (JobEventType.SUBMITTED, JobEventType.STATUS_CHANGED):
        return JobStatus(ev.job.status)
    return None
