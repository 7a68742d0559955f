"""What a worker has to tell the engine, gathered until the next write and sent in batches.

Reports made in the same turn of the event loop leave as one stream message per kind
(``job_updates``, ``job_results``), so a worker running thousands of short jobs a second writes a
few messages per turn, not several per job. Updates to one job merge while nothing forces an
order (a new step, a finished step).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, TypedDict, TypeVar, Unpack

from jobwarden.contract import Limits
from jobwarden.v1 import executor_service_pb2 as pb
from jobwarden.wire import dict_to_struct, duration, timestamp

__all__ = ["JobUpdateFields", "Outbox"]

JobKey = tuple[str, int]


class JobUpdateFields(TypedDict, total=False):
    """What a running job reports in an update (``JobContext`` to its reporter, then to the
    outbox); a field left out or None is not sent."""

    progress: int | None
    message: str | None
    step: str | None
    completed_step: tuple[str, dict[str, Any]] | None
    job_variables: Mapping[str, str] | None
    workflow_variables: Mapping[str, str] | None


class Outbox:
    def __init__(self) -> None:
        self._updates: list[pb.JobUpdate] = []
        #: the last queued update of each job, while more may merge into it
        self._open_update: dict[JobKey, pb.JobUpdate] = {}
        self._logs: dict[JobKey, list[pb.JobLogLine]] = {}
        self._results: list[pb.JobResult] = []
        self._cancel_acks: list[pb.CancelAck] = []
        self._releases: list[pb.RunningJob] = []
        self._release_reason = ""
        self._beats: dict[JobKey, timedelta | None] = {}
        self._heartbeat_due = False
        self._draining = False

    def __bool__(self) -> bool:
        return bool(
            self._updates
            or self._logs
            or self._results
            or self._cancel_acks
            or self._releases
            or self._heartbeat_due
        )

    def update(
        self, key: JobKey, *, finished_at: datetime | None = None, **fields: Unpack[JobUpdateFields]
    ) -> None:
        step, completed_step = fields.get("step"), fields.get("completed_step")
        current = self._open_update.get(key)
        # A step (starting or finished) fixes the order: start a new update after one that has one.
        if current is None or (
            (step is not None or completed_step is not None)
            and (current.HasField("step") or current.HasField("completed_step"))
        ):
            current = pb.JobUpdate(job_id=key[0], attempt=key[1])
            self._updates.append(current)
            self._open_update[key] = current
        if (progress := fields.get("progress")) is not None:
            current.progress = progress
        if (message := fields.get("message")) is not None:
            current.message = message
        if step is not None:
            current.step = step
        if completed_step is not None:
            name, data = completed_step
            done = current.completed_step
            done.name = name
            dict_to_struct(data, done.data)
            if finished_at is not None:
                done.finished_at.CopyFrom(timestamp(finished_at))
            # Nothing may merge into an update after its step finished: the next one starts anew.
            del self._open_update[key]
        if job_variables := fields.get("job_variables"):
            current.job_variables.update(job_variables)
        if workflow_variables := fields.get("workflow_variables"):
            current.workflow_variables.update(workflow_variables)

    def log(self, key: JobKey, level: str, message: str, time: datetime) -> None:
        line = pb.JobLogLine(level=level, message=message)
        line.time.CopyFrom(timestamp(time))
        self._logs.setdefault(key, []).append(line)

    def heartbeat(self, key: JobKey | None = None, extend: timedelta | None = None) -> None:
        """Queue a heartbeat now (vouching for ``key`` too, if given)."""
        self._heartbeat_due = True
        if key is not None:
            previous = self._beats.get(key)
            self._beats[key] = extend if previous is None or (extend and extend > previous) else previous

    def set_draining(self) -> None:
        self._draining = True
        self._heartbeat_due = True

    def result(self, result: pb.JobResult) -> None:
        self._results.append(result)

    def clear_results(self) -> None:
        self._results = []

    def cancel_ack(self, key: JobKey) -> None:
        self._cancel_acks.append(pb.CancelAck(job_id=key[0], attempt=key[1]))

    def release(self, keys: list[JobKey], reason: str) -> None:
        self._releases.extend(pb.RunningJob(job_id=job_id, attempt=attempt) for job_id, attempt in keys)
        self._release_reason = reason

    def drop_job(self, key: JobKey) -> None:
        """Forget what is queued about a job that is no longer this worker's."""
        self._open_update.pop(key, None)
        self._logs.pop(key, None)
        self._beats.pop(key, None)
        self._updates = [u for u in self._updates if (u.job_id, u.attempt) != key]

    def take(self, vouched: list[JobKey]) -> list[pb.ConnectRequest]:
        """Everything queued, as stream messages in a safe order; the outbox is empty after.

        ``vouched`` are the running jobs a due heartbeat vouches for. Logs and updates go before
        results, so a job's last reports reach the engine before it finishes.
        """
        messages: list[pb.ConnectRequest] = []
        for (job_id, attempt), lines in self._logs.items():
            # The engine takes at most MAX_LOG_LINES_PER_MESSAGE lines per JobLog.
            step = Limits.MAX_LOG_LINES_PER_MESSAGE
            for start in range(0, len(lines), step):
                chunk = lines[start : start + step]
                messages.append(
                    pb.ConnectRequest(job_log=pb.JobLog(job_id=job_id, attempt=attempt, lines=chunk))
                )
        self._logs = {}
        for updates in _chunks(self._updates):
            if len(updates) == 1:
                messages.append(pb.ConnectRequest(job_update=updates[0]))
            else:
                messages.append(pb.ConnectRequest(job_updates=pb.JobUpdates(updates=updates)))
        self._updates = []
        self._open_update = {}
        if self._heartbeat_due:
            beats = dict.fromkeys(vouched) | self._beats
            jobs = []
            for (job_id, attempt), extend in beats.items():
                beat = pb.JobHeartbeat(job_id=job_id, attempt=attempt)
                if extend is not None:
                    beat.extend_execution.CopyFrom(duration(extend))
                jobs.append(beat)
            messages.append(pb.ConnectRequest(heartbeat=pb.Heartbeat(jobs=jobs, draining=self._draining)))
            self._beats = {}
            self._heartbeat_due = False
        for results in _chunks(self._results):
            if len(results) == 1:
                messages.append(pb.ConnectRequest(job_result=results[0]))
            else:
                messages.append(pb.ConnectRequest(job_results=pb.JobResults(results=results)))
        self._results = []
        messages.extend(pb.ConnectRequest(cancel_ack=ack) for ack in self._cancel_acks)
        self._cancel_acks = []
        if self._releases:
            release = pb.ReleaseJobs(jobs=self._releases, reason=self._release_reason)
            messages.append(pb.ConnectRequest(release_jobs=release))
            self._releases = []
        return messages


#: a batch message stays under this many bytes (a gRPC message may be MAX_MESSAGE_BYTES whole)
_BATCH_BYTES = Limits.MAX_MESSAGE_BYTES // 2

Item = TypeVar("Item", pb.JobUpdate, pb.JobResult)


def _chunks(items: list[Item]) -> list[list[Item]]:
    """``items`` in order, cut into batches that each fit in one stream message."""
    if not items:
        return []
    batches: list[list[Item]] = [[]]
    size = 0
    for item in items:
        item_size = item.ByteSize() + 8
        if batches[-1] and size + item_size > _BATCH_BYTES:
            batches.append([])
            size = 0
        batches[-1].append(item)
        size += item_size
    return batches
