"""A worker killed with SIGKILL in the middle of its jobs: they time out, and another worker takes
them over from their last finished step (an action that can resume), or they fail LOST (one that
cannot). Real worker processes, a real engine."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from jobwarden.contract import ErrorKind, ExecutionMode, JobEventType, JobStatus
from jobwarden.sdk import JobClient

from tests.conftest import EngineFactory
from tests.support import wait_for_async

ROOT = Path(__file__).resolve().parents[2]
JOBWARDEN = str(Path(sys.executable).with_name("jobwarden"))
TIMEOUTS = {"heartbeat": 1.0, "takeover": 1.5}


class WorkerProcess:
    def __init__(self, address: str, name: str, crash_dir: Path) -> None:
        self.name = name
        self.log = crash_dir / f"{name}.log"
        env = {**os.environ, "CRASH_DIR": str(crash_dir), "PYTHONPATH": str(ROOT)}
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [
                    *(JOBWARDEN, "worker", "tests.reliability.crash_executors:ALL"),
                    *("--engine", address, "--name", name, "--capacity", "8"),
                ],
                env=env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)


@pytest.fixture
def crash_dir(tmp_path: Path) -> Path:
    (tmp_path / "hold").touch()
    return tmp_path


@pytest.fixture
def processes() -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.kill()


def trace(crash_dir: Path) -> list[tuple[str, str, int]]:
    path = crash_dir / "trace"
    lines = path.read_text().split("\n") if path.exists() else []
    return [(j, s, int(p)) for j, s, p in (line.split() for line in lines if line.strip())]


async def test_jobs_of_a_killed_worker_are_taken_over_or_lost(
    engine_factory: EngineFactory, crash_dir: Path, processes: list[WorkerProcess]
) -> None:
    engine = await engine_factory(heartbeat_interval=0.5)
    async with JobClient(engine.address) as client:
        first = WorkerProcess(engine.address, "first", crash_dir)
        processes.append(first)
        resumable = [
            (await client.submit("crash-resumable", {"n": n}, timeouts=TIMEOUTS)).id for n in range(3)
        ]
        plain = [(await client.submit("crash-plain", {"n": n}, timeouts=TIMEOUTS)).id for n in range(2)]

        async def all_in_transcode() -> bool:
            steps = {(j, s) for j, s, _ in trace(crash_dir)}
            return all((job_id, "transcode") in steps for job_id in resumable + plain)

        await wait_for_async(all_in_transcode, timeout=60, message="every job in its transcode step")
        # Each job's "download" checkpoint is committed before the kill (the resume must skip it).
        for job_id in resumable + plain:

            async def checkpointed(job_id: str = job_id) -> bool:
                return (await client.get(job_id)).checkpoint.step == "download"

            await wait_for_async(checkpointed, timeout=30, message=f"{job_id} checkpointed")
        second = WorkerProcess(engine.address, "second", crash_dir)
        processes.append(second)
        await wait_for_async(
            lambda: _connected(client, "second"), timeout=60, message="the second worker to connect"
        )

        first.kill()
        (crash_dir / "hold").unlink()
        done = {}
        for job_id in resumable + plain:

            async def finished(job_id: str = job_id) -> bool:
                job = await client.get(job_id)
                done[job_id] = job
                return JobStatus(job.status) in (JobStatus.COMPLETED, JobStatus.FAILED)

            await wait_for_async(finished, timeout=60, message=f"{job_id} to finish")

        ran = trace(crash_dir)
        for job_id in resumable:
            job = done[job_id]
            assert job.status == JobStatus.COMPLETED, job
            assert job.attempt == 2
            assert job.mode == ExecutionMode.RESUME
            # "download" ran once, in the first worker; the second resumed after it.
            assert [s for j, s, _ in ran if j == job_id].count("download") == 1
            assert job.result["download_pid"] == first.process.pid
            assert job.result["finished_pid"] == second.process.pid
            statuses = [
                JobStatus(ev.job.status)
                for ev in await client.events(job_id)
                if ev.type in (JobEventType.SUBMITTED, JobEventType.STATUS_CHANGED)
            ]
            assert statuses == [
                JobStatus.QUEUED,
                JobStatus.RUNNING,
                JobStatus.TIMED_OUT,
                JobStatus.RUNNING,
                JobStatus.COMPLETED,
            ]
        for job_id in plain:
            job = done[job_id]
            assert job.status == JobStatus.FAILED, job
            assert job.error.kind == ErrorKind.LOST, job
            assert job.attempt == 1
            # Nobody ran it again: its only steps are the first worker's.
            assert {p for j, _, p in ran if j == job_id} == {first.process.pid}
        print(
            f"worker crash: {len(resumable)} jobs taken over and resumed after their last step, "
            f"{len(plain)} LOST, 0 lost silently"
        )


async def _connected(client: JobClient, name: str) -> bool:
    return any(worker.name == name for worker in await client.workers())
