"""The step graph of a workflow run, drawn in the terminal: a Line API widget over a laid-out graph.

The layout (``_graph_layout``) is made once per definition (again only when a crowded layer's
choice of steps shown changes); the painter (``_graph_render``) draws only the rows on screen, and
each drawn row is cached until the run, the selection or the clock changes it. So a big graph
scrolls without redrawing the rows out of view, and a 1,000-step fan-out lays out about
``max_per_layer`` boxes and an overflow box that counts the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

from jobwarden.tui._graph_layout import OVERFLOW_PREFIX, Direction, GraphEdge, GraphLayout, layout_graph
from jobwarden.tui._graph_render import (
    DEFAULT_STYLES,
    DELAYED,
    FAILED,
    RUNNING,
    GraphPainter,
    RunState,
)
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

__all__ = ["StepGraph"]

#: boxes of steps per layer before the rest fold into an overflow box
MAX_PER_LAYER = 24
#: statuses worth keeping on screen in a crowded layer, most urgent first
_KEEP_FIRST: dict[int, int] = {FAILED: 0, RUNNING: 1, DELAYED: 2}


class StepGraph(ScrollView, can_focus=True):
    """Boxes and edges of a run (see the module docstring); the arrows move the selected step
    along the graph, Enter opens it."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {f"stepgraph--{name}" for name in DEFAULT_STYLES}

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "move('up')", "Up", show=False, id="graph.up"),
        Binding("down", "move('down')", "Down", show=False, id="graph.down"),
        Binding("left", "move('left')", "Left", show=False, id="graph.left"),
        Binding("right", "move('right')", "Right", show=False, id="graph.right"),
        Binding("home", "first", "First step", show=False, id="graph.first"),
        Binding("enter", "open", "Open step", id="graph.open"),
    ]

    class Selected(Message):
        """The selected step changed (``step`` is a box id: a step, or an overflow box)."""

        def __init__(self, step: str) -> None:
            super().__init__()
            self.step = step

    class Opened(Message):
        """Enter (or a double click) on a step."""

        def __init__(self, step: str) -> None:
            super().__init__()
            self.step = step

    def __init__(
        self,
        *,
        clock: Callable[[], float],
        box_width: int = 22,
        max_per_layer: int = MAX_PER_LAYER,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self._clock = clock
        self.box_width = box_width
        self.max_per_layer = max_per_layer
        self.graph_layout: GraphLayout | None = None
        self.state = RunState()
        self.selected: str | None = None
        self.empty_text = "No run to draw."
        self._graph: tuple[tuple[str, ...], tuple[GraphEdge, ...]] = ((), ())
        self._kept: frozenset[str] = frozenset()
        self._painter: GraphPainter | None = None
        self._lines: dict[int, Strip] = {}
        self._styles: dict[str, Style] | None = None
        self._live = False

    # -- what to draw ---------------------------------------------------------------------

    def show_graph(self, steps: Sequence[str], edges: Sequence[GraphEdge], state: RunState) -> None:
        """Draw these steps and edges in this state; the layout is redone only if the graph changed."""
        graph = (tuple(steps), tuple(edges))
        kept = self._kept_in_crowded_layers(state) if len(steps) > self.max_per_layer else frozenset()
        self.state = state
        if graph != self._graph or kept != self._kept or self.graph_layout is None:
            self._graph = graph
            self._kept = kept
            self.graph_layout = layout_graph(
                steps,
                edges,
                box_width=self.box_width,
                max_per_layer=self.max_per_layer,
                priority=self._priority,
            )
            self.virtual_size = Size(self.graph_layout.width, self.graph_layout.height)
            if self.selected is not None and self.selected not in self.graph_layout.boxes:
                # A step folded into an overflow box: select that box.
                self.selected = self.graph_layout.box_of.get(self.selected)
            if self.selected is None:
                self.selected = self._first_box()
            # Once the new size is in force, bring the selection into view.
            self.call_after_refresh(self.scroll_to_selected, True)
        self._live = any(step.status in (RUNNING, DELAYED) for step in state.steps.values())
        self._repaint()

    def clear(self, text: str) -> None:
        self.graph_layout = None
        self._graph = ((), ())
        self.state = RunState()
        self.selected = None
        self.empty_text = text
        self.virtual_size = Size(0, 0)
        self._repaint()

    def select(self, box_id: str) -> bool:
        """Select a step (or an overflow box) by its id; a step folded away selects its overflow box."""
        if self.graph_layout is None:
            return False
        box_id = self.graph_layout.box_of.get(box_id, box_id)
        if box_id not in self.graph_layout.boxes:
            return False
        if box_id != self.selected:
            self.selected = box_id
            self._repaint()
            self.post_message(self.Selected(box_id))
        self.scroll_to_selected()
        return True

    def scroll_to_selected(self, center: bool = False) -> None:
        """Bring the selected box (and the rows of edges just around it) into view."""
        if self.graph_layout is None or self.selected is None:
            return
        box = self.graph_layout.boxes.get(self.selected)
        if box is None:
            return
        region = Region(box.x, max(0, box.y - 1), box.width, box.height + 2)
        self.scroll_to_region(region, animate=False, immediate=True, center=center)

    def tick(self) -> None:
        """The clock moved: running steps' durations change."""
        if self._live:
            self._repaint()

    @property
    def selected_is_overflow(self) -> bool:
        return self.selected is not None and self.selected.startswith(OVERFLOW_PREFIX)

    def text(self) -> str:
        """The whole graph as plain text, as drawn now (what the tests compare)."""
        return self._painter_now().text() if self.graph_layout is not None else self.empty_text

    # -- keys and mouse -------------------------------------------------------------------

    def action_move(self, direction: str) -> None:
        if self.graph_layout is None or self.selected is None:
            return
        target = self.graph_layout.neighbour(self.selected, Direction(direction))
        if target is not None:
            self.select(target)

    def action_first(self) -> None:
        first = self._first_box()
        if first is not None:
            self.select(first)

    def action_open(self) -> None:
        if self.selected is not None:
            self.post_message(self.Opened(self.selected))

    async def _on_click(self, event: events.Click) -> None:
        if self.graph_layout is None:
            return
        x = event.x + int(self.scroll_offset.x) - self._margin()
        y = event.y + int(self.scroll_offset.y)
        for box in self.graph_layout.boxes.values():
            if box.x <= x < box.x + box.width and box.y <= y < box.y + box.height:
                self.select(box.id)
                if event.chain >= 2:
                    self.action_open()
                return

    # -- drawing --------------------------------------------------------------------------

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._styles = None
        self._repaint()

    def _on_resize(self, _: events.Resize) -> None:
        self._lines.clear()

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        base = self.rich_style
        if self.graph_layout is None:
            if y == 0:
                return Strip([Segment(f" {self.empty_text}", base + Style(dim=True))]).adjust_cell_length(
                    width, base
                )
            return Strip.blank(width, base)
        row = y + int(self.scroll_offset.y)
        strip = self._lines.get(row)
        if strip is None:
            if len(self._lines) > 512:
                self._lines.clear()
            strip = self._lines[row] = Strip(self._painter_now().row(row))
        margin = self._margin()
        if margin:
            # Narrower than the view: centred.
            return Strip([Segment(" " * margin, base), *strip]).adjust_cell_length(width, base)
        left = int(self.scroll_offset.x)
        return strip.crop(left, left + width).adjust_cell_length(width, base)

    def _margin(self) -> int:
        """Columns left of the graph, which is centred when it is narrower than the view."""
        if self.graph_layout is None:
            return 0
        return max(0, (self.scrollable_content_region.width - self.graph_layout.width) // 2)

    def _painter_now(self) -> GraphPainter:
        if self._painter is None:
            assert self.graph_layout is not None
            self._painter = GraphPainter(
                self.graph_layout,
                self.state,
                now=self._clock(),
                selected=self.selected,
                styles=self._rich_styles(),
            )
        return self._painter

    def _rich_styles(self) -> dict[str, Style]:
        if self._styles is None:
            base = self.rich_style
            self._styles = {
                name: base + self.get_component_rich_style(f"stepgraph--{name}", partial=True)
                for name in DEFAULT_STYLES
            }
        return self._styles

    def _repaint(self) -> None:
        self._painter = None
        self._lines.clear()
        self.refresh()

    # -- helpers --------------------------------------------------------------------------

    def _priority(self, name: str) -> int:
        if name == self.selected:
            return -1
        return _KEEP_FIRST.get(self.state.step(name).status, 3)

    def _kept_in_crowded_layers(self, state: RunState) -> frozenset[str]:
        """The steps whose status earns them a box in a crowded layer (a change means a new layout)."""
        kept = {name for name, step in state.steps.items() if step.status in _KEEP_FIRST}
        if self.selected is not None:
            kept.add(self.selected)
        return frozenset(kept)

    def _first_box(self) -> str | None:
        if self.graph_layout is None:
            return None
        for row in self.graph_layout.layers:
            if row:
                return row[0]
        return None
