"""Enter on a work order: its run's step graph, live, with the selected step's details below it."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import ClassVar

from jobwarden.sdk import JobwardenError
from jobwarden.tui._format import format_duration, short_id, truncate
from jobwarden.tui._graph_render import (
    ALWAYS,
    EDGE_LABEL,
    FAILURE,
    SUCCESS,
    StepState,
    run_graph,
    run_state,
    step_duration,
    step_label,
)
from jobwarden.tui._workflows import RUN_TERMINAL, OrderStore
from jobwarden.tui.widgets import ConsoleFooter, StepGraph
from jobwarden.v1 import workflow_pb2
from jobwarden.wire import timestamp_seconds as seconds
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import Static

from ._base import ConsoleScreen
from ._order_ops import cancel_run, retry_order, run_chip
from ._steps import StepChoiceScreen

#: seconds between two reads of a whole run after the stream's news of it
_REFETCH_AFTER = 0.3
#: seconds between two looks at the stream's news of the run
_FLUSH_EVERY = 0.25
#: what each edge kind's line looks like, for the legend
_LEGEND = ((SUCCESS, "──", "green"), (FAILURE, "╌╌", "red"), (ALWAYS, "══", "blue"))


def legend() -> Text:
    text = Text(" ")
    for kind, line, colour in _LEGEND:
        text.append(f"{line}▼", style=f"bold {colour}")
        text.append(f" {EDGE_LABEL[kind]}  ")
    text.append("bold", style="bold")
    text.append(": taken  ")
    text.append("dim", style="dim")
    text.append(": not taken  ")
    text.append("┌╌╌┐", style="dim")
    text.append(" skipped")
    return text


class RunScreen(ConsoleScreen):
    """One work order's run drawn as its step graph (see ``StepGraph``); ``[`` / ``]`` go to the
    previous or next run, and the view follows a new run of the work order while on the last one."""

    NAV = "Orders"
    CSS_PATH = "screens.tcss"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,backspace", "back", "Back", id="run.back"),
        Binding("R", "retry_step", "Rerun from step", id="run.retry_step"),
        Binding("r", "retry", "Retry", show=False, id="run.retry"),
        Binding("c", "cancel", "Cancel run", id="run.cancel"),
        Binding("left_square_bracket", "run(-1)", "Previous run", show=False, id="run.previous"),
        Binding("right_square_bracket", "run(1)", "Next run", show=False, id="run.next"),
    ]

    def __init__(self, order_id: str, store: OrderStore | None = None) -> None:
        super().__init__()
        self.order_id = order_id
        self.store = store
        self.order: workflow_pb2.WorkOrder | None = None
        self.runs: list[workflow_pb2.WorkflowRun] = []
        #: which of ``runs`` is drawn
        self.index = -1
        self.error = ""
        self.loads = 0
        self._following_last = True
        self._jobs_drawn: dict[str, tuple[int, int, str]] = {}
        self._summary_drawn = Text()
        self._refetch_wanted: set[str] = set()

    @property
    def run(self) -> workflow_pb2.WorkflowRun | None:
        return self.runs[self.index] if 0 <= self.index < len(self.runs) else None

    def compose(self) -> ComposeResult:
        yield self.header()
        yield Static("", id="run-summary", classes="summary")
        yield StepGraph(clock=self.console.clock, id="run-graph")
        with Vertical(id="run-panel"):
            yield Static("", id="run-step")
            yield Static(legend(), id="run-legend")
        yield ConsoleFooter()

    @property
    def graph(self) -> StepGraph:
        return self.query_one(StepGraph)

    def on_mount(self) -> None:
        self.graph.clear("Loading the work order…")
        self.graph.focus()
        self._load()
        self._refetch_loop()
        self.set_interval(_FLUSH_EVERY, self.flush, name="run-flush")
        self.set_interval(1.0, self._tick, name="run-tick")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return self.console.allows(action)

    @work(group="run-load", exclusive=True, exit_on_error=False)
    async def _load(self, show_last: bool = True) -> None:
        try:
            response = await self.console.client.get_work_order(self.order_id)
        except JobwardenError as error:
            self.error = str(error)
            self.graph.clear(f"Cannot read work order {short_id(self.order_id)}: {error}")
            self._summary()
            return
        self.error = ""
        self.order = response.order
        self.runs = list(response.runs)
        if show_last or not 0 <= self.index < len(self.runs):
            self.index = len(self.runs) - 1
        self.loads += 1
        self._draw()

    def flush(self) -> None:
        """Take in what the stream said of this work order since the last look."""
        if self.store is None or self.run is None:
            return
        order = self.store.orders.get(self.order.id if self.order else self.order_id)
        if order is not None and self.order is not None and order.sequence > self.order.sequence:
            self.order = order
            if order.last_run_id not in {run.id for run in self.runs}:
                # A new run (a retry): read it whole, and show it if the last run was on screen.
                self._load(show_last=self._following_last)
                return
        changed = False
        for index, run in enumerate(self.runs):
            news = self.store.runs.get(run.id)
            if news is not None and news.sequence > run.sequence:
                self.runs[index] = _merged(run, news)
                changed = changed or index == self.index
                # A step event carries that step alone: which edges it decided, the whole run says.
                self._refetch(run.id)
        if changed or self._live_jobs() != self._jobs_drawn:
            self._draw()

    @work(group="run-refetch", exclusive=True, exit_on_error=False)
    async def _refetch_loop(self) -> None:
        """Read a run whole again after the stream's news of it: at most one read every
        ``_REFETCH_AFTER`` seconds, however many events come (a burst of news, one read)."""
        while True:
            await asyncio.sleep(_REFETCH_AFTER)
            if not self._refetch_wanted:
                continue
            wanted, self._refetch_wanted = self._refetch_wanted, set()
            for run_id in wanted:
                try:
                    run = await self.console.client.get_workflow_run(run_id)
                except JobwardenError:
                    continue
                for index, known in enumerate(self.runs):
                    if known.id == run.id and run.sequence >= known.sequence:
                        self.runs[index] = run
                        if index == self.index:
                            self._draw()

    def _refetch(self, run_id: str) -> None:
        self._refetch_wanted.add(run_id)

    def _tick(self) -> None:
        self.graph.tick()
        self._summary()

    def _draw(self) -> None:
        run = self.run
        if run is None:
            self.graph.clear("This work order has no run yet.")
            self._summary()
            return
        steps, edges = run_graph(run)
        state = run_state(run)
        # The running steps' jobs as the job feed has them now: their progress moves with every
        # update of the job, whether or not the engine sends a workflow event for it.
        self._jobs_drawn = self._live_jobs()
        for name, (status, progress, message) in self._jobs_drawn.items():
            step = state.steps[name]
            state.steps[name] = replace(step, job_status=int(status), progress=progress, message=message)
        self.graph.show_graph(steps, edges, state)
        self._summary()
        self._step_panel()

    def _live_jobs(self) -> dict[str, tuple[int, int, str]]:
        """(job status, progress, message) of each running step's job the console's store holds."""
        run = self.run
        if run is None:
            return {}
        jobs = self.console.store.jobs
        live = {}
        for step in run.steps:
            row = jobs.get(step.job_id) if step.status == workflow_pb2.STEP_STATUS_RUNNING else None
            if row is not None and not row.status.terminal:
                live[step.name] = (int(row.status), row.progress, row.message)
        return live

    def _summary(self) -> None:
        run = self.run
        parts: list[str | Text] = []
        if self.order is not None:
            parts.append(f"order {short_id(self.order.id)}")
        if run is not None:
            parts.append(f"{run.workflow} v{run.version} · run {run.number} of {len(self.runs)}")
            started = seconds(run.created_at)
            ended = seconds(run.finished_at) or self.console.clock()
            if started:
                parts.append(format_duration(ended - started))
            if run.rerun_from_step:
                parts.append(f"rerun from {run.rerun_from_step}")
            if run.cancel_requested and run.status not in RUN_TERMINAL:
                parts.append("cancel requested")
        layout = self.graph.graph_layout
        if layout is not None and layout.hidden_steps:
            parts.append(f"{layout.hidden_steps} steps folded in +N boxes")
        if layout is not None and layout.dropped_edges:
            parts.append(f"{layout.dropped_edges} edges not drawn (unknown step or cycle)")
        if len(self.runs) > 1:
            parts.append("[ ] other runs")
        if self.error:
            parts.append(self.error)
        text = run_chip(run.status) if run is not None else Text()
        text.append(" ")
        text.append(" · ".join(str(part) for part in parts))
        if text != self._summary_drawn:
            self._summary_drawn = text
            self.query_one("#run-summary", Static).update(text)

    def _step_panel(self) -> None:
        panel = self.query_one("#run-step", Static)
        graph = self.graph
        run = self.run
        name = graph.selected
        if run is None or name is None:
            panel.update("")
            return
        if graph.selected_is_overflow and graph.graph_layout is not None:
            hidden = graph.graph_layout.boxes[name].hidden
            panel.update(Text(f" {len(hidden)} steps in this box: {truncate(', '.join(hidden), 200)}"))
            return
        state = graph.state.step(name)
        width = max(20, self.size.width - 2)
        first = Text(" ")
        first.append(name, style="bold")
        first.append(f"  {step_label(state)}")
        duration = step_duration(state, self.console.clock())
        if duration:
            first.append(f" · {duration}")
        first.append(_step_facts(state))
        incoming = [e for e in run.edges if e.target == name]
        outgoing = [e for e in run.edges if e.source == name]
        second = " in: " + (", ".join(_edge_text(e, e.source) for e in incoming) or "— (a first step)")
        second += "   out: " + (", ".join(_edge_text(e, e.target) for e in outgoing) or "— (a leaf)")
        first.append("\n" + truncate(second, width))
        if state.error:
            first.append("\n " + truncate(state.error, width), style="red")
        panel.update(first)

    def on_resize(self) -> None:
        self._step_panel()

    def on_step_graph_selected(self, message: StepGraph.Selected) -> None:
        message.stop()
        self._step_panel()

    def on_step_graph_opened(self, message: StepGraph.Opened) -> None:
        message.stop()
        graph = self.graph
        if graph.selected_is_overflow and graph.graph_layout is not None:
            hidden = graph.graph_layout.boxes[message.step].hidden
            self.app.push_screen(StepListScreen(hidden), self._picked)
            return
        state = graph.state.step(message.step)
        if state.job_id:
            self.console.open_job(state.job_id)
        elif state.child_run_id:
            self.notify(f"{message.step} runs sub-workflow run {short_id(state.child_run_id)}.", timeout=4)
        else:
            self.notify(f"{message.step} has no job (yet).", severity="warning", timeout=3)

    def _picked(self, step: str | None) -> None:
        if step is None:
            return
        # Selecting a folded step gives it a box of its own (the selection always has one).
        self.graph.selected = step
        self._draw()
        self.graph.select(step)

    # -- keys -----------------------------------------------------------------------------

    def action_back(self) -> None:
        self.dismiss()

    def action_run(self, delta: int) -> None:
        if not self.runs:
            return
        index = min(len(self.runs) - 1, max(0, self.index + delta))
        if index == self.index:
            self.notify("No earlier run." if delta < 0 else "No later run.", timeout=2)
            return
        self.index = index
        self._following_last = index == len(self.runs) - 1
        self._draw()

    def _label(self) -> str:
        order = self.order
        return (
            f"{short_id(self.order_id)} ({order.workflow})" if order is not None else short_id(self.order_id)
        )

    def action_cancel(self) -> None:
        run = self.run
        if run is not None:
            cancel_run(self, run.id, self._label(), run.status)

    def action_retry(self) -> None:
        order = self.order
        if order is not None and self.runs:
            retry_order(self, order.id, self._label(), self.runs[-1].status, "")

    def action_retry_step(self) -> None:
        order = self.order
        step = self.graph.selected
        if order is None or not self.runs or step is None:
            return
        if self.graph.selected_is_overflow:
            self.notify("Pick one step of the box first (Enter lists them).", severity="warning")
            return
        retry_order(self, order.id, self._label(), self.runs[-1].status, step)


class StepListScreen(StepChoiceScreen):
    """The steps an overflow box stands for; the one chosen gets a box and the selection."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss(None)", "Back", id="steplist.back"),
    ]

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(Content(f"{len(self._steps)} steps not drawn"), id="dialog-title")
            yield self.step_list()


def _merged(whole: workflow_pb2.WorkflowRun, news: workflow_pb2.WorkflowRun) -> workflow_pb2.WorkflowRun:
    """The run as the stream tells it (no input, output or step results; after a step event, maybe
    not every step or edge), with what only the whole run read from the engine has."""
    merged = workflow_pb2.WorkflowRun()
    merged.CopyFrom(news)
    merged.input.CopyFrom(whole.input)
    merged.output.CopyFrom(whole.output)
    told = {step.name: step for step in news.steps}
    del merged.steps[:]
    for old in whole.steps:
        step = told.pop(old.name, None)
        if step is None:
            merged.steps.append(old)
            continue
        if not step.HasField("result") and old.HasField("result"):
            step.result.CopyFrom(old.result)
        merged.steps.append(step)
    merged.steps.extend(told.values())
    if not news.edges:
        merged.edges.extend(whole.edges)
    return merged


def _edge_text(edge: workflow_pb2.EdgeRun, other: str) -> str:
    state = "taken" if edge.taken else ("not taken" if edge.decided else "undecided")
    return f"{other} ({EDGE_LABEL.get(edge.kind, 'success')}, {state})"


def _step_facts(state: StepState) -> str:
    facts = []
    if state.job_id:
        facts.append(f"job {short_id(state.job_id)}")
    if state.attempt > 1:
        facts.append(f"attempt {state.attempt}")
    if state.reused_from_run_id:
        facts.append(f"result reused from run {short_id(state.reused_from_run_id)}")
    if state.message and state.status not in (workflow_pb2.STEP_STATUS_COMPLETED,):
        facts.append(state.message)
    return (" · " + " · ".join(facts)) if facts else ""
