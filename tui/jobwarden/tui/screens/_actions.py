"""Per action: jobs queued and running, paused or not, and a warning where no worker serves it."""

from __future__ import annotations

from typing import ClassVar

from jobwarden.tui._format import truncate
from jobwarden.tui.widgets import ConsoleFooter
from jobwarden.v1 import job_pb2, job_service_pb2
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Static

from ._tables import Cell, PolledScreen, sync_table

NO_WORKER = "⚠ no worker"
#: (key, title) of every column, for a terminal wide enough
_COLUMNS = (
    ("action", "Action"),
    ("dispatch", "Dispatch"),
    ("queued", "Queued"),
    ("delayed", "Delayed"),
    ("waiting", "Lock wait"),
    ("running", "Running"),
    ("timed_out", "Timed out"),
    ("completed", "Done"),
    ("failed", "Failed"),
    ("workers", "Workers"),
    ("free", "Free slots"),
    ("max", "Max running"),
    ("warning", "Warning"),
)
#: below this width: the header's short status names, and no workers, free slots or limit (the
#: Workers screen has them); the warning stays
NARROW = 136
_NARROW_COLUMNS = (
    ("action", "Action"),
    ("dispatch", "Dispatch"),
    ("queued", "QUE"),
    ("delayed", "DLY"),
    ("waiting", "LCK"),
    ("running", "RUN"),
    ("timed_out", "T/O"),
    ("completed", "DONE"),
    ("failed", "FAIL"),
    ("warning", "Warning"),
)
_NARROW_ACTION = 16


class ActionsScreen(PolledScreen):
    COLUMNS = _COLUMNS
    NARROW_COLUMNS = _NARROW_COLUMNS
    NARROW_BELOW = NARROW
    NAV = "Actions"
    CSS_PATH = "screens.tcss"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("p", "pause", "Pause/resume", id="actions.pause"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.listing = job_service_pb2.ListActionsResponse()
        self.stats = job_service_pb2.GetStatsResponse()

    def compose(self) -> ComposeResult:
        yield from self.table_layout("actions")
        yield ConsoleFooter()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return self.console.allows(action)

    async def load(self) -> None:
        client = self.console.client
        self.listing = await client.list_actions()
        self.stats = await client.stats()

    def show(self) -> None:
        job_filter = self.console.job_filter
        paused = {config.action: config.paused for config in self.listing.configs}
        configs = {config.action: config for config in self.listing.configs}
        stats = {entry.action: entry for entry in self.listing.stats}
        for entry in self.stats.actions:
            stats.setdefault(entry.action, entry)
        orphaned = set(self.stats.actions_without_workers)
        rows: dict[str, list[Cell]] = {}
        table = self.query_one(DataTable)
        columns = [str(column.key.value) for column in table.ordered_columns]
        warnings = 0
        for action in sorted(set(configs) | set(stats)):
            if not job_filter.matches_text(action):
                continue
            entry = stats.get(action, job_pb2.ActionStats(action=action))
            is_paused = paused.get(action, entry.paused)
            waiting = entry.queued + entry.delayed + entry.waiting_for_lock
            warn = action in orphaned or (waiting > 0 and entry.workers == 0)
            warnings += warn
            max_running = entry.max_running or configs.get(action, job_pb2.ActionConfig()).max_running
            cells: dict[str, Cell] = {
                "action": Text(truncate(action, _NARROW_ACTION) if self.narrow else action),
                "dispatch": Text("paused", style="bold yellow") if is_paused else Text("running"),
                "queued": f"{entry.queued:,}",
                "delayed": f"{entry.delayed:,}",
                "waiting": f"{entry.waiting_for_lock:,}",
                "running": f"{entry.running:,}",
                "timed_out": f"{entry.timed_out:,}",
                "completed": f"{entry.completed:,}",
                "failed": f"{entry.failed:,}",
                "workers": str(entry.workers),
                "free": str(entry.free_capacity),
                "max": str(max_running) if max_running else "∞",
                "warning": Text(NO_WORKER, style="bold red") if warn else Text(""),
            }
            rows[action] = [cells[column] for column in columns]
        sync_table(table, rows, sort_by=("action",))
        summary = f"{len(rows)} action{'s' if len(rows) != 1 else ''}"
        if warnings:
            summary += f" · {warnings} with queued jobs and no worker"
        if self.error:
            summary += f" · {self.error}"
        self.query_one("#actions-summary", Static).update(Text(summary))

    def current_action(self) -> str | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return key

    def action_pause(self) -> None:
        action = self.current_action()
        if action is not None:
            self.console.toggle_pause(action, after=self._poll)
