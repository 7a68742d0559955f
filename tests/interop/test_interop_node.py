"""Other languages on the same API: a Node.js worker and client built from protos/ alone, and buf curl
over server reflection. Run when ``node``/``npm`` are installed; skipped, saying so, otherwise."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from jobwarden.contract import JobStatus
from jobwarden.sdk import JobClient
from jobwarden.wire import struct_to_dict

NODE_DIR = Path(__file__).resolve().parent / "node"
BUF = NODE_DIR / "node_modules" / ".bin" / "buf"

if shutil.which("node") is None or shutil.which("npm") is None:
    pytest.skip("Node.js (node and npm) is not installed: the Node and buf curl interop tests need it",
                allow_module_level=True)  # fmt: skip


@pytest.fixture(scope="module")
def node_modules() -> Path:
    """Install from package-lock.json once per run, unless node_modules is already in sync. (``npm
    install`` rather than ``npm ci``: npm 11's ``ci`` refuses a lock that lists buf's optional packages
    for this platform only, which is what ``npm install`` writes.)"""
    lock = NODE_DIR / "package-lock.json"
    stamp = NODE_DIR / "node_modules" / ".package-lock.json"
    if not stamp.exists() or stamp.stat().st_mtime < lock.stat().st_mtime:
        done = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund"],
            cwd=NODE_DIR,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, f"npm install failed in {NODE_DIR}:\n{done.stdout}\n{done.stderr}"
    return NODE_DIR / "node_modules"


async def run(*command: str, cwd: Path = NODE_DIR, timeout: float = 60) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *command, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.fixture
async def client(engine: Any) -> AsyncIterator[JobClient]:
    async with JobClient(engine.address) as connected:
        yield connected


async def test_node_worker_runs_jobs_with_progress(
    engine: Any, client: JobClient, node_modules: Path
) -> None:
    worker = await asyncio.create_subprocess_exec(
        "node", "worker.js", engine.address, "--jobs", "3",
        cwd=NODE_DIR, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        jobs = [await client.submit("node-echo", {"n": n, "tags": ["a", "b"], "ok": True}) for n in range(3)]
        out, err = await asyncio.wait_for(worker.communicate(), 60)
        assert worker.returncode == 0, err.decode()
        assert json.loads(out.decode().splitlines()[-1]) == {"acknowledged": 3}
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()
    for n, job in enumerate(jobs):
        done = await client.get(job.id)
        assert JobStatus(done.status) is JobStatus.COMPLETED
        assert struct_to_dict(done.result) == {
            "echo": {"n": n, "tags": ["a", "b"], "ok": True},
            "runtime": "node",
        }
        assert done.progress == 100
        assert dict(done.job_variables) == {"runtime": "node"}
        progress = [event.job.progress for event in await client.events(job.id)]
        assert 50 in progress
        assert [line.message for line in await client.logs(job.id)] == [f"node worker ran {job.id}"]


async def test_node_client_submits_and_watches_a_python_worker(
    engine: Any, client: JobClient, node_modules: Path, tmp_path: Path
) -> None:
    from tests.sdk.conftest import WorkerProcess

    worker = WorkerProcess(engine.address, tmp_path / "worker.log")
    try:
        await worker.connected(client)
        code, out, err = await run("node", "client.js", engine.address, "sdk-steps", '{"from": "node"}')
    finally:
        worker.close()
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    submitted, events, final = lines[0], lines[1:-1], lines[-1]
    assert final["id"] == submitted["submitted"]
    assert final["status"] == "JOB_STATUS_COMPLETED"
    assert final["result"]["two"] == 2
    statuses = [event["status"] for event in events]
    assert statuses[0] == "JOB_STATUS_QUEUED"
    assert "JOB_STATUS_RUNNING" in statuses
    assert statuses[-1] == "JOB_STATUS_COMPLETED"
    sequences = [event["sequence"] for event in events]
    assert sequences == sorted(set(sequences))


async def test_buf_curl_submits_a_job_and_reads_it_back_over_reflection(
    engine: Any, client: JobClient, node_modules: Path
) -> None:
    base = f"http://{engine.address}/jobwarden.v1.JobService"
    flags = ["curl", "--protocol", "grpc", "--http2-prior-knowledge"]
    code, out, err = await run(
        str(BUF), *flags, "--data", '{"action": "from-buf", "input": {"size": 3}, "labels": {"via": "buf"}}',
        f"{base}/SubmitJob",
    )  # fmt: skip
    assert code == 0, err
    job_id = json.loads(out)["job"]["id"]
    code, out, err = await run(str(BUF), *flags, "--data", json.dumps({"jobId": job_id}), f"{base}/GetJob")
    assert code == 0, err
    job = json.loads(out)["job"]
    assert (job["id"], job["action"], job["status"]) == (job_id, "from-buf", "JOB_STATUS_QUEUED")
    assert job["input"] == {"size": 3}
    assert job["labels"] == {"via": "buf"}
    assert (await client.get(job_id)).action == "from-buf"


async def test_node_client_puts_a_workflow_and_runs_it_to_its_end(
    engine: Any, client: JobClient, node_modules: Path
) -> None:
    worker = await asyncio.create_subprocess_exec(
        "node", "worker.js", engine.address, "--jobs", "1",
        cwd=NODE_DIR, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        code, out, err = await run("node", "workflow.js", engine.address, "node-flow", '{"n": 7}')
        assert code == 0, err
        await asyncio.wait_for(worker.wait(), 60)
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()
    lines = [json.loads(line) for line in out.splitlines()]
    put, started, final = lines[0], lines[1], lines[-1]
    assert put == {"put": "node-flow", "version": 1, "created": True}
    assert final["id"] == started["run"]
    assert final["work_order_id"] == started["order"]
    assert final["status"] == "WORKFLOW_RUN_STATUS_COMPLETED"
    assert final["steps"] == [
        {"name": "echo", "status": "STEP_STATUS_COMPLETED"},
        {"name": "pause", "status": "STEP_STATUS_COMPLETED"},
    ]
    # The template kept the number's type; the job names its run and step.
    assert final["job"]["result"]["echo"] == {"n": 7, "via": "node"}
    assert final["job"]["workflow_run_id"] == final["id"]
    assert final["job"]["workflow_step"] == "echo"
    # The Python SDK reads the same run.
    run_seen = await client.get_workflow_run(final["id"])
    assert [step.name for step in run_seen.steps] == ["echo", "pause"]
