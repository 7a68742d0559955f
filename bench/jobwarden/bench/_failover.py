"""``failover``: several engines on one PostgreSQL under a steady load; the leader is killed
(SIGKILL) again and again. How long from the kill to the first job dispatched by the new leader,
and how far behind the leader the standbys' WatchJobs streams run.

The engines run in processes of their own (``jobwarden serve`` on the ``--db`` PostgreSQL), the
workers too (``jobwarden worker --engine a,b,c``: they find the new leader by themselves), and the
client submits through an SDK client given every address. Each engine is watched by a client of
its own (one address: it stays on that engine), so each event's arrival is seen on every engine:

- failover: SIGKILL → the first event QUEUED → RUNNING stamped after it (stamped by the new
  leader: the old one is dead), as the engine's own event time says (same machine, same clock);
- watch lag: an event's arrival on a standby's stream minus its arrival on the leader's.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import socket
import sys
import time
from dataclasses import asdict
from pathlib import Path

from jobwarden.contract import JobEventType, JobStatus
from jobwarden.sdk import JobClient, JobwardenError

from ._procs import WorkerGroup, open_log
from ._progress import Progress
from ._results import ScenarioResult, ScenarioUnavailable, Target
from ._sizes import FailoverSizes
from ._stats import percentiles
from ._workload import new_action

__all__ = ["FAILOVER_P99_TARGET_S", "run_failover"]

#: the issue's goal: leader kill -> first dispatch by the new leader, at p99
FAILOVER_P99_TARGET_S = 3.0

_ENGINE_CONFIG = """
[engine]
heartbeat_interval = "0.5s"
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class _EngineProcess:
    """``jobwarden serve`` in a process of its own, on a fixed port (it comes back on it)."""

    def __init__(self, db_url: str, workdir: Path, index: int, config: Path) -> None:
        self.db_url = db_url
        self.port = _free_port()
        self.log = workdir / f"engine-{index}.log"
        self.config = config
        self.process: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task[None] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self, timeout: float = 60.0) -> None:
        log = open_log(self.log)
        try:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "jobwarden.sdk.cli", "serve", "--port", str(self.port),
                "--db", self.db_url, "--config", str(self.config),
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=log,
            )  # fmt: skip
        finally:
            log.close()
        assert self.process.stdout is not None
        stdout = self.process.stdout
        async with asyncio.timeout(timeout):
            while True:
                line = await stdout.readline()
                if not line:
                    raise RuntimeError(f"engine {self.address} exited at start; see {self.log}")
                if b"listening on" in line:
                    break
        self._drain = asyncio.create_task(self._read_rest(stdout))

    @staticmethod
    async def _read_rest(stdout: asyncio.StreamReader) -> None:
        while await stdout.readline():
            pass

    async def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGKILL)
            await self.process.wait()
        if self._drain is not None:
            self._drain.cancel()

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 15)
            except TimeoutError:
                await self.kill()
        if self._drain is not None:
            self._drain.cancel()


class _Watch:
    """One engine's event stream: when each sequence arrived here, and each dispatch's time."""

    def __init__(self, address: str) -> None:
        self.address = address
        #: sequence -> monotonic arrival
        self.arrivals: dict[int, float] = {}
        #: sequence -> when the stream it came on was opened (an event older than that was replayed)
        self.opened: dict[int, float] = {}
        #: engine times of QUEUED -> RUNNING events
        self.dispatches: list[float] = []
        #: sequences already counted in the lag
        self.lag_counted: set[int] = set()
        self._task: asyncio.Task[None] | None = None

    def start(self, head: int) -> None:
        self._task = asyncio.create_task(self._follow(head))

    async def _follow(self, head: int) -> None:
        async with JobClient(self.address, timeout=5) as client:
            while True:
                opened = time.monotonic()
                with contextlib.suppress(JobwardenError):
                    async for event in client.watch(after_sequence=head, reconnect=False):
                        if event.sequence not in self.arrivals:
                            self.arrivals[event.sequence] = time.monotonic()
                            self.opened[event.sequence] = opened
                        head = max(head, event.sequence)
                        if (
                            int(event.type) == JobEventType.STATUS_CHANGED
                            and int(event.previous_status) == JobStatus.QUEUED
                            and int(event.job.status) == JobStatus.RUNNING
                        ):
                            self.dispatches.append(event.time.seconds + event.time.nanos / 1e9)
                await asyncio.sleep(0.1)  # the stream broke (its engine was killed): open it again

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def _leader(engines: list[_EngineProcess], client: JobClient) -> tuple[_EngineProcess, int] | None:
    try:
        cluster = await client.engines()
    except JobwardenError as error:
        if error.code.name == "UNIMPLEMENTED":
            raise ScenarioUnavailable(
                "the engines serve no ClusterService (they elect no leader): failover needs an engine "
                "with leader election"
            ) from None
        return None
    for engine in engines:
        if engine.address == cluster.leader_address:
            return engine, cluster.epoch
    return None


async def _wait_leader(
    engines: list[_EngineProcess],
    client: JobClient,
    not_this: _EngineProcess | None = None,
    timeout: float = 60.0,
) -> tuple[_EngineProcess, int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = await _leader(engines, client)
        if found is not None and found[0] is not not_this:
            return found
        await asyncio.sleep(0.05)
    raise RuntimeError(f"no engine leads after {timeout:g}s")


async def run_failover(
    db_url: str, workdir: Path, sizes: FailoverSizes, progress: Progress
) -> ScenarioResult:
    if not db_url.startswith("postgresql"):
        raise ScenarioUnavailable(
            "failover runs several engines on one PostgreSQL: give --db postgresql+psycopg://USER@HOST/DB "
            "(an empty database of its own)"
        )
    result = ScenarioResult("failover", asdict(sizes))
    rng = random.Random()
    config = workdir / "engine.toml"
    config.write_text(_ENGINE_CONFIG)
    engines = [_EngineProcess(db_url, workdir, n, config) for n in range(sizes.engines)]
    addresses = [engine.address for engine in engines]
    action = new_action("failover")
    progress.phase(f"starting {sizes.engines} engines")
    for engine in engines:
        await engine.start()
    workers = WorkerGroup(
        ",".join(addresses), action, count=sizes.workers, capacity=sizes.capacity, workdir=workdir
    )
    watches = [_Watch(address) for address in addresses]
    stopping = asyncio.Event()
    submitted = 0
    failovers: list[float] = []
    lags: list[float] = []

    async def submit(client: JobClient) -> None:
        nonlocal submitted
        while not stopping.is_set():
            with contextlib.suppress(JobwardenError):
                await client.submit(action, {})
                submitted += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), 1 / sizes.rate)

    async with JobClient(addresses, timeout=5, failover_timeout=120) as client:
        submitter: asyncio.Task[None] | None = None
        try:
            await _wait_leader(engines, client)
            head = (await client.stats()).head_sequence
            for watch in watches:
                watch.start(head)
            await workers.start()
            submitter = asyncio.create_task(submit(client))
            progress.phase(f"{sizes.kills} kills of the leader", total=sizes.kills)
            for kill in range(sizes.kills):
                leader, _ = await _wait_leader(engines, client)
                await asyncio.sleep(sizes.settle * rng.uniform(0.5, 1.5))
                # The lag is read while the cluster is whole: a standby's arrival minus the leader's.
                # Only events that came live on both (committed after the standby's stream opened):
                # a stream opened again after its engine's restart replays what it missed.
                mine = watches[engines.index(leader)].arrivals
                for watch in watches:
                    if watch.address != leader.address:
                        lags.extend(
                            at - mine[seq]
                            for seq, at in watch.arrivals.items()
                            if seq in mine and watch.opened[seq] < mine[seq] and seq not in watch.lag_counted
                        )
                        watch.lag_counted.update(seq for seq in watch.arrivals if seq in mine)
                moment = time.time()
                await leader.kill()
                deadline = time.monotonic() + 60
                while True:
                    later = [t for watch in watches for t in watch.dispatches if t > moment]
                    if later:
                        failovers.append(min(later) - moment)
                        break
                    if time.monotonic() > deadline:
                        raise RuntimeError(
                            f"no dispatch within 60s of killing the leader at {leader.address}"
                        )
                    await asyncio.sleep(0.02)
                await _wait_leader(engines, client, not_this=leader)
                await leader.start()
                progress.update(kill + 1)
        finally:
            stopping.set()
            if submitter is not None:
                with contextlib.suppress(Exception):
                    await submitter
            for watch in watches:
                await watch.stop()
            await workers.stop()
            for engine in engines:
                await engine.stop()
    seconds = percentiles(failovers, 1.0)
    how = "SIGKILL of the leader -> the first QUEUED->RUNNING stamped after it (by the new leader)"
    result.add("failover p50", seconds["p50"], "s", note=how)
    result.add("failover p99", seconds["p99"], "s", target=Target(FAILOVER_P99_TARGET_S, at_most=True))
    result.add("failover max", seconds["max"], "s")
    lag = percentiles(lags, 1000)
    how_lag = "an event's arrival on a standby's WatchJobs minus on the leader's (between kills)"
    result.add("standby watch lag p50", lag["p50"], "ms", note=how_lag)
    result.add("standby watch lag p99", lag["p99"], "ms")
    result.details.update(
        kills=len(failovers),
        failovers=[round(value, 3) for value in failovers],
        jobs_submitted=submitted,
        lag_samples=len(lags),
    )
    return result
