"""What every console screen shares: the status header on top and the key footer below."""

from __future__ import annotations

from typing import ClassVar, cast

from jobwarden.contract import JobStatus
from jobwarden.tui._context import ConsoleContext
from jobwarden.tui._format import STATUS_LABEL
from jobwarden.tui.widgets import StatusCount, StatusHeader
from textual.binding import Binding, BindingType
from textual.screen import Screen


class ConsoleScreen(Screen[None]):
    """A full screen of the console. ``NAV`` is its name in the navigation line.

    Every screen shows the header's counts, so every screen takes their number keys: 1-9 toggle
    a status in the filter, 0 clears them.
    """

    NAV = ""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("0", "clear_statuses", "All statuses", show=False, id="screen.status.all"),
        *(
            Binding(
                str(int(status)),
                f"toggle_status({int(status)})",
                f"Filter {STATUS_LABEL[status]}",
                show=False,
                id=f"screen.status.{status.name.lower()}",
            )
            for status in JobStatus
        ),
    ]

    @property
    def console(self) -> ConsoleContext:
        return cast(ConsoleContext, self.app)

    def header(self) -> StatusHeader:
        return StatusHeader(self.console.nav_line(self.NAV))

    def on_screen_resume(self) -> None:
        self.console.refresh_header()
        self.filter_changed()

    def filter_changed(self) -> None:
        """The app's filter changed (or this screen came back): show what matches it."""

    def action_toggle_status(self, value: int) -> None:
        self.console.toggle_status(JobStatus(value))

    def action_clear_statuses(self) -> None:
        self.console.clear_statuses()

    def on_status_count_toggled(self, message: StatusCount.Toggled) -> None:
        message.stop()
        self.console.toggle_status(message.status)
