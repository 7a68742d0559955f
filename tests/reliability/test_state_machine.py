"""The whole job state machine, driven at random through a real engine (gRPC, SQLite, timers): submits
with and without locks and timeouts, worker connects and disconnects, updates (live and stale),
results, failures, cancels and their acks, operator retries, and time passing so deadlines fire.
After every step the invariants below hold.

The engine and the raw workers live in an event loop on a background thread; the rules (plain
functions, as hypothesis wants) hand it coroutines and wait for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import threading
from collections import Counter
from collections.abc import Coroutine, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.protobuf import duration_pb2
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from jobwarden.contract import (
    ACTIVE_STATUSES,
    TERMINAL_STATUSES,
    JobEventType,
    JobStatus,
    LockMode,
    can_transition,
)
from jobwarden.server.api import EngineServer, ServerOptions
from jobwarden.v1 import executor_service_pb2 as pb
from jobwarden.v1 import job_pb2, job_service_pb2_grpc
from jobwarden.v1 import job_service_pb2 as js

from tests.conftest import TEST_CONFIG
from tests.engine.helpers import request
from tests.support import RawWorker

T = TypeVar("T")
ACTION = "sm"
RESOURCES = ("asset:1", "asset:2")


class _Loop:
    """One event loop on a thread for the whole test session."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="state-machine-loop", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


_LOOP: _Loop | None = None
#: over every example: the rules run and the statuses the jobs went through
TOTALS: Counter[str] = Counter()


def loop() -> _Loop:
    global _LOOP
    if _LOOP is None:
        _LOOP = _Loop()
    return _LOOP


class JobMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="jobwarden-sm-"))
        config = replace(
            TEST_CONFIG,
            db_url=f"sqlite:///{self.dir / 'sm.db'}",
            heartbeat_interval=0.5,
            default_takeover_timeout=0.3,
            cancel_grace=0.3,
        )
        self.server = EngineServer(config, ServerOptions(port=0, watch_keepalive=0.5))
        self.run(self.server.start())
        self.channel: grpc.aio.Channel = self.run(self._channel())
        self.jobs = job_service_pb2_grpc.JobServiceStub(self.channel)
        self.ids: list[str] = []
        self.workers: list[RawWorker] = []
        #: (worker index, job id) -> the assignment the worker holds
        self.held: dict[tuple[int, str], pb.Assignment] = {}
        #: job id -> attempts whose COMPLETED result was acknowledged as accepted
        self.completed_acks: dict[str, list[int]] = {}
        #: (worker index, job id, attempt) the engine asked to cancel
        self.cancels: set[tuple[int, str, int]] = set()
        self.steps = Counter[str]()
        self.tasks: list[asyncio.Task[None]] = []
        #: (job, sequence, status) entered, counted once each into TOTALS at the end
        self.seen: set[tuple[str, int, str]] = set()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return loop().run(coro, timeout)

    def call(self, method: Any, message: Any) -> Any:
        """A unary call, made in the loop's thread (where the channel lives)."""

        async def call() -> Any:
            return await method(message)

        return self.run(call())

    def code_of(self, method: Any, message: Any) -> grpc.StatusCode:
        try:
            self.call(method, message)
        except grpc.aio.AioRpcError as error:
            return error.code()
        return grpc.StatusCode.OK

    async def _channel(self) -> grpc.aio.Channel:
        return grpc.aio.insecure_channel(self.server.address)

    def teardown(self) -> None:
        async def stop() -> None:
            for task in self.tasks:
                task.cancel()
            for worker in self.workers:
                with contextlib.suppress(Exception):
                    await worker.drop()
            await self.channel.close()
            await self.server.stop(grace=0)

        self.run(stop())
        shutil.rmtree(self.dir, ignore_errors=True)
        TOTALS.update(self.steps)
        TOTALS.update(f"entered {status}" for _, _, status in self.seen)
        TOTALS["examples"] += 1
        print("state machine so far:", ", ".join(f"{k} {v}" for k, v in sorted(TOTALS.items())))

    # -- rules ------------------------------------------------------------------------------------

    @initialize()
    def some_work_and_a_worker(self) -> None:
        for _ in range(3):
            self.submit(lock=None, exclusive=False, short_heartbeat=False, attempts=2, priority=0)
        self.connect_worker(capacity=2)

    @rule(
        lock=st.sampled_from([None, *RESOURCES]),
        exclusive=st.booleans(),
        short_heartbeat=st.booleans(),
        attempts=st.integers(1, 3),
        priority=st.integers(-2, 2),
    )
    def submit(
        self, lock: str | None, exclusive: bool, short_heartbeat: bool, attempts: int, priority: int
    ) -> None:
        fields: dict[str, Any] = {"priority": priority}
        if lock:
            mode = job_pb2.LOCK_MODE_EXCLUSIVE if exclusive else job_pb2.LOCK_MODE_SHARED
            fields["locks"] = [job_pb2.LockRequest(resource=lock, mode=mode)]
        if short_heartbeat:
            fields["timeouts"] = job_pb2.JobTimeouts(heartbeat=duration_pb2.Duration(nanos=300_000_000))
        if attempts > 1:
            fields["retry_policy"] = job_pb2.RetryPolicy(
                max_attempts=attempts, initial_interval=duration_pb2.Duration(nanos=100_000_000)
            )
        job = self.call(self.jobs.SubmitJob, request(ACTION, {"n": len(self.ids)}, **fields)).job
        self.ids.append(job.id)
        self.steps["submit"] += 1

    @precondition(lambda self: len(self.workers) < 3)
    @rule(capacity=st.integers(1, 2))
    def connect_worker(self, capacity: int) -> None:
        worker = RawWorker(
            self.server.address, [(ACTION, True, 0)], capacity=capacity, name=f"w{len(self.workers)}"
        )
        self.run(worker.connect())
        self.workers.append(worker)
        self.steps["connect"] += 1

    @rule(data=st.data())
    def take_assignments(self, data: st.DataObject) -> None:
        index = _pick(data, [i for i in range(len(self.workers)) if self._alive(i)])
        if index is None:
            return
        worker = self.workers[index]

        async def drain() -> list[pb.Assignment]:
            await asyncio.sleep(0.05)  # let dispatch run
            out = []
            while not worker.assignments.empty():
                out.append(worker.assignments.get_nowait())
            return out

        for a in self.run(drain()):
            self.held[(index, a.job_id)] = a
        self.steps["take"] += 1

    # One rule per kind of report, so that workers report about as often as the API is called.
    @rule(data=st.data())
    def complete(self, data: st.DataObject) -> None:
        self._report(data, "complete")

    @rule(data=st.data())
    def fail(self, data: st.DataObject) -> None:
        self._report(data, "fail")

    @rule(data=st.data())
    def update(self, data: st.DataObject) -> None:
        self._report(data, "update")

    @rule(data=st.data())
    def stale_update(self, data: st.DataObject) -> None:
        self._report(data, "stale")

    @rule(data=st.data())
    def cancel_ack(self, data: st.DataObject) -> None:
        self._report(data, "cancel_ack")

    def _report(self, data: st.DataObject, outcome: str) -> None:
        key = _pick(data, sorted(self._live_held()))
        if key is None:
            return
        index, job_id = key
        a = self.held[key]
        worker = self.workers[index]
        if outcome == "update":
            self.run(worker.update(a, progress=50, message="half"))
        elif outcome == "stale":
            # A message for an attempt that is not the live one: refused, and the job is untouched.
            stale = pb.JobUpdate(job_id=job_id, attempt=a.attempt + 7, progress=99)
            self.run(worker.send(pb.ConnectRequest(job_update=stale)))
            refusal = self.run(self._refusal_for(worker, job_id))
            if refusal is not None:
                assert refusal.code == grpc.StatusCode.FAILED_PRECONDITION.value[0], refusal
            assert self.run(self._job(job_id)).progress != 99, "a stale update changed the job"
        elif outcome == "cancel_ack":
            if (index, job_id, a.attempt) in self._cancel_requests(index):
                cancel_ack = pb.CancelAck(job_id=job_id, attempt=a.attempt)
                self.run(worker.send(pb.ConnectRequest(cancel_ack=cancel_ack)))
                del self.held[key]
        else:
            if outcome == "complete":
                self.run(worker.complete(a, {"attempt": a.attempt}))
            else:
                self.run(worker.fail(a, "failed on purpose"))
            ack = self.run(self._ack_for(worker, index, job_id))
            if ack is not None and ack.accepted and outcome == "complete":
                self.completed_acks.setdefault(job_id, []).append(ack.attempt)
            del self.held[key]
        self.steps[outcome] += 1

    @precondition(lambda self: self.ids)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        job_id = _pick(data, self.ids)
        assert job_id is not None
        # Refused (FAILED_PRECONDITION) once the job is finished or its cancel is already requested,
        # and then nothing changes.
        code = self.code_of(self.jobs.CancelJob, js.CancelJobRequest(job_id=job_id, reason="test"))
        assert code in (grpc.StatusCode.OK, grpc.StatusCode.FAILED_PRECONDITION), code
        self.steps["cancel"] += 1

    @precondition(lambda self: self.ids)
    @rule(data=st.data())
    def retry(self, data: st.DataObject) -> None:
        job_id = _pick(data, self.ids)
        assert job_id is not None
        # Refused (FAILED_PRECONDITION) unless the job is FAILED or CANCELLED.
        code = self.code_of(self.jobs.RetryJob, js.RetryJobRequest(job_id=job_id))
        assert code in (grpc.StatusCode.OK, grpc.StatusCode.FAILED_PRECONDITION), code
        self.steps["retry"] += 1

    @rule(data=st.data())
    def disconnect(self, data: st.DataObject) -> None:
        index = _pick(data, [i for i in range(len(self.workers)) if self._alive(i)])
        if index is None:
            return
        self.run(self.workers[index].drop())
        for key in [k for k in self.held if k[0] == index]:
            del self.held[key]
        self.steps["disconnect"] += 1

    @rule(seconds=st.sampled_from([0.1, 0.4]))
    def time_passes(self, seconds: float) -> None:
        self.run(asyncio.sleep(seconds))
        self.steps["time"] += 1

    # -- invariants -------------------------------------------------------------------------------

    @invariant()
    def engine_state_is_consistent(self) -> None:
        # What workers were handed since the last step is theirs to report on now.
        for index, worker in enumerate(self.workers):
            while not worker.assignments.empty():
                a = worker.assignments.get_nowait()
                self.held[(index, a.job_id)] = a
        problems = self.run(self._check())
        assert not problems, "\n".join(problems)

    async def _check(self) -> list[str]:
        core = self.server.engine
        for _ in range(100):
            await core.writer.flush()
            # Timers may have changed something since the commit: check only a committed state.
            if core.registry.sequence == core.bus.head:
                break
        problems: list[str] = []
        # Everything below up to the first await reads memory in one go, as of the committed head.
        statuses: dict[str, JobStatus] = {}
        for job_id in self.ids:
            in_memory = core.registry.get(job_id)
            if in_memory is not None:
                statuses[job_id] = in_memory.status
        # Memory, read in one go between two steps of the engine.
        for session in core.sessions.values():
            if len(session.jobs) > session.capacity:
                problems.append(
                    f"worker {session.name} holds {len(session.jobs)} jobs, capacity {session.capacity}"
                )
        for job in core.registry.jobs.values():
            if job.status is JobStatus.RUNNING:
                holder = core.sessions.get(job.worker_id)
                if holder is None or holder.jobs.get(job.id) != job.attempt:
                    problems.append(f"job {job.id} RUNNING but its worker {job.worker_id} does not hold it")
        for view in core.list_locks():
            modes = [h.mode for h in view.holders]
            if LockMode.EXCLUSIVE in modes and len(modes) > 1:
                problems.append(f"{view.resource} held EXCLUSIVE with others: {modes}")
            for holding in view.holders:
                holding_job = core.registry.jobs.get(holding.job_id or "")
                if holding.job_id and (
                    holding_job is None or holding_job.status not in (*ACTIVE_STATUSES, JobStatus.QUEUED)
                ):
                    problems.append(f"{view.resource} held by job {holding.job_id}, which is not running")
        counts = Counter({status: 0 for status in JobStatus})
        for (_, counted), count in core.registry.counts.items():
            counts[counted] += count
        head = core.bus.head
        # The store: every event, gap-free, and each job's story allowed by the state machine.
        events = await core.events_between(0, head, 100_000)
        if [ev.sequence for ev in events] != list(range(1, head + 1)):
            problems.append(f"events are not gap-free up to {head}")
        story: dict[str, list[Any]] = {}
        for ev in events:
            story.setdefault(ev.job_id, []).append(ev)
        actual = Counter({status: 0 for status in JobStatus})
        for job_id in self.ids:
            job_status = statuses.get(job_id) or (await core.get_job(job_id)).status
            actual[job_status] += 1
            status: JobStatus | None = None
            completed = 0
            for ev in story.get(job_id, []):
                if ev.type not in (JobEventType.SUBMITTED, JobEventType.STATUS_CHANGED):
                    continue
                target = JobStatus(ev.snapshot["status"])
                if not can_transition(status, target):
                    problems.append(f"job {job_id}: {status} -> {target.name} is not allowed")
                if status in TERMINAL_STATUSES and ev.actor == "engine":
                    problems.append(f"job {job_id} left {status.name} without an operator")
                status = target
                self.seen.add((job_id, ev.sequence, target.name))
                completed += target is JobStatus.COMPLETED
            if status is not job_status:
                problems.append(f"job {job_id} is {job_status.name}, its events say {status}")
            if completed > 1:
                problems.append(f"job {job_id} completed {completed} times")
            acked = self.completed_acks.get(job_id, [])
            if len(acked) > 1:
                problems.append(f"job {job_id}: results of attempts {acked} all accepted")
            if acked and job_status is not JobStatus.COMPLETED:
                problems.append(f"job {job_id}: acknowledged result lost ({job_status.name})")
        if actual != counts:
            problems.append(f"status counts {dict(counts)} differ from the jobs {dict(actual)}")
        return problems

    # -- helpers ----------------------------------------------------------------------------------

    def _alive(self, index: int) -> bool:
        worker = self.workers[index]
        return worker._reader is not None and not worker._reader.done()

    def _live_held(self) -> list[tuple[int, str]]:
        return [key for key in self.held if self._alive(key[0])]

    async def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self.tasks.append(asyncio.get_running_loop().create_task(coro))

    async def _job(self, job_id: str) -> job_pb2.Job:
        return (await self.jobs.GetJob(js.GetJobRequest(job_id=job_id))).job

    async def _ack_for(self, worker: RawWorker, index: int, job_id: str) -> pb.ResultAck | None:
        """The ack of ``job_id``'s result; None when the session died first (nothing was promised)."""
        while True:
            try:
                ack = await worker.next_ack(timeout=0.5)
            except TimeoutError:
                if not self._alive(index):
                    return None
                continue
            if ack.job_id == job_id:
                return ack

    async def _refusal_for(self, worker: RawWorker, job_id: str) -> pb.Refusal | None:
        with contextlib.suppress(TimeoutError):
            while True:
                refusal = await worker.next_refusal(timeout=2)
                if refusal.job_id == job_id and refusal.refused == "job_update":
                    return refusal
        return None

    def _cancel_requests(self, index: int) -> set[tuple[int, str, int]]:
        queue = self.workers[index].cancels
        while not queue.empty():
            request = queue.get_nowait()
            self.cancels.add((index, request.job_id, request.attempt))
        return self.cancels


def _pick(data: st.DataObject, options: Sequence[T]) -> T | None:
    """One of ``options``, or None when there is none. The options come from the live engine (which
    workers are alive, which jobs they hold) and vary with timing from one run to the next, so the rules
    that use them have no precondition on them and always draw the same fixed-range index: Hypothesis
    needs the same draws to replay and shrink an example."""
    index = data.draw(st.integers(0, 1_000_000))
    return options[index % len(options)] if options else None


JobMachine.TestCase.settings = settings(
    max_examples=15,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_job_state_machine = JobMachine.TestCase
