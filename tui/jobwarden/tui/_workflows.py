"""Work orders and their runs as the console keeps them: a snapshot, then the workflow events.

``OrderStore`` holds the work orders listed (newest first) and the runs the events carry, and the
ids that changed since the screen last looked (the same habit as the jobs' ``JobStore``: the stream
writes plain data, a flush a few times a second draws the difference). ``OrderFeed.run`` fills it:
the engine's head sequence, one ``ListWorkOrders`` page, then every workflow event after that head
(``WatchJobs`` with ``workflow_events``, reconnecting by itself), so no change is missed between
the listing and the stream.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from jobwarden.sdk import JobClient, JobwardenError
from jobwarden.v1 import workflow_pb2

log = logging.getLogger("jobwarden.console")

__all__ = [
    "RUN_STATUS_LABEL",
    "RUN_TERMINAL",
    "OrderFeed",
    "OrderStore",
    "run_status_class",
]

#: how each run (and work order) status reads in a chip
RUN_STATUS_LABEL: dict[int, str] = {
    workflow_pb2.WORKFLOW_RUN_STATUS_UNSPECIFIED: "?",
    workflow_pb2.WORKFLOW_RUN_STATUS_RUNNING: "RUNNING",
    workflow_pb2.WORKFLOW_RUN_STATUS_DELAYED: "DELAYED",
    workflow_pb2.WORKFLOW_RUN_STATUS_COMPLETED: "COMPLETED",
    workflow_pb2.WORKFLOW_RUN_STATUS_FAILED: "FAILED",
    workflow_pb2.WORKFLOW_RUN_STATUS_CANCELLED: "CANCELLED",
}
RUN_TERMINAL: frozenset[int] = frozenset(
    {
        workflow_pb2.WORKFLOW_RUN_STATUS_COMPLETED,
        workflow_pb2.WORKFLOW_RUN_STATUS_FAILED,
        workflow_pb2.WORKFLOW_RUN_STATUS_CANCELLED,
    }
)
#: the work orders listed at first (newest first); later ones arrive by the stream
SNAPSHOT_SIZE = 500
#: work orders kept; the oldest finished ones go first
KEEP_ORDERS = 2000
#: seconds before the feed tries again after the engine refused or went away
_RETRY_AFTER = 2.0


def run_status_class(status: int) -> str:
    """The CSS name of a run status (the job statuses' colours: ``status--failed``)."""
    return RUN_STATUS_LABEL.get(status, "?").lower().replace("?", "queued")


@dataclass(slots=True)
class OrderStore:
    orders: dict[str, workflow_pb2.WorkOrder] = field(default_factory=dict)
    #: the newest state of each run the stream told of (steps and edges, no results)
    runs: dict[str, workflow_pb2.WorkflowRun] = field(default_factory=dict)
    dirty_orders: set[str] = field(default_factory=set)
    dirty_runs: set[str] = field(default_factory=set)
    #: runs known only from step events (one step each): to be read whole
    incomplete: set[str] = field(default_factory=set)
    #: the sequence of the last event applied
    sequence: int = 0
    loaded: bool = False

    def load(self, orders: Iterable[workflow_pb2.WorkOrder], sequence: int) -> None:
        self.orders = {order.id: order for order in orders}
        self.sequence = sequence
        self.loaded = True
        self.dirty_orders.update(self.orders)

    def apply(self, event: workflow_pb2.WorkflowEvent) -> None:
        """One workflow event: the work order and the run it carries, unless we hold newer ones."""
        self.sequence = max(self.sequence, event.sequence)
        if event.HasField("order") and event.order.id:
            known = self.orders.get(event.order.id)
            if known is None or known.sequence <= event.order.sequence:
                self.orders[event.order.id] = event.order
                self.dirty_orders.add(event.order.id)
        if event.HasField("run") and event.run.id:
            run_id = event.run.id
            known_run = self.runs.get(run_id)
            if known_run is None or known_run.sequence <= event.run.sequence:
                if event.type == workflow_pb2.WORKFLOW_EVENT_TYPE_STEP_CHANGED:
                    # The changed step alone (no other steps, no edges: workflow.proto).
                    self.runs[run_id] = _with_step(known_run, event.run)
                    if known_run is None:
                        self.incomplete.add(run_id)
                else:
                    # Every step, and no edges: the ones known are kept.
                    run = event.run
                    if known_run is not None and not run.edges and known_run.edges:
                        run = workflow_pb2.WorkflowRun()
                        run.CopyFrom(event.run)
                        run.edges.extend(known_run.edges)
                    self.runs[run_id] = run
                    self.incomplete.discard(run_id)
                self.dirty_runs.add(run_id)
                if event.run.work_order_id:
                    self.dirty_orders.add(event.run.work_order_id)
        self._trim()

    def put_run(self, run: workflow_pb2.WorkflowRun) -> None:
        """A whole run read from the engine (``GetWorkflowRun``), unless the store holds a newer one."""
        known = self.runs.get(run.id)
        if known is None or known.sequence <= run.sequence or run.id in self.incomplete:
            self.runs[run.id] = run
            self.incomplete.discard(run.id)
            self.dirty_runs.add(run.id)
            self.dirty_orders.add(run.work_order_id)

    def newest_first(self) -> list[workflow_pb2.WorkOrder]:
        # UUIDv7 ids sort by creation time.
        return sorted(self.orders.values(), key=lambda order: order.id, reverse=True)

    def take_dirty(self) -> tuple[set[str], set[str]]:
        orders, runs = self.dirty_orders, self.dirty_runs
        self.dirty_orders, self.dirty_runs = set(), set()
        return orders, runs

    def _trim(self) -> None:
        if len(self.orders) <= KEEP_ORDERS:
            return
        finished = sorted(
            (order.id for order in self.orders.values() if order.status in RUN_TERMINAL),
        )
        for order_id in finished[: len(self.orders) - KEEP_ORDERS]:
            order = self.orders.pop(order_id)
            self.runs.pop(order.last_run_id, None)


def _with_step(
    known: workflow_pb2.WorkflowRun | None, news: workflow_pb2.WorkflowRun
) -> workflow_pb2.WorkflowRun:
    """``known`` with the run's new header and the one step a STEP_CHANGED event carries."""
    merged = workflow_pb2.WorkflowRun()
    merged.CopyFrom(news)
    if known is None:
        return merged
    changed = {step.name: step for step in news.steps}
    del merged.steps[:]
    for step in known.steps:
        merged.steps.append(changed.pop(step.name, step))
    merged.steps.extend(changed.values())
    if not news.edges:
        merged.edges.extend(known.edges)
    return merged


class OrderFeed:
    """Keeps an ``OrderStore`` in step with the engine (see the module docstring)."""

    def __init__(self, client: JobClient, store: OrderStore) -> None:
        self.client = client
        self.store = store
        self.error = ""

    async def run(self) -> None:
        while True:
            try:
                if not self.store.loaded:
                    await self.snapshot()
                async for event in self.client.watch_workflows(after_sequence=self.store.sequence):
                    self.error = ""
                    self.store.apply(event)
            except JobwardenError as error:
                self.error = str(error)
            except Exception as error:
                log.exception("the work order feed failed; reloading")
                self.error = f"the feed failed ({error!r}); reloading"
                self.store.loaded = False
            await asyncio.sleep(_RETRY_AFTER)

    async def snapshot(self) -> None:
        head = (await self.client.stats()).head_sequence
        page = await self.client.list_work_orders(limit=SNAPSHOT_SIZE)
        self.store.load(page.orders, head)
        self.error = ""
