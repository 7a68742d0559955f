"""LockService's side of the lock table: external holders acquire with a TTL, release, and list; an
admin force-releases the locks of a job whose executor has not confirmed its stop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from jobwarden.contract import Limits, LockMode

from .errors import (
    EngineStopping,
    FailedPrecondition,
    InvalidArgument,
    JobNotFound,
)
from .flow import FlowPart, JobFlow, lock_map
from .ids import parse_job_id
from .locks import LockHolding, ResourceView
from .timers import TimerKind
from .validation import (
    check_duration,
    check_lock_requests,
    check_string,
)

__all__ = ["ExternalLocks"]

log = logging.getLogger("jobwarden.engine")


class ExternalLocks(FlowPart):
    """Locks held by systems outside jobwarden, with a TTL (its timers are this part's)."""

    def __init__(self, flow: JobFlow) -> None:
        super().__init__(flow)
        self.locks = flow.locks
        #: external holders waiting in AcquireLock
        self._waiters: dict[str, asyncio.Future[None]] = {}
        #: holder -> when its locks expire
        self._ttls: dict[str, float] = {}
        self.timers.on(TimerKind.LOCK_TTL, self._on_lock_ttl)
        flow.on_external_grant(self._wake_waiter)

    def restore_ttl(self, holder: str, expires_at: float) -> None:
        """A holding read back from the store at start: its TTL runs on."""
        self._ttls[holder] = expires_at
        self.timers.arm(TimerKind.LOCK_TTL, holder, expires_at)

    def stop(self) -> None:
        """Wake every holder still waiting in AcquireLock with EngineStopping."""
        for future in self._waiters.values():
            if not future.done():
                future.set_exception(EngineStopping("the engine is stopping"))

    def _wake_waiter(self, holder: str) -> bool:
        """The locks ``holder`` waits for were granted: wake its AcquireLock (it persists them and arms
        their TTL). False when it no longer waits."""
        waiter = self._waiters.get(holder)
        if waiter is None or waiter.done():
            return False
        waiter.set_result(None)
        return True

    def _on_lock_ttl(self, holder: str) -> None:
        if not self.flow.running:
            return
        expires_at = self._ttls.get(holder)
        if expires_at is None or not self.locks.holds(holder):
            return
        if expires_at > self.clock() + 0.001:
            self.timers.arm(TimerKind.LOCK_TTL, holder, expires_at)
            return
        del self._ttls[holder]
        log.info("locks of %s expired (TTL)", holder)
        self.flow.release_locks_of(holder)

    async def acquire_locks(
        self, holder: str, requests: list[tuple[str, int]], ttl: float, wait: float | None
    ) -> list[tuple[str, LockHolding]]:
        """Locks for an external holder, all at once, released when ``ttl`` passes (counted from the
        grant). Unfree locks: FailedPrecondition at once, or with ``wait`` a FIFO wait up to that long."""
        self.flow.check_running()
        self._check_holder(holder)
        if not requests:
            raise InvalidArgument("at least one lock is required")
        locks = lock_map(check_lock_requests(requests))
        check_duration(ttl, "ttl")
        if wait is not None:
            check_duration(wait, "wait", allow_zero=True)
        may_wait = wait is not None and wait > 0
        if not self.locks.acquire(holder, locks, now=self.clock(), wait=may_wait):
            if not may_wait:
                raise FailedPrecondition(f"the locks are not free: {self._describe_busy(locks)}")
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters[holder] = future
            try:
                await asyncio.wait_for(asyncio.shield(future), wait)
            except TimeoutError:
                if not future.done():
                    self.flow.handle_grants(self.locks.withdraw(holder))
                    raise FailedPrecondition(
                        f"the locks were not granted within {wait:g}s: {self._describe_busy(locks)}"
                    ) from None
            except asyncio.CancelledError:
                # The caller gave up (deadline, cancel, disconnect): leave the queue, or give back
                # locks granted just now, before their TTL was armed; either would otherwise linger.
                if self.locks.is_waiting(holder):
                    self.flow.handle_grants(self.locks.withdraw(holder))
                elif self.locks.holds(holder):
                    self.flow.release_locks_of(holder)
                raise
            finally:
                self._waiters.pop(holder, None)
        expires_at = self.clock() + ttl
        for holding in self.locks.held_by(holder).values():
            holding.expires_at = expires_at
        self._ttls[holder] = expires_at
        self.flow.persist_holdings(holder)
        self.timers.arm(TimerKind.LOCK_TTL, holder, expires_at)
        await self.writer.flush()
        return sorted(self.locks.held_by(holder).items())

    @staticmethod
    def _check_holder(holder: str) -> None:
        if not holder or not holder.strip():
            raise InvalidArgument("holder is required")
        check_string(holder, "holder", 256)
        try:
            parse_job_id(holder)
        except InvalidArgument:
            return
        raise InvalidArgument("holder must not be a job id: jobs take their locks through the engine")

    def _describe_busy(self, locks: dict[str, LockMode]) -> str:
        parts = []
        for view in self.locks.view():
            if view.resource not in locks:
                continue
            holders = ", ".join(f"{h.holder} {h.mode.name}" for h in view.holders) or "nobody"
            waiting = f", {len(view.waiters)} waiting" if view.waiters else ""
            parts.append(f"{view.resource} held by {holders}{waiting}")
        return "; ".join(parts) or "earlier waiters come first"

    async def release_locks(self, holder: str, resources: Sequence[str]) -> int:
        self.flow.check_running()
        if not holder:
            raise InvalidArgument("holder is required")
        if not self.locks.holds(holder):
            raise FailedPrecondition(f"{holder} holds no locks")
        holdings = self.locks.held_by(holder)
        if any(h.job_id is not None for h in holdings.values()):
            raise FailedPrecondition("a job's locks are released by the engine when the job ends")
        released = self.flow.release_locks_of(holder, resources or None)
        if not self.locks.holds(holder):
            self.timers.disarm(TimerKind.LOCK_TTL, holder)
            self._ttls.pop(holder, None)
        await self.writer.flush()
        return released

    def list_locks(self, prefix: str = "") -> list[ResourceView]:
        return self.locks.view(prefix)

    def lock_holder_note(self, job_id: str | None) -> str:
        """What a reader of the lock table must know about a holding job: that it is being stopped."""
        job = self.registry.jobs.get(job_id) if job_id else None
        if job is None or job.stop_request is None or not job.stopping:
            return ""
        return f"held by a {job.stop_request.outcome} job whose executor has not stopped"

    async def force_release_job_locks(
        self, job_id: str, reason: str, *, actor: str
    ) -> tuple[int, dict[str, Any]]:
        """End a job being stopped as decided (KILLED or CANCELLED) without waiting for its worker, so
        its locks pass on: the admin's word that its executor no longer touches them. The worker's later
        messages about that attempt are refused as stale. Returns the locks released and the job."""
        self.flow.check_running()
        job_id = parse_job_id(job_id)
        if not reason.strip():
            raise InvalidArgument(
                "reason is required: say why the locks are released (it is kept with the job)"
            )
        check_string(reason, "reason", Limits.MAX_MESSAGE_LENGTH)
        job = self.registry.jobs.get(job_id)
        if job is None:
            finished = self.registry.get(job_id) or await self.read(self.store.get_job, job_id)
            if finished is None:
                raise JobNotFound(job_id)
            raise FailedPrecondition(
                f"job {job_id} is already {finished.status.name}: it holds no locks", job_id=job_id
            )
        if not job.stopping:
            raise FailedPrecondition(
                f"job {job_id} is {job.status.name} and not being stopped: only the locks of a job whose "
                "executor has not confirmed a stop (execution timeout or cancel) can be force-released",
                job_id=job_id,
            )
        released = len(self.locks.held_by(job.id))
        log.warning("locks of job %s force-released by %s: %s", job.id, actor, reason)
        self.flow.finish_stop(job, actor=actor, how=f"locks force-released by admin:{actor}: {reason}")
        snapshot = job.snapshot()
        await self.writer.flush()
        return released, snapshot
