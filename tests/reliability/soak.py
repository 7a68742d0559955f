"""The engine-crash soak: jobs stream in, workers run them, and the engine is killed with SIGKILL at
random moments and restarted, again and again. Then every invariant of ``_harness.check_invariants``
is checked and the figures printed.

CI runs a short version (``test_engine_crash.py``); the long one is a script::

    .venv/bin/python -m tests.reliability.soak --kills 12            # SQLite in a temporary directory
    .venv/bin/python -m tests.reliability.soak --kills 20 --db postgresql+psycopg://...

Every submit is retried with its idempotency key until the engine answers, so every job in the store
must also be one the submitter was told about: a crash may not duplicate a job either.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
from jobwarden.v1 import job_pb2, job_service_pb2_grpc
from jobwarden.v1 import job_service_pb2 as js

from tests.engine.helpers import struct
from tests.reliability._harness import Figures, Ledger, ResilientWorker, check_invariants, wait_all_terminal
from tests.support import EngineProcess, wait_for

ACTION = "soak"
_CHANNEL_OPTIONS = [("grpc.initial_reconnect_backoff_ms", 100), ("grpc.max_reconnect_backoff_ms", 500)]
ENGINE_CONFIG = """
[engine]
heartbeat_interval = "0.5s"
default_takeover_timeout = "3s"
"""


@dataclass
class SoakResult:
    figures: Figures
    kills: int
    seconds: float
    ledger: Ledger

    def report(self) -> str:
        ledger = self.ledger
        return (
            f"soak: {self.kills} engine crashes (SIGKILL) survived in {self.seconds:.0f}s; "
            f"{self.figures.line()}; {ledger.submit_errors} submit calls failed and were retried, "
            f"{ledger.results_sent} results sent, {ledger.refused_acks} refused as stale, "
            f"{ledger.reconnects} worker reconnects"
        )


def _request(rng: random.Random, n: int) -> js.SubmitJobRequest:
    request = js.SubmitJobRequest(action=ACTION, input=struct({"n": n}), idempotency_key=f"soak-{n}")
    if rng.random() < 0.3:
        mode = job_pb2.LOCK_MODE_EXCLUSIVE if rng.random() < 0.5 else job_pb2.LOCK_MODE_SHARED
        request.locks.append(job_pb2.LockRequest(resource=f"asset:{rng.randrange(8)}", mode=mode))
    return request


async def _submitter(
    jobs: job_service_pb2_grpc.JobServiceAsyncStub, ledger: Ledger, rng: random.Random, stop: asyncio.Event
) -> None:
    n = 0
    while not stop.is_set():
        size = rng.choice((1, 1, 1, 5))
        batch = [_request(rng, n + i) for i in range(size)]
        n += size
        # The same request again until the engine answers: the idempotency key makes that safe.
        while True:
            try:
                if size == 1:
                    response = await jobs.SubmitJob(batch[0], timeout=5)
                    ledger.submitted.append(response.job.id)
                else:
                    many = await jobs.SubmitJobs(js.SubmitJobsRequest(jobs=batch), timeout=5)
                    ledger.submitted.extend(r.job.id for r in many.jobs)
                break
            except grpc.aio.AioRpcError:
                ledger.submit_errors += 1
                await asyncio.sleep(0.05)
        await asyncio.sleep(rng.uniform(0.0, 0.03))


async def run_soak(
    workdir: Path,
    *,
    kills: int,
    db_url: str | None = None,
    workers: int = 3,
    seed: int | None = None,
    say: object = print,
) -> SoakResult:
    """Run the soak with ``kills`` engine crashes; returns the figures (problems listed, not raised)."""
    seed = random.randrange(1 << 30) if seed is None else seed
    rng = random.Random(seed)
    log = say if callable(say) else print
    config = workdir / "engine.toml"
    config.write_text(ENGINE_CONFIG)
    engine = EngineProcess(
        db_url or f"sqlite:///{workdir / 'soak.db'}",
        extra_args=("--config", str(config)),
        log_path=workdir / "engine.log",
    )
    await asyncio.to_thread(engine.start)
    started = time.monotonic()
    ledger = Ledger()
    stop = asyncio.Event()
    channel = grpc.aio.insecure_channel(engine.address, options=_CHANNEL_OPTIONS)
    jobs = job_service_pb2_grpc.JobServiceStub(channel)
    fleet = [
        ResilientWorker(engine.address, ACTION, ledger, capacity=4, name=f"w{i}").start()
        for i in range(workers)
    ]
    submitter = asyncio.get_running_loop().create_task(_submitter(jobs, ledger, rng, stop))
    try:
        for kill in range(1, kills + 1):
            # Let work flow (some results acknowledged since the last restart), then kill at a random moment.
            acked = sum(len(v) for v in ledger.acked.values())
            with contextlib.suppress(AssertionError):
                await wait_for(lambda: sum(len(v) for v in ledger.acked.values()) >= acked + 3, timeout=30)  # noqa: B023
            await asyncio.sleep(rng.uniform(0.0, 1.0))
            engine.kill()
            log(
                f"  kill {kill}/{kills}: {len(ledger.submitted)} submits and "
                f"{sum(len(v) for v in ledger.acked.values())} results acknowledged so far"
            )
            await asyncio.sleep(rng.uniform(0.0, 0.3))
            await asyncio.to_thread(engine.start)
        stop.set()
        await asyncio.wait_for(submitter, 60)
        await wait_all_terminal(jobs, timeout=120)
        for worker in fleet:
            await worker.stop()
        figures = await check_invariants(channel, ledger)
        unacknowledged = figures.jobs - len(set(ledger.submitted))
        if unacknowledged:
            figures.problems.append(
                f"{unacknowledged} jobs in the store were never acknowledged (duplicates?)"
            )
        return SoakResult(figures, kills, time.monotonic() - started, ledger)
    finally:
        stop.set()
        submitter.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await submitter
        for worker in fleet:
            await worker.stop()
        await channel.close()
        engine.terminate()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kills", type=int, default=12, help="engine crashes (default 12)")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--db", help="database URL (default: SQLite in a temporary directory)")
    parser.add_argument("--seed", type=int)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="jobwarden-soak-") as tmp:
        result = asyncio.run(
            run_soak(Path(tmp), kills=args.kills, db_url=args.db, workers=args.workers, seed=args.seed)
        )
    print(result.report())
    for problem in result.figures.problems[:50]:
        print("  PROBLEM:", problem)
    return 1 if result.figures.problems else 0


if __name__ == "__main__":
    sys.exit(main())
