"""Where the step graph's boxes and edges go on a character grid: a small Sugiyama layout.

Pure (no Textual, no Rich, no protos), so it is tested alone. The graph is drawn top to bottom:

1. **Layers** by longest path from the first steps (a step sits one layer below its lowest
   predecessor). An edge that would point up or sideways (a cycle, which the engine refuses on put)
   or names an unknown step is dropped and counted, never drawn wrong.
2. **Caps**: a layer with more than ``max_per_layer`` steps keeps the first ones (by the caller's
   ``priority``) and folds the rest into one overflow box that counts them; their edges become the
   overflow box's, one per neighbour and kind. So a 1,000-step fan-out lays out (and draws) about
   ``max_per_layer`` boxes, and the work stays bounded.
3. **Dummies**: an edge that spans several layers passes through a one-cell column in each.
4. **Order** within each layer by barycenter sweeps, down then up, keeping the order with the
   fewest crossings.
5. **Columns**: each layer is placed as close as it can to the mean column of its neighbours in
   the layer above (then below), keeping its order and the gaps (isotonic regression, solved by
   pool-adjacent-violators), so a step sits centred over what it fans out to.
6. **Routes** in the rows between two layers: every edge leaves its source at the port of its kind
   (edges of different kinds never share a line), drops to a lane row, runs across and drops into
   its target. Edges that share a port share a lane (a fan-out reads as one bus ``┌───┼───┐``), and
   lanes whose spans would touch get rows of their own; where a vertical line crosses another
   edge's lane, the vertical one is drawn.

The result (``GraphLayout``) is boxes with their rectangles, and per cell of the edges the
directions a line goes from it (``N``, ``E``, ``S``, ``W``) and which edges it belongs to.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from itertools import pairwise

__all__ = [
    "OVERFLOW_PREFIX",
    "Direction",
    "E",
    "GraphBox",
    "GraphEdge",
    "GraphLayout",
    "N",
    "S",
    "Stroke",
    "W",
    "layout_graph",
]

#: the directions a line leaves a cell, as bits of a mask
N, E, S, W = 1, 2, 4, 8
#: the id of a layer's overflow box is this prefix and the layer's number
OVERFLOW_PREFIX = "+more:"


class Direction(Enum):
    UP = "up"
    DOWN = "down"
    LEFT = "left"
    RIGHT = "right"


@dataclass(frozen=True, slots=True)
class GraphEdge:
    """An edge between two steps. ``kind`` is opaque here: edges of different kinds leave and enter
    a box at different ports, so they never share a line."""

    source: str
    target: str
    kind: int


@dataclass(frozen=True, slots=True)
class GraphBox:
    """A step's box (or an overflow box standing for ``hidden`` steps) and its rectangle."""

    id: str
    layer: int
    x: int
    y: int
    width: int
    height: int
    #: an overflow box: the steps it stands for, in priority order
    hidden: tuple[str, ...] = ()
    #: the columns where edges leave the bottom border, by kind
    out_ports: Mapping[int, int] = field(default_factory=dict)

    @property
    def center(self) -> int:
        return self.x + self.width // 2

    @property
    def is_overflow(self) -> bool:
        return bool(self.hidden)


@dataclass(slots=True)
class Stroke:
    """What one cell of the edges draws: the directions its line goes, and the edges it carries."""

    mask: int
    edges: set[int]
    #: the cell just above a target's top border (an arrowhead), not a line
    arrow: bool = False


@dataclass(slots=True)
class GraphLayout:
    boxes: dict[str, GraphBox]
    #: the edges drawn (overflow boxes stand in for hidden steps), indexed by ``Stroke.edges``
    edges: list[GraphEdge]
    #: per drawn edge, the edges of the definition it stands for
    edge_members: list[tuple[GraphEdge, ...]]
    strokes: dict[tuple[int, int], Stroke]
    width: int
    height: int
    #: per layer, the rows its boxes take (top, bottom exclusive)
    layer_rows: list[tuple[int, int]]
    #: box ids per layer, left to right
    layers: list[list[str]]
    #: edges left out: naming an unknown step, or pointing back up (a cycle)
    dropped_edges: int = 0
    #: the steps folded into overflow boxes
    hidden_steps: int = 0
    #: which box each step is drawn in (itself, or its layer's overflow box)
    box_of: dict[str, str] = field(default_factory=dict)

    def neighbour(self, box_id: str, direction: Direction) -> str | None:
        """The box the arrow key ``direction`` moves to from ``box_id``: along an edge down (to
        a successor) or up (to a predecessor), the nearest such by column; else the nearest box in
        the next layer that way; left and right, the next box in the same layer."""
        box = self.boxes.get(box_id)
        if box is None:
            return None
        if direction in (Direction.LEFT, Direction.RIGHT):
            row = self.layers[box.layer]
            index = row.index(box_id) + (1 if direction is Direction.RIGHT else -1)
            return row[index] if 0 <= index < len(row) else None
        down = direction is Direction.DOWN
        linked = {
            (edge.target if down else edge.source)
            for edge in self.edges
            if (edge.source if down else edge.target) == box_id
        }
        candidates = [self.boxes[other] for other in linked if other in self.boxes]
        if not candidates:
            step = 1 if down else -1
            layer = box.layer + step
            while 0 <= layer < len(self.layers) and not self.layers[layer]:
                layer += step
            if not 0 <= layer < len(self.layers):
                return None
            candidates = [self.boxes[other] for other in self.layers[layer]]
        # Nearest layer first, then nearest column, then leftmost.
        best = min(
            candidates,
            key=lambda other: (abs(other.layer - box.layer), abs(other.center - box.center), other.x),
        )
        return best.id


@dataclass(slots=True)
class _Item:
    """A box or a dummy (one cell of an edge passing through a layer) while laying out."""

    id: str
    layer: int
    width: int
    dummy: bool
    x: float = 0.0
    #: dummies: the drawn edge they carry
    edge: int = -1

    @property
    def center(self) -> float:
        return self.x + self.width / 2


#: columns between two neighbours in a layer: boxes keep apart, edge columns may run closer
_BOX_GAP = 2
_DUMMY_GAP = 1
#: crossing counting is quadratic per gap: past this many segments the sweeps are trusted as they are
_MAX_COUNTED_SEGMENTS = 4000
_SWEEPS = 4
#: how much an edge passing through a layer pulls the step it comes from or goes to, against a step's 1
_DUMMY_PULL = 0.2


def layout_graph(
    steps: Sequence[str],
    edges: Sequence[GraphEdge],
    *,
    box_width: int = 22,
    box_height: int = 4,
    max_per_layer: int = 24,
    priority: Callable[[str], int] | None = None,
) -> GraphLayout:
    """Lay out ``steps`` (in definition order) and ``edges`` (see the module docstring).

    ``priority`` ranks steps for the room in a capped layer (lower stays); by default the
    definition's order.
    """
    order_of = {name: index for index, name in enumerate(dict.fromkeys(steps))}
    names = list(order_of)
    known = [e for e in edges if e.source in order_of and e.target in order_of and e.source != e.target]
    dropped = len(edges) - len(known)
    layer_of, acyclic = _layers(names, known)
    dropped += len(known) - len(acyclic)

    # Caps: fold the surplus of crowded layers into one overflow box per layer.
    rank = priority or (lambda name: order_of[name])
    by_layer: dict[int, list[str]] = defaultdict(list)
    for name in names:
        by_layer[layer_of[name]].append(name)
    layer_count = max(by_layer, default=-1) + 1
    box_of: dict[str, str] = {}
    hidden: dict[str, tuple[str, ...]] = {}
    layers: list[list[str]] = []
    for layer in range(layer_count):
        members = by_layer.get(layer, [])
        kept = members
        if len(members) > max_per_layer:
            ranked = sorted(members, key=lambda name: (rank(name), order_of[name]))
            keep = set(ranked[: max(1, max_per_layer - 1)])
            kept = [name for name in members if name in keep]
            overflow = f"{OVERFLOW_PREFIX}{layer}"
            hidden[overflow] = tuple(name for name in ranked if name not in keep)
            for name in hidden[overflow]:
                box_of[name] = overflow
            kept = [*kept, overflow]
        for name in kept:
            box_of.setdefault(name, name)
        layers.append(kept)
    for overflow in hidden:
        layer_of[overflow] = int(overflow[len(OVERFLOW_PREFIX) :])

    drawn: dict[GraphEdge, list[GraphEdge]] = {}
    for edge in acyclic:
        shown = GraphEdge(box_of[edge.source], box_of[edge.target], edge.kind)
        if shown.source != shown.target:
            drawn.setdefault(shown, []).append(edge)
    drawn_edges = list(drawn)

    # Items per layer: boxes, and a dummy for each layer an edge passes through.
    items: list[list[_Item]] = [
        [_Item(box_id, layer, box_width, dummy=False) for box_id in row] for layer, row in enumerate(layers)
    ]
    by_id: dict[str, _Item] = {item.id: item for row in items for item in row}
    #: segments between layer i and i+1: (upper item id, lower item id, drawn edge index)
    segments: list[list[tuple[str, str, int]]] = [[] for _ in range(max(0, layer_count - 1))]
    for index, edge in enumerate(drawn_edges):
        top, bottom = layer_of[edge.source], layer_of[edge.target]
        previous = edge.source
        for layer in range(top + 1, bottom):
            dummy = _Item(f"~{index}:{layer}", layer, 1, dummy=True, edge=index)
            items[layer].append(dummy)
            by_id[dummy.id] = dummy
            segments[layer - 1].append((previous, dummy.id, index))
            previous = dummy.id
        segments[bottom - 1].append((previous, edge.target, index))

    _order(items, segments)
    _place(items, segments, by_id)

    # Rows: boxes, then the rows of the gap below them (lanes decided by the routing).
    kinds = [edge.kind for edge in drawn_edges]
    out_ports, in_ports = _ports(items, segments, by_id, kinds)
    strokes: dict[tuple[int, int], Stroke] = {}
    layer_rows: list[tuple[int, int]] = []
    y = 0
    for layer, row in enumerate(items):
        layer_rows.append((y, y + box_height))
        for item in row:
            if item.dummy:
                for dy in range(box_height):
                    _add(strokes, int(item.x), y + dy, N | S, item.edge)
        y += box_height
        if layer < len(segments):
            y += _route(strokes, y, segments[layer], by_id, out_ports, in_ports, kinds)

    ports_of: dict[str, dict[int, int]] = defaultdict(dict)
    for (box_id, kind), column in out_ports.items():
        ports_of[box_id][kind] = column
    boxes: dict[str, GraphBox] = {}
    for layer, row in enumerate(items):
        for item in row:
            if item.dummy:
                continue
            ports = ports_of.get(item.id, {})
            boxes[item.id] = GraphBox(
                item.id,
                layer,
                int(item.x),
                layer_rows[layer][0],
                box_width,
                box_height,
                hidden=hidden.get(item.id, ()),
                out_ports=ports,
            )
    width = max((int(item.x) + item.width for row in items for item in row), default=0)
    return GraphLayout(
        boxes=boxes,
        edges=drawn_edges,
        edge_members=[tuple(drawn[edge]) for edge in drawn_edges],
        strokes=strokes,
        width=width,
        height=y,
        layer_rows=layer_rows,
        layers=[[item.id for item in row if not item.dummy] for row in items],
        dropped_edges=dropped,
        hidden_steps=sum(len(names) for names in hidden.values()),
        box_of=box_of,
    )


def _layers(names: Sequence[str], edges: Sequence[GraphEdge]) -> tuple[dict[str, int], list[GraphEdge]]:
    """Longest-path layers (Kahn's order), and the edges that point downwards in them.

    Steps caught in a cycle (which the engine refuses, but the console must not hang on) are put
    below everything else, in definition order, and the edges that would point back are left out.
    """
    incoming: dict[str, int] = dict.fromkeys(names, 0)
    successors: dict[str, list[str]] = defaultdict(list)
    for edge in edges:
        incoming[edge.target] += 1
        successors[edge.source].append(edge.target)
    layer_of: dict[str, int] = {}
    ready = [name for name in names if incoming[name] == 0]
    for name in ready:
        layer_of[name] = 0
    head = 0
    while head < len(ready):
        name = ready[head]
        head += 1
        for target in successors[name]:
            layer_of[target] = max(layer_of.get(target, 0), layer_of[name] + 1)
            incoming[target] -= 1
            if incoming[target] == 0:
                ready.append(target)
    if len(ready) < len(names):
        bottom = max(layer_of.values(), default=-1) + 1
        for name in names:
            if incoming[name] > 0:
                layer_of[name] = bottom
                bottom += 1
    kept = [edge for edge in edges if layer_of[edge.source] < layer_of[edge.target]]
    return layer_of, kept


def _neighbours(
    segments: list[list[tuple[str, str, int]]],
) -> tuple[defaultdict[str, list[str]], defaultdict[str, list[str]]]:
    """(the items each item is joined to in the layer above, those in the layer below), by id; an
    item joined to none has an empty list."""
    up: defaultdict[str, list[str]] = defaultdict(list)
    down: defaultdict[str, list[str]] = defaultdict(list)
    for gap in segments:
        for upper, lower, _ in gap:
            down[upper].append(lower)
            up[lower].append(upper)
    return up, down


def _order(items: list[list[_Item]], segments: list[list[tuple[str, str, int]]]) -> None:
    """Barycenter sweeps, down then up; the order with the fewest crossings is kept."""
    up, down = _neighbours(segments)
    counted = sum(len(gap) for gap in segments) <= _MAX_COUNTED_SEGMENTS

    def positions() -> dict[str, int]:
        return {item.id: index for row in items for index, item in enumerate(row)}

    def sweep(rows: Iterable[int], neighbours: Mapping[str, list[str]]) -> None:
        position = positions()
        for layer in rows:
            row = items[layer]

            def key(pair: tuple[int, _Item]) -> float:
                index, item = pair
                linked = neighbours.get(item.id)
                if not linked:
                    return float(index)
                return sum(position[other] for other in linked) / len(linked)

            row[:] = [item for _, item in sorted(enumerate(row), key=key)]
            for index, item in enumerate(row):
                position[item.id] = index

    best = [list(row) for row in items]
    best_crossings = _crossings(items, segments) if counted else 0
    if counted and best_crossings == 0:
        return
    for _ in range(_SWEEPS):
        sweep(range(1, len(items)), up)
        sweep(range(len(items) - 2, -1, -1), down)
        if not counted:
            continue
        crossings = _crossings(items, segments)
        if crossings < best_crossings:
            best, best_crossings = [list(row) for row in items], crossings
            if crossings == 0:
                break
    if counted:
        for row, kept in zip(items, best, strict=True):
            row[:] = kept


def _crossings(items: list[list[_Item]], segments: list[list[tuple[str, str, int]]]) -> int:
    position = {item.id: index for row in items for index, item in enumerate(row)}
    total = 0
    for gap in segments:
        ends = sorted((position[upper], position[lower]) for upper, lower, _ in gap)
        for i, (a_top, a_bottom) in enumerate(ends):
            for b_top, b_bottom in ends[i + 1 :]:
                if b_top > a_top and b_bottom < a_bottom:
                    total += 1
    return total


def _place(
    items: list[list[_Item]], segments: list[list[tuple[str, str, int]]], by_id: Mapping[str, _Item]
) -> None:
    """Columns: each layer packed, then pulled towards its neighbours' mean column (see step 5)."""
    up, down = _neighbours(segments)
    widest = max((_packed_width(row) for row in items), default=0)
    for row in items:
        x = (widest - _packed_width(row)) / 2
        for index, item in enumerate(row):
            if index:
                x += _gap(row[index - 1], item)
            item.x = x
            x += item.width

    def pull(layer: int, neighbours: Mapping[str, list[str]]) -> None:
        row = items[layer]
        desired = []
        for item in row:
            linked = neighbours.get(item.id)
            if not linked:
                desired.append(item.x)
                continue
            # An edge passing through (a dummy) pulls less than a step: a step centres on its steps.
            weights = [_DUMMY_PULL if by_id[other].dummy else 1.0 for other in linked]
            center = sum(w * by_id[o].center for w, o in zip(weights, linked, strict=True)) / sum(weights)
            desired.append(center - item.width / 2)
        for item, x in zip(row, _isotonic_place(row, desired), strict=True):
            item.x = x

    for _ in range(2):
        for layer in range(1, len(items)):
            pull(layer, up)
        for layer in range(len(items) - 2, -1, -1):
            pull(layer, down)
    # Whole cells, starting at column 0; rounding keeps the gaps since the offsets are whole.
    for row in items:
        for item in row:
            item.x = round(item.x)
    left = min((item.x for row in items for item in row), default=0)
    for row in items:
        for item in row:
            item.x -= left


def _gap(left: _Item, right: _Item) -> int:
    return _DUMMY_GAP if left.dummy and right.dummy else _BOX_GAP


def _packed_width(row: Sequence[_Item]) -> int:
    return sum(item.width for item in row) + sum(_gap(a, b) for a, b in pairwise(row))


def _isotonic_place(row: Sequence[_Item], desired: Sequence[float]) -> list[float]:
    """The columns nearest (least squares) to ``desired`` that keep the row's order and gaps.

    With ``offset[i]`` the packed distance from the first item, ``x[i] = y[i] + offset[i]`` keeps
    the gaps exactly when ``y`` never decreases: an isotonic regression of ``desired - offset``.
    """
    offsets = []
    offset = 0
    for index, item in enumerate(row):
        if index:
            offset += row[index - 1].width + _gap(row[index - 1], item)
        offsets.append(offset)
    # Pool adjacent violators: blocks of (mean, count).
    blocks: list[list[float]] = []
    for target, base in zip(desired, offsets, strict=True):
        blocks.append([target - base, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            mean, count = blocks.pop()
            blocks[-1][0] = (blocks[-1][0] * blocks[-1][1] + mean * count) / (blocks[-1][1] + count)
            blocks[-1][1] += count
    values: list[float] = []
    for mean, count in blocks:
        values.extend([mean] * int(count))
    # A whole-cell start for every block, so rounding later cannot close a gap.
    return [round(value) + base for value, base in zip(values, offsets, strict=True)]


def _ports(
    items: list[list[_Item]],
    segments: list[list[tuple[str, str, int]]],
    by_id: Mapping[str, _Item],
    kinds: Sequence[int],
) -> tuple[dict[tuple[str, int], int], dict[tuple[str, int], int]]:
    """The column where each box's edges of each kind leave (bottom) and enter (top).

    A box has one port per kind and side, spread over its width and ordered by the mean column of
    the other ends, so that its lines do not cross right under it.
    """
    ends_out: dict[tuple[str, int], list[float]] = defaultdict(list)
    ends_in: dict[tuple[str, int], list[float]] = defaultdict(list)
    for gap in segments:
        for upper, lower, edge in gap:
            ends_out[(upper, kinds[edge])].append(by_id[lower].center)
            ends_in[(lower, kinds[edge])].append(by_id[upper].center)

    def spread(ends: Mapping[tuple[str, int], list[float]]) -> dict[tuple[str, int], int]:
        per_box: dict[str, list[tuple[float, int]]] = defaultdict(list)
        for (box_id, kind), columns in ends.items():
            per_box[box_id].append((sum(columns) / len(columns), kind))
        ports: dict[tuple[str, int], int] = {}
        for box_id, entries in per_box.items():
            item = by_id[box_id]
            if item.dummy:
                for _, kind in entries:
                    ports[(box_id, kind)] = int(item.x)
                continue
            entries.sort()
            inner = item.width - 2
            for index, (_, kind) in enumerate(entries):
                ports[(box_id, kind)] = int(item.x) + 1 + (inner * (2 * index + 1)) // (2 * len(entries))
        return ports

    return spread(ends_out), spread(ends_in)


def _route(
    strokes: dict[tuple[int, int], Stroke],
    top: int,
    gap: Sequence[tuple[str, str, int]],
    by_id: Mapping[str, _Item],
    out_ports: Mapping[tuple[str, int], int],
    in_ports: Mapping[tuple[str, int], int],
    kinds: Sequence[int],
) -> int:
    """Draw one gap's segments from row ``top`` down; returns the rows the gap takes.

    Row ``top`` holds the lines leaving the sources, then one row per lane, then the row of the
    arrowheads (or lines going on into dummies).
    """
    ends = []
    for upper, lower, edge in gap:
        kind = kinds[edge]
        start = out_ports[(upper, kind)]
        end = in_ports[(lower, kind)]
        ends.append((start, end, edge, (upper, kind), (lower, kind), by_id[lower].dummy))

    # Groups sharing a line: segments from one port, and segments into one port from ports that
    # send nothing else (joining two fan-outs on one line would show edges that do not exist).
    parent = list(range(len(ends)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(a: int, b: int) -> None:
        parent[find(a)] = find(b)

    by_source: dict[tuple[str, int], list[int]] = defaultdict(list)
    by_target: dict[tuple[str, int], list[int]] = defaultdict(list)
    for index, (_, _, _, source, target, _) in enumerate(ends):
        by_source[source].append(index)
        by_target[target].append(index)
    for members in by_source.values():
        for other in members[1:]:
            union(members[0], other)
    for members in by_target.values():
        lonely = [index for index in members if len(by_source[ends[index][3]]) == 1]
        for other in lonely[1:]:
            union(lonely[0], other)
    groups: dict[int, list[int]] = defaultdict(list)
    for index in range(len(ends)):
        groups[find(index)].append(index)

    # Lanes: a group whose line runs across takes a lane row; groups whose spans would touch take
    # different rows (greedy interval colouring, leftmost first).
    spans = []
    for members in groups.values():
        columns = [column for index in members for column in ends[index][:2]]
        spans.append((min(columns), max(columns), members))
    spans.sort(key=lambda span: (span[0], span[1]))
    lane_ends: list[int] = []
    lane_of: dict[int, int] = {}
    for left, right, members in spans:
        if left == right:
            continue
        for lane, end in enumerate(lane_ends):
            if end + 1 < left:
                lane_ends[lane] = right
                break
        else:
            lane = len(lane_ends)
            lane_ends.append(right)
        for index in members:
            lane_of[index] = lane
    lanes = max(1, len(lane_ends))
    bottom = top + lanes + 1  # the arrow row

    # Lanes first, then the vertical lines, which win where they cross another group's lane.
    group_of = {index: find(index) for index in range(len(ends))}
    owner: dict[tuple[int, int], int] = {}
    for index, (start, end, edge, _, _, _) in enumerate(ends):
        if index not in lane_of:
            continue
        row = top + 1 + lane_of[index]
        low, high = min(start, end), max(start, end)
        for column in range(low, high + 1):
            mask = (E if column < high else 0) | (W if column > low else 0)
            _add(strokes, column, row, mask, edge)
            owner[(column, row)] = group_of[index]
    for index, (start, end, edge, _, _, into_dummy) in enumerate(ends):
        group = group_of[index]
        lane_row = top + 1 + lane_of[index] if index in lane_of else None
        for row in range(top, bottom + 1):
            if lane_row is None or row < lane_row:
                column, mask = start, N | S
            elif row == lane_row:
                _cross_or_join(strokes, owner, start, row, N, edge, group)
                _cross_or_join(strokes, owner, end, row, S, edge, group)
                continue
            else:
                column, mask = end, N | S
            if row == bottom and not into_dummy:
                cell = strokes.setdefault((column, row), Stroke(0, set(), arrow=True))
                cell.arrow = True
                cell.edges.add(edge)
                continue
            _cross_or_join(strokes, owner, column, row, mask, edge, group)
    return bottom + 1 - top


def _cross_or_join(
    strokes: dict[tuple[int, int], Stroke],
    owner: dict[tuple[int, int], int],
    column: int,
    row: int,
    mask: int,
    edge: int,
    group: int,
) -> None:
    key = (column, row)
    holder = owner.get(key)
    if holder is not None and holder != group:
        # Another group's lane: the vertical line crosses it and is the one drawn.
        strokes[key] = Stroke(N | S, {edge})
        owner[key] = group
        return
    owner.setdefault(key, group)
    _add(strokes, column, row, mask, edge)


def _add(strokes: dict[tuple[int, int], Stroke], column: int, row: int, mask: int, edge: int) -> None:
    cell = strokes.get((column, row))
    if cell is None:
        strokes[(column, row)] = Stroke(mask, {edge})
    else:
        cell.mask |= mask
        cell.edges.add(edge)
