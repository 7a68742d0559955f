"""Chaos with several engines on one PostgreSQL: real processes, a private database, steady load.

Three ``jobwarden serve`` processes share a private PostgreSQL (``tests/support/postgres.py``), each
through a TCP proxy of its own so that any of them can be cut off from the database while its
workers still reach it. SDK clients submit a steady stream of jobs (each with an idempotency key)
to all three addresses, cancel some (delayed ones, so the cancel takes at once) and retry the ones
that fail on purpose; SDK workers (``jobwarden worker --engine a,b,c``) run them. Meanwhile the
faults come, one after the other:

- ``kill``: SIGKILL the leader at a random moment, then start it again (it comes back a standby);
- ``partition``: stall the leader's connections to PostgreSQL (its workers still reach it), long
  enough for its lease to pass, then heal it;
- ``pg-restart``: crash PostgreSQL itself (``pg_ctl stop -m immediate``) and start it again;
- ``standby``: stop a standby and bring it back.

Afterwards the load stops, every job must end, and ``check`` holds the cluster to: 0 acknowledged
submits, cancels or retries lost; 0 jobs with two accepted results; 0 gaps or repeats in the event
sequence (read from the events table); 0 exclusive locks with two holders at once (from the
executions' own records); every job ended. The failover time of each kill (SIGKILL → the first
QUEUED → RUNNING committed after it, necessarily by the new leader) is measured.

CI runs a short mode (``test_ha_chaos.py``); the soak is a script::

    .venv/bin/python -m tests.reliability.chaos --kills 20 --partitions 3 --pg-restarts 2 --standbys 2
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from jobwarden.contract import TERMINAL_STATUSES, JobEventType, JobStatus
from jobwarden.sdk import JobClient, JobwardenError
from jobwarden.v1 import cluster_service_pb2, cluster_service_pb2_grpc

from tests.reliability.proxy import FaultyProxy, Mode
from tests.support import EngineProcess
from tests.support.postgres import PrivatePostgres

ROOT = Path(__file__).resolve().parents[2]
JOBWARDEN = str(Path(sys.executable).with_name("jobwarden"))
WORK = "chaos-work"
FAIL_ONCE = "chaos-fail-once"
#: exclusive resources some jobs lock: two executions under one at once are two holders
RESOURCES = [f"chaos:res-{n}" for n in range(4)]

#: the engines' configuration: quick heartbeats; a takeover slow enough that a worker re-attaches
#: its jobs at the new leader first (the test counts re-runs, it does not forbid them)
ENGINE_CONFIG = """
[engine]
heartbeat_interval = "0.5s"
default_takeover_timeout = "20s"
"""
#: extra ``serve`` arguments for several engines (the lease), as the engine side names them
HA_ARGS: tuple[str, ...] = ()


def percentile(values: list[float], fraction: float) -> float:
    """The ``fraction`` quantile (nearest rank) of ``values``."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(fraction * len(ordered) + 0.5)))
    return ordered[rank - 1]


class NoLeaderElection(Exception):
    """The engines under test do not elect a leader (no ClusterService): the chaos cannot run."""


class ThreadedProxy:
    """``FaultyProxy`` on an event loop of its own thread, so that a blocked test loop (or a sync
    caller) does not stall the bytes it relays."""

    def __init__(self, target: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="chaos-proxy", daemon=True)
        self._thread.start()
        self.proxy = FaultyProxy(target)
        self.address = self._call(self.proxy.start())

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(30)

    def set_mode(self, mode: Mode) -> None:
        self._loop.call_soon_threadsafe(self.proxy.set_mode, mode)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._call(self.proxy.stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


class WorkerProc:
    """``jobwarden worker tests.reliability.chaos_executors:ALL`` against every engine."""

    def __init__(self, addresses: list[str], log_dir: Path, name: str, capacity: int) -> None:
        import subprocess

        self.name = name
        self.log = log_dir / f"{name}.log"
        env = {**os.environ, "JOBWARDEN_CHAOS_LOG": str(log_dir / "runs"), "PYTHONPATH": str(ROOT)}
        command = [
            JOBWARDEN, "worker", "tests.reliability.chaos_executors:ALL",
            "--engine", ",".join(addresses), "--capacity", str(capacity), "--name", name,
        ]  # fmt: skip
        self._file = self.log.open("ab")
        self.process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=self._file, stderr=self._file)

    def stop(self) -> None:
        import subprocess

        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._file.close()


class Cluster:
    """A private PostgreSQL, a proxy per engine in front of it, and the engines."""

    def __init__(self, workdir: Path, engines: int = 3) -> None:
        self.workdir = workdir
        self.pg = PrivatePostgres()
        self.pg.start()
        config = workdir / "engine.toml"
        config.write_text(ENGINE_CONFIG)
        self.proxies = [ThreadedProxy(self.pg.address) for _ in range(engines)]
        self.engines = [
            EngineProcess(
                self.pg.url_via(proxy.address),
                extra_args=("--config", str(config), *HA_ARGS),
                log_path=workdir / f"engine{n}.log",
            )
            for n, proxy in enumerate(self.proxies)
        ]
        for n, engine in enumerate(self.engines):
            engine.extra_args += ("--engine-id", f"e{n}", "--advertise", engine.address)

    @property
    def addresses(self) -> list[str]:
        return [engine.address for engine in self.engines]

    def start(self) -> None:
        for engine in self.engines:
            engine.start()

    def alive(self, engine: EngineProcess) -> bool:
        return engine.process is not None and engine.process.poll() is None

    def cluster_view(self, engine: EngineProcess, timeout: float = 2.0) -> Any:
        """What ``engine`` says of the cluster (ListEngines), or None when it does not answer."""
        if not self.alive(engine):
            return None
        try:
            with grpc.insecure_channel(engine.address) as channel:
                stub = cluster_service_pb2_grpc.ClusterServiceStub(channel)
                return stub.ListEngines(cluster_service_pb2.ListEnginesRequest(), timeout=timeout)
        except grpc.RpcError as error:
            if error.code() is grpc.StatusCode.UNIMPLEMENTED:
                raise NoLeaderElection(
                    f"the engine at {engine.address} serves no ClusterService: it elects no leader"
                ) from None
            return None

    def leader(self, exclude: EngineProcess | None = None) -> tuple[EngineProcess, int] | None:
        """The engine every live one (but ``exclude``) names leader, with its epoch; None if none."""
        for engine in self.engines:
            if engine is exclude:
                continue
            view = self.cluster_view(engine)
            if view is None or not view.leader_address:
                continue
            for candidate in self.engines:
                if (
                    candidate.address == view.leader_address
                    and candidate is not exclude
                    and self.alive(candidate)
                ):
                    return candidate, view.epoch
        return None

    def wait_leader(
        self, exclude: EngineProcess | None = None, timeout: float = 60.0
    ) -> tuple[EngineProcess, int]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.leader(exclude)
            if found is not None:
                return found
            time.sleep(0.05)
        raise AssertionError(f"no engine leads after {timeout}s (see {self.workdir}/engine*.log)")

    def proxy_of(self, engine: EngineProcess) -> ThreadedProxy:
        return self.proxies[self.engines.index(engine)]

    def close(self) -> None:
        for engine in self.engines:
            engine.kill()
        for proxy in self.proxies:
            proxy.close()
        self.pg.remove()


@dataclass
class Ledger:
    """What the cluster acknowledged to the clients."""

    #: idempotency key -> job id, for every submit that was answered
    submitted: dict[str, str] = field(default_factory=dict)
    #: jobs whose cancel was answered (they were DELAYED: the cancel took at once)
    cancelled: set[str] = field(default_factory=set)
    #: jobs whose operator retry was answered
    retried: set[str] = field(default_factory=set)
    #: calls that failed after the client's own failover gave up (their outcome was not promised)
    errors: Counter[str] = field(default_factory=Counter)
    #: the first message of each kind of error, to say what it was
    error_samples: dict[str, str] = field(default_factory=dict)

    def failed(self, what: str, error: Exception) -> None:
        kind = f"{what}{type(error).__name__}"
        self.errors[kind] += 1
        self.error_samples.setdefault(kind, str(error)[:300])


@dataclass
class ChaosResult:
    ledger: Ledger
    faults: Counter[str] = field(default_factory=Counter)
    #: seconds from each SIGKILL of the leader to the first dispatch committed after it
    failovers: list[float] = field(default_factory=list)
    #: seconds from each partition to a new leader's first dispatch
    partition_failovers: list[float] = field(default_factory=list)
    #: seconds from each partition to the old leader's last acknowledged submit (0: none after it)
    partition_last_acks: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def failover_line(self) -> str:
        if not self.failovers:
            return "no kill measured"
        p50, p99 = percentile(self.failovers, 0.5), percentile(self.failovers, 0.99)
        each = ", ".join(f"{value:.2f}" for value in self.failovers)
        return (
            f"failover (leader SIGKILL -> first dispatch by the new leader) over {len(self.failovers)} "
            f"kills: p50 {p50:.2f}s, p99 {p99:.2f}s, max {max(self.failovers):.2f}s ({each})"
        )

    def report(self) -> str:
        faults = ", ".join(f"{name} {count}" for name, count in sorted(self.faults.items()))
        figures = ", ".join(f"{name} {value}" for name, value in self.figures.items())
        lines = [
            f"chaos: {faults} in {self.seconds:.0f}s; {figures}",
            self.failover_line(),
        ]
        if self.partition_failovers:
            lines.append(
                "partition -> new leader's first dispatch: "
                + ", ".join(f"{value:.2f}s" for value in self.partition_failovers)
                + "; the cut-off leader's last acknowledged submit after the cut: "
                + ", ".join(f"{value:.2f}s" for value in self.partition_last_acks)
            )
        lines.append(f"{len(self.problems)} problems" + "".join(f"\n  {p}" for p in self.problems[:30]))
        return "\n".join(lines)


class Load:
    """Steady submits, cancels and retries through SDK clients that know every engine."""

    def __init__(
        self, addresses: list[str], ledger: Ledger, *, submitters: int, rate: float, seed: int
    ) -> None:
        self.addresses = addresses
        self.ledger = ledger
        self.submitters = submitters
        self.rate = rate
        self.rng = random.Random(seed)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._count = 0

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._submitter(n)) for n in range(self.submitters)]
        self._tasks.append(asyncio.create_task(self._retrier()))

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _client(self) -> JobClient:
        return JobClient(self.addresses, timeout=5.0, failover_timeout=120.0)

    async def _submitter(self, n: int) -> None:
        interval = self.submitters / self.rate
        async with self._client() as client:
            while not self._stop.is_set():
                self._count += 1
                key = f"chaos-{n}-{self._count}"
                roll = self.rng.random()
                try:
                    if roll < 0.1:
                        # A delayed job, cancelled at once: the cancel acts on a waiting job.
                        job = await client.submit(
                            WORK, {"seconds": 0.01}, idempotency_key=key, run_at=_later(600)
                        )
                        self.ledger.submitted[key] = job.id
                        await client.cancel(job.id, "chaos: cancel a delayed job")
                        self.ledger.cancelled.add(job.id)
                    elif roll < 0.2:
                        job = await client.submit(FAIL_ONCE, {}, idempotency_key=key)
                        self.ledger.submitted[key] = job.id
                    else:
                        lock = self.rng.choice(RESOURCES) if roll < 0.45 else ""
                        job = await client.submit(
                            WORK,
                            {"seconds": self.rng.uniform(0.02, 0.3), "lock": lock},
                            idempotency_key=key,
                            locks=[lock] if lock else None,
                            timeouts={"heartbeat": 3, "takeover": 20},
                        )
                        self.ledger.submitted[key] = job.id
                except JobwardenError as error:
                    self.ledger.failed("", error)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), interval * self.rng.uniform(0.5, 1.5))

    async def _retrier(self) -> None:
        """Retries each job that failed on purpose, once (the ledger holds every answered retry)."""
        async with self._client() as client:
            while not self._stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), 0.5)
                await self.retry_failed(client)

    async def retry_failed(self, client: JobClient) -> None:
        try:
            async for job in client.iter_jobs(statuses=[JobStatus.FAILED], action=FAIL_ONCE, summary=True):
                if job.id in self.ledger.retried or job.attempt != 1:
                    continue
                await client.retry(job.id, reason="chaos: retry the planned failure")
                self.ledger.retried.add(job.id)
        except JobwardenError as error:
            self.ledger.failed("retry ", error)


def _later(seconds: float) -> Any:
    from datetime import UTC, datetime, timedelta

    return datetime.now(UTC) + timedelta(seconds=seconds)


def first_dispatch_after(pg: PrivatePostgres, moment: float, timeout: float = 60.0) -> float:
    """The time of the first QUEUED -> RUNNING committed after ``moment`` (engine clock, this machine)."""
    import psycopg

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with psycopg.connect(pg.dsn, connect_timeout=3) as conn:
                rows = conn.execute(
                    "SELECT time, snapshot FROM events"
                    " WHERE time > %s AND type = %s AND previous_status = %s ORDER BY time LIMIT 200",
                    (moment, int(JobEventType.STATUS_CHANGED), int(JobStatus.QUEUED)),
                ).fetchall()
        except psycopg.OperationalError:
            rows = []
        for at, snapshot in rows:
            if json.loads(snapshot).get("status") == int(JobStatus.RUNNING):
                return float(at) - moment
        time.sleep(0.05)
    raise AssertionError(f"no dispatch within {timeout}s of the fault")


async def run_chaos(
    workdir: Path,
    *,
    kills: int = 10,
    partitions: int = 1,
    pg_restarts: int = 1,
    standby_restarts: int = 1,
    engines: int = 3,
    workers: int = 2,
    submitters: int = 2,
    rate: float = 20.0,
    seed: int | None = None,
) -> ChaosResult:
    """Run the load, the faults in a shuffled order (kills in a row), then check everything."""
    seed = random.randrange(1 << 30) if seed is None else seed
    rng = random.Random(seed)
    (workdir / "runs").mkdir(parents=True, exist_ok=True)
    cluster = await asyncio.to_thread(Cluster, workdir, engines)
    result = ChaosResult(Ledger())
    started = time.monotonic()
    procs: list[WorkerProc] = []
    load: Load | None = None
    try:
        await asyncio.to_thread(cluster.start)
        await asyncio.to_thread(cluster.wait_leader)
        procs = [WorkerProc(cluster.addresses, workdir, f"chaos-w{n}", capacity=4) for n in range(workers)]
        load = Load(cluster.addresses, result.ledger, submitters=submitters, rate=rate, seed=seed)
        load.start()
        await asyncio.sleep(2.0)
        plan = (
            ["kills"]
            + ["partition"] * partitions
            + ["pg-restart"] * pg_restarts
            + ["standby"] * standby_restarts
        )
        rng.shuffle(plan)
        for fault in plan:
            if fault == "kills":
                restarts: list[asyncio.Task[None]] = []
                for _ in range(kills):
                    # The engine killed last may still be starting; the one before must be up, so
                    # that a standby is there to take over.
                    if len(restarts) > 1:
                        await restarts[-2]
                    took, restart = await _kill_leader(cluster, rng)
                    restarts.append(restart)
                    result.failovers.append(took)
                    result.faults["kill"] += 1
                await asyncio.gather(*restarts)
            elif fault == "partition":
                result.partition_failovers.append(await _partition_leader(cluster, rng, result))
                result.faults["partition"] += 1
            elif fault == "pg-restart":
                await _restart_postgres(cluster)
                result.faults["pg-restart"] += 1
            else:
                await _bounce_standby(cluster, rng)
                result.faults["standby"] += 1
            await asyncio.sleep(rng.uniform(0.5, 1.5))
        await load.stop()
        async with JobClient(cluster.addresses, timeout=10, failover_timeout=120) as client:
            await _settle(client, load, result)
            await check(client, cluster, workdir, result)
    finally:
        if load is not None:
            await load.stop()
        for proc in procs:
            await asyncio.to_thread(proc.stop)
        await asyncio.to_thread(cluster.close)
        result.seconds = time.monotonic() - started
        result.figures["seed"] = seed
    return result


async def _kill_leader(cluster: Cluster, rng: random.Random) -> tuple[float, asyncio.Task[None]]:
    """SIGKILL the leader; how long until the new leader's first dispatch, and the killed engine's
    restart (it comes back a standby), under way."""
    leader, epoch = await asyncio.to_thread(cluster.wait_leader)
    await asyncio.sleep(rng.uniform(0.2, 1.5))
    moment = time.time()
    leader.kill()
    took = await asyncio.to_thread(first_dispatch_after, cluster.pg, moment)
    _, new_epoch = await asyncio.to_thread(cluster.wait_leader, leader)
    if new_epoch <= epoch:
        raise AssertionError(f"the new leader's epoch {new_epoch} is not above the killed one's {epoch}")
    return took, asyncio.create_task(asyncio.to_thread(_start, leader))


def _start(engine: EngineProcess) -> None:
    engine.start()


async def _partition_leader(cluster: Cluster, rng: random.Random, result: ChaosResult) -> float:
    """Stall the leader's connections to PostgreSQL while its workers and clients still reach it.
    A client held to the old leader alone keeps submitting meanwhile: what it is told was accepted
    joins the ledger (so it must be in the store afterwards), and the last such answer after the
    cut is recorded (the old leader must stop acknowledging within its lease)."""
    leader, epoch = await asyncio.to_thread(cluster.wait_leader)
    proxy = cluster.proxy_of(leader)
    moment = time.time()
    proxy.set_mode(Mode.STALL)
    stop = asyncio.Event()
    last_ack = [0.0]

    async def probe() -> None:
        async with JobClient(leader.address, timeout=3.0) as pinned:
            n = 0
            while not stop.is_set():
                n += 1
                key = f"chaos-partition-{result.faults['partition']}-{n}"
                try:
                    job = await pinned.submit(WORK, {"seconds": 0.01}, idempotency_key=key)
                    result.ledger.submitted[key] = job.id
                    last_ack[0] = time.time() - moment
                except JobwardenError:
                    pass
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.1)

    prober = asyncio.create_task(probe())
    try:
        _, new_epoch = await asyncio.to_thread(cluster.wait_leader, leader, 120.0)
        took = await asyncio.to_thread(first_dispatch_after, cluster.pg, moment)
        # Stay cut a while longer: whatever the old leader still tries must not commit.
        await asyncio.sleep(rng.uniform(1.0, 2.0))
    finally:
        stop.set()
        await prober
        proxy.set_mode(Mode.PASS)
    result.partition_last_acks.append(last_ack[0])
    if new_epoch <= epoch:
        raise AssertionError(f"after the partition the epoch is {new_epoch}, not above {epoch}")
    return took


async def _restart_postgres(cluster: Cluster) -> None:
    await asyncio.to_thread(cluster.pg.crash)
    await asyncio.sleep(1.0)
    await asyncio.to_thread(cluster.pg.start)
    await asyncio.to_thread(cluster.wait_leader, None, 120.0)


async def _bounce_standby(cluster: Cluster, rng: random.Random) -> None:
    leader, _ = await asyncio.to_thread(cluster.wait_leader)
    standby = rng.choice([engine for engine in cluster.engines if engine is not leader])
    await asyncio.to_thread(standby.terminate)
    await asyncio.sleep(rng.uniform(0.5, 2.0))
    await asyncio.to_thread(standby.start)


async def _settle(client: JobClient, load: Load, result: ChaosResult, timeout: float = 120.0) -> None:
    """Wait until every job has ended, retrying the planned failures that are still unretried."""
    deadline = time.monotonic() + timeout
    unfinished = [s for s in JobStatus if s not in TERMINAL_STATUSES]
    while True:
        await load.retry_failed(client)
        page = await client.list(statuses=unfinished, page_size=20, summary=True)
        failed_unretried = [
            job
            async for job in client.iter_jobs(statuses=[JobStatus.FAILED], action=FAIL_ONCE, summary=True)
            if job.attempt == 1
        ]
        if not page.jobs and not failed_unretried:
            return
        if time.monotonic() > deadline:
            left = ", ".join(f"{job.id} {JobStatus(job.status).name}" for job in page.jobs[:10])
            result.problems.append(f"jobs still unfinished after {timeout:g}s: {left}")
            return
        await asyncio.sleep(0.25)


def _runs(workdir: Path) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    for path in sorted((workdir / "runs").glob("*.jsonl")):
        for line in path.read_text().splitlines():
            with contextlib.suppress(json.JSONDecodeError):  # a line cut by a killed worker
                runs.append(json.loads(line))
    return runs


async def check(client: JobClient, cluster: Cluster, workdir: Path, result: ChaosResult) -> None:
    """Hold the cluster to every promise (see the module docstring)."""
    import psycopg

    problems = result.problems
    ledger = result.ledger
    jobs = {job.id: job async for job in client.iter_jobs()}
    by_key = {job.idempotency_key: job for job in jobs.values() if job.idempotency_key}
    for key, job_id in ledger.submitted.items():
        if key not in by_key:
            problems.append(f"acknowledged submit {key} ({job_id}) is not in the store")
        elif by_key[key].id != job_id:
            problems.append(f"submit {key} was answered with {job_id}, the store has {by_key[key].id}")
    for job_id in ledger.cancelled:
        job = jobs.get(job_id)
        if job is None or JobStatus(job.status) is not JobStatus.CANCELLED:
            problems.append(f"acknowledged cancel of {job_id} lost: {_status(job)}")
    for job_id in ledger.retried:
        job = jobs.get(job_id)
        if job is None or JobStatus(job.status) is not JobStatus.COMPLETED or job.attempt != 2:
            problems.append(
                f"acknowledged retry of {job_id}: {_status(job)}, attempt {job.attempt if job else '-'}"
            )
    for job in jobs.values():
        if JobStatus(job.status) not in TERMINAL_STATUSES:
            problems.append(f"job {job.id} never ended: {_status(job)}")

    # The event history, read from the table itself: gap-free, and each attempt ends once.
    with psycopg.connect(cluster.pg.dsn) as conn:
        rows = conn.execute(
            "SELECT sequence, job_id, type, snapshot FROM events ORDER BY sequence"
        ).fetchall()
    sequences = [row[0] for row in rows]
    if sequences != list(range(1, len(sequences) + 1)):
        seen = set(sequences)
        missing = [n for n in range(1, (sequences[-1] if sequences else 0) + 1) if n not in seen][:10]
        repeats = [n for n, count in Counter(sequences).items() if count > 1][:10]
        problems.append(f"event sequence: {len(sequences)} events, missing {missing}, repeated {repeats}")
    endings: Counter[tuple[str, int]] = Counter()
    completions: Counter[str] = Counter()
    for _, job_id, kind, snapshot in rows:
        if kind != int(JobEventType.STATUS_CHANGED):
            continue
        doc = json.loads(snapshot)
        status = JobStatus(doc["status"])
        if status in TERMINAL_STATUSES:
            endings[(job_id, int(doc.get("attempt", 0)))] += 1
        if status is JobStatus.COMPLETED:
            completions[job_id] += 1
    for (job_id, attempt), count in endings.items():
        if count > 1:
            problems.append(f"job {job_id} attempt {attempt} ended {count} times")
    for job_id, count in completions.items():
        if count > 1:
            problems.append(f"job {job_id} has {count} accepted results")

    # The executions' own records: whose result stood, and no two holders of one lock at once.
    runs = _runs(workdir)
    starts = {run["token"]: run for run in runs if run["kind"] == "start"}
    ends = {run["token"]: run for run in runs if run["kind"] == "end"}
    executions = Counter((run["job"], run["attempt"]) for run in starts.values())
    reruns = sum(1 for count in executions.values() if count > 1)
    standing: dict[str, str] = {}
    for job in jobs.values():
        if JobStatus(job.status) is JobStatus.COMPLETED and "token" in job.result.fields:
            token = job.result["token"]
            standing[job.id] = str(token)
            if token not in ends:
                problems.append(f"job {job.id}: its result {token} is from no finished execution")
    held: dict[str, list[tuple[float, float, str]]] = {}
    for token, start in starts.items():
        end = ends.get(token)
        if not start.get("lock") or end is None or standing.get(start["job"]) != token:
            continue
        held.setdefault(start["lock"], []).append((start["t"], end["t"], start["job"]))
    for resource, spans in held.items():
        spans.sort()
        # A sweep: each span against the one that reaches furthest among those before it.
        reach, reacher = float("-inf"), ""
        for span_start, span_end, job_id in spans:
            if span_start < reach and job_id != reacher:
                problems.append(f"lock {resource} held by {reacher} and {job_id} at once")
            if span_end > reach:
                reach, reacher = span_end, job_id
    statuses = Counter(JobStatus(job.status).name for job in jobs.values())
    result.figures.update(
        jobs=len(jobs),
        acknowledged_submits=len(ledger.submitted),
        cancels=len(ledger.cancelled),
        retries=len(ledger.retried),
        events=len(sequences),
        executions=len(starts),
        attempts_run_twice=reruns,
        statuses=dict(statuses),
        client_errors=dict(ledger.errors),
    )
    if ledger.error_samples:
        result.figures["client_error_samples"] = ledger.error_samples


def _status(job: Any) -> str:
    return "missing" if job is None else JobStatus(job.status).name


@contextlib.contextmanager
def workdir_for(path: str | None) -> Iterator[Path]:
    if path:
        Path(path).mkdir(parents=True, exist_ok=True)
        yield Path(path)
        return
    with tempfile.TemporaryDirectory(prefix="jobwarden-chaos-") as directory:
        yield Path(directory)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs of the leader in a row")
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--pg-restarts", type=int, default=2)
    parser.add_argument("--standbys", type=int, default=2, help="standby stops and restarts")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--rate", type=float, default=30.0, help="jobs submitted per second")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--workdir", help="keep the logs here (default: a temporary directory)")
    args = parser.parse_args(argv)
    reason = PrivatePostgres.unavailable()
    if reason:
        print(f"chaos: {reason}", file=sys.stderr)
        return 2
    with workdir_for(args.workdir) as workdir:
        result = asyncio.run(
            run_chaos(
                workdir,
                kills=args.kills,
                partitions=args.partitions,
                pg_restarts=args.pg_restarts,
                standby_restarts=args.standbys,
                workers=args.workers,
                rate=args.rate,
                seed=args.seed,
            )
        )
    print(result.report())
    if result.failovers:
        print(f"failover p50 {statistics.median(result.failovers):.2f}s", file=sys.stderr)
    return 1 if result.problems else 0


if __name__ == "__main__":
    sys.exit(main())
