"""Connected workers: what they serve, their capacity, the jobs in hand and their last heartbeat."""

from __future__ import annotations

from jobwarden.tui._format import format_duration, seconds
from jobwarden.v1 import executor_service_pb2
from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import DataTable, Footer, Static

from ._tables import Cell, PolledScreen, sync_table


class WorkersScreen(PolledScreen):
    NAV = "Workers"
    CSS_PATH = "screens.tcss"

    def __init__(self) -> None:
        super().__init__()
        self.workers_seen: list[executor_service_pb2.Worker] = []

    def compose(self) -> ComposeResult:
        yield self.header()
        yield Static("", id="workers-summary", classes="summary")
        yield DataTable(id="workers", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_column("Worker", key="name")
        table.add_column("Id", key="id")
        table.add_column("Actions (max at once)", key="actions")
        table.add_column("In hand", key="jobs")
        table.add_column("Capacity", key="capacity")
        table.add_column("Last heartbeat", key="heartbeat")
        table.add_column("Connected", key="connected")
        table.add_column("State", key="state")

    async def load(self) -> None:
        self.workers_seen = list((await self.console.client.workers()).workers)
        self.console.learn_workers(self.workers_seen)

    def show(self) -> None:
        now = self.console.clock()
        job_filter = self.console.job_filter
        rows: dict[str, list[Cell]] = {}
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
            rows[worker.id] = [
                Text(worker.name or "—"),
                worker.id[-8:],
                Text(actions),
                f"{len(worker.jobs)}/{worker.capacity}",
                str(worker.capacity),
                f"{format_duration(now - heartbeat)} ago" if heartbeat else "—",
                f"{format_duration(now - seconds(worker.connected_at))}"
                if worker.connected_at.seconds
                else "—",
                "draining" if worker.draining else "serving",
            ]
        sync_table(self.query_one(DataTable), rows, sort_by=("name",))
        summary = f"{len(rows)} worker{'s' if len(rows) != 1 else ''} · {used}/{capacity} slots busy"
        if self.error:
            summary += f" · {self.error}"
        self.query_one("#workers-summary", Static).update(Text(summary))
