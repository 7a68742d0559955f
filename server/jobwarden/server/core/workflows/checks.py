"""The checks of a definition on put, and the compiled form a run uses.

Each refusal is an ``InvalidArgument`` naming the step or edge at fault: a bad name, a duplicate
step, an edge to or from an unknown step, a cycle (named), steps no first step reaches, a step with
nothing to do, a template or condition that does not compile or reads a step that is not upstream of
where it is used, and the limits of ``WorkflowLimits``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import orjson
from jobwarden.contract import EdgeKind, JoinMode, Limits, WorkflowLimits
from jobwarden.server.core.errors import InvalidArgument
from jobwarden.server.core.validation import (
    check_action,
    check_duration,
    check_name,
    check_payload,
    check_retry_policy,
    check_string,
    check_string_map,
    check_timeouts,
)

from .definitions import Graph, StepDef, WorkflowDef
from .expressions import Expression, ExpressionError, Template, compile_expression

__all__ = ["CompiledStep", "CompiledWorkflow", "check_workflow_name", "compile_workflow"]

_WORKFLOW_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_STEP_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")


@dataclass(slots=True)
class CompiledStep:
    definition: StepDef
    #: the job's (or the sub-workflow's) input; None: the run's input
    input: Template | None = None
    #: lock resource templates with their modes
    locks: list[tuple[Template, int]] = field(default_factory=list)


@dataclass(slots=True)
class CompiledWorkflow:
    definition: WorkflowDef
    graph: Graph
    steps: dict[str, CompiledStep]
    #: condition of each edge (by index), None without one
    conditions: list[Expression | None]
    output: Template | None
    #: the steps whose outcome decides the run: no outgoing edge
    leaves: list[str]
    order: list[str]
    #: each step's place in ``order`` (the order a run's advance looks at its steps in)
    position: dict[str, int] = field(default_factory=dict)
    #: each step's place in the definition (``graph.names``), for a run's scan cursors
    index: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.position = {name: i for i, name in enumerate(self.order)}
        self.index = {name: i for i, name in enumerate(self.graph.names)}

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def version(self) -> int:
        return self.definition.version


def check_workflow_name(name: str, what: str = "workflow") -> str:
    return check_name(
        name,
        f"{what} name",
        WorkflowLimits.MAX_NAME_LENGTH,
        _WORKFLOW_NAME_RE,
        "is not valid: letters, digits, '.', '_' and '-', starting with a letter or digit",
    )


def compile_workflow(definition: WorkflowDef) -> CompiledWorkflow:
    """Check ``definition`` and compile its templates and conditions (InvalidArgument on the first fault)."""
    check_workflow_name(definition.name)
    check_string(definition.description, "description", WorkflowLimits.MAX_DESCRIPTION_LENGTH)
    size = len(orjson.dumps(definition.content()))
    if size > WorkflowLimits.MAX_DEFINITION_BYTES:
        raise InvalidArgument(
            f"workflow {definition.name!r} is {size} bytes encoded, at most "
            f"{WorkflowLimits.MAX_DEFINITION_BYTES} allowed"
        )
    if not definition.steps:
        raise InvalidArgument(f"workflow {definition.name!r} has no steps")
    if len(definition.steps) > WorkflowLimits.MAX_STEPS:
        raise InvalidArgument(
            f"workflow {definition.name!r} has {len(definition.steps)} steps, at most "
            f"{WorkflowLimits.MAX_STEPS} allowed"
        )
    if len(definition.edges) > WorkflowLimits.MAX_EDGES:
        raise InvalidArgument(
            f"workflow {definition.name!r} has {len(definition.edges)} edges, at most "
            f"{WorkflowLimits.MAX_EDGES} allowed"
        )
    check_string_map(
        definition.context, "context", Limits.MAX_VARIABLES, Limits.MAX_VARIABLE_KEY_LENGTH,
        Limits.MAX_VARIABLE_VALUE_LENGTH,
    )  # fmt: skip
    if definition.run_timeout is not None:
        check_duration(definition.run_timeout, "run_timeout")
    names: set[str] = set()
    for index, step in enumerate(definition.steps):
        _check_step(step, index, names)
        names.add(step.name)
    seen_edges: set[tuple[str, str, EdgeKind]] = set()
    for index, edge in enumerate(definition.edges):
        where = f"edges[{index}] ({edge.source or '?'} -> {edge.target or '?'})"
        for end, name in (("source", edge.source), ("target", edge.target)):
            if not name:
                raise InvalidArgument(f"{where}: {end} is required")
            if name not in names:
                raise InvalidArgument(f"{where}: {end} {name!r} is not a step of this workflow")
        try:
            EdgeKind(edge.kind)
        except ValueError:
            raise InvalidArgument(f"{where}: unknown edge kind {edge.kind}") from None
        key = (edge.source, edge.target, edge.kind)
        if key in seen_edges:
            raise InvalidArgument(f"{where}: the same {EdgeKind(edge.kind).name} edge is given twice")
        seen_edges.add(key)
    graph = Graph(definition)
    _check_acyclic(graph)
    steps: dict[str, CompiledStep] = {}
    for step in definition.steps:
        steps[step.name] = _compile_step(step, graph)
    conditions: list[Expression | None] = []
    for index, edge in enumerate(definition.edges):
        if not edge.condition:
            conditions.append(None)
            continue
        where = f"edge {edge.label} (edges[{index}])"
        try:
            expression = compile_expression(edge.condition)
        except ExpressionError as error:
            raise InvalidArgument(f"{where}: condition {error.message}") from None
        _check_upstream(expression.steps, graph.ancestors(edge.source) | {edge.source}, where, graph)
        conditions.append(expression)
    output = None
    if definition.output is not None:
        try:
            check_payload(definition.output, "output")
            output = Template(definition.output)
        except ExpressionError as error:
            raise InvalidArgument(f"output: template {error.message}") from None
        unknown = sorted(output.steps - set(graph.names))
        if unknown:
            raise InvalidArgument(
                f"output: the template reads step {unknown[0]!r}, which is not in the workflow"
            )
        if output.uses_step:
            raise InvalidArgument("output: 'step' exists only in edge conditions")
    return CompiledWorkflow(
        definition=definition,
        graph=graph,
        steps=steps,
        conditions=conditions,
        output=output,
        leaves=graph.leaves,
        order=graph.topological(),
    )


def _check_step(step: StepDef, index: int, names: set[str]) -> None:
    where = f"steps[{index}]"
    if not step.name:
        raise InvalidArgument(f"{where}: name is required")
    if len(step.name) > WorkflowLimits.MAX_STEP_NAME_LENGTH or not _STEP_NAME_RE.match(step.name):
        raise InvalidArgument(
            f"{where}: step name {step.name!r} is not valid: letters, digits, '_' and '-', starting with "
            f"a letter, at most {WorkflowLimits.MAX_STEP_NAME_LENGTH}"
        )
    where = f"step {step.name!r}"
    if step.name in names:
        raise InvalidArgument(f"{where}: a second step has this name (step names are unique)")
    check_string(step.description, f"{where}: description", WorkflowLimits.MAX_DESCRIPTION_LENGTH)
    try:
        JoinMode(step.join)
    except ValueError:
        raise InvalidArgument(f"{where}: unknown join mode {step.join}") from None
    kinds = [k for k in (step.action, step.delay, step.workflow) if k is not None]
    if not kinds:
        raise InvalidArgument(f"{where}: it has nothing to do (give it an action, a delay or a workflow)")
    if step.action is not None:
        action = step.action
        try:
            check_action(action.action, "action")
            if not -Limits.MAX_PRIORITY <= action.priority <= Limits.MAX_PRIORITY:
                raise InvalidArgument(
                    f"priority must be between -{Limits.MAX_PRIORITY} and {Limits.MAX_PRIORITY}"
                )
            check_string_map(
                action.labels, "labels", Limits.MAX_LABELS, Limits.MAX_LABEL_KEY_LENGTH,
                Limits.MAX_LABEL_VALUE_LENGTH,
            )  # fmt: skip
            if len(action.locks) > Limits.MAX_LOCKS_PER_JOB:
                raise InvalidArgument(f"locks: at most {Limits.MAX_LOCKS_PER_JOB} allowed")
            for resource, mode in action.locks:
                if not resource.strip():
                    raise InvalidArgument("locks: a lock request has an empty resource")
                if mode not in (1, 2):
                    raise InvalidArgument(f"locks: unknown lock mode {mode} for {resource!r}")
            check_timeouts(action.timeouts)
            if action.retry_policy is not None:
                check_retry_policy(action.retry_policy)
            if action.input is not None:
                check_payload(action.input, "input")
        except InvalidArgument as error:
            raise InvalidArgument(f"{where}: {error.message}") from None
    if step.delay is not None:
        try:
            check_duration(step.delay.duration, "delay.duration")
        except InvalidArgument as error:
            raise InvalidArgument(f"{where}: {error.message}") from None
    if step.workflow is not None:
        check_workflow_name(step.workflow.workflow, f"{where}: sub-workflow")
        if step.workflow.version < 0:
            raise InvalidArgument(f"{where}: the sub-workflow's version must not be negative")
        if step.workflow.input is not None:
            try:
                check_payload(step.workflow.input, "input")
            except InvalidArgument as error:
                raise InvalidArgument(f"{where}: {error.message}") from None


def _check_acyclic(graph: Graph) -> None:
    reached: set[str] = set()
    stack = list(graph.roots)
    while stack:
        name = stack.pop()
        if name not in reached:
            reached.add(name)
            stack.extend(graph.successors(name))
    unreached = [name for name in graph.names if name not in reached]
    if unreached:
        cycle = graph.find_cycle()
        shown = f" (they form the cycle {' -> '.join(cycle)})" if cycle else ""
        listed = ", ".join(repr(n) for n in unreached[:10]) + (" ..." if len(unreached) > 10 else "")
        raise InvalidArgument(
            f"step {unreached[0]!r} is unreachable: no first step leads to {listed}{shown}; a first step "
            "is one no edge points at"
        )
    cycle = graph.find_cycle()
    if cycle:
        raise InvalidArgument(
            f"the edges make a cycle: {' -> '.join(cycle)} (step {cycle[0]!r} would wait for itself; "
            "a workflow's edges may not loop)"
        )


def _compile_step(step: StepDef, graph: Graph) -> CompiledStep:
    where = f"step {step.name!r}"
    upstream = graph.ancestors(step.name)
    compiled = CompiledStep(step)
    template_input: Any = None
    if step.action is not None:
        template_input = step.action.input
    elif step.workflow is not None:
        template_input = step.workflow.input
    try:
        if template_input is not None:
            compiled.input = Template(template_input)
        if step.action is not None:
            compiled.locks = [(Template(resource), mode) for resource, mode in step.action.locks]
    except ExpressionError as error:
        raise InvalidArgument(f"{where}: template {error.message}") from None
    templates = ([compiled.input] if compiled.input is not None else []) + [t for t, _ in compiled.locks]
    for template in templates:
        if template.uses_step:
            raise InvalidArgument(f"{where}: 'step' exists only in edge conditions; use steps.NAME")
        _check_upstream(template.steps, upstream, where, graph)
    return compiled


def _check_upstream(
    read: frozenset[str], upstream: frozenset[str] | set[str], where: str, graph: Graph
) -> None:
    for name in sorted(read):
        if name not in graph.incoming:
            raise InvalidArgument(f"{where}: reads steps.{name}, which is not a step of this workflow")
        if name not in upstream:
            raise InvalidArgument(
                f"{where}: reads steps.{name}, which is not upstream of it (only steps with a path to "
                "where an expression is used have finished by then)"
            )
