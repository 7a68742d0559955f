"""``?``: every key of the screen underneath, the status colours and the filter syntax."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from jobwarden.contract import JobStatus
from jobwarden.tui._format import STATUS_LABEL
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

_ABOUT = {
    JobStatus.QUEUED: "waiting for a worker with free capacity",
    JobStatus.DELAYED: "waiting for its run_at time or a retry backoff",
    JobStatus.WAITING_FOR_LOCK: "waiting, in FIFO order, for its locks",
    JobStatus.RUNNING: "on a worker; progress and message are live",
    JobStatus.TIMED_OUT: "silent past its heartbeat deadline; may still resume",
    JobStatus.COMPLETED: "finished",
    JobStatus.FAILED: "failed; the message column shows the error kind",
    JobStatus.CANCELLED: "cancelled by an operator, an API call or a timeout",
    JobStatus.REJECTED: "refused at admission",
}

_FILTER = (
    "Filter (/): words match the id, action, message, worker, error, step, labels (key=value) and "
    "lock resources; status:failed,running (or the number keys, or a click on a count) picks "
    "statuses. The filter stays when you switch screens; the other screens filter by its words."
)


class HelpScreen(ModalScreen[None]):
    """Keys are passed in as (key, description) pairs taken from the screen underneath."""

    CSS_PATH = "dialogs.tcss"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,question_mark,q", "dismiss(None)", "Close", id="help.close"),
    ]

    def __init__(self, keys: Sequence[tuple[str, str]]) -> None:
        super().__init__()
        self._keys = list(keys)

    def compose(self) -> ComposeResult:
        keys = Table.grid(padding=(0, 2))
        keys.add_column(style="bold")
        keys.add_column()
        for key, description in self._keys:
            keys.add_row(key, description)
        statuses = Table.grid(padding=(0, 2))
        statuses.add_column()
        statuses.add_column()
        for status in JobStatus:
            statuses.add_row(
                Text(f"{int(status)} {STATUS_LABEL[status]}", style="bold"), Text(_ABOUT[status])
            )
        with VerticalScroll(id="help"):
            yield Static("Keys", classes="help-title")
            yield Static(keys)
            yield Static("Statuses (the number key toggles it in the filter)", classes="help-title")
            yield Static(statuses)
            yield Static(Text(_FILTER), classes="help-text")
