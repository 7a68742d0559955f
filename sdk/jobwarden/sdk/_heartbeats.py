"""How often a worker vouches for its jobs: the engine's interval, or more often for a job whose own
heartbeat timeout is shorter than it."""

from __future__ import annotations

import asyncio

from jobwarden.sdk._ledger import Job, Ledger
from jobwarden.sdk._outbox import JobKey

__all__ = ["Heartbeats"]


class Heartbeats:
    """The worker's heartbeat period, and the loop that beats at it during a session."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        #: the engine's heartbeat interval in seconds (from ``Registered``)
        self.interval = 5.0
        self._period_changed = asyncio.Event()

    def watch_job(self, job: Job, timeout: float) -> None:
        """A new job's own heartbeat timeout; one shorter than the interval allows beats sooner."""
        job.heartbeat_timeout = timeout
        if timeout and timeout / 3 < self.interval:
            # A job that must be vouched for more often than the engine's interval: beat now, then
            # at the shorter period.
            self.ledger.outbox.heartbeat()
            self.ledger.kick()
            self._period_changed.set()

    async def beat(self) -> None:
        """Send a heartbeat every period, forever (cancelled with the session)."""
        while True:
            self._period_changed.clear()
            try:
                await asyncio.wait_for(self._period_changed.wait(), self.period())
            except TimeoutError:
                self.ledger.outbox.heartbeat()
                self.ledger.kick()

    def period(self) -> float:
        """The engine's interval, or less when a vouched job's heartbeat timeout is shorter than it."""
        period = self.interval
        for job in self.ledger.running.values():
            if job.heartbeat_timeout and job.hosted.executor.auto_heartbeat:
                period = min(period, job.heartbeat_timeout / 3)
        return max(period, 0.05)

    def vouched(self) -> list[JobKey]:
        """The jobs a heartbeat vouches for: running here, not being stopped, not self-heartbeating."""
        return [
            job.key
            for job in self.ledger.running.values()
            if job.hosted.executor.auto_heartbeat and not job.detached and not job.cancel_requested
        ]
