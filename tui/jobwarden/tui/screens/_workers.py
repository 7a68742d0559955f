"""Connected workers: what they serve, their capacity, the jobs in hand and their last heartbeat."""

from __future__ import annotations

from jobwarden.tui._format import format_duration, truncate
from jobwarden.tui.widgets import ConsoleFooter
from jobwarden.v1 import executor_service_pb2
from jobwarden.wire import timestamp_seconds as seconds
from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import DataTable, Static

from ._tables import Cell, PolledScreen, sync_table

_COLUMNS = (
    ("name", "Worker"),
    ("id", "Id"),
    ("actions", "Actions (max at once)"),
    ("jobs", "In hand"),
    ("capacity", "Capacity"),
    ("heartbeat", "Last heartbeat"),
    ("connected", "Connected"),
    ("state", "State"),
)
#: below this width: no id, capacity (in hand says n/capacity) or connection time, and the list
#: of actions cut to what is left
NARROW = 120
_NARROW_COLUMNS = (
    ("name", "Worker"),
    ("actions", "Actions (max at once)"),
    ("jobs", "In hand"),
    ("heartbeat", "Heartbeat"),
    ("state", "State"),
)
#: cells the narrow columns other than the actions take, with their padding
_NARROW_OTHERS = 48


class WorkersScreen(PolledScreen):
    COLUMNS = _COLUMNS
    NARROW_COLUMNS = _NARROW_COLUMNS
    NARROW_BELOW = NARROW
    NAV = "Workers"
    CSS_PATH = "screens.tcss"

    def __init__(self) -> None:
        super().__init__()
        self.workers_seen: list[executor_service_pb2.Worker] = []

    def compose(self) -> ComposeResult:
        yield from self.table_layout("workers")
        yield ConsoleFooter()

    async def load(self) -> None:
        self.workers_seen = await self.console.client.workers()
        self.console.learn_workers(self.workers_seen)

    def show(self) -> None:
        now = self.console.clock()
        job_filter = self.console.job_filter
        rows: dict[str, list[Cell]] = {}
        table = self.query_one(DataTable)
        columns = [str(column.key.value) for column in table.ordered_columns]
        room = max(12, self.size.width - _NARROW_OTHERS)
        used = capacity = 0
        for worker in self.workers_seen:
            actions = ", ".join(
                f"{spec.action} ({spec.max_concurrency})" if spec.max_concurrency else spec.action
                for spec in worker.executors
            )
            if not job_filter.matches_text(worker.name, worker.id, actions):
                continue
            used += len(worker.jobs)
            capacity += worker.capacity
            heartbeat = seconds(worker.last_heartbeat_at)
            cells: dict[str, Cell] = {
                "name": Text(worker.name or "—"),
                "id": worker.id[-8:],
                "actions": Text(truncate(actions, room) if self.narrow else actions),
                "jobs": f"{len(worker.jobs)}/{worker.capacity}",
                "capacity": str(worker.capacity),
                "heartbeat": f"{format_duration(now - heartbeat)} ago" if heartbeat else "—",
                "connected": f"{format_duration(now - seconds(worker.connected_at))}"
                if worker.connected_at.seconds
                else "—",
                "state": "draining" if worker.draining else "serving",
            }
            rows[worker.id] = [cells[column] for column in columns]
        sync_table(table, rows, sort_by=("name",))
        summary = f"{len(rows)} worker{'s' if len(rows) != 1 else ''} · {used}/{capacity} slots busy"
        if self.error:
            summary += f" · {self.error}"
        self.query_one("#workers-summary", Static).update(Text(summary))
