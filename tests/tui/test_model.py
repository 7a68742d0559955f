"""The console's job store, filter and formatting, without a screen or an engine."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import struct_pb2
from google.protobuf.timestamp_pb2 import Timestamp
from jobwarden.contract import ErrorKind, JobEventType, JobStatus, LockMode
from jobwarden.tui._filter import FilterError, JobFilter, SortOrder
from jobwarden.tui._format import format_duration, progress_bar, short_id, struct_to_text, truncate
from jobwarden.tui._model import JobRow, JobStore, StatusCounts
from jobwarden.v1 import job_pb2

NOW = 1_700_000_000.0


def job(job_id: str, status: JobStatus = JobStatus.QUEUED, sequence: int = 1, **fields: Any) -> job_pb2.Job:
    created = Timestamp(seconds=int(NOW) - 100)
    message = job_pb2.Job(
        id=job_id,
        action="transcode",
        status=job_pb2.JobStatus.ValueType(status),
        sequence=sequence,
        created_at=created,
    )
    for name, value in fields.items():
        if isinstance(value, Timestamp):
            getattr(message, name).CopyFrom(value)
        elif name.endswith("_at"):
            getattr(message, name).CopyFrom(Timestamp(seconds=int(value)))
        else:
            setattr(message, name, value)
    return message


def event(sequence: int, message: job_pb2.Job) -> job_pb2.JobEvent:
    message.sequence = sequence
    return job_pb2.JobEvent(sequence=sequence, job_id=message.id, job=message)


def store(keep_finished: int = 100) -> JobStore:
    return JobStore(keep_finished=keep_finished, clock=lambda: NOW)


def test_row_copies_what_the_table_shows() -> None:
    message = job("a", JobStatus.FAILED, progress=40, message="encoding", attempt=2, worker_id="w1")
    message.error.kind = job_pb2.ErrorKind.ValueType(ErrorKind.CRASHED)
    message.error.message = "boom"
    message.locks.add(resource="asset:1", mode=int(LockMode.SHARED))
    message.labels["tenant"] = "acme"
    row = JobRow.from_proto(message)
    assert row.status is JobStatus.FAILED
    assert row.error_kind is ErrorKind.CRASHED
    assert row.locks == (("asset:1", LockMode.SHARED),)
    assert row.terminal
    assert "tenant=acme" in row.search_text()
    assert "asset:1" in row.search_text()


def test_apply_ignores_events_older_than_the_row() -> None:
    jobs = store()
    jobs.load([job("a", JobStatus.RUNNING, sequence=10, progress=50)], sequence=10)
    stale = event(9, job("a", JobStatus.QUEUED))
    fresh = event(11, job("a", JobStatus.RUNNING, progress=60))
    assert jobs.apply([stale, fresh]) == 1
    assert jobs.jobs["a"].progress == 60
    assert jobs.sequence == 11
    assert jobs.take_dirty() == {"a"}
    assert jobs.take_dirty() == set()
    # The same event again (a replay after reconnecting) changes nothing.
    assert jobs.apply([event(11, job("a", JobStatus.RUNNING, progress=60))]) == 0
    assert jobs.dirty == set()


def test_load_replaces_everything_and_bumps_the_generation() -> None:
    jobs = store()
    jobs.load([job("a")], sequence=3)
    generation = jobs.generation
    jobs.load([job("b")], sequence=5)
    assert set(jobs.jobs) == {"b"}
    assert jobs.generation == generation + 1
    assert jobs.sequence == 5
    assert jobs.dirty == set()


def test_trim_keeps_unfinished_jobs_and_the_newest_finished_ones() -> None:
    jobs = store(keep_finished=20)
    running = [job(f"r{i}", JobStatus.RUNNING, sequence=i + 1) for i in range(5)]
    done = [
        job(f"d{i:02d}", JobStatus.COMPLETED, sequence=100 + i, finished_at=NOW - 1000 + i) for i in range(30)
    ]
    jobs.load([*running, *done], sequence=200)
    # The load trims at once: 30 finished is more than 20 and its tenth of slack.
    assert len([row for row in jobs.jobs.values() if row.terminal]) == 20
    assert all(f"r{i}" in jobs.jobs for i in range(5))
    assert {"d29", "d10"} <= jobs.jobs.keys()
    assert "d09" not in jobs.jobs
    # One more finished job is within the slack: nothing is evicted yet.
    jobs.apply([event(300, job("x", JobStatus.COMPLETED, finished_at=NOW))])
    assert jobs.trim() == 0
    jobs.take_dirty()
    jobs.apply([event(301, job("y", JobStatus.COMPLETED, finished_at=NOW))])
    evicted = jobs.trim()
    assert evicted == 2
    assert not {"d10", "d11"} & jobs.jobs.keys()
    assert {"d10", "d11", "y"} <= jobs.take_dirty()


def test_history_pages_are_kept_beyond_the_limit() -> None:
    jobs = store(keep_finished=2)
    jobs.load([job("new", JobStatus.FAILED, finished_at=NOW)], sequence=1)
    added = jobs.add_history([job("old1", JobStatus.FAILED), job("old2", JobStatus.FAILED), job("new")])
    assert added == 2
    assert jobs.keep_finished == 4
    assert jobs.trim() == 0
    assert {"old1", "old2", "new"} <= set(jobs.jobs)


def test_throughput_counts_jobs_that_finish_per_second() -> None:
    now = [NOW]
    jobs = JobStore(keep_finished=10, clock=lambda: now[0])
    jobs.load([job("a", JobStatus.RUNNING), job("b", JobStatus.RUNNING)], sequence=0)
    jobs.apply([event(11, job("a", JobStatus.COMPLETED))])
    now[0] += 2
    jobs.apply([event(12, job("b", JobStatus.FAILED)), event(13, job("b", JobStatus.FAILED))])
    series = jobs.throughput(5)
    assert series == [0, 0, 1, 0, 1]
    assert jobs.finished_last_minute() == 2


def test_throughput_counts_each_finish_in_the_second_it_was_committed() -> None:
    """Events replayed after a reconnect arrive together; they count where they happened."""
    jobs = JobStore(keep_finished=100, clock=lambda: NOW)
    jobs.load([job(f"j{n}", JobStatus.RUNNING) for n in range(4)], sequence=0)
    replayed = []
    for n, ago in enumerate((30, 30, 10, 0)):
        finished = event(10 + n, job(f"j{n}", JobStatus.COMPLETED))
        finished.time.CopyFrom(Timestamp(seconds=int(NOW) - ago))
        replayed.append(finished)
    jobs.apply(replayed)
    series = jobs.throughput(60)
    assert series[-31] == 2
    assert series[-11] == 1
    assert series[-1] == 1
    assert sum(series) == 4
    # A finish older than the window is not counted; one stamped ahead of our clock counts now.
    jobs.load([job("old", JobStatus.RUNNING), job("ahead", JobStatus.RUNNING)], sequence=0)
    old = event(20, job("old", JobStatus.FAILED))
    old.time.CopyFrom(Timestamp(seconds=int(NOW) - 600))
    ahead = event(21, job("ahead", JobStatus.FAILED))
    ahead.time.CopyFrom(Timestamp(seconds=int(NOW) + 3))
    jobs.apply([old, ahead])
    assert jobs.throughput(60)[-1] == 2
    assert sum(jobs.throughput(60)) == 5


def change(sequence: int, job_id: str, previous: JobStatus | None, status: JobStatus) -> job_pb2.JobEvent:
    kind = JobEventType.SUBMITTED if previous is None else JobEventType.STATUS_CHANGED
    return job_pb2.JobEvent(
        sequence=sequence,
        job_id=job_id,
        type=job_pb2.JobEventType.ValueType(kind),
        job=job(job_id, status, sequence=sequence),
        previous_status=job_pb2.JobStatus.ValueType(previous or 0),
    )


def test_status_counts_follow_events_after_their_seed() -> None:
    counts = StatusCounts()
    assert counts.get() is None
    counts.seed({JobStatus.QUEUED: 2, JobStatus.COMPLETED: 5}, head_sequence=10)
    counts.apply(
        [
            # Replayed events up to the seed's head are in it already.
            change(9, "a", None, JobStatus.QUEUED),
            change(10, "a", JobStatus.QUEUED, JobStatus.RUNNING),
            change(11, "b", None, JobStatus.QUEUED),
            change(12, "a", JobStatus.QUEUED, JobStatus.RUNNING),
            job_pb2.JobEvent(
                sequence=13,
                job_id="a",
                type=job_pb2.JobEventType.ValueType(JobEventType.UPDATED),
                job=job("a", JobStatus.RUNNING),
            ),
            change(14, "a", JobStatus.RUNNING, JobStatus.COMPLETED),
            # The same event again (a replay) is not counted twice.
            change(14, "a", JobStatus.RUNNING, JobStatus.COMPLETED),
        ]
    )
    assert counts.get() == {JobStatus.QUEUED: 2, JobStatus.RUNNING: 0, JobStatus.COMPLETED: 6}
    assert counts.last_sequence == 14


def test_status_counts_resync_only_when_the_stream_is_at_the_stats_head() -> None:
    counts = StatusCounts()
    counts.seed({JobStatus.QUEUED: 1}, head_sequence=5)
    counts.apply([change(6, "a", None, JobStatus.QUEUED)])
    # The engine's answer is behind what we applied (or ahead of it): not comparable, kept.
    assert not counts.resync({JobStatus.QUEUED: 7}, head_sequence=5)
    assert not counts.resync({JobStatus.QUEUED: 7}, head_sequence=8)
    assert counts.get() == {JobStatus.QUEUED: 2}
    assert counts.resync({JobStatus.QUEUED: 3}, head_sequence=6)
    assert counts.get() == {JobStatus.QUEUED: 3}
    # Never below zero on screen, even after a seed that counted an in-flight change.
    counts.apply([change(7, "z", JobStatus.RUNNING, JobStatus.FAILED)])
    assert counts.get() == {JobStatus.QUEUED: 3, JobStatus.RUNNING: 0, JobStatus.FAILED: 1}


def test_a_row_shows_only_what_is_true_of_its_status() -> None:
    last: dict[str, Any] = {"worker_id": "w1", "step": "upload", "message": "uploading", "progress": 50}
    running = JobRow.from_proto(job("a", JobStatus.RUNNING, **last))
    assert running.current_text() == ("[upload] uploading", False)
    assert running.current_worker_id == "w1"
    assert running.shows_progress
    delayed = JobRow.from_proto(job("a", JobStatus.DELAYED, status_reason="retry in 3s", **last))
    assert delayed.current_text() == ("retry in 3s", False)
    assert delayed.current_worker_id == ""
    assert not delayed.shows_progress
    timed_out = JobRow.from_proto(job("a", JobStatus.TIMED_OUT, status_reason="no update for 4s", **last))
    assert timed_out.current_text() == ("no update for 4s", False)
    assert timed_out.current_worker_id == "w1"
    completed = JobRow.from_proto(job("a", JobStatus.COMPLETED, **last))
    assert completed.current_text() == ("", False)
    assert completed.current_worker_id == ""
    assert completed.shows_progress
    failed_message = job("a", JobStatus.FAILED, **last)
    failed_message.error.kind = job_pb2.ErrorKind.ValueType(ErrorKind.LOST)
    failed_message.error.message = "no update for 4s"
    assert JobRow.from_proto(failed_message).current_text() == ("LOST: no update for 4s", True)
    cancelled = JobRow.from_proto(job("a", JobStatus.CANCELLED, status_reason="by an operator", **last))
    assert cancelled.current_text() == ("by an operator", False)


def test_filter_reads_statuses_and_words() -> None:
    job_filter = JobFilter.parse("status:failed,timed_out is:running asset:7 ACME")
    assert job_filter.statuses == {JobStatus.FAILED, JobStatus.TIMED_OUT, JobStatus.RUNNING}
    assert job_filter.text == "asset:7 ACME"
    assert JobFilter.parse(job_filter.query()) == job_filter
    message = job("a", JobStatus.FAILED)
    message.labels["tenant"] = "acme"
    message.locks.add(resource="asset:7", mode=int(LockMode.EXCLUSIVE))
    assert job_filter.matches(JobRow.from_proto(message))
    assert not job_filter.matches(JobRow.from_proto(job("b", JobStatus.FAILED)))
    assert not JobFilter(statuses=frozenset({JobStatus.QUEUED})).matches(JobRow.from_proto(message))


def test_filter_refuses_an_unknown_status_by_name() -> None:
    with pytest.raises(FilterError, match="unknown status 'finished'"):
        JobFilter.parse("status:finished")


def test_filter_toggles_statuses() -> None:
    job_filter = JobFilter().toggled(JobStatus.FAILED).toggled(JobStatus.RUNNING)
    assert job_filter.statuses == {JobStatus.FAILED, JobStatus.RUNNING}
    assert job_filter.toggled(JobStatus.FAILED).statuses == {JobStatus.RUNNING}
    assert job_filter.describe() == "RUNNING | FAILED"


def test_sort_orders_cycle_and_put_newest_first() -> None:
    rows = [
        JobRow.from_proto(job("old", JobStatus.COMPLETED, created_at=Timestamp(seconds=1))),
        JobRow.from_proto(job("new", JobStatus.RUNNING, created_at=Timestamp(seconds=2))),
    ]
    assert [row.id for row in sorted(rows, key=SortOrder.NEWEST.key())] == ["new", "old"]
    assert [row.id for row in sorted(rows, key=SortOrder.STATUS.key())] == ["new", "old"]
    orders = [SortOrder.NEWEST]
    for _ in SortOrder:
        orders.append(orders[-1].next())
    assert orders[-1] is SortOrder.NEWEST
    assert len(set(orders)) == len(SortOrder)


def test_formatting() -> None:
    assert format_duration(0) == "0s"
    assert format_duration(187) == "3m07s"
    assert format_duration(7500) == "2h05m"
    assert format_duration(3 * 86400 + 4 * 3600) == "3d04h"
    assert progress_bar(0, 10) == " " * 10
    assert progress_bar(100, 10) == "█" * 10
    assert progress_bar(55, 10).startswith("█████▌")
    assert len(progress_bar(37, 10)) == 10
    assert short_id("0193a2b4-aaaa-7bbb-8ccc-1234567890ab") == "567890ab"
    assert truncate("a long message", 6) == "a lon…"
    assert truncate("two\nlines", 20) == "two lines"


def test_struct_text_shows_whole_numbers_as_written() -> None:
    value = struct_pb2.Struct()
    value.update({"asset_id": 42, "ratio": 0.5, "nested": {"frames": [1, 2.5]}})
    text = struct_to_text(value)
    assert '"asset_id": 42,' in text
    assert '"ratio": 0.5' in text
    assert "2.5" in text
    assert "1.0" not in text
    assert struct_to_text(struct_pb2.Struct()) == "(none)"
