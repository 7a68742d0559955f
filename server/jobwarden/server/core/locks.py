"""The lock table: named resources held SHARED or EXCLUSIVE by jobs and external holders.

Rules (and why they cannot deadlock or starve):
- A holder's locks are taken all at once or not at all; it never holds some while waiting for others,
  so no cycle of holders waiting on each other can form.
- Waiters are ordered by one global arrival counter. A request is granted only when, on every one of
  its resources, it is compatible with the holders *and* with every earlier waiter there. So waiters
  are served FIFO per resource, and a waiting EXCLUSIVE request is never overtaken by SHARED requests
  that arrived after it (no writer starvation).
- A holder that arrived earlier is always granted before a conflicting later one, and the global
  order is the same on every resource, so a multi-resource waiter cannot be blocked forever.

This module holds state only; the engine persists it and acts on grants.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from jobwarden.contract import LockMode

from .errors import FailedPrecondition, LockNotHeld

__all__ = ["Grant", "LockHolding", "LockTable", "ResourceView"]


def _conflicts(a: LockMode, b: LockMode) -> bool:
    return a is LockMode.EXCLUSIVE or b is LockMode.EXCLUSIVE


@dataclass(slots=True)
class LockHolding:
    holder: str
    mode: LockMode
    job_id: str | None
    since: float
    expires_at: float | None = None


@dataclass(slots=True)
class _Waiter:
    holder: str
    requests: dict[str, LockMode]
    order: int
    job_id: str | None
    since: float
    expires_at: float | None


@dataclass(slots=True, frozen=True)
class Grant:
    """A waiter that was just given all of its locks."""

    holder: str
    job_id: str | None


@dataclass(slots=True)
class ResourceView:
    resource: str
    holders: list[LockHolding] = field(default_factory=list)
    waiters: list[LockHolding] = field(default_factory=list)


class LockTable:
    def __init__(self) -> None:
        self._held: dict[str, dict[str, LockHolding]] = {}
        self._by_holder: dict[str, dict[str, LockHolding]] = {}
        self._queues: dict[str, list[_Waiter]] = {}
        self._waiting: dict[str, _Waiter] = {}
        self._order = 0

    # -- queries ----------------------------------------------------------------------------------

    def holds(self, holder: str) -> bool:
        return holder in self._by_holder

    def is_waiting(self, holder: str) -> bool:
        return holder in self._waiting

    def held_by(self, holder: str) -> Mapping[str, LockHolding]:
        return self._by_holder.get(holder, {})

    def holders_of(self, resource: str) -> list[LockHolding]:
        return list(self._held.get(resource, {}).values())

    def waiter_count(self) -> int:
        return len(self._waiting)

    def view(self, prefix: str = "") -> list[ResourceView]:
        resources = sorted(r for r in set(self._held) | set(self._queues) if r.startswith(prefix))
        views = []
        for resource in resources:
            view = ResourceView(resource)
            view.holders = list(self._held.get(resource, {}).values())
            view.waiters = [
                LockHolding(w.holder, w.requests[resource], w.job_id, w.since, w.expires_at)
                for w in self._queues.get(resource, ())
            ]
            views.append(view)
        return views

    # -- changes ----------------------------------------------------------------------------------

    def acquire(
        self,
        holder: str,
        requests: Mapping[str, LockMode],
        *,
        now: float,
        job_id: str | None = None,
        expires_at: float | None = None,
        wait: bool = True,
    ) -> bool:
        """Take every lock in ``requests`` now and return True, or (``wait``) queue for them and
        return False. With ``wait=False`` a request that cannot be granted changes nothing."""
        if holder in self._by_holder or holder in self._waiting:
            raise FailedPrecondition(
                f"{holder} already holds or awaits locks; release them first", job_id=job_id
            )
        if not requests:
            return True
        if self._grantable(requests, before=None):
            self._grant(holder, requests, job_id, now, expires_at)
            return True
        if not wait:
            return False
        self._order += 1
        waiter = _Waiter(holder, dict(requests), self._order, job_id, now, expires_at)
        self._waiting[holder] = waiter
        for resource in requests:
            self._queues.setdefault(resource, []).append(waiter)
        return False

    def restore(
        self,
        holder: str,
        resource: str,
        mode: LockMode,
        *,
        job_id: str | None,
        since: float,
        expires_at: float | None,
    ) -> None:
        """Put back a holding read from the store (at start-up)."""
        holding = LockHolding(holder, mode, job_id, since, expires_at)
        self._held.setdefault(resource, {})[holder] = holding
        self._by_holder.setdefault(holder, {})[resource] = holding

    def release(self, holder: str, resources: Iterable[str] | None = None) -> tuple[list[str], list[Grant]]:
        """Give back ``resources`` (all when None). Returns what was released and the waiters it let in.
        Releasing a resource the holder does not hold raises LockNotHeld and changes nothing."""
        held = self._by_holder.get(holder, {})
        names = list(held) if resources is None else list(dict.fromkeys(resources))
        missing = [r for r in names if r not in held]
        if missing:
            raise LockNotHeld(f"{holder} does not hold {', '.join(sorted(missing))}")
        for resource in names:
            del held[resource]
            holders = self._held[resource]
            del holders[holder]
            if not holders:
                del self._held[resource]
        if not held:
            self._by_holder.pop(holder, None)
        return names, self._admit(names)

    def withdraw(self, holder: str) -> list[Grant]:
        """Stop waiting (a cancelled job); returns the waiters this lets in."""
        waiter = self._waiting.pop(holder, None)
        if waiter is None:
            return []
        for resource in waiter.requests:
            queue = self._queues[resource]
            queue.remove(waiter)
            if not queue:
                del self._queues[resource]
        return self._admit(list(waiter.requests))

    # -- internals --------------------------------------------------------------------------------

    def _grantable(self, requests: Mapping[str, LockMode], before: int | None) -> bool:
        for resource, mode in requests.items():
            for holding in self._held.get(resource, {}).values():
                if _conflicts(holding.mode, mode):
                    return False
            for waiter in self._queues.get(resource, ()):
                if before is not None and waiter.order >= before:
                    break
                if _conflicts(waiter.requests[resource], mode):
                    return False
        return True

    def _grant(
        self,
        holder: str,
        requests: Mapping[str, LockMode],
        job_id: str | None,
        now: float,
        expires_at: float | None,
    ) -> None:
        mine = self._by_holder.setdefault(holder, {})
        for resource, mode in requests.items():
            holding = LockHolding(holder, mode, job_id, now, expires_at)
            self._held.setdefault(resource, {})[holder] = holding
            mine[resource] = holding

    def _admit(self, resources: list[str]) -> list[Grant]:
        """Grant, in arrival order, every waiter on ``resources`` that can now have all its locks."""
        candidates: dict[str, _Waiter] = {}
        for resource in resources:
            holders = self._held.get(resource, {})
            exclusive_held = any(h.mode is LockMode.EXCLUSIVE for h in holders.values())
            for waiter in self._queues.get(resource, ()):
                candidates[waiter.holder] = waiter
                mode = waiter.requests[resource]
                # Nobody behind this waiter on this resource can go before it: an EXCLUSIVE waiter
                # conflicts with all of them, and a waiter the holders block blocks those behind it.
                if mode is LockMode.EXCLUSIVE or exclusive_held:
                    break
        grants = []
        for waiter in sorted(candidates.values(), key=lambda w: w.order):
            if self._grantable(waiter.requests, before=waiter.order):
                del self._waiting[waiter.holder]
                for resource in waiter.requests:
                    queue = self._queues[resource]
                    queue.remove(waiter)
                    if not queue:
                        del self._queues[resource]
                self._grant(waiter.holder, waiter.requests, waiter.job_id, waiter.since, waiter.expires_at)
                grants.append(Grant(waiter.holder, waiter.job_id))
        return grants
