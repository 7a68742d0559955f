"""Workflow runs made by hand for the console's graph tests: the media workflow in a fixed state,
and big graphs (a 1,000-step fan-out, a 1,000-step chain). Times are relative to ``canned.T0``."""

from __future__ import annotations

from collections.abc import Iterable
from itertools import pairwise

from jobwarden.v1 import job_pb2, workflow_pb2

from tests.tui.canned import ts

S = workflow_pb2.StepStatus
SUCCESS = workflow_pb2.EDGE_KIND_SUCCESS
FAILURE = workflow_pb2.EDGE_KIND_FAILURE
ALWAYS = workflow_pb2.EDGE_KIND_ALWAYS

MEDIA_STEPS = (
    "ingest",
    "transcode_1080p",
    "transcode_720p",
    "transcode_480p",
    "package",
    "publish",
    "notify",
)
TRANSCODES = MEDIA_STEPS[1:4]
#: ingest fans out to three transcodes, which join into package, then publish; a failure of
#: package or publish goes to notify
MEDIA_EDGES: tuple[tuple[str, str, int], ...] = (
    *(("ingest", name, SUCCESS) for name in TRANSCODES),
    *((name, "package", SUCCESS) for name in TRANSCODES),
    ("package", "publish", SUCCESS),
    ("package", "notify", FAILURE),
    ("publish", "notify", FAILURE),
)
ORDER_ID = "0193a100-0000-7000-8000-00000000a001"
RUN_ID = "0193a100-0000-7000-8000-00000000b001"


def job_id(number: int) -> str:
    return f"0193a000-0000-7000-8000-{number:012x}"


def media_definition() -> workflow_pb2.WorkflowDefinition:
    return workflow_pb2.WorkflowDefinition(
        name="media-publish",
        version=1,
        steps=[
            workflow_pb2.WorkflowStep(name=name, action=workflow_pb2.ActionStep(action=name.split("_")[0]))
            for name in MEDIA_STEPS
        ],
        edges=[
            workflow_pb2.WorkflowEdge(
                source=source, target=target, kind=workflow_pb2.EdgeKind.ValueType(kind)
            )
            for source, target, kind in MEDIA_EDGES
        ],
    )


def step(name: str, status: int, **fields: object) -> workflow_pb2.StepRun:
    return workflow_pb2.StepRun(name=name, status=status, **fields)  # type: ignore[arg-type]


def make_run(
    steps: Iterable[workflow_pb2.StepRun],
    edges: Iterable[tuple[str, str, int, bool, bool]],
    *,
    status: int = workflow_pb2.WORKFLOW_RUN_STATUS_RUNNING,
    run_id: str = RUN_ID,
    order_id: str = ORDER_ID,
    number: int = 1,
) -> workflow_pb2.WorkflowRun:
    return workflow_pb2.WorkflowRun(
        id=run_id,
        work_order_id=order_id,
        workflow="media-publish",
        version=1,
        number=number,
        status=workflow_pb2.WorkflowRunStatus.ValueType(status),
        steps=list(steps),
        edges=[
            workflow_pb2.EdgeRun(
                source=source,
                target=target,
                kind=workflow_pb2.EdgeKind.ValueType(kind),
                decided=decided,
                taken=taken,
            )
            for source, target, kind, decided, taken in edges
        ],
        created_at=ts(100),
    )


def media_run_midway(order_id: str = ORDER_ID, run_id: str = RUN_ID) -> workflow_pb2.WorkflowRun:
    """Ingest done; the 1080p transcode running at 62 %, 720p done, 480p waiting for a lock."""
    steps = [
        step("ingest", S.Value("STEP_STATUS_COMPLETED"), job_id=job_id(0xA1), started_at=ts(100),
             finished_at=ts(112), attempt=1),
        step("transcode_1080p", S.Value("STEP_STATUS_RUNNING"), job_id=job_id(0xA2),
             job_status=job_pb2.JOB_STATUS_RUNNING, progress=62, message="encoding", started_at=ts(112),
             attempt=1),
        step("transcode_720p", S.Value("STEP_STATUS_COMPLETED"), job_id=job_id(0xA3), started_at=ts(112),
             finished_at=ts(150), attempt=1),
        step("transcode_480p", S.Value("STEP_STATUS_RUNNING"), job_id=job_id(0xA4),
             job_status=job_pb2.JOB_STATUS_WAITING_FOR_LOCK, started_at=ts(112), attempt=1),
        step("package", S.Value("STEP_STATUS_PENDING")),
        step("publish", S.Value("STEP_STATUS_PENDING")),
        step("notify", S.Value("STEP_STATUS_PENDING")),
    ]  # fmt: skip
    edges = [
        (source, target, kind, source in ("ingest", "transcode_720p"), source in ("ingest", "transcode_720p"))
        for source, target, kind in MEDIA_EDGES
    ]
    return make_run(steps, edges, order_id=order_id, run_id=run_id)


def media_run_failed(order_id: str = ORDER_ID, run_id: str = RUN_ID) -> workflow_pb2.WorkflowRun:
    """Every transcode done, package done, publish FAILED and its failure edge taken to notify."""
    finished = {name: ts(112 + 30) for name in TRANSCODES}
    steps = [
        step("ingest", S.Value("STEP_STATUS_COMPLETED"), job_id=job_id(0xB1), started_at=ts(100),
             finished_at=ts(112)),
        *(step(name, S.Value("STEP_STATUS_COMPLETED"), job_id=job_id(0xB2 + index), started_at=ts(112),
               finished_at=finished[name]) for index, name in enumerate(TRANSCODES)),
        step("package", S.Value("STEP_STATUS_COMPLETED"), job_id=job_id(0xB5), started_at=ts(142),
             finished_at=ts(160)),
        step("publish", S.Value("STEP_STATUS_FAILED"), job_id=job_id(0xB6), started_at=ts(160),
             finished_at=ts(171), attempt=3,
             error=workflow_pb2.WorkflowError(step="publish", message="CDN refused the upload (HTTP 503)")),
        step("notify", S.Value("STEP_STATUS_COMPLETED"), job_id=job_id(0xB7), started_at=ts(171),
             finished_at=ts(172)),
    ]  # fmt: skip
    edges = []
    for source, target, kind in MEDIA_EDGES:
        taken = (source, kind) != ("package", FAILURE) and (source, kind) != ("publish", SUCCESS)
        edges.append((source, target, kind, True, taken))
    return make_run(
        steps, edges, status=workflow_pb2.WORKFLOW_RUN_STATUS_COMPLETED, order_id=order_id, run_id=run_id
    )


#: a second work order, whose run ended (publish failed, notify ran)
DONE_ORDER_ID = "0193a100-0000-7000-8000-00000000a000"
DONE_RUN_ID = "0193a100-0000-7000-8000-00000000b000"


def media_order(order_id: str, *, correlation_id: str = "", age: float = 100) -> workflow_pb2.WorkOrder:
    return workflow_pb2.WorkOrder(
        id=order_id,
        workflow="media-publish",
        version=1,
        created_at=ts(age),
        correlation_id=correlation_id,
        labels={"asset": "42"},
    )


def fan_out_run(width: int = 1000) -> workflow_pb2.WorkflowRun:
    """``start`` fans out to ``width`` steps that join into ``end``; a few of them run or failed."""
    names = [f"part_{index:04d}" for index in range(width)]
    statuses = {5: "STEP_STATUS_RUNNING", 700: "STEP_STATUS_FAILED", 999: "STEP_STATUS_RUNNING"}
    steps = [step("start", S.Value("STEP_STATUS_COMPLETED"))]
    steps += [
        step(name, S.Value(statuses.get(index, "STEP_STATUS_COMPLETED")), progress=40)
        for index, name in enumerate(names)
    ]
    steps.append(step("end", S.Value("STEP_STATUS_PENDING")))
    edges = [("start", name, SUCCESS, True, True) for name in names]
    edges += [(name, "end", SUCCESS, False, False) for name in names]
    return make_run(steps, edges)


def chain_run(length: int = 1000) -> workflow_pb2.WorkflowRun:
    names = [f"step_{index:04d}" for index in range(length)]
    steps = [step(name, S.Value("STEP_STATUS_PENDING")) for name in names]
    edges = [(a, b, SUCCESS, False, False) for a, b in pairwise(names)]
    return make_run(steps, edges)
