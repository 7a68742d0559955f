"""Deadlines as APScheduler timers: one date-triggered timer per pending deadline.

The database is the truth: every deadline is stored with its job (``Job.deadlines``) or its lock, and
after a restart the engine re-arms them all; a deadline that passed while the engine was down fires at
once (no misfire grace limit). Callbacks are ``async def`` so APScheduler runs them in the event loop
itself (a plain function would go through a thread pool and fall behind under load).

A timer only says "look at this job now": the callback re-reads the job and decides, so a timer that
fires for a deadline that has since moved or gone does nothing harmful.

Each part of the engine registers what its own kinds of timer do (``timers.on(kind, handler)``):
``Deadlines`` the job deadlines, ``ExternalLocks`` the lock TTLs; a new part brings its own kinds.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger

__all__ = ["TimerHandler", "TimerKind", "Timers"]

log = logging.getLogger("jobwarden.timers")


class TimerKind:
    #: a job that has not started by its start timeout
    START = "start"
    #: the first deadline: no update for heartbeat_timeout
    HEARTBEAT = "heartbeat"
    #: the second deadline: TIMED_OUT for takeover_timeout more
    TAKEOVER = "takeover"
    #: the total running time of an attempt
    EXECUTION = "execution"
    #: a DELAYED job becomes QUEUED
    WAKE = "wake"
    #: a running job was asked to cancel and did not answer in time
    CANCEL = "cancel"
    #: an external lock holder's TTL
    LOCK_TTL = "lock_ttl"


#: what a timer of one kind does when it fires, given the timer's key (a job id, a lock holder, ...)
TimerHandler = Callable[[str], None]


class Timers:
    def __init__(self) -> None:
        self._handlers: dict[str, TimerHandler] = {}
        self._scheduler = AsyncIOScheduler(
            timezone=UTC,
            job_defaults={"misfire_grace_time": None, "coalesce": True, "max_instances": 1},
        )
        self._armed: dict[str, float] = {}
        self.fired = 0
        #: seconds late of each fire while record_lateness is on (the benchmark reads it)
        self.lateness: list[float] = []
        self.record_lateness = False

    def on(self, kind: str, handler: TimerHandler, *, replace: bool = False) -> None:
        """Call ``handler(key)`` when a timer of ``kind`` fires. A kind has one handler: registering
        a second one is refused (two parts claiming a kind is a bug), unless ``replace`` says so."""
        if kind in self._handlers and not replace:
            raise ValueError(f"timer kind {kind!r} already has a handler")
        self._handlers[kind] = handler

    def handler(self, kind: str) -> TimerHandler | None:
        """The handler of ``kind``, if one is registered."""
        return self._handlers.get(kind)

    def start(self) -> None:
        self._scheduler.start()

    def stop(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)

    @property
    def pending(self) -> int:
        return len(self._armed)

    def due(self, kind: str, key: str) -> float | None:
        return self._armed.get(f"{kind}:{key}")

    def arm(self, kind: str, key: str, at: float) -> None:
        """Call the handler of ``kind`` with ``key`` at POSIX time ``at`` (at once if it has passed)."""
        timer_id = f"{kind}:{key}"
        if self._armed.get(timer_id) == at:
            return
        self._armed[timer_id] = at
        self._scheduler.add_job(
            self._fire,
            trigger=DateTrigger(run_date=datetime.fromtimestamp(at, tz=UTC)),
            args=(kind, key, at),
            id=timer_id,
            replace_existing=True,
        )

    def disarm(self, kind: str, key: str) -> None:
        timer_id = f"{kind}:{key}"
        if self._armed.pop(timer_id, None) is None:
            return
        with contextlib.suppress(JobLookupError):
            self._scheduler.remove_job(timer_id)

    async def _fire(self, kind: str, key: str, at: float) -> None:
        timer_id = f"{kind}:{key}"
        if self._armed.get(timer_id) == at:
            del self._armed[timer_id]
        if self.record_lateness:
            self.lateness.append(time.time() - at)
        self.fired += 1
        try:
            self._handlers[kind](key)
        except Exception:
            log.exception("timer %s failed", timer_id)
