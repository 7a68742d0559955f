"""The console against a real engine: Pilot presses keys, a raw-stub worker makes jobs move.

Each test starts the real engine in its own event loop (the ``engine`` fixture), opens the real
app with ``run_test`` and checks what reaches the engine through its own API.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from google.protobuf.duration_pb2 import Duration
from jobwarden.contract import JobStatus
from jobwarden.tui.screens import (
    ActionsScreen,
    ConfirmScreen,
    FilterScreen,
    JobDetailScreen,
    LocksScreen,
    StepPickerScreen,
    WorkersScreen,
)
from jobwarden.v1 import executor_service_pb2 as pb
from jobwarden.v1 import (
    job_pb2,
    job_service_pb2,
    job_service_pb2_grpc,
    lock_service_pb2,
    lock_service_pb2_grpc,
)
from textual.screen import Screen
from textual.widgets import Button, Log, Static
from textual.widgets._footer import FooterKey

from tests.conftest import EngineHandle
from tests.support import RawWorker
from tests.tui.helpers import RecordingConsole, engine_job, row_text, submit, until

SIZE = (140, 40)


def footer_actions(app: RecordingConsole) -> set[str]:
    return {key.action for key in app.screen.query(FooterKey)}


def console(engine: EngineHandle, **options: object) -> RecordingConsole:
    return RecordingConsole(engine.address, flush_interval=0.1, stats_interval=0.3, **options)


async def test_rows_appear_and_change_as_the_job_runs(engine: EngineHandle) -> None:
    channel = engine.channel()
    app = console(engine)
    async with app.run_test(size=SIZE) as pilot:
        job = await submit(channel, "transcode", asset=1)
        await until(pilot, lambda: "QUEUED" in row_text(app, job.id), what="the queued row")
        worker = await RawWorker(engine.address, ["transcode"], name="pilot-worker").connect()
        assignment = await worker.next_assignment()
        await worker.update(assignment, progress=42, message="encoding 1080p")
        await until(
            pilot,
            lambda: "RUNNING" in row_text(app, job.id) and "42%" in row_text(app, job.id),
            what="the running row at 42%",
        )
        assert "encoding 1080p" in row_text(app, job.id)
        await worker.complete(assignment, {"ok": True})
        await worker.next_ack()
        await until(pilot, lambda: "COMPLETED" in row_text(app, job.id), what="the completed row")
        assert "100%" in row_text(app, job.id)
        # The header counts follow the stream.
        await until(
            pilot,
            lambda: (app.counts.get() or {}).get(JobStatus.COMPLETED) == 1,
            what="the counts counting the completed job",
        )
        assert (app.counts.get() or {}).get(JobStatus.RUNNING) == 0
        await worker.close()
    await channel.close()


async def test_filter_by_words_and_statuses_and_it_stays_across_screens(engine: EngineHandle) -> None:
    channel = engine.channel()
    app = console(engine)
    async with app.run_test(size=SIZE) as pilot:
        transcode = await submit(channel, "transcode")
        publish = await submit(channel, "publish")
        done = await submit(channel, "archive")
        worker = await RawWorker(engine.address, ["archive"]).connect()
        assignment = await worker.next_assignment()
        await worker.complete(assignment)
        await worker.next_ack()
        table = app.jobs_screen.table
        await until(pilot, lambda: "COMPLETED" in row_text(app, done.id), what="the finished archive job")

        await pilot.press("slash")
        assert isinstance(app.screen, FilterScreen)
        await pilot.press(*"publ", "enter")
        await until(pilot, lambda: table.order == [publish.id], what="only the publish job")

        await pilot.press("w")
        assert isinstance(app.screen, WorkersScreen)
        await pilot.press("j")
        assert app.job_filter.text == "publ"
        assert table.order == [publish.id]

        # A status key filters by status; the words still apply.
        await pilot.press("slash", "ctrl+u", "enter")
        await pilot.press("6")
        await until(pilot, lambda: table.order == [done.id], what="only the completed job")
        await pilot.press("1")
        await until(pilot, lambda: set(table.order) == {transcode.id, publish.id, done.id}, what="queued too")
        await pilot.press("0")
        assert not app.job_filter.statuses
        # A status typed in the filter line is understood; a wrong one is refused with its reason.
        await pilot.press("slash", *"status:bogus")
        error = app.screen.query_one("#filter-error", Static)
        await until(pilot, lambda: "unknown status" in str(error.content), what="the filter's complaint")
        await pilot.press("ctrl+u", *"status:queued trans", "enter")
        await until(pilot, lambda: table.order == [transcode.id], what="the queued transcode job")
        await worker.close()
    await channel.close()


async def test_detail_shows_the_job_and_follows_its_log(engine: EngineHandle) -> None:
    channel = engine.channel()
    app = console(engine)
    async with app.run_test(size=SIZE) as pilot:
        job = await submit(channel, "render", scene="intro")
        worker = await RawWorker(engine.address, ["render"], name="render-box").connect()
        assignment = await worker.next_assignment()
        await worker.send(
            pb.ConnectRequest(
                job_log=pb.JobLog(
                    job_id=job.id,
                    attempt=assignment.attempt,
                    lines=[pb.JobLogLine(level="INFO", message="loading scene intro")],
                )
            )
        )
        await until(pilot, lambda: job.id in app.jobs_screen.table.order, what="the row")
        app.jobs_screen.table.move_to(job.id)
        await pilot.press("enter")
        screen = app.screen
        assert isinstance(screen, JobDetailScreen)
        log = screen.query_one(Log)
        await until(
            pilot, lambda: any("loading scene intro" in line for line in log.lines), what="the log line"
        )
        overview = screen.query_one("#detail-overview", Static)
        # The overview and the log are loaded by workers of their own: wait for each, not one for both.
        await until(pilot, lambda: '"scene": "intro"' in str(overview.content), what="the overview")

        # New lines are followed as they come.
        await worker.send(
            pb.ConnectRequest(
                job_log=pb.JobLog(
                    job_id=job.id,
                    attempt=assignment.attempt,
                    lines=[pb.JobLogLine(level="WARNING", message="texture missing")],
                )
            )
        )
        await until(pilot, lambda: any("texture missing" in line for line in log.lines), what="the next line")

        # A crash shows with its whole stack trace, and the timeline records the change.
        await worker.fail(
            assignment,
            "ValueError: bad frame",
            kind=job_pb2.ERROR_KIND_CRASHED,
            stack_trace="Traceback...\nValueError: bad frame",
        )
        await worker.next_ack()
        error = screen.query_one("#detail-error", Static)
        await until(pilot, lambda: "Traceback..." in str(error.content), what="the stack trace")
        assert "CRASHED" in str(error.content)
        await pilot.press("escape")
        assert app.screen is app.jobs_screen
        await worker.close()
    await channel.close()


async def test_cancel_names_the_job_focuses_keep_and_reaches_the_engine(engine: EngineHandle) -> None:
    channel = engine.channel()
    app = console(engine)
    async with app.run_test(size=SIZE) as pilot:
        job = await submit(channel, "nobody-serves-this")
        await until(pilot, lambda: job.id in app.jobs_screen.table.order, what="the row")
        app.jobs_screen.table.move_to(job.id)

        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
        body = app.screen.query_one("#dialog-body", Static)
        assert job.id[-8:] in str(body.content)
        assert app.focused is not None
        assert app.focused.id == "keep"
        # Enter on the focused (safe) button changes nothing.
        await pilot.press("enter")
        await until(pilot, lambda: app.screen is app.jobs_screen, what="the dialog to close")
        assert (await engine_job(channel, job.id)).status == JobStatus.QUEUED

        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
        await pilot.press("right")
        assert app.focused is app.screen.query_one("#confirm", Button)
        await pilot.press("enter")
        await until(pilot, lambda: "CANCELLED" in row_text(app, job.id), what="the cancelled row")
        assert (await engine_job(channel, job.id)).status == JobStatus.CANCELLED
        assert app.noted("Cancelled 1 job")
    await channel.close()


async def test_retry_of_marked_jobs_and_retry_all_failed(engine: EngineHandle) -> None:
    channel = engine.channel()
    app = console(engine)
    async with app.run_test(size=SIZE) as pilot:
        jobs = [await submit(channel, "fragile", n=n) for n in range(3)]
        worker = await RawWorker(engine.address, ["fragile"], capacity=3).connect()
        for _ in jobs:
            assignment = await worker.next_assignment()
            await worker.fail(assignment, "disk full", retryable=False)
            await worker.next_ack()
        table = app.jobs_screen.table
        await until(
            pilot, lambda: all("FAILED" in row_text(app, job.id) for job in jobs), what="3 failed rows"
        )

        # Mark two with space and retry them together.
        table.move_to(jobs[2].id)
        await pilot.press("space")
        table.move_to(jobs[1].id)
        await pilot.press("space")
        assert app.marks == {jobs[1].id, jobs[2].id}
        await pilot.press("r")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
        body = str(app.screen.query_one("#dialog-body", Static).content)
        assert jobs[1].id[-8:] in body
        assert jobs[2].id[-8:] in body
        assert jobs[0].id[-8:] not in body
        await pilot.press("right", "enter")
        await until(pilot, lambda: app.noted("Retried 2 jobs"), what="the notification")
        for job in jobs[1:]:
            # Retried: QUEUED at once, attempt 2 once dispatched to the worker (poll: not at once).
            deadline = time.monotonic() + 30
            stored = await engine_job(channel, job.id)
            while not (stored.attempt == 2 or len(stored.attempts) == 2) and time.monotonic() < deadline:
                await pilot.pause(0.05)
                stored = await engine_job(channel, job.id)
            assert stored.status != JobStatus.FAILED
            assert stored.attempt == 2 or len(stored.attempts) == 2
        assert not app.marks

        # "Retry all failed" counts the failed jobs first: one is left.
        await pilot.press("F")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
        title = str(app.screen.query_one("#dialog-title", Static).content)
        assert "Retry all 1 failed jobs" in title
        await pilot.press("right", "enter")
        await until(pilot, lambda: app.noted("Retried 1 job"), what="the notification")
        assert (await engine_job(channel, jobs[0].id)).status != JobStatus.FAILED
        await worker.close()
    await channel.close()


async def test_a_refusal_shows_the_engines_message(engine: EngineHandle) -> None:
    channel = engine.channel()
    app = console(engine)
    async with app.run_test(size=SIZE) as pilot:
        job = await submit(channel, "fragile")
        worker = await RawWorker(engine.address, ["fragile"]).connect()
        await worker.fail(await worker.next_assignment(), "nope", retryable=False)
        await worker.next_ack()
        await until(pilot, lambda: "FAILED" in row_text(app, job.id), what="the failed row")
        # Frozen, the console still believes the job FAILED after someone else retried it.
        await pilot.press("f")
        stub = job_service_pb2_grpc.JobServiceStub(channel)
        await stub.RetryJob(job_service_pb2.RetryJobRequest(job_id=job.id))
        await until(pilot, lambda: len(app.store.dirty) > 0, what="a pending update")
        assert "FAILED" in row_text(app, job.id)
        app.jobs_screen.table.move_to(job.id)
        await pilot.press("r")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
        await pilot.press("right", "enter")
        await until(pilot, lambda: app.noted("refused"), what="the refusal")
        refusal = next(message for severity, message in app.notes if "refused" in message)
        # The SDK's error carries the engine's own words (the CLI shows the same line).
        assert "only FAILED or CANCELLED jobs can be retried" in refusal
        # Unfreezing applies what waited.
        await pilot.press("f")
        await until(pilot, lambda: "FAILED" not in row_text(app, job.id), what="the pending update")
        await worker.close()
    await channel.close()


async def test_read_only_hides_every_action_that_changes_state(engine: EngineHandle) -> None:
    channel = engine.channel()
    app = console(engine, read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        job = await submit(channel, "nobody-serves-this")
        await until(pilot, lambda: job.id in app.jobs_screen.table.order, what="the row")
        app.jobs_screen.table.move_to(job.id)
        await until(pilot, lambda: "filter" in footer_actions(app), what="the footer's keys")
        assert not footer_actions(app) & {"cancel", "retry", "pause", "retry_failed", "retry_step"}
        assert {"sort", "mark"} <= footer_actions(app)
        await pilot.press("c", "r", "p", "F", "R")
        await pilot.pause(0.3)
        assert app.screen is app.jobs_screen
        assert (await engine_job(channel, job.id)).status == JobStatus.QUEUED
        await pilot.press("enter")
        assert isinstance(app.screen, JobDetailScreen)
        await until(pilot, lambda: "back" in footer_actions(app), what="the detail footer's keys")
        assert not footer_actions(app) & {"cancel", "retry", "retry_step"}
        await pilot.press("c")
        await pilot.pause(0.3)
        assert isinstance(app.screen, JobDetailScreen)
        assert (await engine_job(channel, job.id)).status == JobStatus.QUEUED
        detail: Screen[Any] = app.screen
        palette = [command.title for command in app.get_system_commands(detail)]
        assert "Retry all failed" not in palette
    await channel.close()


async def test_pause_and_resume_an_action_and_the_other_screens(engine: EngineHandle) -> None:
    channel = engine.channel()
    app = console(engine)
    async with app.run_test(size=SIZE) as pilot, contextlib.AsyncExitStack() as stack:
        queued = await submit(channel, "ingest", locks=(("asset:9", job_pb2.LOCK_MODE_SHARED),))
        worker = await RawWorker(engine.address, ["thumbnail"], name="thumb-box", capacity=2).connect()
        await stack.enter_async_context(worker.beating())
        locks = lock_service_pb2_grpc.LockServiceStub(channel)
        await locks.AcquireLock(
            lock_service_pb2.AcquireLockRequest(
                holder="mam-sync",
                locks=[job_pb2.LockRequest(resource="asset:77", mode=job_pb2.LOCK_MODE_EXCLUSIVE)],
                ttl=Duration(seconds=60),
            )
        )
        await until(pilot, lambda: queued.id in app.jobs_screen.table.order, what="the row")
        app.jobs_screen.table.move_to(queued.id)
        jobs = job_service_pb2_grpc.JobServiceStub(channel)

        async def paused() -> bool:
            configs = (await jobs.ListActions(job_service_pb2.ListActionsRequest())).configs
            return any(config.action == "ingest" and config.paused for config in configs)

        # p asks first, like cancel and retry, with Keep focused: Enter changes nothing.
        await pilot.press("p")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the pause question")
        title = str(app.screen.query_one("#dialog-title", Static).content)
        assert title == "Pause dispatch of ingest?"
        assert "Now: 1 job waiting, 0 jobs running." in str(
            app.screen.query_one("#dialog-body", Static).content
        )
        assert app.focused is not None
        assert app.focused.id == "keep"
        await pilot.press("enter")
        await until(pilot, lambda: app.screen is app.jobs_screen, what="the question to close")
        assert not await paused()
        assert not app.noted("Paused dispatch")

        await pilot.press("p")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the pause question")
        await pilot.press("right", "enter")
        await until(pilot, lambda: app.noted("Paused dispatch of ingest"), what="the pause")
        assert await paused()

        await pilot.press("a")
        screen = app.screen
        assert isinstance(screen, ActionsScreen)
        await until(pilot, lambda: screen.polls >= 1, what="the actions")
        table = screen.query_one("#actions")
        row = [str(cell) for cell in table.get_row("ingest")]  # type: ignore[attr-defined]
        assert "paused" in row
        assert "⚠ no worker" in row
        table.move_cursor(row=table.get_row_index("ingest"))  # type: ignore[attr-defined]
        await pilot.press("p")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the resume question")
        assert str(app.screen.query_one("#dialog-title", Static).content) == "Resume dispatch of ingest?"
        await pilot.press("right", "enter")
        await until(pilot, lambda: app.noted("Resumed dispatch of ingest"), what="the resume")
        assert not await paused()

        await pilot.press("w")
        workers = app.screen
        assert isinstance(workers, WorkersScreen)
        await until(pilot, lambda: workers.polls >= 1, what="the workers")
        names = [str(cell) for cell in workers.query_one("#workers").get_column("name")]  # type: ignore[attr-defined]
        assert names == ["thumb-box"]

        await pilot.press("l")
        lock_screen = app.screen
        assert isinstance(lock_screen, LocksScreen)
        await until(pilot, lambda: lock_screen.polls >= 1, what="the locks")
        resources = [str(cell) for cell in lock_screen.query_one("#locks").get_column("resource")]  # type: ignore[attr-defined]
        assert "asset:77" in resources
        await stack.aclose()
        await worker.close()
    await channel.close()


async def test_console_keeps_the_live_link_and_its_sequence(engine: EngineHandle) -> None:
    channel = engine.channel()
    app = console(engine)
    async with app.run_test(size=SIZE) as pilot:
        jobs = [await submit(channel, "bulk", n=n) for n in range(20)]
        await until(pilot, lambda: all(job.id in app.jobs_screen.table.order for job in jobs), what="20 rows")
        stub = job_service_pb2_grpc.JobServiceStub(channel)
        head = (await stub.GetStats(job_service_pb2.GetStatsRequest())).head_sequence
        await until(pilot, lambda: app.store.sequence == head, what="the feed at the engine's head")
        assert app.feed.status().state.value == "live"
    await channel.close()


async def test_the_table_keeps_recent_finished_jobs_and_pages_older_ones(engine: EngineHandle) -> None:
    channel = engine.channel()
    stub = job_service_pb2_grpc.JobServiceStub(channel)
    finished = []
    for n in range(12):
        job = await submit(channel, "nobody-serves-this", n=n)
        await stub.CancelJob(job_service_pb2.CancelJobRequest(job_id=job.id, reason="history"))
        finished.append(job.id)
    active = await submit(channel, "nobody-serves-this", n=99)
    app = console(engine, keep_finished=4)
    async with app.run_test(size=SIZE) as pilot:
        table = app.jobs_screen.table
        # Every unfinished job and the 4 most recent finished ones.
        await until(pilot, lambda: table.row_count == 5, what="the first page")
        assert active.id in table.order
        assert set(table.order) - {active.id} == set(finished[-4:])
        # Reaching the end of the table pages older history in from the engine.
        await pilot.press("end")
        await until(pilot, lambda: table.row_count == 13, what="the older jobs")
        assert set(finished) <= set(table.order)
        await pilot.press("o")
        await until(pilot, lambda: app.noted("No older jobs"), what="the end of the history")
    await channel.close()


async def test_retry_from_a_chosen_step(engine: EngineHandle) -> None:
    channel = engine.channel()
    app = console(engine)
    async with app.run_test(size=SIZE) as pilot:
        job = await submit(channel, "pipeline")
        worker = await RawWorker(engine.address, ["pipeline"]).connect()
        assignment = await worker.next_assignment()
        for step in ("download", "encode", "package"):
            await worker.update(assignment, step=step)
            await worker.update(assignment, completed_step=job_pb2.CompletedStep(name=step))
        await worker.fail(assignment, "upload refused", retryable=False)
        await worker.next_ack()
        await until(pilot, lambda: "FAILED" in row_text(app, job.id), what="the failed row")
        app.jobs_screen.table.move_to(job.id)
        await pilot.press("R")
        await until(pilot, lambda: isinstance(app.screen, StepPickerScreen), what="the step picker")
        await pilot.press("down", "enter")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
        body = str(app.screen.query_one("#dialog-body", Static).content)
        assert "encode, package" in body
        await pilot.press("right", "enter")
        await until(pilot, lambda: app.noted("from step encode"), what="the notification")
        stored = await engine_job(channel, job.id)
        assert stored.status != JobStatus.FAILED
        assert [step.name for step in stored.checkpoint.completed_steps] == ["download"]
        retried = await worker.next_assignment()
        assert retried.attempt == 2
        await worker.close()
    await channel.close()
