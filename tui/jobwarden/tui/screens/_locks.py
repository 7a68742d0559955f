"""The lock table: each resource with its holders and its waiters (FIFO), and their modes."""

from __future__ import annotations

from jobwarden.tui._format import format_time, lock_mode_label, short_id
from jobwarden.tui.widgets import ConsoleFooter
from jobwarden.v1 import lock_service_pb2
from jobwarden.wire import timestamp_seconds as seconds
from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import DataTable, Static

from ._tables import Cell, PolledScreen, sync_table


class LocksScreen(PolledScreen):
    COLUMNS = (
        ("resource", "Resource"),
        ("role", "Role"),
        ("mode", "Mode"),
        ("holder", "Holder"),
        ("since", "Since"),
        ("expires", "Expires"),
    )
    NAV = "Locks"
    CSS_PATH = "screens.tcss"

    def __init__(self) -> None:
        super().__init__()
        self.resources: list[lock_service_pb2.ResourceLocks] = []

    def compose(self) -> ComposeResult:
        yield from self.table_layout("locks")
        yield ConsoleFooter()

    async def load(self) -> None:
        self.resources = await self.console.client.locks()

    def show(self) -> None:
        now = self.console.clock()
        job_filter = self.console.job_filter
        rows: dict[str, list[Cell]] = {}
        waiting = 0
        for resource in self.resources:
            entries = [("holder", holder) for holder in resource.holders]
            entries += [(f"waiter {n}", waiter) for n, waiter in enumerate(resource.waiters, 1)]
            for role, entry in entries:
                who = self._who(entry)
                if not job_filter.matches_text(resource.resource, entry.holder, entry.job_id, who):
                    continue
                waiting += role != "holder"
                key = f"{resource.resource}\0{role}\0{entry.job_id or entry.holder}"
                expires = seconds(entry.expires_at)
                rows[key] = [
                    Text(resource.resource),
                    role,
                    lock_mode_label(entry.mode),
                    Text(who),
                    format_time(seconds(entry.since), now),
                    format_time(expires, now) if expires else "",
                ]
        sync_table(self.query_one(DataTable), rows, sort_by=("resource", "role"))
        resources = len({key.split("\0")[0] for key in rows})
        summary = f"{resources} resource{'s' if resources != 1 else ''} · {waiting} waiting"
        if self.error:
            summary += f" · {self.error}"
        self.query_one("#locks-summary", Static).update(Text(summary))

    def _who(self, entry: lock_service_pb2.LockHolder) -> str:
        if not entry.job_id:
            return f"{entry.holder} (external)"
        row = self.console.store.jobs.get(entry.job_id)
        label = f"job {short_id(entry.job_id)}"
        who = f"{label} {row.action}" if row is not None else label
        # A lock kept past its job's stop: say why, or it looks like a stuck engine.
        return f"{who}: {entry.holder_note}" if entry.holder_note else who
