"""Pictures of every screen, pinned (pytest-textual-snapshot), against the canned engine.

Fixed terminal size, a clock fixed at ``NOW`` and local time in UTC: the same picture on every
machine. ``pytest --snapshot-update tests/tui/test_snapshots.py`` re-pins them after a deliberate
change; look at the report before you do.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from jobwarden.contract import JobStatus
from jobwarden.tui import ConsoleApp, JobFilter
from jobwarden.tui.screens import ActionsScreen, JobDetailScreen, LocksScreen, WorkersScreen
from textual.pilot import Pilot

from tests.tui.canned import NOW, CannedThread
from tests.tui.helpers import closed_address, settle, until

SIZE = (140, 36)
#: the smallest terminal the console promises to fit, and a large one
SMALL = (80, 24)
LARGE = (160, 45)
FAILED_JOB = "0193a000-0000-7000-8000-000000000009"

pytestmark = pytest.mark.usefixtures("utc")

Snap = Callable[..., bool]


def console(canned: CannedThread, **options: Any) -> ConsoleApp:
    return ConsoleApp(canned.address, clock=lambda: NOW, engine_label="canned engine", **options)


async def loaded(pilot: Pilot[Any]) -> None:
    app = pilot.app
    assert isinstance(app, ConsoleApp)
    await until(pilot, lambda: app.jobs_screen.table.row_count == 12, what="the 12 canned jobs")
    await until(pilot, lambda: app.counts.ready, what="the first counts")
    await settle(pilot)


def then(*steps: Callable[[Pilot[Any]], Awaitable[None]]) -> Callable[[Pilot[Any]], Awaitable[None]]:
    async def run(pilot: Pilot[Any]) -> None:
        await loaded(pilot)
        for step in steps:
            await step(pilot)
        await settle(pilot)

    return run


def keys(*names: str) -> Callable[[Pilot[Any]], Awaitable[None]]:
    async def press(pilot: Pilot[Any]) -> None:
        await pilot.press(*names)

    return press


def polled(screen_type: type) -> Callable[[Pilot[Any]], Awaitable[None]]:
    async def wait(pilot: Pilot[Any]) -> None:
        await until(pilot, lambda: isinstance(pilot.app.screen, screen_type), what=screen_type.__name__)
        await until(
            pilot, lambda: getattr(pilot.app.screen, "polls", 0) >= 1, what=f"{screen_type.__name__} data"
        )

    return wait


def detail_loaded(tab: str = "") -> Callable[[Pilot[Any]], Awaitable[None]]:
    async def wait(pilot: Pilot[Any]) -> None:
        await until(pilot, lambda: isinstance(pilot.app.screen, JobDetailScreen), what="the detail screen")
        screen = pilot.app.screen
        assert isinstance(screen, JobDetailScreen)
        await until(
            pilot, lambda: screen.job is not None and screen.log_index == 3, what="the job and its log"
        )
        if tab:
            await pilot.press(tab)

    return wait


def open_failed(pilot: Pilot[Any]) -> Awaitable[None]:
    app = pilot.app
    assert isinstance(app, ConsoleApp)
    app.jobs_screen.table.move_to(FAILED_JOB)
    return pilot.press("enter")


def test_jobs_screen(canned: CannedThread, snap_compare: Snap) -> None:
    assert snap_compare(console(canned), terminal_size=SIZE, run_before=then())


def test_jobs_filtered_and_marked(canned: CannedThread, snap_compare: Snap) -> None:
    async def filtered(pilot: Pilot[Any]) -> None:
        app = pilot.app
        assert isinstance(app, ConsoleApp)
        app.set_filter(JobFilter("", frozenset({JobStatus.RUNNING, JobStatus.FAILED})))
        await pilot.press("space", "space")

    assert snap_compare(console(canned), terminal_size=SIZE, run_before=then(filtered))


def test_jobs_read_only(canned: CannedThread, snap_compare: Snap) -> None:
    assert snap_compare(console(canned, read_only=True), terminal_size=SIZE, run_before=then())


def test_detail_overview(canned: CannedThread, snap_compare: Snap) -> None:
    assert snap_compare(console(canned), terminal_size=SIZE, run_before=then(open_failed, detail_loaded()))


def test_detail_error(canned: CannedThread, snap_compare: Snap) -> None:
    assert snap_compare(console(canned), terminal_size=SIZE, run_before=then(open_failed, detail_loaded("E")))


def test_detail_log(canned: CannedThread, snap_compare: Snap) -> None:
    assert snap_compare(console(canned), terminal_size=SIZE, run_before=then(open_failed, detail_loaded("L")))


def test_workers_screen(canned: CannedThread, snap_compare: Snap) -> None:
    assert snap_compare(
        console(canned), terminal_size=SIZE, run_before=then(keys("w"), polled(WorkersScreen))
    )


def test_locks_screen(canned: CannedThread, snap_compare: Snap) -> None:
    assert snap_compare(console(canned), terminal_size=SIZE, run_before=then(keys("l"), polled(LocksScreen)))


def test_actions_screen(canned: CannedThread, snap_compare: Snap) -> None:
    assert snap_compare(
        console(canned), terminal_size=SIZE, run_before=then(keys("a"), polled(ActionsScreen))
    )


def test_jobs_screen_80x24(canned: CannedThread, snap_compare: Snap) -> None:
    assert snap_compare(console(canned), terminal_size=SMALL, run_before=then())


def test_jobs_screen_with_three_engines_80x24(canned: CannedThread, snap_compare: Snap) -> None:
    from tests.tui.canned import canned_cluster

    canned.engine.cluster = canned_cluster()
    app = console(canned)

    async def cluster_shown(pilot: Pilot[Any]) -> None:
        await until(pilot, lambda: app.cluster is not None, what="the engines")

    assert snap_compare(app, terminal_size=SMALL, run_before=then(cluster_shown))


def test_jobs_screen_160x45(canned: CannedThread, snap_compare: Snap) -> None:
    assert snap_compare(console(canned), terminal_size=LARGE, run_before=then())


def test_jobs_read_only_80x24(canned: CannedThread, snap_compare: Snap) -> None:
    assert snap_compare(console(canned, read_only=True), terminal_size=SMALL, run_before=then())


def test_actions_screen_80x24(canned: CannedThread, snap_compare: Snap) -> None:
    assert snap_compare(
        console(canned), terminal_size=SMALL, run_before=then(keys("a"), polled(ActionsScreen))
    )


def test_workers_screen_80x24(canned: CannedThread, snap_compare: Snap) -> None:
    assert snap_compare(
        console(canned), terminal_size=SMALL, run_before=then(keys("w"), polled(WorkersScreen))
    )


def test_detail_overview_80x24(canned: CannedThread, snap_compare: Snap) -> None:
    assert snap_compare(console(canned), terminal_size=SMALL, run_before=then(open_failed, detail_loaded()))


def test_pause_confirmation(canned: CannedThread, snap_compare: Snap) -> None:
    assert snap_compare(console(canned), terminal_size=SIZE, run_before=then(keys("p")))


def test_cancel_confirmation(canned: CannedThread, snap_compare: Snap) -> None:
    assert snap_compare(console(canned), terminal_size=SIZE, run_before=then(keys("space", "space", "c")))


def test_filter_dialog(canned: CannedThread, snap_compare: Snap) -> None:
    assert snap_compare(console(canned), terminal_size=SIZE, run_before=then(keys("slash", "f", "l", "a")))


def test_help(canned: CannedThread, snap_compare: Snap) -> None:
    assert snap_compare(console(canned), terminal_size=SIZE, run_before=then(keys("question_mark")))


def test_lost_connection(snap_compare: Snap) -> None:
    app = ConsoleApp(closed_address(), clock=lambda: NOW, engine_label="canned engine")

    async def reconnecting(pilot: Pilot[Any]) -> None:
        await until(pilot, lambda: app.feed.reconnects >= 1, what="a failed connection")
        await settle(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=reconnecting)
