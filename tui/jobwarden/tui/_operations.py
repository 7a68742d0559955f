"""The state-changing calls the console makes, run many at once and summed up for a notification."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from jobwarden.contract import OPERATOR_RETRYABLE_STATUSES, JobStatus, can_transition
from jobwarden.sdk import JobwardenError

from ._format import STATUS_LABEL, short_id
from ._model import JobRow

#: calls in flight at once when acting on many jobs
_CONCURRENCY = 16
#: jobs named one by one in a confirmation; the rest are counted
NAMED_IN_CONFIRMATION = 6


def can_cancel(status: JobStatus) -> bool:
    return can_transition(status, JobStatus.CANCELLED)


def can_retry(status: JobStatus) -> bool:
    return status in OPERATOR_RETRYABLE_STATUSES


@dataclass(slots=True)
class Selection:
    """The jobs an operation applies to, and those it skips with the reason."""

    eligible: list[JobRow] = field(default_factory=list)
    skipped: dict[JobStatus, int] = field(default_factory=dict)

    @classmethod
    def of(cls, rows: Sequence[JobRow], allowed: Callable[[JobStatus], bool]) -> Selection:
        selection = cls()
        for row in rows:
            if allowed(row.status):
                selection.eligible.append(row)
            else:
                selection.skipped[row.status] = selection.skipped.get(row.status, 0) + 1
        return selection

    def skipped_text(self, verb: str) -> str:
        """ "2 skipped: COMPLETED (2) cannot be cancelled", or empty."""
        if not self.skipped:
            return ""
        total = sum(self.skipped.values())
        statuses = ", ".join(
            f"{STATUS_LABEL[status]} ({count})" for status, count in sorted(self.skipped.items())
        )
        return f"{total} skipped: {statuses} cannot be {verb}"


def describe_rows(rows: Sequence[JobRow]) -> list[str]:
    """One line per job for a confirmation (the first few), and how many more."""
    lines = [
        f"{short_id(row.id)}  {row.action}  {STATUS_LABEL[row.status]}"
        for row in rows[:NAMED_IN_CONFIRMATION]
    ]
    if len(rows) > NAMED_IN_CONFIRMATION:
        lines.append(f"… and {len(rows) - NAMED_IN_CONFIRMATION} more")
    return lines


@dataclass(slots=True)
class Outcome:
    """How a batch of calls went."""

    done: int = 0
    refused: list[tuple[str, JobwardenError]] = field(default_factory=list)

    def summary(self, verb: str) -> str:
        text = f"{verb} {self.done} job{'s' if self.done != 1 else ''}"
        if self.refused:
            job_id, error = self.refused[0]
            text += f"; {len(self.refused)} refused ({short_id(job_id)}: {error})"
        return text


async def run_all(job_ids: Sequence[str], call: Callable[[str], Awaitable[object]]) -> Outcome:
    """``call`` for every id, a few at a time; refusals are collected, not raised."""
    outcome = Outcome()
    gate = asyncio.Semaphore(_CONCURRENCY)

    async def one(job_id: str) -> None:
        async with gate:
            try:
                await call(job_id)
            except JobwardenError as error:
                outcome.refused.append((job_id, error))
            else:
                outcome.done += 1

    await asyncio.gather(*(one(job_id) for job_id in job_ids))
    return outcome
