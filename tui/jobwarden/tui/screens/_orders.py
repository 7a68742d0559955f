"""Work orders: every work order with its last run's status, live; Enter draws the run's step graph."""

from __future__ import annotations

import asyncio
import contextlib
from typing import ClassVar

from jobwarden.sdk import JobwardenError
from jobwarden.tui._format import format_duration, short_id, truncate
from jobwarden.tui._workflows import RUN_STATUS_LABEL, RUN_TERMINAL, OrderFeed, OrderStore
from jobwarden.tui.widgets import ConsoleFooter
from jobwarden.v1 import workflow_pb2
from jobwarden.wire import timestamp_seconds as seconds
from rich.text import Text
from textual import events, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.css.query import NoMatches
from textual.widgets import DataTable, Static

from ._order_ops import cancel_run, retry_order, run_chip, run_now
from ._run import RunScreen
from ._tables import Cell, TableScreen, sync_table

#: the status filter ``s`` steps through (None: every status)
_STATUS_CYCLE: tuple[int | None, ...] = (
    None,
    workflow_pb2.WORKFLOW_RUN_STATUS_RUNNING,
    workflow_pb2.WORKFLOW_RUN_STATUS_FAILED,
    workflow_pb2.WORKFLOW_RUN_STATUS_DELAYED,
    workflow_pb2.WORKFLOW_RUN_STATUS_COMPLETED,
    workflow_pb2.WORKFLOW_RUN_STATUS_CANCELLED,
)
_COLUMNS = (
    ("status", "Status"),
    ("id", "Work order"),
    ("workflow", "Workflow"),
    ("run", "Run"),
    ("now", "Now"),
    ("age", "Age"),
    ("correlation", "Correlation"),
)
#: below this width: no run number or correlation id, and the "now" column cut to what is left
NARROW = 110
_NARROW_COLUMNS = (
    ("status", "Status"),
    ("id", "Order"),
    ("workflow", "Workflow"),
    ("now", "Now"),
    ("age", "Age"),
)
#: cells the narrow columns other than "now" take, with their padding
_NARROW_OTHERS = 50
#: runs fetched at once to fill the "now" column of a fresh listing
_PREFETCH = 40
_FLUSH_EVERY = 0.25
#: flushes between two redraws of the running orders' progress
_TICK_EVERY = 4


class WorkOrdersScreen(TableScreen):
    """The work orders the engine has (newest first), kept live from the workflow events."""

    COLUMNS = _COLUMNS
    NARROW_COLUMNS = _NARROW_COLUMNS
    NARROW_BELOW = NARROW
    NAV = "Orders"
    CSS_PATH = "screens.tcss"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open", "Run graph", id="orders.open"),
        Binding("s", "cycle_status", "Status filter", id="orders.status"),
        Binding("c", "cancel", "Cancel run", id="orders.cancel"),
        Binding("r", "retry", "Retry", id="orders.retry"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.store = OrderStore()
        self.feed: OrderFeed | None = None
        self.status_filter: int | None = None
        #: redraws of the table
        self.flushes = 0
        #: calls of ``flush`` (every ``_FLUSH_EVERY`` seconds, whether or not it redrew)
        self.looks = 0
        self._prefetched = False
        self._fetching = False
        self._summary_drawn = ""

    def compose(self) -> ComposeResult:
        yield from self.table_layout("orders")
        yield ConsoleFooter()

    def on_mount(self) -> None:
        self.set_columns(self.app.size.width < NARROW)
        self.feed = OrderFeed(self.console.client, self.store)
        self._follow()
        self.set_interval(_FLUSH_EVERY, self.flush, name="orders-flush")

    def on_resize(self, event: events.Resize) -> None:
        narrow = event.size.width < NARROW
        if narrow != self.narrow:
            self.set_columns(narrow)
            self.flush(force=True)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return self.console.allows(action)

    def filter_changed(self) -> None:
        self.flush(force=True)

    @work(group="orders-feed", exclusive=True, exit_on_error=False)
    async def _follow(self) -> None:
        assert self.feed is not None
        await self.feed.run()

    @work(group="orders-prefetch", exclusive=True, exit_on_error=False)
    async def _prefetch_runs(self, run_ids: list[str]) -> None:
        """The last runs of the first orders listed, so the "now" column says something at once."""
        gate = asyncio.Semaphore(8)

        async def one(run_id: str) -> None:
            async with gate:
                try:
                    run = await self.console.client.get_workflow_run(run_id)
                except JobwardenError:
                    self.store.incomplete.discard(run_id)
                    return
                self.store.put_run(run)

        self._fetching = True
        try:
            await asyncio.gather(*(one(run_id) for run_id in run_ids))
        finally:
            self._fetching = False

    # -- drawing --------------------------------------------------------------------------

    def flush(self, force: bool = False) -> None:
        orders, _ = self.store.take_dirty()
        # Running orders' steps move with their jobs' progress, which no workflow event carries:
        # redrawn once a second. Counted in looks, not redraws: a count of redraws stops moving
        # when nothing redraws, and the progress reported after the last workflow event was lost.
        self.looks += 1
        ticking = self.looks % _TICK_EVERY == 0 and any(
            order.status not in RUN_TERMINAL for order in self.store.orders.values()
        )
        if not orders and not force and not ticking and self.flushes:
            self._summary()
            return
        if self.store.loaded and not self._prefetched:
            self._prefetched = True
            missing = [o.last_run_id for o in self.store.newest_first()[:_PREFETCH] if o.last_run_id]
            self._prefetch_runs([run_id for run_id in missing if run_id not in self.store.runs])
        elif self.store.incomplete and not self._fetching:
            self._prefetch_runs(sorted(self.store.incomplete)[:_PREFETCH])
        self.flushes += 1
        try:
            self._show()
        except NoMatches:
            return

    def visible_orders(self) -> list[workflow_pb2.WorkOrder]:
        job_filter = self.console.job_filter
        shown = []
        for order in self.store.newest_first():
            if self.status_filter is not None and order.status != self.status_filter:
                continue
            labels = [f"{key}={value}" for key, value in order.labels.items()]
            if not job_filter.matches_text(order.id, order.workflow, order.correlation_id, *labels):
                continue
            shown.append(order)
        return shown

    def _show(self) -> None:
        table = self.query_one(DataTable)
        columns = [str(column.key.value) for column in table.ordered_columns]
        now = self.console.clock()
        room = max(12, self.size.width - _NARROW_OTHERS)
        rows: dict[str, list[Cell]] = {}
        for order in self.visible_orders():
            run = self.store.runs.get(order.last_run_id)
            status = run.status if run is not None and run.sequence >= order.sequence else order.status
            created = seconds(order.created_at)
            doing = run_now(run, self.console.store.jobs)
            cells: dict[str, Cell] = {
                "status": run_chip(status),
                "id": short_id(order.id),
                "workflow": Text(f"{order.workflow} v{order.version}" if order.version else order.workflow),
                "run": f"#{order.run_count}" if order.run_count else "—",
                "now": Text(truncate(doing, room) if self.narrow else doing),
                "age": format_duration(now - created) if created else "—",
                "correlation": Text(order.correlation_id),
            }
            rows[order.id] = [cells[column] for column in columns]
        # Newest first: UUIDv7 ids sort by creation, so the table sorts by its id descending.
        sync_table(table, rows, sort_by=("id",))
        # Newest first (visible_orders' order); the cells hold short ids, so rank them by position.
        rank = {short_id(order_id): index for index, order_id in enumerate(rows)}
        shown = [str(row.key.value) for row in table.ordered_rows]
        if shown != list(rows):
            table.sort("id", key=lambda value: rank.get(str(value), len(rank)))
        self._summary(len(rows))

    def _summary(self, shown: int | None = None) -> None:
        if shown is None:
            shown = self.query_one(DataTable).row_count
        feed_error = self.feed.error if self.feed is not None else ""
        parts = [f"{shown} of {len(self.store.orders)} work orders"]
        if self.status_filter is not None:
            parts.append(f"status {RUN_STATUS_LABEL[self.status_filter]} (s: next)")
        if not self.store.loaded:
            parts.append("loading…" if not feed_error else f"cannot list: {feed_error}")
        elif feed_error:
            parts.append(feed_error)
        text = " · ".join(parts)
        if text != self._summary_drawn:
            with contextlib.suppress(NoMatches):
                self.query_one("#orders-summary", Static).update(Text(text))
                self._summary_drawn = text

    # -- keys -----------------------------------------------------------------------------

    def current(self) -> workflow_pb2.WorkOrder | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return self.store.orders.get(str(key))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open()

    def action_open(self) -> None:
        order = self.current()
        if order is None:
            self.notify("No work order selected.", severity="warning")
            return
        self.app.push_screen(RunScreen(order.id, self.store))

    def action_cycle_status(self) -> None:
        index = _STATUS_CYCLE.index(self.status_filter)
        self.status_filter = _STATUS_CYCLE[(index + 1) % len(_STATUS_CYCLE)]
        label = "every status" if self.status_filter is None else RUN_STATUS_LABEL[self.status_filter]
        self.notify(f"Work orders: {label}", timeout=2)
        self.flush(force=True)

    def action_cancel(self) -> None:
        order = self.current()
        if order is not None:
            cancel_run(self, order.last_run_id, f"{short_id(order.id)} ({order.workflow})", order.status)

    def action_retry(self) -> None:
        order = self.current()
        if order is not None:
            retry_order(self, order.id, f"{short_id(order.id)} ({order.workflow})", order.status, "")
