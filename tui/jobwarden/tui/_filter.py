"""What the jobs table shows and in which order: the filter and the sort orders."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from jobwarden.contract import JobStatus

from ._format import STATUS_LABEL
from ._model import JobRow

_STATUS_WORDS: dict[str, JobStatus] = {}
for _status in JobStatus:
    _STATUS_WORDS[_status.name.lower()] = _status
    _STATUS_WORDS[_status.name.lower().replace("_", "")] = _status
    _STATUS_WORDS[STATUS_LABEL[_status].lower().replace(" ", "")] = _status
    _STATUS_WORDS[STATUS_LABEL[_status].lower().replace(" ", "_")] = _status


class FilterError(ValueError):
    """A filter that cannot be understood, e.g. an unknown status name."""


def parse_status(word: str) -> JobStatus:
    """A status from its name in any case, with or without underscores (``timed_out``, ``waitlock``)."""
    try:
        return _STATUS_WORDS[word.strip().lower().replace("-", "_")]
    except KeyError:
        names = ", ".join(status.name.lower() for status in JobStatus)
        raise FilterError(f"unknown status {word!r}; use one of: {names}") from None


@dataclass(frozen=True, slots=True)
class JobFilter:
    """Jobs whose status is one of ``statuses`` (any when empty) and whose text holds every word.

    Words are matched, case-insensitively, in the id, action, message, worker, correlation id,
    error message, step, labels (``key=value``) and lock resources.
    """

    text: str = ""
    statuses: frozenset[JobStatus] = field(default_factory=frozenset)

    @classmethod
    def parse(cls, query: str, statuses: frozenset[JobStatus] = frozenset()) -> JobFilter:
        """Read ``status:failed,running`` (or ``is:``) tokens and free words from one line."""
        words: list[str] = []
        found: set[JobStatus] = set(statuses)
        for token in query.split():
            prefix, sep, rest = token.partition(":")
            if sep and prefix.lower() in ("status", "is", "s"):
                for name in rest.split(","):
                    if name:
                        found.add(parse_status(name))
            else:
                words.append(token)
        return cls(" ".join(words), frozenset(found))

    @property
    def active(self) -> bool:
        return bool(self.text or self.statuses)

    @property
    def words(self) -> tuple[str, ...]:
        return tuple(self.text.lower().split())

    def matches(self, row: JobRow) -> bool:
        if self.statuses and row.status not in self.statuses:
            return False
        words = self.words
        if not words:
            return True
        haystack = row.search_text()
        return all(word in haystack for word in words)

    def matches_text(self, *values: str) -> bool:
        """Whether the words all appear in ``values`` (the other screens filter their rows by text)."""
        words = self.words
        if not words:
            return True
        haystack = "\n".join(values).lower()
        return all(word in haystack for word in words)

    def toggled(self, status: JobStatus) -> JobFilter:
        return JobFilter(self.text, self.statuses ^ {status})

    def with_text(self, text: str) -> JobFilter:
        return JobFilter(text, self.statuses)

    def query(self) -> str:
        """The filter as a line ``parse`` reads back."""
        parts = []
        if self.statuses:
            names = ",".join(status.name.lower() for status in sorted(self.statuses))
            parts.append(f"status:{names}")
        if self.text:
            parts.append(self.text)
        return " ".join(parts)

    def describe(self) -> str:
        if not self.active:
            return "all jobs"
        parts = []
        if self.statuses:
            parts.append(" | ".join(STATUS_LABEL[status] for status in sorted(self.statuses)))
        if self.text:
            parts.append(f"“{self.text}”")
        return " and ".join(parts)


_STATUS_ORDER = {
    JobStatus.RUNNING: 0,
    JobStatus.TIMED_OUT: 1,
    JobStatus.WAITING_FOR_LOCK: 2,
    JobStatus.QUEUED: 3,
    JobStatus.DELAYED: 4,
    JobStatus.FAILED: 5,
    JobStatus.CANCELLED: 6,
    JobStatus.REJECTED: 7,
    JobStatus.COMPLETED: 8,
}


class SortOrder(Enum):
    """The orders ``s`` cycles through; each value is (title, the column it marks)."""

    NEWEST = ("newest first", "age")
    STATUS = ("status", "status")
    ACTION = ("action", "action")
    PROGRESS = ("progress", "progress")
    ACTIVITY = ("recent activity", "message")

    @property
    def title(self) -> str:
        return self.value[0]

    @property
    def column(self) -> str:
        return self.value[1]

    def key(self) -> Callable[[JobRow], Any]:
        """A key that sorts ascending into this order, with the newest job first among equals."""
        return _KEYS[self]

    def next(self) -> SortOrder:
        orders = list(SortOrder)
        return orders[(orders.index(self) + 1) % len(orders)]


_KEYS: dict[SortOrder, Callable[[JobRow], Any]] = {
    SortOrder.NEWEST: lambda row: (-row.created_at, row.id),
    SortOrder.STATUS: lambda row: (_STATUS_ORDER[row.status], -row.created_at, row.id),
    SortOrder.ACTION: lambda row: (row.action, -row.created_at, row.id),
    SortOrder.PROGRESS: lambda row: (-row.progress, -row.created_at, row.id),
    SortOrder.ACTIVITY: lambda row: (-row.updated_at, row.id),
}
