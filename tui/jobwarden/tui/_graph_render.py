"""Drawing a laid-out step graph with a run's state: boxes, chips, bars and edges, as Rich segments.

No Textual here: ``GraphPainter`` turns rows of a ``GraphLayout`` (``_graph_layout``) and the state
of a run (``RunState``, made from a ``WorkflowRun`` by ``run_state``) into lines of
``rich.segment.Segment``. The widget (``widgets/_step_graph.py``) asks it for the rows on screen
only; the tests ask it for plain text.

How an edge reads: its **kind** by its line (``─`` success, ``╌`` failure, ``═`` always) and its
colour; its **state** by its weight: bold once taken, dim once decided and not taken, plain while
undecided.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from jobwarden.contract import JobStatus
from jobwarden.v1 import workflow_pb2
from jobwarden.wire import timestamp_seconds
from rich.segment import Segment
from rich.style import Style

from ._format import STATUS_LABEL, format_duration, progress_bar, short_id, truncate
from ._graph_layout import E, GraphBox, GraphEdge, GraphLayout, N, S, Stroke, W

__all__ = [
    "DEFAULT_STYLES",
    "EDGE_LABEL",
    "STEP_LABEL",
    "GraphPainter",
    "RunState",
    "StepState",
    "definition_graph",
    "run_graph",
    "run_state",
]

SUCCESS = workflow_pb2.EDGE_KIND_SUCCESS
FAILURE = workflow_pb2.EDGE_KIND_FAILURE
ALWAYS = workflow_pb2.EDGE_KIND_ALWAYS

PENDING = workflow_pb2.STEP_STATUS_PENDING
RUNNING = workflow_pb2.STEP_STATUS_RUNNING
DELAYED = workflow_pb2.STEP_STATUS_DELAYED
COMPLETED = workflow_pb2.STEP_STATUS_COMPLETED
FAILED = workflow_pb2.STEP_STATUS_FAILED
CANCELLED = workflow_pb2.STEP_STATUS_CANCELLED
SKIPPED = workflow_pb2.STEP_STATUS_SKIPPED

#: how each step status reads in its chip (with a glyph, so it reads without colour too)
STEP_LABEL: Mapping[int, str] = {
    workflow_pb2.STEP_STATUS_UNSPECIFIED: "○ PENDING",
    PENDING: "○ PENDING",
    RUNNING: "● RUNNING",
    DELAYED: "◷ DELAYED",
    COMPLETED: "✓ COMPLETED",
    FAILED: "✗ FAILED",
    CANCELLED: "■ CANCELLED",
    SKIPPED: "⊘ SKIPPED",
}
#: the style name of each step status (``chip-running``, ``box-running``)
STEP_CLASS: Mapping[int, str] = {
    workflow_pb2.STEP_STATUS_UNSPECIFIED: "pending",
    PENDING: "pending",
    RUNNING: "running",
    DELAYED: "delayed",
    COMPLETED: "completed",
    FAILED: "failed",
    CANCELLED: "cancelled",
    SKIPPED: "skipped",
}
#: the word for each edge kind (the legend, the step panel)
EDGE_LABEL: Mapping[int, str] = {SUCCESS: "success", FAILURE: "failure", ALWAYS: "always"}
_EDGE_CLASS: Mapping[int, str] = {SUCCESS: "success", FAILURE: "failure", ALWAYS: "always"}

#: line characters by mask (N, E, S, W bits), per edge kind
_LIGHT = {
    N | S: "│", E | W: "─", N | E: "└", N | W: "┘", S | E: "┌", S | W: "┐",
    N | S | E: "├", N | S | W: "┤", E | W | S: "┬", E | W | N: "┴", N | E | S | W: "┼",
    N: "╵", S: "╷", E: "╶", W: "╴",
}  # fmt: skip
_DOUBLE = {
    N | S: "║", E | W: "═", N | E: "╚", N | W: "╝", S | E: "╔", S | W: "╗",
    N | S | E: "╠", N | S | W: "╣", E | W | S: "╦", E | W | N: "╩", N | E | S | W: "╬",
    N: "║", S: "║", E: "═", W: "═",
}  # fmt: skip
_DASHED = {**_LIGHT, N | S: "╎", E | W: "╌", N: "╎", S: "╎", E: "╌", W: "╌"}
_LINES: Mapping[int, Mapping[int, str]] = {SUCCESS: _LIGHT, FAILURE: _DASHED, ALWAYS: _DOUBLE}
_ARROW = "▼"

#: box borders: (top-left, top-right, bottom-left, bottom-right, horizontal, vertical, port)
_BORDER = ("┌", "┐", "└", "┘", "─", "│", "┬")
_BORDER_SELECTED = ("┏", "┓", "┗", "┛", "━", "┃", "┳")
_BORDER_SKIPPED = ("┌", "┐", "└", "┘", "╌", "╎", "┬")

#: styles by name, as the widget's component classes name them (``stepgraph--NAME``); these are
#: the defaults of a painter made outside a widget (the tests' plain text ignores them)
DEFAULT_STYLES: Mapping[str, Style] = {
    "text": Style(),
    "dim": Style(dim=True),
    "name": Style(bold=True),
    "error": Style(color="red"),
    "bar": Style(color="blue"),
    "bar-done": Style(color="green"),
    "selected": Style(color="bright_cyan", bold=True),
    "edge-success": Style(color="green"),
    "edge-failure": Style(color="red"),
    "edge-always": Style(color="blue"),
    "edge-untaken": Style(color="grey50", dim=True),
    "box-pending": Style(color="grey70"),
    "box-running": Style(color="blue"),
    "box-delayed": Style(color="yellow"),
    "box-completed": Style(color="green"),
    "box-failed": Style(color="red"),
    "box-cancelled": Style(color="grey70"),
    "box-skipped": Style(color="grey50", dim=True),
    "chip-pending": Style(color="grey70"),
    "chip-running": Style(color="white", bgcolor="blue"),
    "chip-delayed": Style(color="black", bgcolor="yellow"),
    "chip-completed": Style(color="white", bgcolor="green"),
    "chip-failed": Style(color="white", bgcolor="red"),
    "chip-cancelled": Style(color="black", bgcolor="grey70"),
    "chip-skipped": Style(color="grey50", dim=True),
}


@dataclass(frozen=True, slots=True)
class StepState:
    """What a box shows of one step in one run."""

    status: int = PENDING
    job_status: int = 0
    job_id: str = ""
    progress: int = 0
    message: str = ""
    started_at: float = 0.0
    finished_at: float = 0.0
    wake_at: float = 0.0
    attempt: int = 0
    reused_from_run_id: str = ""
    error: str = ""
    child_run_id: str = ""


@dataclass(slots=True)
class RunState:
    """A run's steps and edges, by name and by (source, target, kind); empty: the bare definition."""

    steps: dict[str, StepState] = field(default_factory=dict)
    #: (decided, taken) per edge
    edges: dict[tuple[str, str, int], tuple[bool, bool]] = field(default_factory=dict)

    def step(self, name: str) -> StepState:
        return self.steps.get(name) or StepState()


def definition_graph(definition: workflow_pb2.WorkflowDefinition) -> tuple[list[str], list[GraphEdge]]:
    """A definition's steps (in its order) and edges, as the layout takes them."""
    steps = [step.name for step in definition.steps]
    edges = [GraphEdge(edge.source, edge.target, edge.kind or SUCCESS) for edge in definition.edges]
    return steps, edges


def run_graph(run: workflow_pb2.WorkflowRun) -> tuple[list[str], list[GraphEdge]]:
    """A run's own steps and edges (a run carries every step and edge of its version)."""
    steps = [step.name for step in run.steps]
    edges = [GraphEdge(edge.source, edge.target, edge.kind or SUCCESS) for edge in run.edges]
    return steps, edges


def run_state(run: workflow_pb2.WorkflowRun) -> RunState:
    state = RunState()
    for step in run.steps:
        state.steps[step.name] = StepState(
            status=step.status or PENDING,
            job_status=step.job_status,
            job_id=step.job_id,
            progress=step.progress,
            message=step.message,
            started_at=timestamp_seconds(step.started_at),
            finished_at=timestamp_seconds(step.finished_at),
            wake_at=timestamp_seconds(step.wake_at),
            attempt=step.attempt,
            reused_from_run_id=step.reused_from_run_id,
            error=step.error.message if step.HasField("error") else "",
            child_run_id=step.child_run_id,
        )
    for edge in run.edges:
        state.edges[(edge.source, edge.target, edge.kind or SUCCESS)] = (edge.decided, edge.taken)
    return state


def step_label(state: StepState) -> str:
    """The chip's text: a running step says what its job waits for (QUEUED, WAIT LOCK, TIMED OUT)."""
    if state.status == RUNNING and state.job_status not in (0, JobStatus.RUNNING):
        try:
            return f"● {STATUS_LABEL[JobStatus(state.job_status)]}"
        except ValueError:
            pass
    return STEP_LABEL.get(state.status, "?")


def step_duration(state: StepState, now: float) -> str:
    """How long the step ran (or has been running); a waiting delay says when it wakes."""
    if state.status == DELAYED and state.wake_at:
        return f"in {format_duration(state.wake_at - now)}" if state.wake_at > now else "waking"
    if not state.started_at:
        return ""
    end = state.finished_at or now
    return format_duration(end - state.started_at)


class GraphPainter:
    """Paints rows of one layout with one run's state (see the module docstring).

    ``styles`` maps the names of ``DEFAULT_STYLES`` to the styles to use.
    """

    def __init__(
        self,
        layout: GraphLayout,
        state: RunState,
        *,
        now: float,
        selected: str | None = None,
        styles: Mapping[str, Style] = DEFAULT_STYLES,
    ) -> None:
        self.layout = layout
        self.state = state
        self.now = now
        self.selected = selected
        self.styles = styles
        self._edge_style = [self._style_of_edge(index) for index in range(len(layout.edges))]
        self._strokes_by_row: dict[int, list[tuple[int, Stroke]]] = defaultdict(list)
        for (x, y), stroke in layout.strokes.items():
            self._strokes_by_row[y].append((x, stroke))
        self._boxes_by_row: dict[int, list[GraphBox]] = defaultdict(list)
        for box in layout.boxes.values():
            for dy in range(box.height):
                self._boxes_by_row[box.y + dy].append(box)

    # -- edges ----------------------------------------------------------------------------

    def edge_state(self, index: int) -> tuple[bool, bool]:
        """(decided, taken) of a drawn edge: taken if any edge it stands for was, decided if all were."""
        members = self.layout.edge_members[index]
        states = [
            self.state.edges.get((edge.source, edge.target, edge.kind), (False, False)) for edge in members
        ]
        return all(decided for decided, _ in states), any(taken for _, taken in states)

    def _style_of_edge(self, index: int) -> tuple[int, Style]:
        """(rank, style): a line several edges share takes the style of the strongest one."""
        kind = self.layout.edges[index].kind
        decided, taken = self.edge_state(index)
        base = self.styles[f"edge-{_EDGE_CLASS.get(kind, 'success')}"]
        if taken:
            return 2, base + Style(bold=True)
        if decided:
            return 0, self.styles["edge-untaken"]
        return 1, base

    def _stroke_cell(self, stroke: Stroke) -> tuple[str, Style]:
        _, style = max((self._edge_style[edge] for edge in stroke.edges), key=lambda pair: pair[0])
        kind = self.layout.edges[min(stroke.edges)].kind
        if stroke.arrow:
            return _ARROW, style
        return _LINES.get(kind, _LIGHT).get(stroke.mask, " "), style

    # -- rows -----------------------------------------------------------------------------

    def row(self, y: int) -> list[Segment]:
        """Row ``y`` of the whole picture, as segments (trailing blanks left out)."""
        cells: dict[int, tuple[str, Style]] = {}
        for x, stroke in self._strokes_by_row.get(y, ()):
            cells[x] = self._stroke_cell(stroke)
        for box in self._boxes_by_row.get(y, ()):
            for offset, cell in enumerate(self._box_row(box, y - box.y)):
                cells[box.x + offset] = cell
        if not cells:
            return []
        blank = self.styles["text"]
        segments: list[Segment] = []
        run: list[str] = []
        current: Style | None = None
        for x in range(max(cells) + 1):
            char, style = cells.get(x, (" ", blank))
            if style != current and run:
                segments.append(Segment("".join(run), current))
                run = []
            current = style
            run.append(char)
        if run:
            segments.append(Segment("".join(run), current))
        return segments

    def text(self) -> str:
        """The whole picture as plain text (for tests and golden files)."""
        return "\n".join(
            "".join(segment.text for segment in self.row(y)).rstrip() for y in range(self.layout.height)
        )

    # -- boxes ----------------------------------------------------------------------------

    def _box_row(self, box: GraphBox, dy: int) -> list[tuple[str, Style]]:
        """The cells of row ``dy`` of a box."""
        if box.is_overflow:
            statuses = [self.state.step(name).status for name in box.hidden]
            worst = _overflow_status(statuses)
            state = StepState(status=worst)
        else:
            state = self.state.step(box.id)
        css = STEP_CLASS.get(state.status, "pending")
        selected = box.id == self.selected
        border_style = self.styles["selected"] if selected else self.styles[f"box-{css}"]
        if selected:
            border = _BORDER_SELECTED
        elif state.status == SKIPPED:
            border = _BORDER_SKIPPED
        else:
            border = _BORDER
        tl, tr, bl, br, horizontal, vertical, port = border
        inner = box.width - 2
        last = box.height - 1
        if dy == 0:
            name = f"+{len(box.hidden)} more" if box.is_overflow else box.id
            name = truncate(name, inner - 3)
            name_style = self.styles["selected"] if selected else self.styles["name"]
            if state.status == SKIPPED and not selected:
                name_style = self.styles["dim"]
            rest = inner - 3 - len(name)
            return [
                (tl, border_style),
                (horizontal, border_style),
                (" ", border_style),
                *((char, name_style) for char in name),
                (" ", border_style),
                *((horizontal, border_style) for _ in range(rest)),
                (tr, border_style),
            ]
        if dy == last:
            ports = {column - box.x for column in box.out_ports.values()}
            return [
                (bl, border_style),
                *((port if offset in ports else horizontal, border_style) for offset in range(1, inner + 1)),
                (br, border_style),
            ]
        content = self._content(box, state, dy, inner)
        return [(vertical, border_style), *content, (vertical, border_style)]

    def _content(self, box: GraphBox, state: StepState, dy: int, inner: int) -> list[tuple[str, Style]]:
        css = STEP_CLASS.get(state.status, "pending")
        if box.is_overflow:
            if dy == 1:
                return _cells(_overflow_counts(self.state, box.hidden), inner, self.styles["text"])
            return _cells(" steps not drawn", inner, self.styles["dim"])
        if dy == 1:
            chip = f" {step_label(state)} "
            room = max(0, inner - 2 - len(chip))
            duration = step_duration(state, self.now)
            cells = [
                (" ", self.styles["text"]),
                *_cells(chip, len(chip), self.styles[f"chip-{css}"]),
                *_cells(duration.rjust(room), room, self.styles["text"]),
                (" ", self.styles["text"]),
            ]
            return cells[:inner]
        # The second line says the most useful thing the status has.
        text_style = self.styles["text"]
        if state.status == RUNNING and state.job_status in (0, JobStatus.RUNNING):
            width = inner - 7
            bar = progress_bar(state.progress, width)
            style = self.styles["bar"]
            return [
                (" ", text_style),
                *((char, style) for char in bar),
                *_cells(f"{state.progress:>4d}%", 5, text_style),
                (" ", text_style),
            ]
        if state.status in (FAILED, CANCELLED) and state.error:
            return _cells(f" {state.error}", inner, self.styles["error"])
        if state.reused_from_run_id:
            return _cells(" ↺ reused result", inner, self.styles["dim"])
        if state.status == SKIPPED:
            return _cells(" not reached", inner, self.styles["dim"])
        if state.status == PENDING:
            return _cells(" waiting for inputs", inner, self.styles["dim"])
        if state.message and state.status in (RUNNING, DELAYED):
            return _cells(f" {state.message}", inner, text_style)
        if state.child_run_id:
            return _cells(f" run {short_id(state.child_run_id)}", inner, self.styles["dim"])
        if state.job_id:
            attempt = f" · try {state.attempt}" if state.attempt > 1 else ""
            return _cells(f" job {short_id(state.job_id)}{attempt}", inner, self.styles["dim"])
        return _cells("", inner, text_style)


#: which status an overflow box wears: the most urgent of those it hides
_URGENCY = (FAILED, RUNNING, DELAYED, CANCELLED, PENDING, COMPLETED, SKIPPED)


def _overflow_status(statuses: Sequence[int]) -> int:
    present = set(statuses)
    return next((status for status in _URGENCY if status in present), PENDING)


def _overflow_counts(state: RunState, names: Sequence[str]) -> str:
    counts = Counter(state.step(name).status for name in names)
    glyphs = [(FAILED, "✗"), (RUNNING, "●"), (DELAYED, "◷"), (COMPLETED, "✓"), (PENDING, "○"), (SKIPPED, "⊘")]
    parts = [f"{counts[status]}{glyph}" for status, glyph in glyphs if counts[status]]
    return " " + " ".join(parts)


def _cells(text: str, width: int, style: Style) -> list[tuple[str, Style]]:
    """``text`` cut or padded to ``width`` cells, one entry per cell."""
    fitted = truncate(text, width) if len(text) > width else text.ljust(width)
    return [(char, style) for char in fitted]
