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
from .workflows.runs import WorkflowEvent

__all__ = ["EventBatch", "EventBus", "EventFilter", "Overflowed", "Subscription"]


class Overflowed(ResourceExhausted):
    """The subscriber fell too far behind; it must reconnect from its last sequence."""


@dataclass(slots=True, frozen=True)
class EventFilter:
    statuses: frozenset[JobStatus] = frozenset()
    actions: frozenset[str] = frozenset()
    job_ids: frozenset[str] = frozenset()
    #: also workflow events (of these runs or work orders only, when given)
    workflow_events: bool = False
    run_ids: frozenset[str] = frozenset()
    work_order_ids: frozenset[str] = frozenset()
    #: workflow events only
    exclude_job_events: bool = False

    def is_empty(self) -> bool:
        """Whether every job event passes (workflow events are asked for apart)."""
        return not (self.statuses or self.actions or self.job_ids or self.exclude_job_events)

    def matches_workflow(self, ev: WorkflowEvent) -> bool:
        if not self.workflow_events:
            return False
        if self.run_ids or self.work_order_ids:
            return ev.run_id in self.run_ids or ev.work_order_id in self.work_order_ids
        return True

    def matches(self, ev: Event) -> bool:
        if self.exclude_job_events:
            return False
        if self.job_ids and ev.job_id not in self.job_ids:
            return False
        if self.actions and ev.action not in self.actions:
            return False
        return not self.statuses or ev.status in self.statuses


class EventBatch:
    """Events committed together. Unfiltered subscribers share one batch object, so whatever the API
    layer makes of it (``encoded``) is made once for all of them."""

    __slots__ = ("_jobs_only", "encoded", "events", "workflow_events")

    def __init__(self, events: list[Event], workflow_events: list[WorkflowEvent] | None = None) -> None:
        self.events = events
        self.workflow_events: list[WorkflowEvent] = workflow_events or []
        self.encoded: bytes | None = None
        self._jobs_only: EventBatch | None = None

    @property
    def first_sequence(self) -> int:
        firsts = [e[0].sequence for e in (self.events, self.workflow_events) if e]
        return min(firsts) if firsts else 0

    def jobs_only(self) -> EventBatch | None:
        """The batch without its workflow events (shared by every subscriber that wants job events
        only), or None when it has no job event."""
        if not self.workflow_events:
            return self if self.events else None
        if not self.events:
            return None
        if self._jobs_only is None:
            self._jobs_only = EventBatch(self.events)
        return self._jobs_only

    def __len__(self) -> int:
        return len(self.events) + len(self.workflow_events)


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
        event_filter = self.filter
        if not event_filter.workflow_events:
            jobs_only = batch.jobs_only()
            if jobs_only is None:
                return
            batch = jobs_only
        if not event_filter.is_empty() or (
            event_filter.workflow_events and (event_filter.run_ids or event_filter.work_order_ids)
        ):
            events = [ev for ev in batch.events if event_filter.matches(ev)]
            workflow_events = [ev for ev in batch.workflow_events if event_filter.matches_workflow(ev)]
            if not events and not workflow_events:
                return
            batch = EventBatch(events, workflow_events)
        elif not len(batch):
            return
        self._pending += len(batch)
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
        """The job events published since the last call (all of them, in order); [] after ``timeout``."""
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

    def publish(self, events: list[Event], workflow_events: list[WorkflowEvent] | None = None) -> None:
        lasts = [e[-1].sequence for e in (events, workflow_events) if e]
        if not lasts:
            return
        self.head = max(lasts)
        batch = EventBatch(events, workflow_events)
        for sub in tuple(self._subscribers):
            sub.push(batch)

    def subscribers(self) -> Collection[Subscription]:
        return self._subscribers

    def close_all(self) -> None:
        for sub in tuple(self._subscribers):
            sub.close()
