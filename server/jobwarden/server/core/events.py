"""The live event stream: committed events fan out to every subscriber without ever waiting on one.

Each subscriber has a bounded buffer. Publishing appends to it and returns at once; a subscriber whose
buffer overflows is cut (``Overflowed``), so a slow reader never slows the engine or other readers,
and it reconnects from its last sequence. A cut takes effect at once, whether or not the reader ever
asks for more: the subscription leaves the bus, drops its buffer and calls its ``on_cut``. Events
arrive here only after they are committed, in sequence order, so a reader that replays from the store
up to ``head`` and then follows the bus sees every event exactly once.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass

from jobwarden.contract import JobStatus

from .errors import ResourceExhausted
from .model import Event

__all__ = ["EventBatch", "EventBus", "EventFilter", "Overflowed", "Subscription"]


class Overflowed(ResourceExhausted):
    """The subscriber fell too far behind; it must reconnect from its last sequence."""


@dataclass(slots=True, frozen=True)
class EventFilter:
    statuses: frozenset[JobStatus] = frozenset()
    actions: frozenset[str] = frozenset()
    job_ids: frozenset[str] = frozenset()

    def is_empty(self) -> bool:
        return not (self.statuses or self.actions or self.job_ids)

    def matches(self, ev: Event) -> bool:
        if self.job_ids and ev.job_id not in self.job_ids:
            return False
        if self.actions and ev.action not in self.actions:
            return False
        return not self.statuses or ev.status in self.statuses


class EventBatch:
    """Events committed together. Unfiltered subscribers share one batch object, so whatever the API
    layer makes of it (``encoded``) is made once for all of them."""

    __slots__ = ("encoded", "events")

    def __init__(self, events: list[Event]) -> None:
        self.events = events
        self.encoded: bytes | None = None


class Subscription:
    def __init__(
        self,
        bus: EventBus,
        event_filter: EventFilter,
        max_pending: int,
        peer: str,
        on_cut: Callable[[], None] | None = None,
    ) -> None:
        self._bus = bus
        #: called once, from ``publish``, when the subscription is cut
        self.on_cut = on_cut
        self.filter = event_filter
        self.max_pending = max_pending
        self.peer = peer
        #: the newest sequence published when the subscription started: replay up to here from the store
        self.start_head = bus.head
        self._batches: deque[EventBatch] = deque()
        self._pending = 0
        self._ready = asyncio.Event()
        self.overflowed = False
        self.closed = False

    def push(self, batch: EventBatch) -> None:
        if self.overflowed or self.closed:
            return
        if not self.filter.is_empty():
            events = [ev for ev in batch.events if self.filter.matches(ev)]
            if not events:
                return
            batch = EventBatch(events)
        self._pending += len(batch.events)
        if self._pending > self.max_pending:
            self._cut()
        else:
            self._batches.append(batch)
        self._ready.set()

    def _cut(self) -> None:
        # The reader may be stuck writing to a client that never reads: free what the cut frees now.
        self.overflowed = True
        self._batches.clear()
        self._pending = 0
        self._bus.unsubscribe(self)
        if self.on_cut is not None:
            self.on_cut()

    async def next_batches(self, timeout: float | None = None) -> list[EventBatch]:
        """The batches published since the last call, in order; [] after ``timeout``."""
        if not self._batches and not self.overflowed and not self.closed:
            self._ready.clear()
            try:
                await asyncio.wait_for(self._ready.wait(), timeout)
            except TimeoutError:
                return []
        if self.overflowed:
            raise Overflowed(
                f"watcher fell more than {self.max_pending} events behind; reconnect with after_sequence"
            )
        batches = list(self._batches)
        self._batches.clear()
        self._pending = 0
        return batches

    async def next_batch(self, timeout: float | None = None) -> list[Event]:
        """The events published since the last call (all of them, in order); [] after ``timeout``."""
        return [ev for batch in await self.next_batches(timeout) for ev in batch.events]

    def close(self) -> None:
        self.closed = True
        self._ready.set()
        self._bus.unsubscribe(self)


class EventBus:
    def __init__(self, head: int = 0, max_pending: int = 50_000) -> None:
        #: the newest sequence published (every event up to it is committed)
        self.head = head
        self.max_pending = max_pending
        self._subscribers: set[Subscription] = set()

    def subscribe(
        self,
        event_filter: EventFilter | None = None,
        *,
        max_pending: int | None = None,
        peer: str = "",
        on_cut: Callable[[], None] | None = None,
    ) -> Subscription:
        sub = Subscription(self, event_filter or EventFilter(), max_pending or self.max_pending, peer, on_cut)
        self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscribers.discard(sub)

    def publish(self, events: list[Event]) -> None:
        self.head = events[-1].sequence
        batch = EventBatch(events)
        for sub in tuple(self._subscribers):
            sub.push(batch)

    def subscribers(self) -> Collection[Subscription]:
        return self._subscribers

    def close_all(self) -> None:
        for sub in tuple(self._subscribers):
            sub.close()
