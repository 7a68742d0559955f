"""The engine under test: one the bench starts in its own process (SQLite in a temp dir by default),
or one already running (``--engine HOST:PORT``), and its counters, read through the gRPC API either way
(the bench measures the engine from outside; only what a scenario must see in process, the timer table
and the group commit's totals, is read from the core's public objects)."""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc.aio
from jobwarden.contract import JobStatus
from jobwarden.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc

from ._stats import CpuMeter, CpuUse

if TYPE_CHECKING:
    from jobwarden.server.api import EngineServer
    from jobwarden.server.core import Timers

__all__ = ["BenchSetup", "EngineUnderTest", "engine_under_test", "scenario_workdir"]

_STATUS_FIELDS = {
    JobStatus.QUEUED: "queued",
    JobStatus.DELAYED: "delayed",
    JobStatus.WAITING_FOR_LOCK: "waiting_for_lock",
    JobStatus.RUNNING: "running",
    JobStatus.TIMED_OUT: "timed_out",
    JobStatus.COMPLETED: "completed",
    JobStatus.FAILED: "failed",
    JobStatus.CANCELLED: "cancelled",
    JobStatus.REJECTED: "rejected",
}


@dataclass(slots=True)
class BenchSetup:
    """Where the bench runs: a given engine, or engines it starts on ``db`` (a temp SQLite by default)."""

    engine: str | None = None
    db: str | None = None
    workdir: Path | None = None
    progress: bool = True
    #: a py-spy output file: the engine's process is sampled while each scenario measures
    profile: Path | None = None
    #: profile only the thread holding the GIL (py-spy --gil)
    profile_gil: bool = False
    keep: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class EngineUnderTest:
    """An engine to measure: its address, and, when it runs in this process, the server that runs it."""

    def __init__(self, address: str, db_url: str, workdir: Path, server: EngineServer | None) -> None:
        self.address = address
        self.db_url = db_url
        self.workdir = workdir
        self.server = server
        self._channel = grpc.aio.insecure_channel(address)
        self._stub = job_service_pb2_grpc.JobServiceStub(self._channel)
        #: the idle collector `jobwarden serve` runs, when the engine runs here
        self.collector: asyncio.Task[None] | None = None

    @property
    def timers(self) -> Timers | None:
        """The engine's timer table when it runs in this process (None for ``--engine``): the ``timers``
        scenario reads its own record of each fire, which no API carries."""
        return self.server.engine.timers if self.server is not None else None

    @property
    def in_process(self) -> bool:
        return self.server is not None

    def describe(self) -> str:
        if self.server is None:
            return f"engine at {self.address} (not started by the bench)"
        if self.db_url.startswith("sqlite"):
            return "engine in the bench's process; SQLite (WAL, synchronous=FULL) in a temp dir"
        return f"engine in the bench's process; {_redact(self.db_url)}"

    async def close(self) -> None:
        await self._channel.close()

    # -- counters -----------------------------------------------------------------------------------

    async def _stats(self) -> job_service_pb2.GetStatsResponse:
        return await self._stub.GetStats(job_service_pb2.GetStatsRequest(), timeout=30)

    async def counts(self, action: str) -> dict[JobStatus, int]:
        """Jobs of ``action`` per status, as committed (what GetStats counts)."""
        stats = await self._stats()
        for item in stats.actions:
            if item.action == action:
                return {s: int(getattr(item, name)) for s, name in _STATUS_FIELDS.items()}
        return dict.fromkeys(_STATUS_FIELDS, 0)

    async def count(self, action: str, *statuses: JobStatus) -> int:
        counts = await self.counts(action)
        return sum(counts[s] for s in statuses)

    async def head(self) -> int:
        return (await self._stats()).head_sequence

    async def watchers(self) -> int:
        return (await self._stats()).watchers

    async def workers_for(self, action: str) -> int:
        stats = await self._stats()
        return next((item.workers for item in stats.actions if item.action == action), 0)

    async def set_paused(self, action: str, paused: bool) -> None:
        # A scenario pauses its own fresh action before its first job, to fill the queue.
        if paused:
            pause = job_service_pb2.PauseActionRequest(action=action, create_if_unknown=True)
            await self._stub.PauseAction(pause, timeout=30)
        else:
            resume = job_service_pb2.ResumeActionRequest(action=action, create_if_unknown=True)
            await self._stub.ResumeAction(resume, timeout=30)

    async def configure(self, config: job_pb2.ActionConfig) -> None:
        await self._stub.SetActionConfig(job_service_pb2.SetActionConfigRequest(config=config), timeout=30)

    async def job_events(self, job_id: str) -> list[job_pb2.JobEvent]:
        response = await self._stub.GetJobEvents(
            job_service_pb2.GetJobEventsRequest(job_id=job_id), timeout=30
        )
        return list(response.events)

    async def wait_until(
        self,
        condition: Any,
        *,
        timeout: float,
        interval: float = 0.01,
        what: str = "the condition",
    ) -> float:
        """Poll ``await condition()`` until it is true; the wall time (``time.time()``) it became true.
        TimeoutError naming ``what`` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            if await condition():
                return time.time()
            if time.monotonic() > deadline:
                raise TimeoutError(f"gave up waiting for {what} after {timeout:g}s")
            await asyncio.sleep(interval if self.in_process else max(interval, 0.05))

    # -- measuring the engine's process -------------------------------------------------------------

    def cpu_meter(self) -> CpuMeter | None:
        """A meter of this process's CPU, when the engine runs here."""
        return CpuMeter() if self.in_process else None

    def writer_stats(self) -> tuple[int, int, float] | None:
        """(commits, rows, commit seconds) of the engine's group commit so far, when in this process
        (the public ``Writer.stats``: no API carries them)."""
        if self.server is None:
            return None
        stats = self.server.engine.writer.stats
        return stats.commits, stats.rows, stats.total_commit_seconds


def cpu_figures(use: CpuUse | None) -> dict[str, Any]:
    if use is None:
        return {}
    return {
        "engine_cpu_percent": round(use.percent, 1),
        "engine_threads_cpu_percent": use.thread_percent(),
    }


@asynccontextmanager
async def engine_under_test(setup: BenchSetup, name: str) -> AsyncIterator[EngineUnderTest]:
    """The engine for one scenario: ``setup.engine`` if given, else a fresh one in this process on
    ``setup.db`` or on a new SQLite file in a temp dir (removed afterwards unless ``keep``)."""
    with scenario_workdir(setup, name) as workdir:
        if setup.engine:
            target = EngineUnderTest(setup.engine, "", workdir, None)
            try:
                yield target
            finally:
                await target.close()
            return
        db_url = setup.db or f"sqlite:///{workdir / 'bench.db'}"
        target = await start_engine(db_url, workdir)
        try:
            yield target
        finally:
            await stop_engine(target)


@contextmanager
def scenario_workdir(setup: BenchSetup, name: str) -> Iterator[Path]:
    """A new temp directory for scenario ``name`` (in ``setup.workdir``, if given), removed
    afterwards unless ``setup.keep``."""
    workdir = Path(tempfile.mkdtemp(prefix=f"jobwarden-bench-{name}-", dir=setup.workdir))
    try:
        yield workdir
    finally:
        if not setup.keep:
            shutil.rmtree(workdir, ignore_errors=True)


async def start_engine(db_url: str, workdir: Path) -> EngineUnderTest:
    """Start an engine in this process (port 0: a free one)."""
    from jobwarden.server.api import EngineServer, ServerOptions
    from jobwarden.server.core import EngineConfig

    # The engine's INFO lines (workers connecting, ...) would tear through the progress bar.
    for logger in ("jobwarden", "jobwarden.server", "jobwarden.engine", "jobwarden.store"):
        logging.getLogger(logger).setLevel(logging.WARNING)
    server = EngineServer(EngineConfig(db_url=db_url), ServerOptions(port=0))
    await server.start()
    target = EngineUnderTest(server.address, db_url, workdir, server)
    # The same garbage-collector settings as `jobwarden serve`: measure what is deployed.
    from jobwarden.server.runtime import collect_when_idle, tune_gc

    tune_gc()
    target.collector = asyncio.get_running_loop().create_task(collect_when_idle(server.engine))
    return target


async def stop_engine(target: EngineUnderTest) -> None:
    if target.collector is not None:
        target.collector.cancel()
    await target.close()
    if target.server is not None:
        await target.server.stop(grace=0.5)


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url
