"""How the CLI prints definitions and runs (no engine: messages built here)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from jobwarden.sdk._workflows_cli import definition_text, run_text
from jobwarden.v1 import job_pb2, workflow_pb2
from jobwarden.wire import timestamp

from examples.workflows.media_publish import media_publish


def test_a_definition_reads_a_step_a_line_with_its_edges() -> None:
    definition = media_publish().definition()
    definition.version = 3
    text = definition_text(definition)
    assert "version:     3" in text
    assert "run timeout: 30m" in text
    rows = {line.split()[0]: line for line in text.splitlines()[text.splitlines().index("") + 1 :]}
    assert rows["STEP"].split() == ["STEP", "RUNS", "JOIN", "EDGES"]
    assert "action media.ingest" in rows["ingest"]
    assert "success → transcode_1080p, success → transcode_720p" in rows["ingest"]
    assert "failure → notify" in rows["ingest"]
    assert "failure → notify if context.notify_on_failure == 'yes'" in rows["publish"]
    assert " any" in rows["notify"]


def test_a_run_names_the_failed_step_and_shows_each_step() -> None:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    run = workflow_pb2.WorkflowRun(
        id="run-1",
        number=2,
        workflow="media-publish",
        version=1,
        status=workflow_pb2.WORKFLOW_RUN_STATUS_FAILED,
        rerun_from_step="publish",
        error=workflow_pb2.WorkflowError(step="publish", message="the CDN refused", job_id="job-9"),
    )
    run.steps.add(
        name="ingest",
        status=workflow_pb2.STEP_STATUS_COMPLETED,
        job_id="job-1",
        attempt=1,
        reused_from_run_id="run-0",
        started_at=timestamp(now - timedelta(seconds=90)),
        finished_at=timestamp(now - timedelta(seconds=88.5)),
    )
    run.steps.add(
        name="publish",
        status=workflow_pb2.STEP_STATUS_FAILED,
        job_id="job-9",
        attempt=2,
        started_at=timestamp(now - timedelta(seconds=75)),
        finished_at=timestamp(now),
        error=workflow_pb2.WorkflowError(step="publish", message="the CDN refused"),
    )
    run.steps.add(
        name="encode",
        status=workflow_pb2.STEP_STATUS_RUNNING,
        job_status=job_pb2.JOB_STATUS_WAITING_FOR_LOCK,
        started_at=timestamp(now - timedelta(seconds=5)),
    )
    run.steps.add(name="notify", status=workflow_pb2.STEP_STATUS_SKIPPED)
    lines = run_text(run, now=now).splitlines()
    assert lines[0] == "run 2  run-1  FAILED  media-publish v1  rerun from publish"
    assert lines[1] == "  error: step 'publish': the CDN refused (job job-9)"
    run.error.message = "step 'publish' failed: the CDN refused"
    assert (
        run_text(run, now=now).splitlines()[1]
        == "  error: step 'publish' failed: the CDN refused (job job-9)"
    )
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert rows["STEP"] == ["STEP", "STATUS", "DURATION", "JOB", "ATTEMPT", "NOTE"]
    assert rows["ingest"][:5] == ["ingest", "COMPLETED", "1.5s", "job-1", "1"]
    assert rows["ingest"][5:] == ["reused", "from", "run", "run-0"]
    assert rows["publish"][:5] == ["publish", "FAILED", "1m15s", "job-9", "2"]
    assert rows["encode"][:3] == ["encode", "RUNNING", "5.0s"]
    assert "WAITING_FOR_LOCK" in rows["encode"]
    assert rows["notify"] == ["notify", "SKIPPED", "-", "-", "-"]
