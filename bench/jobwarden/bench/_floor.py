"""``floor``: the bare ``grpc.aio`` floor, and jobwarden's one-job-per-call rate as a share of it.

A unary echo server (``grpc.aio``, no interceptor, no serializer: bytes in, the same bytes out) runs
in a process of its own and answers ``calls`` calls, ``inflight`` at once, from a client process:
that is what any Python gRPC server can do on this machine now, and its CPU per call. Then the
engine takes ``jobs`` jobs through the same kind of client, one ``SubmitJob`` per job, ``inflight``
at once, run by W worker processes, end to end. Both run in the same scenario, ``rounds`` times in
turn (echo, then jobwarden), so the ratio compares like with like on a shared machine.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict
from typing import Any

from jobwarden.v1 import job_service_pb2

from ._agent import ECHO_METHOD
from ._procs import Agent, Profiler
from ._progress import Progress
from ._results import ScenarioResult, Target
from ._sizes import FloorSizes
from ._stats import process_cpu_seconds
from ._target import EngineUnderTest
from ._workload import Submission, new_action, run_noop_jobs

__all__ = ["CPU_PER_JOB_TARGET_US", "RATIO_TARGET_PERCENT", "run_floor"]

#: the issue's targets: one job per call at least half the bare unary rate, engine CPU per job
RATIO_TARGET_PERCENT = 50.0
CPU_PER_JOB_TARGET_US = 350.0


async def measure_echo(target: EngineUnderTest, sizes: FloorSizes, progress: Progress) -> dict[str, Any]:
    """The bare server's calls/s and CPU per call (its own process, measured from /proc)."""
    port_file = target.workdir / "echo-port"
    server = await Agent("echo", {"port_file": str(port_file)}).start()
    try:
        address = f"127.0.0.1:{port_file.read_text().strip()}"
        # The same request the engine gets: a SubmitJobRequest's bytes, echoed back.
        payload = job_service_pb2.SubmitJobRequest(action=new_action("floor")).SerializeToString()
        progress.phase(f"bare grpc.aio echo: {sizes.calls:,} calls, {sizes.inflight} in flight")
        client = Agent(
            "unary",
            {"engine": address, "method": ECHO_METHOD, "payload": payload.hex(), "calls": sizes.calls,
             "inflight": sizes.inflight},
        )  # fmt: skip
        await client.start()
        assert server.process is not None
        before = process_cpu_seconds(server.process.pid)
        report = await client.result()
        cpu = process_cpu_seconds(server.process.pid) - before
        await server.send("stop")
        await server.result(timeout=30)
    finally:
        await server.kill()
    report["server_cpu_seconds"] = cpu
    report["server_cpu_us_per_call"] = 1e6 * cpu / max(report["calls"], 1)
    return report


async def run_floor(
    target: EngineUnderTest,
    sizes: FloorSizes,
    progress: Progress,
    profiler: Profiler | None = None,
) -> ScenarioResult:
    result = ScenarioResult("floor", asdict(sizes))
    rounds: list[dict[str, Any]] = []
    for index in range(sizes.rounds):
        echo = await measure_echo(target, sizes, progress)
        # A fresh action (and its workers) each round: the engine counts finished jobs per action.
        # The profile (if asked) covers the first round's jobwarden part: the engine alone.
        figures = await run_noop_jobs(
            target,
            "floor",
            sizes,
            Submission(sizes.jobs, batch=1, inflight=sizes.inflight),
            progress,
            profiler if index == 0 else None,
        )
        per_job = figures.cpu_per_job()
        rounds.append(
            {
                "echo_calls_per_second": round(echo["rate"], 1),
                "echo_server_cpu_us_per_call": round(echo["server_cpu_us_per_call"], 1),
                "echo_latency_seconds": echo["latency_seconds"],
                "jobwarden_jobs_per_second": round(figures.rate, 1),
                "jobwarden_submits_per_second": round(figures.submit_rate, 1),
                "engine_cpu_us_per_job": per_job.get("engine", float("nan")),
                "ratio_percent": round(100 * figures.rate / max(echo["rate"], 1e-9), 1),
                "jobwarden": figures.details(),
            }
        )

    def median(key: str) -> float:
        return float(statistics.median(r[key] for r in rounds))

    several = f"median of {len(rounds)} rounds" if len(rounds) > 1 else "one round"
    result.add(
        "bare grpc.aio unary",
        median("echo_calls_per_second"),
        "calls/s",
        note=f"echo server in its own process, {sizes.inflight} calls in flight; {several}",
    )
    result.add(
        "bare server CPU per call",
        median("echo_server_cpu_us_per_call"),
        "µs",
        note="the echo server's process, every thread",
    )
    result.add(
        "one job per call, end to end",
        median("jobwarden_jobs_per_second"),
        "jobs/s",
        note=f"SubmitJob per job, {sizes.inflight} in flight, first submit -> last COMPLETED",
    )
    result.add(
        "one job per call vs bare unary",
        median("ratio_percent"),
        "%",
        target=Target(RATIO_TARGET_PERCENT),
        note="each round's jobwarden rate / the same round's echo rate; "
        + ", ".join(f"{r['ratio_percent']:g}%" for r in rounds),
    )
    result.add(
        "engine CPU per job",
        median("engine_cpu_us_per_job"),
        "µs",
        target=Target(CPU_PER_JOB_TARGET_US, at_most=True),
        note="the engine's process (bench included), one job per call",
    )
    result.details["rounds"] = rounds
    return result
