"""Two jobs never write the same asset at once, even when an executor ignores its stop.

Real executors in a real worker process (``sdk_executors.DeafWriter``, a sync loop of sleeps that never
looks at its cancel, and ``SwallowingWriter``, an async one that swallows ``CancelledError``) hold an
EXCLUSIVE lock on one asset and write their own start and stop times. An execution timeout, or an
operator's cancel with a short grace on both sides, asks them to stop; the lock passes on only once the
executor's code has returned, which the executors' own timestamps show: no two holders ever overlap.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import pytest
from jobwarden.contract import ErrorKind, JobEventType, JobStatus
from jobwarden.sdk import JobClient

from tests.conftest import EngineFactory, EngineHandle

from .conftest import WorkerProcess, read_trace, wait_status, wait_until

S = JobStatus
#: what a worker and the engine wait after a cancel before saying the executor ignores it
GRACE = 0.3
Interval = tuple[str, int, float, float]
Workers = Callable[..., WorkerProcess]


@pytest.fixture
async def engine(engine_factory: EngineFactory) -> EngineHandle:
    return await engine_factory(cancel_grace=GRACE)


def intervals(stamps: Path) -> list[Interval]:
    """(job, attempt, start, stop) of every run the executors recorded, by start."""
    starts: dict[tuple[str, int], float] = {}
    runs: list[Interval] = []
    for line in stamps.read_text().splitlines():
        job_id, attempt, what, when = line.split()
        key = (job_id, int(attempt))
        if what == "start":
            starts[key] = float(when)
        else:
            runs.append((job_id, int(attempt), starts.pop(key), float(when)))
    assert not starts, f"runs that never stopped: {starts}"
    return sorted(runs, key=lambda run: run[2])


def assert_one_writer_at_a_time(runs: list[Interval]) -> None:
    for before, after in itertools.pairwise(runs):
        assert after[2] >= before[3], (
            f"{after[:2]} started {before[3] - after[2]:.3f}s before {before[:2]} stopped"
        )


async def lock_notes(client: JobClient, resource: str) -> list[tuple[str, str]]:
    return [
        (holder.job_id, holder.holder_note)
        for entry in await client.locks(resource)
        if entry.resource == resource
        for holder in entry.holders
    ]


def started(stamps: Path, count: int) -> bool:
    return stamps.exists() and stamps.read_text().count(" start ") >= count


@pytest.mark.parametrize("action", ["sdk-deaf-writer", "sdk-swallowing-writer"])
async def test_an_execution_timeout_never_lets_two_writers_overlap(
    client: JobClient, workers: Workers, tmp_path: Path, action: str
) -> None:
    worker = workers("--capacity", "3", "--cancel-grace", str(GRACE))
    await worker.connected(client)
    stamps, trace = tmp_path / "stamps", tmp_path / "trace"
    jobs = [
        await client.submit(
            action,
            {"stamps": str(stamps), "trace": str(trace), "seconds": 1.5},
            locks=["asset:1"],
            timeouts={"execution": 0.3},
        )
        for _ in range(3)
    ]
    first = jobs[0]
    await wait_until(lambda: started(stamps, 1), what="the first writer to start")

    async def noted() -> list[tuple[str, str]]:
        notes = await lock_notes(client, "asset:1")
        return notes if notes and notes[0][1] else []

    assert await wait_until(noted, what="the lock to be noted as held by a stopping job") == [
        (first.id, "held by a KILLED job whose executor has not stopped")
    ]
    assert JobStatus((await client.get(first.id)).status) is S.RUNNING

    for job in jobs:
        done = await wait_status(client, job.id)
        assert JobStatus(done.status) is S.FAILED, done
        assert ErrorKind(done.error.kind) is ErrorKind.KILLED
        assert done.attempt == 1
    runs = intervals(stamps)
    assert [run[0] for run in runs] == [job.id for job in jobs], "each wrote once, in submit order"
    assert_one_writer_at_a_time(runs)
    assert "ignores it, and the job's locks and its slot on this worker stay held" in worker.output()
    if action == "sdk-swallowing-writer":
        assert read_trace(trace).count("swallowed a cancel attempt=1 mode=EXECUTE") == 3


async def test_an_operator_cancel_keeps_the_lock_until_the_executor_returns(
    client: JobClient, workers: Workers, tmp_path: Path
) -> None:
    worker = workers("--capacity", "2", "--cancel-grace", str(GRACE))
    await worker.connected(client)
    stamps = tmp_path / "stamps"
    writing = {"stamps": str(stamps), "seconds": 2.0}
    first = await client.submit("sdk-deaf-writer", writing, locks=["asset:2"])
    second = await client.submit("sdk-deaf-writer", {**writing, "seconds": 0.1}, locks=["asset:2"])
    await wait_until(lambda: started(stamps, 1), what="the first writer to start")
    await wait_status(client, second.id, S.WAITING_FOR_LOCK)
    await client.cancel(first.id, "wrong rendition")

    async def overdue() -> bool:
        return any("has not confirmed within" in e.reason for e in await client.events(first.id))

    await wait_until(overdue, what="the engine's cancel grace to pass")
    assert JobStatus((await client.get(first.id)).status) is S.RUNNING
    assert JobStatus((await client.get(second.id)).status) is S.WAITING_FOR_LOCK
    assert await lock_notes(client, "asset:2") == [
        (first.id, "held by a CANCELLED job whose executor has not stopped")
    ]
    logged = await wait_until(lambda: client.logs(first.id), what="the worker's warning in the job log")
    assert logged[0].level == "WARNING"
    assert "ignores it" in logged[0].message

    cancelled = await wait_status(client, first.id)
    assert JobStatus(cancelled.status) is S.CANCELLED
    assert cancelled.status_reason == "wrong rendition"
    assert JobStatus((await wait_status(client, second.id)).status) is S.COMPLETED
    assert_one_writer_at_a_time(intervals(stamps))


async def test_a_retry_starts_only_after_the_killed_executor_stopped(
    client: JobClient, workers: Workers, tmp_path: Path
) -> None:
    worker = workers("--capacity", "2", "--cancel-grace", str(GRACE))
    await worker.connected(client)
    stamps = tmp_path / "stamps"
    job = await client.submit(
        "sdk-deaf-writer",
        {"stamps": str(stamps), "seconds": 1.5, "retry_seconds": 0.05},
        locks=["asset:3"],
        timeouts={"execution": 0.3},
        retry_policy={"max_attempts": 2, "initial_interval": 0.01},
    )
    done = await wait_status(client, job.id)
    assert JobStatus(done.status) is S.COMPLETED, done
    assert ErrorKind(done.attempts[0].error.kind) is ErrorKind.KILLED
    runs = intervals(stamps)
    assert [(run[0], run[1]) for run in runs] == [(job.id, 1), (job.id, 2)]
    assert_one_writer_at_a_time(runs)
    history = await client.events(job.id)
    requested = [e for e in history if e.type == JobEventType.CANCEL_REQUESTED]
    assert [e.reason for e in requested] == ["execution timeout of 0.3s passed"]


async def test_a_killed_worker_lets_go_at_the_takeover_deadline_never_to_another_worker(
    client: JobClient, workers: Workers, tmp_path: Path
) -> None:
    stamps = tmp_path / "stamps"
    doomed = workers("--capacity", "2", "--cancel-grace", str(GRACE))
    await doomed.connected(client)
    job = await client.submit(
        "sdk-deaf-writer",
        {"stamps": str(stamps), "seconds": 30},
        locks=["asset:4"],
        timeouts={"execution": 0.3, "takeover": 0.5},
    )
    await wait_until(lambda: started(stamps, 1), what="the writer to start")

    async def stopping() -> bool:
        return any(e.type == JobEventType.CANCEL_REQUESTED for e in await client.events(job.id))

    await wait_until(stopping, what="the execution timeout to ask for the stop")
    # Another worker that could resume it is there; the one running it dies.
    other = workers("--capacity", "2")
    await other.connected(client)
    doomed.kill()
    killed = await wait_status(client, job.id)
    assert JobStatus(killed.status) is S.FAILED
    assert ErrorKind(killed.error.kind) is ErrorKind.KILLED
    assert "session was declared dead" in killed.error.message
    assert killed.attempt == 1, "never taken over"
    statuses = [
        JobStatus(e.job.status) for e in await client.events(job.id) if e.type == JobEventType.STATUS_CHANGED
    ]
    assert statuses == [S.RUNNING, S.TIMED_OUT, S.FAILED]


async def test_the_locks_commands_show_a_stopping_holder_and_let_an_admin_release_it(
    engine: EngineHandle, client: JobClient, workers: Workers, tmp_path: Path
) -> None:
    from .test_sdk_cli import jobwarden

    worker = workers("--cancel-grace", str(GRACE))
    await worker.connected(client)
    gate = tmp_path / "gate"
    job = await client.submit(
        "sdk-stubborn",
        {"gate": str(gate), "trace": str(tmp_path / "trace")},
        locks=["asset:9"],
        timeouts={"execution": 0.2},
    )

    async def stopping() -> bool:
        return any(e.type == JobEventType.CANCEL_REQUESTED for e in await client.events(job.id))

    await wait_until(stopping, what="the execution timeout to ask for the stop")
    code, out, err = await jobwarden("locks", "list", "--engine", engine.address)
    assert code == 0, err
    header, row = out.splitlines()
    assert header.split() == ["RESOURCE", "ROLE", "MODE", "HOLDER", "SINCE", "NOTE"]
    assert row.startswith("asset:9")
    assert f"job {job.id}" in row
    assert row.endswith("held by a KILLED job whose executor has not stopped")

    code, out, err = await jobwarden(
        "locks", "release", "--job", job.id, "--reason", "  ", "--engine", engine.address
    )
    assert (code, err.strip()) == (2, "jobwarden locks release: --reason must say why")
    code, out, err = await jobwarden(
        "locks", "release", "--job", job.id, "--reason", "encoder wedged", "--engine", engine.address
    )
    assert code == 0, err
    assert out.startswith(f"{job.id}  FAILED  1 lock(s) released: KILLED: ")
    assert "locks force-released by admin:anonymous@" in out
    assert await client.locks("asset:9") == []
    code, out, err = await jobwarden(
        "locks", "release", "--job", job.id, "--reason", "again", "--engine", engine.address
    )
    assert code == 1
    assert "already FAILED: it holds no locks" in err
    gate.touch()
