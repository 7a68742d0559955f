"""The Work orders screen and the run view against a real engine and a real SDK worker.

The workflow is the demo's media workflow (``jobwarden.tui.demo.media``), put through the API; its
executors here finish at once, except the transcodes, which report 40 % and wait for the test to let
them go (or, when told ``further``, report 70 % first), and publish, which fails the first time (its
failure edge to notify is taken).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from jobwarden.sdk import Executor, JobClient, JobContext, JobFailed, Worker
from jobwarden.tui.demo.media import WORKFLOW, media_workflow
from jobwarden.tui.screens import ConfirmScreen, JobDetailScreen, RunScreen, WorkOrdersScreen
from jobwarden.tui.widgets import StepGraph
from jobwarden.v1 import workflow_pb2
from textual.widgets import DataTable

from tests.conftest import EngineHandle
from tests.tui.helpers import RecordingConsole, until

SIZE = (140, 45)
RUN_STATUS = workflow_pb2.WorkflowRunStatus


class Media:
    """The media executors, counting their calls; the transcodes wait for ``release``."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.release = asyncio.Event()
        #: the transcodes report 70 % (then wait for ``release``)
        self.further = asyncio.Event()

    async def hold(self, ctx: JobContext) -> None:
        """Wait for ``release``; report 70 % if told ``further`` before."""
        waits = [asyncio.ensure_future(event.wait()) for event in (self.release, self.further)]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for wait in waits:
            wait.cancel()
        if not self.release.is_set():
            ctx.progress(70, f"encoding {ctx.input['rendition']}, the second pass")
            await self.release.wait()

    def executors(self) -> list[Executor]:
        media = self

        class Quick(Executor):
            async def execute(self, ctx: JobContext) -> dict[str, Any]:
                media.calls[self.action] += 1
                return {"path": "/in.mov", "file": "/out.mp4", "package": "/pkg.m3u8"}

        class Ingest(Quick):
            action = "media.ingest"

        class Package(Quick):
            action = "media.package"

        class Notify(Quick):
            action = "media.notify"

        class Transcode(Executor):
            action = "media.transcode"

            async def execute(self, ctx: JobContext) -> dict[str, Any]:
                media.calls[self.action] += 1
                ctx.progress(40, f"encoding {ctx.input['rendition']}")
                await media.hold(ctx)
                return {"file": f"/out-{ctx.input['rendition']}.mp4"}

        class Publish(Executor):
            action = "media.publish"

            async def execute(self, ctx: JobContext) -> dict[str, Any]:
                media.calls[self.action] += 1
                if media.calls[self.action] == 1:
                    raise JobFailed("the CDN refused the upload (HTTP 503)", retryable=False)
                return {"url": "https://cdn.example/web/1"}

        return [Ingest(), Transcode(), Package(), Publish(), Notify()]


@pytest.fixture
async def media(engine: EngineHandle) -> AsyncIterator[Media]:
    executors = Media()
    worker = Worker(executors.executors(), engine=engine.address, capacity=20, name="media-test")
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(worker.wait_connected(), 30)
    async with JobClient(engine.address) as client:
        await client.put_workflow(media_workflow())
    yield executors
    executors.release.set()
    worker.stop()
    try:
        await asyncio.wait_for(task, 10)
    except (TimeoutError, Exception):
        task.cancel()


def console(engine: EngineHandle, **options: Any) -> RecordingConsole:
    return RecordingConsole(engine.address, flush_interval=0.1, stats_interval=0.3, **options)


async def start_order(engine: EngineHandle, asset: int, **context: str) -> str:
    async with JobClient(engine.address) as client:
        started = await client.start_workflow(WORKFLOW, {"asset_id": asset}, context=context)
    return started.order.id


async def engine_order(engine: EngineHandle, order_id: str) -> Any:
    async with JobClient(engine.address) as client:
        return await client.get_work_order(order_id)


async def open_run(app: RecordingConsole, pilot: Any, order_id: str) -> RunScreen:
    await pilot.press("W")
    await until(pilot, lambda: isinstance(app.screen, WorkOrdersScreen), what="the work orders screen")
    orders = app.screen
    assert isinstance(orders, WorkOrdersScreen)
    table = orders.query_one(DataTable)
    await until(pilot, lambda: order_id in {str(key.value) for key in table.rows}, what="the work order")
    table.move_cursor(row=table.get_row_index(order_id))
    await pilot.press("enter")
    await until(pilot, lambda: isinstance(app.screen, RunScreen), what="the run view")
    screen = app.screen
    assert isinstance(screen, RunScreen)
    await until(pilot, lambda: screen.loads >= 1, what="the runs read")
    return screen


def text(screen: RunScreen) -> str:
    return screen.query_one(StepGraph).text()


async def test_the_graph_follows_a_live_run_and_reruns_from_the_selected_step(
    engine: EngineHandle, media: Media
) -> None:
    app = console(engine)
    async with app.run_test(size=SIZE) as pilot:
        order_id = await start_order(engine, 7)
        screen = await open_run(app, pilot, order_id)
        # The three transcodes run (at 40 %, from their jobs' live progress) after ingest completed.
        await until(pilot, lambda: text(screen).count("40%") == 3, what="three transcodes at 40 %")
        assert "✓ COMPLETED" in text(screen)
        assert "○ PENDING" in text(screen)
        # Enter on a step opens its job.
        graph = screen.query_one(StepGraph)
        assert graph.select("transcode_720p")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, JobDetailScreen), what="the step's job")
        detail = app.screen
        assert isinstance(detail, JobDetailScreen)
        step_job = next(step.job_id for step in screen.runs[-1].steps if step.name == "transcode_720p")
        assert detail.job_id == step_job
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is screen, what="back to the run")

        media.release.set()
        # publish fails, its failure edge runs notify: a handled failure, the run COMPLETED.
        await until(
            pilot,
            lambda: (
                screen.run is not None
                and screen.run.status == RUN_STATUS.Value("WORKFLOW_RUN_STATUS_COMPLETED")
            ),
            timeout=45,
            what="the run COMPLETED",
        )
        assert "✗ FAILED" in text(screen)
        assert "CDN refused" in text(screen)

        # R on publish: asks, then reruns only publish (the others' results are reused).
        assert graph.select("publish")
        await pilot.press("R")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
        await pilot.press("right", "enter")
        await until(
            pilot, lambda: len(screen.runs) == 2 and screen.index == 1, timeout=45, what="run 2 shown"
        )
        await until(
            pilot,
            lambda: (
                screen.run is not None
                and screen.run.status == RUN_STATUS.Value("WORKFLOW_RUN_STATUS_COMPLETED")
            ),
            timeout=45,
            what="run 2 COMPLETED",
        )
        assert screen.run is not None
        assert screen.run.rerun_from_step == "publish"
        assert media.calls["media.publish"] == 2
        assert media.calls["media.ingest"] == 1
        assert media.calls["media.transcode"] == 3
        assert "reused result" in text(screen)
        # [ goes back to the first run, which is drawn as it ended.
        await pilot.press("left_square_bracket")
        assert screen.index == 0
        assert "CDN refused" in text(screen)
    found = await engine_order(engine, order_id)
    assert [run.number for run in found.runs] == [1, 2]


async def test_cancel_from_the_run_view_reaches_the_engine(engine: EngineHandle, media: Media) -> None:
    app = console(engine)
    async with app.run_test(size=SIZE) as pilot:
        order_id = await start_order(engine, 8)
        screen = await open_run(app, pilot, order_id)
        await until(pilot, lambda: text(screen).count("40%") == 3, what="the transcodes running")
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
        await pilot.press("enter")  # Keep is focused: nothing is cancelled
        await until(pilot, lambda: app.screen is screen, what="the run view again")
        found = await engine_order(engine, order_id)
        assert found.runs[-1].status == RUN_STATUS.Value("WORKFLOW_RUN_STATUS_RUNNING")
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
        await pilot.press("right", "enter")
        await until(
            pilot,
            lambda: (
                screen.run is not None
                and screen.run.status == RUN_STATUS.Value("WORKFLOW_RUN_STATUS_CANCELLED")
            ),
            timeout=45,
            what="the run CANCELLED on screen",
        )
        assert app.noted("Cancelled the run")
    found = await engine_order(engine, order_id)
    assert found.runs[-1].status == RUN_STATUS.Value("WORKFLOW_RUN_STATUS_CANCELLED")


async def test_the_work_orders_screen_lists_live_orders_and_refuses_a_retry_while_running(
    engine: EngineHandle, media: Media
) -> None:
    app = console(engine)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("W")
        await until(pilot, lambda: isinstance(app.screen, WorkOrdersScreen), what="the work orders screen")
        orders = app.screen
        assert isinstance(orders, WorkOrdersScreen)
        table = orders.query_one(DataTable)
        # Started after the screen listed: it arrives by the workflow events.
        order_id = await start_order(engine, 9)
        await until(pilot, lambda: table.row_count == 1, what="the new work order")
        await until(
            pilot,
            lambda: "transcode_1080p 40%" in str(table.get_cell(order_id, "now")),
            what=f"its steps, not {table.get_cell(order_id, 'now')!s}",
        )
        # Progress reported once the screen has settled, with no workflow event after it (the
        # steps stay RUNNING), is drawn too: the screen redraws its running orders by itself.
        flushes = app.flushes
        await until(pilot, lambda: app.flushes >= flushes + 15, what="the screen settled")
        media.further.set()
        await until(
            pilot,
            lambda: "transcode_1080p 70%" in str(table.get_cell(order_id, "now")),
            what=f"the later progress, not {table.get_cell(order_id, 'now')!s}",
        )
        assert "RUNNING" in str(table.get_cell(order_id, "status"))
        await pilot.press("r")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen)
        assert app.noted("retried once its last run ended")
        media.release.set()
        await until(
            pilot,
            lambda: "COMPLETED" in str(table.get_cell(order_id, "status")),
            timeout=45,
            what="COMPLETED",
        )
