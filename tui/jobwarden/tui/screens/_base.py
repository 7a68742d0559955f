"""What every console screen shares: the status header on top and the key footer below."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from jobwarden.tui.widgets import StatusCount, StatusHeader
from textual.screen import Screen

if TYPE_CHECKING:
    from jobwarden.tui._app import ConsoleApp


class ConsoleScreen(Screen[None]):
    """A full screen of the console. ``NAV`` is its name in the navigation line."""

    NAV = ""

    @property
    def console(self) -> ConsoleApp:
        return cast("ConsoleApp", self.app)

    def header(self) -> StatusHeader:
        return StatusHeader(self.console.nav_line(self.NAV))

    def on_screen_resume(self) -> None:
        self.console.refresh_header()
        self.filter_changed()

    def filter_changed(self) -> None:
        """The app's filter changed (or this screen came back): show what matches it."""

    def on_status_count_toggled(self, message: StatusCount.Toggled) -> None:
        message.stop()
        self.console.toggle_status(message.status)
