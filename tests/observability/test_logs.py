"""``jobwarden serve --log-format json --metrics-port N``: every log line is a JSON object, the job
lines carry ``job_id`` and ``attempt``, and the metrics port serves while the engine does."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import urllib.request
from pathlib import Path

import grpc
from jobwarden.server.observability import JsonFormatter
from jobwarden.v1 import job_service_pb2 as js
from jobwarden.v1 import job_service_pb2_grpc

from tests.engine.helpers import request
from tests.support import EngineProcess, RawWorker, free_port, wait_for


async def test_json_logs_carry_job_id_and_attempt(tmp_path: Path) -> None:
    log = tmp_path / "engine.log"
    metrics_port = free_port()
    engine = EngineProcess(
        f"sqlite:///{tmp_path / 'logs.db'}",
        extra_args=("--log-format", "json", "--metrics-port", str(metrics_port)),
        log_path=log,
    ).start()
    try:
        async with grpc.aio.insecure_channel(engine.address) as channel:
            jobs = job_service_pb2_grpc.JobServiceStub(channel)
            failing = (await jobs.SubmitJob(request("logged"))).job
            worker = await RawWorker(engine.address, ["logged"]).connect()
            a = await worker.next_assignment()
            await worker.fail(a, "bad frame", retryable=False)
            assert (await worker.next_ack()).accepted
            queued = (await jobs.SubmitJob(request("nobody-serves-this"))).job
            await jobs.CancelJob(js.CancelJobRequest(job_id=queued.id, reason="not needed"))
            await worker.close()
        body = await asyncio.to_thread(_get, f"http://127.0.0.1:{metrics_port}/metrics")
        assert 'jobwarden_jobs{action="logged",status="FAILED"} 1.0' in body

        def job_lines() -> list[dict[str, object]]:
            lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
            return [line for line in lines if line.get("logger") == "jobwarden.jobs"]

        found = await wait_for(lambda: len(job_lines()) >= 2, timeout=15, message="the job lines")
        assert found
        entries = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        for entry in entries:
            assert {"time", "level", "logger", "message"} <= set(entry), entry
        by_job = {line["job_id"]: line for line in job_lines()}
        assert by_job[failing.id]["attempt"] == 1
        assert by_job[failing.id]["status"] == "FAILED"
        assert by_job[failing.id]["action"] == "logged"
        assert by_job[queued.id]["status"] == "CANCELLED"
        assert by_job[queued.id]["attempt"] == 0
        assert "not needed" in str(by_job[queued.id]["message"])
    finally:
        engine.terminate()


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


def test_the_json_formatter_keeps_extra_fields_and_exceptions() -> None:
    formatter = JsonFormatter()
    record = logging.LogRecord("jobwarden.test", logging.ERROR, __file__, 1, "job %s broke", ("j1",), None)
    record.job_id = "j1"
    record.attempt = 2
    try:
        raise ValueError("boom")
    except ValueError:
        record.exc_info = sys.exc_info()
    entry = json.loads(formatter.format(record))
    assert entry["message"] == "job j1 broke"
    assert entry["job_id"] == "j1"
    assert entry["attempt"] == 2
    assert entry["level"] == "ERROR"
    assert "ValueError: boom" in entry["exception"]
