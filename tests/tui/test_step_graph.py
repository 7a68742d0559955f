"""The step graph: its layout (pure), its drawing (golden text files), and the widget (Pilot, snapshots).

The golden files in tests/tui/golden/ are the graphs as plain text; after a deliberate change of the
drawing, ``JOBWARDEN_UPDATE_GOLDEN=1 pytest tests/tui/test_step_graph.py`` writes them again (read
the diff before committing it).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest
from jobwarden.tui._graph_layout import (
    OVERFLOW_PREFIX,
    Direction,
    GraphEdge,
    GraphLayout,
    layout_graph,
)
from jobwarden.tui._graph_render import GraphPainter, RunState, StepState, run_graph, run_state
from jobwarden.tui.widgets import StepGraph
from jobwarden.v1 import workflow_pb2
from textual.app import App, ComposeResult
from textual.pilot import Pilot

from tests.tui.canned import NOW
from tests.tui.workflow_runs import (
    ALWAYS,
    FAILURE,
    MEDIA_EDGES,
    MEDIA_STEPS,
    SUCCESS,
    chain_run,
    fan_out_run,
    media_run_failed,
    media_run_midway,
)

GOLDEN = Path(__file__).parent / "golden"
Snap = Callable[..., bool]


def media_layout() -> GraphLayout:
    return layout_graph(MEDIA_STEPS, [GraphEdge(*edge) for edge in MEDIA_EDGES])


def assert_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("JOBWARDEN_UPDATE_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(text + "\n", encoding="utf-8")
    assert path.exists(), f"{path} is missing: run with JOBWARDEN_UPDATE_GOLDEN=1 to write it"
    assert text + "\n" == path.read_text(encoding="utf-8")


def overlap(a: Any, b: Any) -> bool:
    return bool(a.x < b.x + b.width and b.x < a.x + a.width and a.y < b.y + b.height and b.y < a.y + a.height)


# -- the layout -------------------------------------------------------------------------------


def test_media_layers_follow_the_longest_path() -> None:
    layout = media_layout()
    assert layout.layers == [
        ["ingest"],
        ["transcode_1080p", "transcode_720p", "transcode_480p"],
        ["package"],
        ["publish"],
        ["notify"],
    ]
    assert layout.dropped_edges == 0
    assert layout.hidden_steps == 0


def test_boxes_never_overlap_and_every_edge_ends_in_an_arrow_over_its_target() -> None:
    layout = media_layout()
    boxes = list(layout.boxes.values())
    for index, box in enumerate(boxes):
        for other in boxes[index + 1 :]:
            assert not overlap(box, other), (box.id, other.id)
    arrows = {key for key, stroke in layout.strokes.items() if stroke.arrow}
    for edge_index, edge in enumerate(layout.edges):
        target = layout.boxes[edge.target]
        # The arrowhead of this edge sits on the row just above its target's top border.
        assert any(
            y == target.y - 1 and target.x < x < target.x + target.width - 1
            for (x, y) in arrows
            if edge_index in layout.strokes[(x, y)].edges
        ), edge
    # No stroke is drawn inside a box.
    for x, y in layout.strokes:
        assert not any(box.x <= x < box.x + box.width and box.y <= y < box.y + box.height for box in boxes)


def test_a_parent_is_centred_over_its_fan_out() -> None:
    layout = media_layout()
    ingest = layout.boxes["ingest"]
    middle = layout.boxes["transcode_720p"]
    assert ingest.center == middle.center
    assert layout.boxes["package"].center == middle.center


def test_edges_of_different_kinds_leave_by_different_ports() -> None:
    layout = media_layout()
    package = layout.boxes["package"]
    assert set(package.out_ports) == {SUCCESS, FAILURE}
    assert package.out_ports[SUCCESS] != package.out_ports[FAILURE]
    # ...and never share a cell of line.
    for stroke in layout.strokes.values():
        assert len({layout.edges[index].kind for index in stroke.edges}) == 1


def test_a_long_edge_passes_through_the_layers_between() -> None:
    steps = ["a", "b", "c", "d"]
    edges = [GraphEdge("a", "b", SUCCESS), GraphEdge("b", "c", SUCCESS), GraphEdge("c", "d", SUCCESS)]
    edges.append(GraphEdge("a", "d", ALWAYS))
    layout = layout_graph(steps, edges)
    long_edge = layout.edges.index(GraphEdge("a", "d", ALWAYS))
    rows = {y for (_, y), stroke in layout.strokes.items() if long_edge in stroke.edges}
    # It has a line on every row from below a to above d, boxes' rows included.
    assert rows == set(range(layout.boxes["a"].y + layout.boxes["a"].height, layout.boxes["d"].y))


def test_cycles_and_unknown_steps_are_left_out_and_counted() -> None:
    steps = ["a", "b", "c"]
    edges = [
        GraphEdge("a", "b", SUCCESS),
        GraphEdge("b", "c", SUCCESS),
        GraphEdge("c", "b", FAILURE),  # back into a cycle
        GraphEdge("a", "ghost", SUCCESS),  # names no step
        GraphEdge("a", "a", SUCCESS),  # a loop
    ]
    layout = layout_graph(steps, edges)
    assert set(layout.boxes) == {"a", "b", "c"}
    assert layout.dropped_edges == 3
    # The cycle's steps go below the rest in definition order; the edge pointing back is the one left out.
    assert layout.edges == [GraphEdge("a", "b", SUCCESS), GraphEdge("b", "c", SUCCESS)]


def test_a_thousand_step_fan_out_is_capped_with_an_overflow_box() -> None:
    run = fan_out_run(1000)
    steps, edges = run_graph(run)
    urgent = {"part_0005", "part_0700", "part_0999"}
    layout = layout_graph(steps, edges, max_per_layer=24, priority=lambda name: 0 if name in urgent else 1)
    middle = layout.layers[1]
    assert len(middle) == 24
    assert middle[-1] == f"{OVERFLOW_PREFIX}1"
    overflow = layout.boxes[middle[-1]]
    assert len(overflow.hidden) == 1000 - 23
    assert urgent <= set(middle)  # the running and failed steps keep their boxes
    assert layout.hidden_steps == 977
    assert layout.box_of["part_0500"] == overflow.id
    # start -> each shown part, and one edge into and out of the overflow box
    assert len(layout.edges) == 2 * 24
    members = layout.edge_members[layout.edges.index(GraphEdge("start", overflow.id, SUCCESS))]
    assert len(members) == 977


def test_a_thousand_step_chain_lays_out_one_box_per_layer() -> None:
    steps, edges = run_graph(chain_run(1000))
    layout = layout_graph(steps, edges)
    assert len(layout.layers) == 1000
    assert layout.width == 22
    assert len({box.x for box in layout.boxes.values()}) == 1


def test_crossings_are_removed_where_an_order_without_them_exists() -> None:
    # Definition order would cross: a->y, b->x with x defined before y.
    steps = ["a", "b", "x", "y"]
    edges = [GraphEdge("a", "y", SUCCESS), GraphEdge("b", "x", SUCCESS)]
    layout = layout_graph(steps, edges)
    top, bottom = layout.layers
    assert top.index("a") < top.index("b")
    assert bottom.index("y") < bottom.index("x")


def test_arrow_keys_follow_the_edges() -> None:
    layout = media_layout()
    assert layout.neighbour("ingest", Direction.DOWN) == "transcode_720p"  # the nearest successor
    assert layout.neighbour("transcode_720p", Direction.LEFT) == "transcode_1080p"
    assert layout.neighbour("transcode_720p", Direction.RIGHT) == "transcode_480p"
    assert layout.neighbour("transcode_480p", Direction.RIGHT) is None
    assert layout.neighbour("transcode_480p", Direction.DOWN) == "package"
    assert layout.neighbour("package", Direction.UP) == "transcode_720p"
    assert layout.neighbour("package", Direction.DOWN) == "publish"
    assert layout.neighbour("notify", Direction.DOWN) is None
    assert layout.neighbour("ingest", Direction.UP) is None
    assert layout.neighbour("nothing", Direction.UP) is None


def test_layout_is_deterministic() -> None:
    first = media_layout()
    second = media_layout()
    assert first.boxes == second.boxes
    assert first.strokes == second.strokes


# -- the drawing ------------------------------------------------------------------------------


def test_media_run_midway_golden() -> None:
    run = media_run_midway()
    painter = GraphPainter(media_layout(), run_state(run), now=NOW, selected="transcode_1080p")
    text = painter.text()
    assert_golden("media_midway.txt", text)
    assert "● RUNNING" in text
    assert "62%" in text
    assert "● WAIT LOCK" in text  # a running step says what its job waits for


def test_media_run_failed_golden() -> None:
    run = media_run_failed()
    text = GraphPainter(media_layout(), run_state(run), now=NOW).text()
    assert_golden("media_failed.txt", text)
    assert "✗ FAILED" in text
    assert "╌" in text  # the failure edges are dashed


def test_skipped_steps_are_drawn_with_a_dashed_border() -> None:
    state = RunState(steps={"notify": StepState(status=workflow_pb2.STEP_STATUS_SKIPPED)})
    text = GraphPainter(media_layout(), state, now=NOW).text()
    assert "⊘ SKIPPED" in text
    assert "┌╌ notify ╌" in text
    assert "└╌╌╌╌" in text


def test_edge_kinds_and_states_have_their_own_lines_and_styles() -> None:
    steps = ["a", "ok", "bad", "end"]
    edges = [GraphEdge("a", "ok", SUCCESS), GraphEdge("a", "bad", FAILURE), GraphEdge("a", "end", ALWAYS)]
    layout = layout_graph(steps, edges)
    state = RunState(
        edges={("a", "ok", SUCCESS): (True, True), ("a", "bad", FAILURE): (True, False)},
    )
    painter = GraphPainter(layout, state, now=NOW)
    text = painter.text()
    assert "║" in text  # always: double line
    assert "╎" in text  # failure: dashed
    assert "│" in text  # success: light
    styles = {index: painter.edge_state(index) for index in range(len(layout.edges))}
    assert styles[layout.edges.index(GraphEdge("a", "ok", SUCCESS))] == (True, True)
    assert styles[layout.edges.index(GraphEdge("a", "bad", FAILURE))] == (True, False)
    assert styles[layout.edges.index(GraphEdge("a", "end", ALWAYS))] == (False, False)


# -- the widget -------------------------------------------------------------------------------


class GraphApp(App[None]):
    """The widget alone, drawing one run."""

    CSS = "StepGraph { height: 1fr; }"
    CSS_PATH: ClassVar[Any] = [Path(__file__).parents[2] / "tui/jobwarden/tui/widgets/widgets.tcss"]

    def __init__(self, run: workflow_pb2.WorkflowRun) -> None:
        super().__init__()
        self.run_message = run
        self.opened: list[str] = []

    def compose(self) -> ComposeResult:
        yield StepGraph(clock=lambda: NOW, id="graph")

    def on_mount(self) -> None:
        graph = self.query_one(StepGraph)
        steps, edges = run_graph(self.run_message)
        graph.show_graph(steps, edges, run_state(self.run_message))
        graph.focus()

    def on_step_graph_opened(self, message: StepGraph.Opened) -> None:
        self.opened.append(message.step)


async def test_arrows_move_the_selection_and_enter_opens_the_step() -> None:
    app = GraphApp(media_run_midway())
    async with app.run_test(size=(80, 24)) as pilot:
        graph = app.query_one(StepGraph)
        assert graph.selected == "ingest"
        await pilot.press("down")
        assert graph.selected == "transcode_720p"
        await pilot.press("left")
        assert graph.selected == "transcode_1080p"
        await pilot.press("down", "down")
        assert graph.selected == "publish"
        # publish is below the first screen at 80x24: the view scrolled to it
        assert graph.scroll_offset.y > 0
        await pilot.press("enter")
        await pilot.pause()
        assert app.opened == ["publish"]
        await pilot.press("home")
        assert graph.selected == "ingest"


async def test_a_thousand_step_fan_out_draws_and_scrolls() -> None:
    app = GraphApp(fan_out_run(1000))
    async with app.run_test(size=(80, 24)) as pilot:
        graph = app.query_one(StepGraph)
        layout = graph.graph_layout
        assert layout is not None
        assert layout.hidden_steps > 900
        await pilot.press("down")
        for _ in range(30):
            await pilot.press("right")
        assert graph.selected is not None
        assert graph.selected.startswith(OVERFLOW_PREFIX)
        assert graph.scroll_offset.x > 0  # scrolled right to follow the selection
        assert "steps not drawn" in graph.text()


async def test_a_new_state_redraws_without_a_new_layout() -> None:
    app = GraphApp(media_run_midway())
    async with app.run_test(size=(100, 40)) as pilot:
        graph = app.query_one(StepGraph)
        layout = graph.graph_layout
        later = media_run_failed()
        steps, edges = run_graph(later)
        graph.show_graph(steps, edges, run_state(later))
        await pilot.pause()
        assert graph.graph_layout is layout
        assert "CDN refused" in graph.text()


@pytest.mark.parametrize("size", [(80, 24), (160, 45)], ids=["80x24", "160x45"])
def test_graph_snapshot(snap_compare: Snap, size: tuple[int, int]) -> None:
    async def select_package(pilot: Pilot[Any]) -> None:
        await pilot.press("down", "down")
        await pilot.pause()

    assert snap_compare(GraphApp(media_run_midway()), terminal_size=size, run_before=select_package)


# -- the store of work orders -----------------------------------------------------------------


def test_a_step_event_updates_its_step_and_keeps_the_others_and_the_edges() -> None:
    from jobwarden.tui._workflows import OrderStore

    store = OrderStore()
    whole = media_run_midway()
    whole.sequence = 10
    store.put_run(whole)
    # What the engine sends on STEP_CHANGED: the run's header and the one step, no edges.
    news = workflow_pb2.WorkflowRun(id=whole.id, work_order_id=whole.work_order_id, sequence=11)
    news.status = workflow_pb2.WORKFLOW_RUN_STATUS_RUNNING
    news.steps.append(workflow_pb2.StepRun(name="transcode_480p", status=workflow_pb2.STEP_STATUS_COMPLETED))
    store.apply(
        workflow_pb2.WorkflowEvent(sequence=11, type=workflow_pb2.WORKFLOW_EVENT_TYPE_STEP_CHANGED, run=news)
    )
    run = store.runs[whole.id]
    assert [step.name for step in run.steps] == list(MEDIA_STEPS)
    assert (
        next(s for s in run.steps if s.name == "transcode_480p").status == workflow_pb2.STEP_STATUS_COMPLETED
    )
    assert len(run.edges) == len(MEDIA_EDGES)
    assert run.sequence == 11
    assert whole.id not in store.incomplete
    # An older event changes nothing.
    stale = workflow_pb2.WorkflowRun(id=whole.id, sequence=5)
    store.apply(
        workflow_pb2.WorkflowEvent(sequence=5, type=workflow_pb2.WORKFLOW_EVENT_TYPE_STEP_CHANGED, run=stale)
    )
    assert store.runs[whole.id].sequence == 11


def test_a_step_event_of_an_unknown_run_marks_it_to_be_read_whole() -> None:
    from jobwarden.tui._workflows import OrderStore

    store = OrderStore()
    news = workflow_pb2.WorkflowRun(id="run-1", work_order_id="order-1", sequence=3)
    news.steps.append(workflow_pb2.StepRun(name="ingest", status=workflow_pb2.STEP_STATUS_RUNNING))
    store.apply(
        workflow_pb2.WorkflowEvent(sequence=3, type=workflow_pb2.WORKFLOW_EVENT_TYPE_STEP_CHANGED, run=news)
    )
    assert store.incomplete == {"run-1"}
    store.put_run(media_run_midway())  # another run: still incomplete
    assert store.incomplete == {"run-1"}
