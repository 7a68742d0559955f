"""The Work orders screen and the run view, against the canned engine (fixed orders and runs).

The canned engine serves two work orders of the media workflow: one whose run is midway (a
transcode running, another waiting for a lock) and one whose run ended (publish FAILED, its failure
edge to notify taken). The real engine's tests are in test_workflows_live.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from jobwarden.tui import ConsoleApp
from jobwarden.tui.screens import ConfirmScreen, JobDetailScreen, RunScreen, WorkOrdersScreen
from jobwarden.tui.widgets import StepGraph
from jobwarden.v1 import workflow_pb2
from textual.pilot import Pilot
from textual.widgets import DataTable

from tests.tui.canned import NOW, CannedThread
from tests.tui.helpers import settle, until
from tests.tui.workflow_runs import (
    DONE_ORDER_ID,
    DONE_RUN_ID,
    ORDER_ID,
    RUN_ID,
    job_id,
    media_order,
    media_run_failed,
    media_run_midway,
)

pytestmark = pytest.mark.usefixtures("utc")
Snap = Callable[..., bool]


@pytest.fixture
def orders(canned: CannedThread) -> CannedThread:
    engine = canned.engine
    canned.run(
        lambda: engine.add_order(
            media_order(ORDER_ID, correlation_id="asset-42", age=200), [media_run_midway()]
        )
    )
    canned.run(
        lambda: engine.add_order(
            media_order(DONE_ORDER_ID, correlation_id="asset-41", age=60),
            [media_run_failed(DONE_ORDER_ID, DONE_RUN_ID)],
        )
    )
    return canned


def console(canned: CannedThread, **options: Any) -> ConsoleApp:
    return ConsoleApp(canned.address, clock=lambda: NOW, engine_label="canned engine", **options)


def orders_screen(app: ConsoleApp) -> WorkOrdersScreen:
    screen = app.screen
    assert isinstance(screen, WorkOrdersScreen)
    return screen


async def listed(pilot: Pilot[Any]) -> None:
    app = pilot.app
    assert isinstance(app, ConsoleApp)
    await pilot.press("W")
    await until(pilot, lambda: isinstance(app.screen, WorkOrdersScreen), what="the work orders screen")
    screen = orders_screen(app)
    await until(pilot, lambda: screen.query_one(DataTable).row_count == 2, what="the two work orders")
    # The prefetched runs fill the "now" column.
    table = screen.query_one(DataTable)

    def described() -> bool:
        return all("done" in str(table.get_cell(key, "now")) for key in (ORDER_ID, DONE_ORDER_ID))

    await until(pilot, described, what="what the orders' last runs do")
    await settle(pilot)


async def open_order(pilot: Pilot[Any], order_id: str) -> RunScreen:
    app = pilot.app
    assert isinstance(app, ConsoleApp)
    screen = orders_screen(app)
    table = screen.query_one(DataTable)
    table.move_cursor(row=table.get_row_index(order_id))
    await pilot.press("enter")
    await until(pilot, lambda: isinstance(app.screen, RunScreen), what="the run view")
    run_screen = app.screen
    assert isinstance(run_screen, RunScreen)
    await until(pilot, lambda: run_screen.loads >= 1, what="the work order's runs")
    await pilot.pause()
    return run_screen


def graph_text(screen: RunScreen) -> str:
    return screen.query_one(StepGraph).text()


async def test_the_work_orders_are_listed_newest_first_with_what_they_do(orders: CannedThread) -> None:
    app = console(orders)
    async with app.run_test(size=(140, 36)) as pilot:
        await listed(pilot)
        table = orders_screen(app).query_one(DataTable)
        keys = [str(row.value) for row in table.rows]
        assert [table.get_row_index(key) for key in (ORDER_ID, DONE_ORDER_ID)] == [0, 1]
        assert keys
        now_cell = str(table.get_cell(ORDER_ID, "now"))
        assert "2/7 done" in now_cell
        assert "transcode_1080p 62%, transcode_480p (WAIT LOCK)" in now_cell
        assert "publish failed (handled)" in str(table.get_cell(DONE_ORDER_ID, "now"))
        assert "RUNNING" in str(table.get_cell(ORDER_ID, "status"))
        assert "COMPLETED" in str(table.get_cell(DONE_ORDER_ID, "status"))


async def test_the_status_filter_and_the_words_filter_narrow_the_list(orders: CannedThread) -> None:
    app = console(orders)
    async with app.run_test(size=(140, 36)) as pilot:
        await listed(pilot)
        screen = orders_screen(app)
        table = screen.query_one(DataTable)
        await pilot.press("s")  # RUNNING only
        await pilot.pause()
        assert [str(key.value) for key in table.rows] == [ORDER_ID]
        for _ in range(5):
            await pilot.press("s")  # round to every status
        await pilot.pause()
        assert table.row_count == 2
        from jobwarden.tui import JobFilter

        app.set_filter(JobFilter("asset-41"))
        await pilot.pause()
        assert [str(key.value) for key in table.rows] == [DONE_ORDER_ID]


async def test_enter_draws_the_run_and_enter_on_a_step_opens_its_job(orders: CannedThread) -> None:
    app = console(orders)
    async with app.run_test(size=(140, 40)) as pilot:
        await listed(pilot)
        screen = await open_order(pilot, ORDER_ID)
        text = graph_text(screen)
        assert "transcode_1080p" in text
        assert "62%" in text
        graph = screen.query_one(StepGraph)
        assert graph.selected == "ingest"
        await pilot.press("down", "left")
        assert graph.selected == "transcode_1080p"
        panel = str(screen.query_one("#run-step").render())
        assert "transcode_1080p" in panel
        assert "in: ingest (success, taken)" in panel
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, JobDetailScreen), what="the step's job")
        detail = app.screen
        assert isinstance(detail, JobDetailScreen)
        assert detail.job_id == job_id(0xA2)
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is screen, what="back to the run")


async def test_the_run_view_follows_the_workflow_events(orders: CannedThread) -> None:
    app = console(orders)
    async with app.run_test(size=(140, 40)) as pilot:
        await listed(pilot)
        screen = await open_order(pilot, ORDER_ID)
        run = media_run_midway()
        for step in run.steps:
            if step.name == "transcode_1080p":
                step.progress = 91
        engine = orders.engine
        orders.run(lambda: engine.push_run(run, "transcode_1080p"))
        await until(pilot, lambda: "91%" in graph_text(screen), what="the new progress drawn")


async def test_rerun_from_the_selected_step_asks_then_retries_from_it(orders: CannedThread) -> None:
    app = console(orders)
    async with app.run_test(size=(140, 40)) as pilot:
        await listed(pilot)
        screen = await open_order(pilot, DONE_ORDER_ID)
        graph = screen.query_one(StepGraph)
        assert graph.select("publish")
        await pilot.press("R")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
        await pilot.press("enter")  # Keep is focused: nothing happens
        await until(pilot, lambda: app.screen is screen, what="the run view again")
        assert orders.engine.calls == []
        await pilot.press("R")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
        await pilot.press("right", "enter")
        await until(pilot, lambda: orders.engine.calls != [], what="the retry call")
        assert orders.engine.calls == [("retry_order", f"{DONE_ORDER_ID}@publish")]
        # The new run is read and drawn, since the last run was on screen.
        await until(pilot, lambda: len(screen.runs) == 2 and screen.index == 1, what="the new run")
        assert "rerun from publish" in str(screen.query_one("#run-summary").render())


async def test_cancel_asks_and_cancels_a_running_run_only(orders: CannedThread) -> None:
    app = console(orders)
    async with app.run_test(size=(140, 40)) as pilot:
        await listed(pilot)
        screen = await open_order(pilot, ORDER_ID)
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
        await pilot.press("right", "enter")
        await until(pilot, lambda: orders.engine.calls != [], what="the cancel call")
        assert orders.engine.calls == [("cancel_run", RUN_ID)]
        await until(
            pilot,
            lambda: (
                screen.run is not None and screen.run.status == workflow_pb2.WORKFLOW_RUN_STATUS_CANCELLED
            ),
            what="the run CANCELLED",
        )
        # A finished run is not cancelled again: the console says why, and calls nothing.
        await pilot.press("c")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen)
        assert orders.engine.calls == [("cancel_run", RUN_ID)]


async def test_a_running_work_order_is_not_retried(orders: CannedThread) -> None:
    app = console(orders)
    async with app.run_test(size=(140, 36)) as pilot:
        await listed(pilot)
        await pilot.press("r")  # the cursor is on the running order
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen)
        assert orders.engine.calls == []


async def test_read_only_refuses_retry_rerun_and_cancel(orders: CannedThread) -> None:
    app = console(orders, read_only=True)
    async with app.run_test(size=(140, 40)) as pilot:
        await listed(pilot)
        screen = await open_order(pilot, DONE_ORDER_ID)
        for key in ("R", "r", "c"):
            await pilot.press(key)
            await pilot.pause()
            assert app.screen is screen
        assert orders.engine.calls == []
        assert any("read-only" in str(note.message) for note in app._notifications)


async def test_an_unknown_work_order_says_so(orders: CannedThread) -> None:
    app = console(orders)
    async with app.run_test(size=(140, 40)) as pilot:
        await listed(pilot)
        screen = RunScreen("0193a100-0000-7000-8000-00000000ffff")
        app.push_screen(screen)
        await until(pilot, lambda: bool(screen.error), what="the engine's refusal")
        assert "NOT_FOUND" in screen.error or "no work order" in screen.error
        assert "Cannot read work order" in screen.query_one(StepGraph).text()


# -- pictures ---------------------------------------------------------------------------------


def run_view(order_id: str, *keys: str) -> Callable[[Pilot[Any]], Any]:
    async def steps(pilot: Pilot[Any]) -> None:
        await listed(pilot)
        await open_order(pilot, order_id)
        await pilot.press(*keys)
        await pilot.pause()

    return steps


@pytest.mark.parametrize("size", [(80, 24), (140, 36)], ids=["80x24", "140x36"])
def test_work_orders_snapshot(orders: CannedThread, snap_compare: Snap, size: tuple[int, int]) -> None:
    assert snap_compare(console(orders), terminal_size=size, run_before=listed)


@pytest.mark.parametrize("size", [(80, 24), (160, 45)], ids=["80x24", "160x45"])
def test_run_view_snapshot(orders: CannedThread, snap_compare: Snap, size: tuple[int, int]) -> None:
    assert snap_compare(console(orders), terminal_size=size, run_before=run_view(ORDER_ID, "down"))


def test_failed_run_view_snapshot(orders: CannedThread, snap_compare: Snap) -> None:
    assert snap_compare(
        console(orders), terminal_size=(120, 45), run_before=run_view(DONE_ORDER_ID, "down", "down", "down")
    )
