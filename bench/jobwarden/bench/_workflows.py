"""``workflow``: what a workflow step costs.

1. ``jobs`` single no-op jobs (as in ``throughput``): the engine's CPU per job, the yardstick.
2. ``runs`` runs of a linear workflow of ``steps`` no-op steps, started from a client process
   (``StartWorkflow`` each, ``inflight`` at once): runs/s and steps/s from the first start sent to
   the last run COMPLETED, and the engine's CPU per step against a single job's.
3. One run of a ``fanout_steps``-step fan-out/fan-in (a first step, the parallel ones, a join
   that waits for all): that it completes, and how long it takes.
4. ``celery_chains`` Celery chains of ``steps`` no-op tasks (bench/celery/celery_compare.py, Redis
   at 127.0.0.1:6379) in the same run: jobwarden's runs/s against Celery's chains/s. Skipped, with
   why, when Redis, Celery or the script is not there.

The machine is shared: the ratios (per step against per job, jobwarden against Celery) mean more
than the absolute figures.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from jobwarden.contract import TERMINAL_STATUSES
from jobwarden.sdk import JobClient, Workflow
from jobwarden.v1 import workflow_pb2

from ._procs import Agent, Profiler, profiling
from ._progress import Progress
from ._results import ScenarioResult, Target
from ._sizes import WorkflowSizes
from ._target import EngineUnderTest
from ._workload import EngineMeter, Submission, new_action, run_workload, running_workers

__all__ = [
    "CELERY_RATIO_TARGET",
    "STEPS_PER_SECOND_TARGET",
    "STEP_COST_TARGET",
    "fanout_workflow",
    "linear_workflow",
    "run_workflow",
]

#: the issue's targets: steps/s of the linear workflow, a step's engine CPU against a single job's,
#: and jobwarden's runs/s against Celery's chains/s
STEPS_PER_SECOND_TARGET = 2000.0
STEP_COST_TARGET = 1.5
CELERY_RATIO_TARGET = 5.0

_CELERY_SCRIPT = Path(__file__).resolve().parents[2] / "celery" / "celery_compare.py"
_FINISHED = frozenset(
    {
        workflow_pb2.WORKFLOW_RUN_STATUS_COMPLETED,
        workflow_pb2.WORKFLOW_RUN_STATUS_FAILED,
        workflow_pb2.WORKFLOW_RUN_STATUS_CANCELLED,
    }
)
_UNFINISHED = [workflow_pb2.WORKFLOW_RUN_STATUS_RUNNING, workflow_pb2.WORKFLOW_RUN_STATUS_DELAYED]


def linear_workflow(name: str, action: str, steps: int) -> Workflow:
    """``steps`` steps of ``action``, each after the one before."""
    wf = Workflow(name, description=f"bench: {steps} no-op steps in a line")
    wf.chain(*(wf.action(f"s{index}", action) for index in range(steps)))
    return wf


def fanout_workflow(name: str, action: str, steps: int) -> Workflow:
    """A first step, ``steps - 2`` parallel ones after it, and a join after all of them."""
    wf = Workflow(name, description=f"bench: a {steps}-step fan-out and fan-in")
    first = wf.action("first", action)
    middle = [wf.action(f"p{index}", action) for index in range(max(steps - 2, 1))]
    join = wf.action("join", action, join="all")
    first.on_success(*middle)
    for step in middle:
        step.on_success(join)
    return wf


async def run_workflow(
    target: EngineUnderTest,
    sizes: WorkflowSizes,
    progress: Progress,
    profiler: Profiler | None = None,
) -> ScenarioResult:
    result = ScenarioResult("workflow", asdict(sizes))
    action = new_action("workflow")
    async with (
        running_workers(
            target, action, count=sizes.workers, capacity=sizes.capacity, progress=progress
        ) as workers,
        JobClient(target.address, timeout=120) as client,
    ):
        baseline = await run_workload(
            target, action, Submission(sizes.jobs), progress=progress, workers=workers
        )
        linear = linear_workflow(f"{action}-linear", action, sizes.steps)
        await client.put_workflow(linear)
        figures = await _linear_runs(target, client, linear.name, action, sizes, progress, profiler)
        fanout = fanout_workflow(f"{action}-fanout", action, sizes.fanout_steps)
        await client.put_workflow(fanout)
        fan = await _one_run(client, fanout.name, progress, sizes.fanout_steps)
    celery = await _celery_chains(sizes, progress)

    steps_done = sizes.runs * sizes.steps
    seconds = figures["seconds"]
    runs_per_second = sizes.runs / seconds if seconds > 0 else 0.0
    result.add(
        "linear runs",
        runs_per_second,
        "runs/s",
        note=f"{sizes.steps} no-op steps each; first start -> last run ended",
    )
    result.add(
        "linear steps",
        steps_done / seconds if seconds > 0 else 0.0,
        "steps/s",
        target=Target(STEPS_PER_SECOND_TARGET),
        note=f"{sizes.runs} runs x {sizes.steps} steps, {sizes.inflight} starts in flight",
    )
    result.add("runs completed", figures["completed"], "runs", note=f"of {sizes.runs} started")
    job_cost = per_step = None
    if baseline.cpu is not None and figures["cpu_seconds"] is not None:
        job_cost = 1e6 * baseline.cpu.cpu_seconds / max(baseline.jobs, 1)
        per_step = 1e6 * figures["cpu_seconds"] / max(steps_done, 1)
        result.add(
            "engine CPU per job", job_cost, "µs", note=f"{baseline.jobs:,} single no-op jobs, batches of 1000"
        )
        result.add("engine CPU per step", per_step, "µs", note="the linear runs' engine CPU / their steps")
        result.add(
            "step cost / job cost",
            per_step / job_cost if job_cost else float("nan"),
            "x",
            target=Target(STEP_COST_TARGET, at_most=True),
            note="engine CPU, same engine, same workers, measured one after the other",
        )
    result.add("single jobs", baseline.rate, "jobs/s", note="the yardstick's own throughput")
    result.add(
        "fan-out/fan-in run",
        fan["seconds"],
        "s",
        note=f"{sizes.fanout_steps} steps: {fan['status']}, {fan['completed_steps']} steps COMPLETED",
    )
    result.add(
        "fan-out/fan-in completed", 1.0 if fan["status"] == "COMPLETED" else 0.0, "", target=Target(1.0)
    )
    if "chains_per_second" in celery:
        result.add(
            "Celery chains",
            celery["chains_per_second"],
            "chains/s",
            note=f"{celery['chains']} chains of {celery['length']} no-op tasks; Redis broker and "
            f"backend; 1 worker, {celery['pool']} pool, concurrency {celery['concurrency']}",
        )
        result.add(
            "jobwarden / Celery",
            runs_per_second / celery["chains_per_second"],
            "x",
            target=Target(CELERY_RATIO_TARGET),
            note="linear runs/s against chains/s, in the same run",
        )
    result.add(
        "machine busy", figures["machine_busy"], "%", note=f"all {os.cpu_count()} cores, every process"
    )
    result.details.update(
        {
            "baseline": baseline.details(),
            "linear": {k: v for k, v in figures.items() if k != "cpu_seconds"},
            "fanout": fan,
            "celery": celery,
        }
    )
    return result


async def _linear_runs(
    target: EngineUnderTest,
    client: JobClient,
    workflow: str,
    action: str,
    sizes: WorkflowSizes,
    progress: Progress,
    profiler: Profiler | None,
) -> dict[str, Any]:
    before = await target.count(action, *TERMINAL_STATUSES)
    agent = Agent(
        "workflows",
        {"engine": target.address, "workflow": workflow, "runs": sizes.runs, "inflight": sizes.inflight},
    )
    progress.phase(f"starting the client process ({sizes.runs:,} runs)")
    await agent.start()
    async with profiling(profiler):
        meter = EngineMeter(target)
        meter.start()
        steps = sizes.runs * sizes.steps
        progress.phase(f"{sizes.runs:,} runs of {sizes.steps} steps: started -> ended", total=steps)

        async def steps_finished() -> bool:
            done = await target.count(action, *TERMINAL_STATUSES) - before
            progress.update(done)
            return done >= steps

        async def runs_finished() -> bool:
            page = await client.list_work_orders(workflow=workflow, statuses=_UNFINISHED, limit=1)
            return not page.orders

        try:
            await target.wait_until(steps_finished, timeout=900, what=f"{steps} steps to finish")
            last_done = await target.wait_until(
                runs_finished, timeout=120, interval=0.01, what="every run to end"
            )
        except BaseException:
            await agent.kill()
            raise
    cpu, busy, writes = meter.stop()
    commits: dict[str, Any] = {}
    if writes is not None:
        count, rows, seconds = writes
        commits = {
            "commits": count,
            "rows_per_commit": round(rows / count, 1) if count else 0.0,
            "rows_per_step": round(rows / max(sizes.runs * sizes.steps, 1), 2),
            "commit_ms_mean": round(1000 * seconds / count, 1) if count else 0.0,
        }
    started = await agent.result()
    completed = 0
    async for order in client.iter_work_orders(workflow=workflow, statuses=["COMPLETED"]):
        completed += order.run_count > 0
    return {
        "seconds": last_done - started["first_send"],
        "start_seconds": round(started["last_ack"] - started["first_send"], 3),
        "start_latency_seconds": started["start_seconds"],
        "completed": completed,
        "cpu_seconds": cpu.cpu_seconds if cpu is not None else None,
        "engine_cpu_percent": round(cpu.percent, 1) if cpu is not None else None,
        "client_cpu_seconds": round(started["cpu_seconds"], 3),
        "machine_busy": busy,
        **commits,
    }


async def _one_run(client: JobClient, workflow: str, progress: Progress, steps: int) -> dict[str, Any]:
    progress.phase(f"one run of the {steps}-step fan-out/fan-in")
    started_at = time.time()
    started = await client.start_workflow(workflow)
    deadline = time.monotonic() + 600
    run = started.run
    while run.status not in _FINISHED:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the {steps}-step fan-out run {run.id} did not end within 600s")
        await asyncio.sleep(0.05)
        run = await client.get_workflow_run(run.id)
    seconds = time.time() - started_at
    return {
        "run_id": run.id,
        "status": workflow_pb2.WorkflowRunStatus.Name(run.status).removeprefix("WORKFLOW_RUN_STATUS_"),
        "seconds": round(seconds, 3),
        "completed_steps": sum(step.status == workflow_pb2.STEP_STATUS_COMPLETED for step in run.steps),
        "steps_per_second": round(steps / seconds, 1) if seconds > 0 else 0.0,
    }


async def _celery_chains(sizes: WorkflowSizes, progress: Progress) -> dict[str, Any]:
    """Celery's side, through bench/celery/celery_compare.py in a process of its own."""
    if sizes.celery_chains <= 0:
        return {"skipped": "--celery-chains 0"}
    if not _CELERY_SCRIPT.exists():
        return {"skipped": f"{_CELERY_SCRIPT} is not there (a checkout of the repository has it)"}
    progress.phase(f"Celery: {sizes.celery_chains} chains of {sizes.steps} no-op tasks")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(_CELERY_SCRIPT),
        "--chains",
        str(sizes.celery_chains),
        "--length",
        str(sizes.steps),
        "--celery-only",
        "--json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 900)
    if process.returncode != 0:
        return {"skipped": f"celery_compare.py failed: {err.decode()[-600:]}"}
    document = json.loads(out.decode() or "{}")
    if "skipped" in document:
        return {"skipped": document["skipped"]}
    figures: dict[str, Any] = document["rounds"][0]["celery"]
    return figures
