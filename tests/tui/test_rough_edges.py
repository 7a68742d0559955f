"""The console's rough edges (issue 15), against a real engine: read-only keys that say why, the
pause question, a cursor that stays put, 80x24 with nothing cut, ages that tick, a filter dialog
that shows its statuses, number keys on every screen, rows that show only what is true, and header
counts that follow the stream.

Layout tests run at 80x24 and 160x45.
"""

from __future__ import annotations

import re
import time
from functools import partial

import pytest
from google.protobuf.duration_pb2 import Duration
from jobwarden.contract import JobStatus
from jobwarden.tui.screens import ActionsScreen, JobDetailScreen
from jobwarden.tui.screens._filter import StatusChecklist
from jobwarden.tui.widgets import StatusCount
from jobwarden.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc
from rich.cells import cell_len
from rich.console import Console
from textual.widgets import DataTable, Static
from textual.widgets._footer import FooterKey

from tests.conftest import EngineHandle
from tests.support import RawWorker
from tests.tui.helpers import RecordingConsole, engine_job, row_text, settle, submit, until

SMALL = (80, 24)
LARGE = (160, 45)
sizes = pytest.mark.parametrize("size", [SMALL, LARGE], ids=["80x24", "160x45"])


def console(engine: EngineHandle, **options: object) -> RecordingConsole:
    return RecordingConsole(engine.address, flush_interval=0.1, stats_interval=0.3, **options)


def plain(renderable: object, width: int = 200) -> str:
    out = Console(width=width, record=True, color_system=None, file=open("/dev/null", "w"))  # noqa: SIM115
    out.print(renderable)
    return out.export_text()


async def test_read_only_keys_say_why_and_the_header_says_so(engine: EngineHandle) -> None:
    channel = engine.channel()
    app = console(engine, read_only=True, read_only_reason="the token's role is viewer")
    async with app.run_test(size=SMALL) as pilot:
        job = await submit(channel, "nobody-serves-this")
        await until(pilot, lambda: job.id in app.jobs_screen.table.order, what="the row")
        notes = app.screen.query_one("#header-filter", Static)
        await until(pilot, lambda: "read-only" in str(notes.content), what="the read-only notice")
        assert "read-only (the token's role is viewer)" in str(notes.content)
        for key, what in (("c", "Cancel"), ("r", "Retry"), ("p", "Pause action")):
            await pilot.press(key)
            await until(pilot, partial(app.noted, f"{what}: not available"), what=f"why {key} is off")
        assert all("the token's role is viewer" in message for _, message in app.notes)
        assert app.screen is app.jobs_screen
        assert (await engine_job(channel, job.id)).status == JobStatus.QUEUED
        # A key that does nothing on a screen anyway stays quiet.
        await pilot.press("w")
        before = len(app.notes)
        await pilot.press("c")
        await settle(pilot)
        assert len(app.notes) == before
    await channel.close()


async def test_read_only_by_the_flag_says_so(engine: EngineHandle) -> None:
    app = console(engine, read_only=True)
    async with app.run_test(size=SMALL) as pilot:
        await until(pilot, lambda: app.counts.ready, what="the connection")
        await pilot.press("a", "p")
        await until(pilot, lambda: app.noted("not available, the console is read-only (--read-only)"))


@sizes
async def test_the_operators_row_stays_where_it_is_as_new_jobs_arrive(
    engine: EngineHandle, size: tuple[int, int]
) -> None:
    channel = engine.channel()
    app = console(engine)
    async with app.run_test(size=size) as pilot:
        first = [await submit(channel, "nobody-serves-this", n=n) for n in range(60)]
        table = app.jobs_screen.table
        await until(pilot, lambda: table.row_count == 60, what="60 rows")
        # Below the first screenful, then back up a little: scrolled, with the cursor mid-screen.
        await pilot.press(*["down"] * (size[1] + 5), *["up"] * 4)
        chosen = table.cursor_id
        line = table.cursor - int(table.scroll_offset.y)
        assert 0 < line < table.size.height - 1
        for n in range(10):
            await submit(channel, "nobody-serves-this", n=100 + n)
        await until(pilot, lambda: table.row_count == 70, what="the 10 new rows")
        await settle(pilot)
        assert table.cursor_id == chosen
        assert table.cursor - int(table.scroll_offset.y) == line
        assert chosen in {job.id for job in first}
    await channel.close()


async def test_a_cursor_left_on_the_first_row_follows_the_newest_job(engine: EngineHandle) -> None:
    channel = engine.channel()
    app = console(engine)
    async with app.run_test(size=SMALL) as pilot:
        await submit(channel, "nobody-serves-this", n=1)
        table = app.jobs_screen.table
        await until(pilot, lambda: table.row_count == 1, what="the first row")
        newest = await submit(channel, "nobody-serves-this", n=2)
        await until(pilot, lambda: table.row_count == 2, what="the second row")
        assert table.cursor_id == newest.id
        # Once moved, it stays on its job; home goes back to following the newest.
        await pilot.press("down")
        held = table.cursor_id
        await submit(channel, "nobody-serves-this", n=3)
        await until(pilot, lambda: table.row_count == 3, what="the third row")
        assert table.cursor_id == held
        await pilot.press("home")
        latest = await submit(channel, "nobody-serves-this", n=4)
        await until(pilot, lambda: table.row_count == 4, what="the fourth row")
        assert table.cursor_id == latest.id
    await channel.close()


@sizes
async def test_every_screen_fits_without_cutting_a_number(
    engine: EngineHandle, size: tuple[int, int]
) -> None:
    channel = engine.channel()
    stub = job_service_pb2_grpc.JobServiceStub(channel)
    for n in range(16):
        job = await submit(channel, "nobody-serves-this", n=n)
        await stub.CancelJob(job_service_pb2.CancelJobRequest(job_id=job.id, reason="to count"))
    for n in range(3):
        await submit(channel, "ingest", n=n)
    running = await submit(channel, "transcode")
    worker = await RawWorker(engine.address, ["transcode"], name="pilot-worker").connect()
    assignment = await worker.next_assignment()
    await worker.update(assignment, progress=42, message="encoding")
    app = console(engine)
    width = size[0]
    async with app.run_test(size=size) as pilot:
        await until(pilot, lambda: "42%" in row_text(app, running.id), what="the running row")
        await settle(pilot)
        counts = list(app.screen.query(StatusCount))
        assert len(counts) == len(JobStatus)
        texts = {count.status: str(count.content) for count in counts}
        assert texts[JobStatus.CANCELLED].endswith(" 16")
        assert texts[JobStatus.QUEUED].endswith(" 3")
        for count in counts:
            # Padding included, every count is whole and on screen (REJECTED too).
            assert count.region.width >= cell_len(texts[count.status]) + 2, texts[count.status]
            assert count.region.right <= width
        title = str(app.screen.query_one("#header-title", Static).content)
        assert "Actions" in title
        assert app.screen.query_one("#header-title").region.right <= width
        keys = list(app.screen.query(FooterKey))
        assert {"help", "quit"} <= {key.action for key in keys}
        assert all(key.region.right <= width for key in keys)
        table = app.jobs_screen.table
        assert {"status", "id", "action", "progress", "message", "attempt", "worker", "age"} <= set(
            table.columns
        )
        line = row_text(app, running.id)
        assert running.id[-8:] in line
        assert "42%" in line
        assert "worker" in line
        assert cell_len(line) <= width

        await pilot.press("a")
        screen = app.screen
        assert isinstance(screen, ActionsScreen)
        await until(pilot, lambda: screen.polls >= 1, what="the actions")
        await settle(pilot)
        actions = screen.query_one(DataTable)
        assert "⚠ no worker" in [str(cell) for cell in actions.get_row("ingest")]
        columns = list(actions.ordered_columns)
        shown = sum(column.get_render_width(actions) for column in columns)
        assert shown <= actions.size.width, [column.label for column in columns]
        keys = list(app.screen.query(FooterKey))
        assert {"help", "quit", "pause"} <= {key.action for key in keys}
        await worker.close()
    await channel.close()


async def test_the_detail_keeps_its_relative_times_current(engine: EngineHandle) -> None:
    channel = engine.channel()
    # The console's clock runs as the real one does, plus a jump the test makes.
    ahead = [0.0]
    app = console(engine, clock=lambda: time.time() + ahead[0])
    async with app.run_test(size=LARGE) as pilot:
        job = await submit(channel, "nobody-serves-this")
        await until(pilot, lambda: job.id in app.jobs_screen.table.order, what="the row")
        app.jobs_screen.table.move_to(job.id)
        await pilot.press("enter")
        screen = app.screen
        assert isinstance(screen, JobDetailScreen)
        summary = screen.query_one("#detail-summary", Static)
        await until(pilot, lambda: screen.job is not None, what="the job")

        def created_ago() -> str:
            found = re.search(r"\((\S+) ago\)", plain(summary.content))
            return found.group(1) if found else ""

        await until(pilot, lambda: created_ago().endswith("s"), what="the age")
        assert "m" not in created_ago()
        ahead[0] = 125
        await until(pilot, lambda: created_ago().startswith("2m"), what="the age two minutes on")
    await channel.close()


async def test_the_filter_dialog_ticks_the_statuses_in_force(engine: EngineHandle) -> None:
    app = console(engine)
    async with app.run_test(size=SMALL) as pilot:
        await until(pilot, lambda: app.counts.ready, what="the connection")
        await pilot.press("slash", *"status:failed")
        checklist = app.screen.query_one(StatusChecklist)
        await until(pilot, lambda: app.job_filter.statuses == {JobStatus.FAILED}, what="the preview")
        await until(pilot, lambda: checklist.selected == [int(JobStatus.FAILED)], what="FAILED ticked")
        await pilot.press("enter")
        await pilot.press("slash")
        checklist = app.screen.query_one(StatusChecklist)
        await settle(pilot)
        lines = [checklist.render_line(y).text for y in range(len(JobStatus))]
        ticked = [line for line in lines if "✓" in line]
        assert len(ticked) == 1
        assert "FAILED" in ticked[0]
        assert not any("X" in line[:4] for line in lines)


@pytest.mark.parametrize("screen_key", ["a", "w", "l"])
async def test_number_keys_filter_by_status_on_every_screen(engine: EngineHandle, screen_key: str) -> None:
    app = console(engine)
    async with app.run_test(size=SMALL) as pilot:
        await until(pilot, lambda: app.counts.ready, what="the connection")
        await pilot.press(screen_key, "7", "4")
        assert app.job_filter.statuses == {JobStatus.FAILED, JobStatus.RUNNING}
        await pilot.press("0")
        assert not app.job_filter.statuses


async def test_rows_show_only_what_is_true_of_the_status(engine: EngineHandle) -> None:
    channel = engine.channel()
    stub = job_service_pb2_grpc.JobServiceStub(channel)
    app = console(engine)
    async with app.run_test(size=LARGE) as pilot:
        retry = job_pb2.RetryPolicy(max_attempts=3, initial_interval=Duration(seconds=300))
        flaky = (
            await stub.SubmitJob(job_service_pb2.SubmitJobRequest(action="upload", retry_policy=retry))
        ).job
        worker = await RawWorker(engine.address, ["upload"], name="upload-box").connect()
        assignment = await worker.next_assignment()
        await worker.update(assignment, progress=50, message="uploading", step="upload")
        await until(pilot, lambda: "uploading" in row_text(app, flaky.id), what="the running row")
        shown_worker = app.worker_name((await engine_job(channel, flaky.id)).worker_id)
        assert shown_worker in row_text(app, flaky.id)
        await worker.fail(assignment, "connection reset")
        await worker.next_ack()
        await until(pilot, lambda: "DELAYED" in row_text(app, flaky.id), what="the retry waiting")
        line = row_text(app, flaky.id)
        assert "attempt 1 failed" in line
        assert "uploading" not in line
        assert "[upload]" not in line
        assert shown_worker not in line
        assert "50%" not in line

        done = await submit(channel, "upload")
        assignment = await worker.next_assignment()
        await worker.update(assignment, progress=80, message="upload 80%", step="upload")
        await until(pilot, lambda: "upload 80%" in row_text(app, done.id), what="the running row")
        await worker.complete(assignment)
        await worker.next_ack()
        await until(pilot, lambda: "COMPLETED" in row_text(app, done.id), what="the completed row")
        line = row_text(app, done.id)
        assert "upload 80%" not in line
        assert shown_worker not in line
        assert "100%" in line
        await worker.close()
    await channel.close()


async def test_header_counts_follow_the_stream(engine: EngineHandle) -> None:
    channel = engine.channel()
    stub = job_service_pb2_grpc.JobServiceStub(channel)
    await submit(channel, "nobody-serves-this", n=0)
    # The stats poll is slow here: only the stream can move the counts in time.
    app = RecordingConsole(engine.address, flush_interval=0.1, stats_interval=60.0)
    async with app.run_test(size=LARGE) as pilot:
        await until(pilot, lambda: (app.counts.get() or {}).get(JobStatus.QUEUED) == 1, what="the seed")
        jobs = [await submit(channel, "nobody-serves-this", n=n) for n in range(1, 4)]
        await stub.CancelJob(job_service_pb2.CancelJobRequest(job_id=jobs[0].id, reason="counted"))
        queued = next(count for count in app.screen.query(StatusCount) if count.status is JobStatus.QUEUED)
        await until(pilot, lambda: str(queued.content) == "1 QUEUED 3", what="3 queued in the header")
        stats = await stub.GetStats(job_service_pb2.GetStatsRequest())
        engine_counts = {JobStatus(entry.status): entry.count for entry in stats.statuses if entry.count}
        await until(
            pilot,
            lambda: {status: n for status, n in (app.counts.get() or {}).items() if n} == engine_counts,
            what="the engine's own counts",
        )
    await channel.close()
