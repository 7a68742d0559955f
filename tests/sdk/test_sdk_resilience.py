"""Workers that die, lose the network, drain, or go quiet: jobs resume, stay, move or time out."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from pathlib import Path

from jobwarden.contract import ErrorKind, ExecutionMode, JobStatus
from jobwarden.sdk import JobClient
from jobwarden.wire import struct_to_dict

from .conftest import TcpProxy, WorkerProcess, read_trace, wait_status, wait_until

Workers = Callable[..., WorkerProcess]

#: a dead worker's jobs time out after 1 s and are taken over 2 s later
FAST_TAKEOVER = {"heartbeat": 1.0, "takeover": 2.0}


async def _at_step_two(client: JobClient, job_id: str) -> bool:
    job = await client.get(job_id)
    return JobStatus(job.status) is JobStatus.RUNNING and [
        s.name for s in job.checkpoint.completed_steps
    ] == ["one"]


async def test_steps_are_skipped_on_resume_after_the_worker_was_killed(
    client: JobClient, workers: Workers, tmp_path: Path
) -> None:
    first = workers()
    await first.connected(client)
    trace, gate = tmp_path / "trace", tmp_path / "gate"
    job = await client.submit("sdk-steps", {"trace": str(trace), "gate": str(gate)}, timeouts=FAST_TAKEOVER)
    await wait_until(lambda: _at_step_two(client, job.id), what="step one to be checkpointed")
    # The second worker is up before the first dies: the takeover window is short.
    second = workers()
    await second.connected(client)
    first.kill()
    gate.touch()
    done = await wait_status(client, job.id, within=60)
    assert JobStatus(done.status) is JobStatus.COMPLETED, done
    result = struct_to_dict(done.result)
    # Step one's data is the one the killed worker recorded; steps two and three ran in the new one.
    assert result["one"] == {"pid": first.pid}
    assert result["three"] == f"{first.pid}-2"
    assert ExecutionMode(done.mode) is ExecutionMode.RESUME
    lines = read_trace(trace)
    assert lines[:3] == [
        "execute attempt=1 mode=EXECUTE",
        "step one attempt=1 mode=EXECUTE",
        "step two attempt=1 mode=EXECUTE",
    ]
    resumed = lines[3:]
    attempt = done.attempt
    assert resumed == [
        f"resume after=one attempt={attempt} mode=RESUME",
        f"execute attempt={attempt} mode=RESUME",
        f"step two attempt={attempt} mode=RESUME",
        f"step three attempt={attempt} mode=RESUME",
    ]


async def test_a_worker_that_loses_its_connection_keeps_its_jobs(
    client: JobClient, workers: Workers, proxy: tuple[TcpProxy, str], tmp_path: Path
) -> None:
    relay, address = proxy
    worker = workers(address=address)
    await worker.connected(client)
    before = {w.name: w.id for w in await client.workers()}[worker.name]
    trace, gate = tmp_path / "trace", tmp_path / "gate"
    job = await client.submit("sdk-steps", {"trace": str(trace), "gate": str(gate)})
    await wait_until(lambda: _at_step_two(client, job.id), what="step one to be checkpointed")

    relay.cut()
    await wait_until(lambda: relay.connections >= 2, what="the worker to reconnect")
    await worker.connected(client)
    gate.touch()
    done = await wait_status(client, job.id)
    assert JobStatus(done.status) is JobStatus.COMPLETED, done
    # The same attempt finished where it ran: nothing was resumed or run twice.
    assert done.attempt == 1
    assert read_trace(trace) == [
        "execute attempt=1 mode=EXECUTE",
        "step one attempt=1 mode=EXECUTE",
        "step two attempt=1 mode=EXECUTE",
        "step three attempt=1 mode=EXECUTE",
    ]
    after = {w.name: w.id for w in await client.workers()}[worker.name]
    assert after == before
    assert "reconnecting" in worker.output()


async def test_sigterm_drains_finishing_running_jobs_and_taking_no_new_ones(
    client: JobClient, workers: Workers, tmp_path: Path
) -> None:
    worker = workers()
    await worker.connected(client)
    trace, gate = tmp_path / "trace", tmp_path / "gate"
    running = await client.submit("sdk-sleep", {"seconds": 0, "gate": str(gate), "trace": str(trace)})
    await wait_until(lambda: trace.exists(), what="the job to start")

    worker.signal(signal.SIGTERM)

    async def draining() -> bool:
        return any(w.name == worker.name and w.draining for w in await client.workers())

    await wait_until(draining, what="the worker to tell the engine it drains")
    waiting = await client.submit("sdk-noop")
    gate.touch()
    done = await wait_status(client, running.id)
    assert JobStatus(done.status) is JobStatus.COMPLETED
    assert await worker.exited() == 0
    assert JobStatus((await client.get(waiting.id)).status) is JobStatus.QUEUED
    assert "stopped after 1 job(s)" in worker.output()


async def test_a_drain_that_times_out_hands_running_jobs_back(
    client: JobClient, workers: Workers, tmp_path: Path
) -> None:
    first = workers("--drain-timeout", "0.5")
    await first.connected(client)
    trace, gate = tmp_path / "trace", tmp_path / "gate"
    job = await client.submit("sdk-steps", {"trace": str(trace), "gate": str(gate)})
    await wait_until(lambda: _at_step_two(client, job.id), what="step one to be checkpointed")
    first.signal(signal.SIGTERM)
    assert await first.exited() == 0
    handed_back = await client.get(job.id)
    assert JobStatus(handed_back.status) in {JobStatus.QUEUED, JobStatus.DELAYED}, handed_back

    second = workers()
    await second.connected(client)
    gate.touch()
    done = await wait_status(client, job.id)
    assert JobStatus(done.status) is JobStatus.COMPLETED, done
    lines = read_trace(trace)
    assert lines.count("step one attempt=1 mode=EXECUTE") == 1
    assert not [line for line in lines[3:] if line.startswith("step one")], lines


async def test_an_executor_without_auto_heartbeat_times_out_when_silent(
    client: JobClient, workers: Workers, tmp_path: Path
) -> None:
    worker = workers()
    await worker.connected(client)
    timeouts = {"heartbeat": 1.0, "takeover": 60.0}
    gate = tmp_path / "gate"
    silent = await client.submit("sdk-silent", {"gate": str(gate)}, timeouts=timeouts)
    vouched = await client.submit("sdk-sleep", {"seconds": 0, "gate": str(gate)}, timeouts=timeouts)
    timed_out = await wait_status(client, silent.id, JobStatus.TIMED_OUT, within=20)
    assert JobStatus(timed_out.status) is JobStatus.TIMED_OUT
    # The worker vouched for the other job all along, with the same 1 s heartbeat timeout.
    events = await client.events(vouched.id)
    assert JobStatus.TIMED_OUT not in {JobStatus(event.job.status) for event in events}
    gate.touch()
    assert JobStatus((await wait_status(client, vouched.id)).status) is JobStatus.COMPLETED


async def test_a_result_lost_on_the_way_is_sent_again_after_the_reconnect(
    client: JobClient, workers: Workers, proxy: tuple[TcpProxy, str], tmp_path: Path
) -> None:
    relay, address = proxy
    worker = workers(address=address)
    await worker.connected(client)
    trace, gate = tmp_path / "trace", tmp_path / "gate"
    job = await client.submit("sdk-steps", {"trace": str(trace), "gate": str(gate)})
    await wait_until(lambda: _at_step_two(client, job.id), what="step one to be checkpointed")
    relay.hold_upstream = True  # what the worker sends from now on is lost
    gate.touch()
    await wait_until(
        lambda: "step three attempt=1 mode=EXECUTE" in read_trace(trace), what="the job to finish"
    )
    assert JobStatus((await client.get(job.id)).status) is not JobStatus.COMPLETED
    relay.hold_upstream = False
    relay.cut()
    done = await wait_status(client, job.id)
    assert JobStatus(done.status) is JobStatus.COMPLETED, done
    assert done.attempt == 1
    assert struct_to_dict(done.result)["three"] == f"{worker.pid}-2"
    assert read_trace(trace).count("step three attempt=1 mode=EXECUTE") == 1


async def test_a_worker_rides_out_an_engine_restart_keeping_its_job(tmp_path: Path) -> None:
    from tests.support import EngineProcess

    engine = EngineProcess(f"sqlite:///{tmp_path / 'jw.db'}", log_path=tmp_path / "engine.log").start()
    worker = WorkerProcess(engine.address, tmp_path / "worker.log")
    try:
        async with JobClient(engine.address) as client:
            await worker.connected(client)
            trace, gate = tmp_path / "trace", tmp_path / "gate"
            job = await client.submit("sdk-steps", {"trace": str(trace), "gate": str(gate)})
            await wait_until(lambda: _at_step_two(client, job.id), what="step one to be checkpointed")
        engine.kill()
        await asyncio.to_thread(engine.start)
        async with JobClient(engine.address) as client:
            await worker.connected(client)
            gate.touch()
            done = await wait_status(client, job.id)
        assert JobStatus(done.status) is JobStatus.COMPLETED, done
        assert done.attempt == 1
        assert read_trace(trace).count("step one attempt=1 mode=EXECUTE") == 1
        assert "lost the engine" in worker.output()
    finally:
        worker.close()
        engine.kill()


async def test_heartbeat_extends_the_execution_deadline(client: JobClient, workers: Workers) -> None:
    worker = workers()
    await worker.connected(client)
    timeouts = {"execution": 1.0}
    extended = await client.submit("sdk-extend", {"extend": True}, timeouts=timeouts)
    killed = await client.submit("sdk-extend", {"extend": False}, timeouts=timeouts)
    done = await wait_status(client, extended.id)
    assert JobStatus(done.status) is JobStatus.COMPLETED, done
    assert struct_to_dict(done.result) == {"value": "outlived the first deadline"}
    failed = await wait_status(client, killed.id)
    assert JobStatus(failed.status) is JobStatus.FAILED, failed
    assert ErrorKind(failed.error.kind) is ErrorKind.KILLED
