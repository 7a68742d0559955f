"""The key footer, made to fit a narrow terminal without losing ``? Help`` and ``q Quit``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from rich.cells import cell_len
from textual import events
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

from ._header import NARROW

#: on a narrow terminal, the keys left out first while the footer does not fit (in order); the
#: help (?) still lists every one of them
_DROP_ORDER = ("freeze", "open", "mark", "sort", "filter", "tab(1)")
#: shorter descriptions for a narrow terminal
_SHORT = {"Pause action": "Pause", "Pause/resume": "Pause", "Retry from step": "From step"}


class ConsoleFooter(Footer):
    """Below ``NARROW`` columns: compact, no palette hint (ctrl+p still works), short descriptions,
    and the least needed keys left out until the rest fits."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._narrow: bool | None = None

    def compose(self) -> Iterator[Any]:
        width = self.app.size.width
        narrow = width < NARROW
        self._narrow = narrow
        self.set_reactive(Footer.compact, narrow)
        self.set_class(narrow, "-compact")
        self.set_reactive(Footer.show_command_palette, not narrow)
        items = list(super().compose())
        if not narrow:
            yield from items
            return
        keys = [item for item in items if isinstance(item, FooterKey)]
        for key in keys:
            key.description = _SHORT.get(key.description, key.description)
        for action in _DROP_ORDER:
            if sum(_cells(key) for key in keys) <= width:
                break
            keys = [key for key in keys if key.action != action]
        yield from (item for item in items if not isinstance(item, FooterKey) or item in keys)

    def on_resize(self, event: events.Resize) -> None:
        if self._narrow is not None and (self.app.size.width < NARROW) != self._narrow:
            self.call_after_refresh(self.recompose)


def _cells(key: FooterKey) -> int:
    """The cells a compact key takes: the key, a space, the description and its right margin."""
    return cell_len(key.key_display) + 1 + cell_len(key.description) + 1
