"""A yes/no question before a destructive action, with the safe answer focused."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class ConfirmScreen(ModalScreen[bool]):
    """Names what is about to happen; Enter on the focused (safe) button keeps things as they are.

    The less destructive answer always wins by default (k9s issue 146): a stray Enter never
    cancels a job.
    """

    CSS_PATH = "dialogs.tcss"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss(False)", "Keep", id="confirm.keep"),
        Binding("left", "app.focus_previous", "Previous", show=False, id="confirm.previous"),
        Binding("right", "app.focus_next", "Next", show=False, id="confirm.next"),
    ]

    def __init__(self, title: str, lines: Sequence[str], confirm: str, *, keep: str = "Keep") -> None:
        super().__init__()
        self._title = title
        self._lines = list(lines)
        self._confirm = confirm
        self._keep = keep

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(Content(self._title), id="dialog-title")
            if self._lines:
                yield Static(Content("\n".join(self._lines)), id="dialog-body")
            with Horizontal(id="dialog-buttons"):
                yield Button(self._keep, id="keep", variant="primary")
                yield Button(self._confirm, id="confirm", variant="error")

    def on_mount(self) -> None:
        self.query_one("#keep", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "confirm")
