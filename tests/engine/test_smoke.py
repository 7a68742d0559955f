from __future__ import annotations

from typing import Any

from google.protobuf import struct_pb2
from jobwarden.contract import JobStatus
from jobwarden.v1 import job_service_pb2 as js

from tests.conftest import EngineHandle, Stubs
from tests.support import RawWorker


def struct(d: dict[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(d)
    return s


async def test_submit_run_complete(any_engine: EngineHandle, any_stubs: Stubs) -> None:
    submitted = await any_stubs.jobs.SubmitJob(
        js.SubmitJobRequest(action="transcode", input=struct({"n": 3}))
    )
    assert submitted.job.status == JobStatus.QUEUED
    worker = await RawWorker(any_engine.address, ["transcode"]).connect()
    assignment = await worker.next_assignment()
    assert assignment.job_id == submitted.job.id
    assert assignment.job.input["n"] == 3
    await worker.update(assignment, progress=50, message="half way")
    await worker.complete(assignment, {"ok": True}, job_variables={"k": "v"})
    ack = await worker.next_ack()
    assert ack.accepted
    got = await any_stubs.jobs.GetJob(js.GetJobRequest(job_id=submitted.job.id))
    assert got.job.status == JobStatus.COMPLETED
    assert got.job.progress == 100
    assert got.job.result["ok"] is True
    assert dict(got.job.job_variables) == {"k": "v"}
    events = await any_stubs.jobs.GetJobEvents(js.GetJobEventsRequest(job_id=submitted.job.id))
    assert [e.job.status for e in events.events] == [
        JobStatus.QUEUED,
        JobStatus.RUNNING,
        JobStatus.RUNNING,
        JobStatus.COMPLETED,
    ]
    await worker.close()
