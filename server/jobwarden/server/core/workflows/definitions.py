"""Workflow definitions in domain terms: steps, edges, and the graph they make.

A definition is immutable once put; ``version`` and ``digest`` are the engine's. Every object turns
into a JSON-able dict and back (how the store keeps it); ``content`` is what the digest covers.
"""

from __future__ import annotations

import hashlib
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson
from jobwarden.contract import EdgeKind, JoinMode
from jobwarden.server.core.model import RetryPolicy, Timeouts

__all__ = [
    "ActionStepDef",
    "DelayStepDef",
    "EdgeDef",
    "Graph",
    "StepDef",
    "SubWorkflowStepDef",
    "WorkflowDef",
]

JSONDict = dict[str, Any]


# A definition's digest covers its steps' timeouts and retry policy as engines wrote them before the
# model's dict form left out defaults (``Model.to_dict``): spelled out here so that the digest of a
# stored definition stays that of the same definition put again.


def _timeouts_doc(t: Timeouts) -> JSONDict:
    """Unset timeouts left out; a start timeout with every field."""
    d: JSONDict = {}
    if t.start is not None:
        s = t.start
        run_request: JSONDict | None = None
        if s.run_request is not None:
            r = s.run_request
            run_request = {"action": r.action, "input": r.input, "correlation_id": r.correlation_id}
            if r.workflow is not None:
                w = r.workflow
                run_request["workflow"] = {
                    "workflow": w.workflow,
                    "version": w.version,
                    "input": w.input,
                    "context": w.context,
                }
        d["start"] = {
            "duration": s.duration,
            "action": int(s.action),
            "retry_interval": s.retry_interval,
            "retry_backoff_exponential": s.retry_backoff_exponential,
            "retry_count": s.retry_count,
            "run_request": run_request,
        }
    for name, value in (("heartbeat", t.heartbeat), ("takeover", t.takeover), ("execution", t.execution)):
        if value:
            d[name] = value
    return d


def _retry_policy_doc(p: RetryPolicy) -> JSONDict:
    """Every field."""
    return {
        "max_attempts": p.max_attempts,
        "initial_interval": p.initial_interval,
        "backoff_coefficient": p.backoff_coefficient,
        "max_interval": p.max_interval,
        "non_retryable_kinds": sorted(int(k) for k in p.non_retryable_kinds),
    }


@dataclass(slots=True)
class ActionStepDef:
    action: str
    #: a template; None: the run's input
    input: JSONDict | None = None
    priority: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    #: (resource template, mode as a raw number)
    locks: list[tuple[str, int]] = field(default_factory=list)
    timeouts: Timeouts = field(default_factory=Timeouts)
    retry_policy: RetryPolicy | None = None

    def to_dict(self) -> JSONDict:
        return {
            "action": self.action,
            "input": self.input,
            "priority": self.priority,
            "labels": self.labels,
            "locks": [[resource, mode] for resource, mode in self.locks],
            "timeouts": _timeouts_doc(self.timeouts),
            "retry_policy": _retry_policy_doc(self.retry_policy) if self.retry_policy else None,
        }

    @classmethod
    def from_dict(cls, d: JSONDict) -> ActionStepDef:
        policy = d.get("retry_policy")
        return cls(
            action=d["action"],
            input=d.get("input"),
            priority=d.get("priority", 0),
            labels=d.get("labels") or {},
            locks=[(resource, mode) for resource, mode in d.get("locks") or ()],
            timeouts=Timeouts.from_dict(d.get("timeouts") or {}),
            retry_policy=RetryPolicy.from_dict(policy) if policy else None,
        )


@dataclass(slots=True)
class DelayStepDef:
    #: seconds
    duration: float

    def to_dict(self) -> JSONDict:
        return {"duration": self.duration}

    @classmethod
    def from_dict(cls, d: JSONDict) -> DelayStepDef:
        return cls(duration=d["duration"])


@dataclass(slots=True)
class SubWorkflowStepDef:
    workflow: str
    #: 0: the latest version when the step starts
    version: int = 0
    #: a template; None: the run's input
    input: JSONDict | None = None

    def to_dict(self) -> JSONDict:
        return {"workflow": self.workflow, "version": self.version, "input": self.input}

    @classmethod
    def from_dict(cls, d: JSONDict) -> SubWorkflowStepDef:
        return cls(workflow=d["workflow"], version=d.get("version", 0), input=d.get("input"))


@dataclass(slots=True)
class StepDef:
    name: str
    description: str = ""
    action: ActionStepDef | None = None
    delay: DelayStepDef | None = None
    workflow: SubWorkflowStepDef | None = None
    join: JoinMode = JoinMode.ALL
    continue_on_crash: bool = False

    @property
    def kind(self) -> str:
        """ "action", "delay", "workflow", or "" when the step has none."""
        if self.action is not None:
            return "action"
        if self.delay is not None:
            return "delay"
        if self.workflow is not None:
            return "workflow"
        return ""

    def to_dict(self) -> JSONDict:
        return {
            "name": self.name,
            "description": self.description,
            "action": self.action.to_dict() if self.action else None,
            "delay": self.delay.to_dict() if self.delay else None,
            "workflow": self.workflow.to_dict() if self.workflow else None,
            "join": int(self.join),
            "continue_on_crash": self.continue_on_crash,
        }

    @classmethod
    def from_dict(cls, d: JSONDict) -> StepDef:
        action, delay, workflow = d.get("action"), d.get("delay"), d.get("workflow")
        return cls(
            name=d["name"],
            description=d.get("description", ""),
            action=ActionStepDef.from_dict(action) if action else None,
            delay=DelayStepDef.from_dict(delay) if delay else None,
            workflow=SubWorkflowStepDef.from_dict(workflow) if workflow else None,
            join=JoinMode(d.get("join") or JoinMode.ALL),
            continue_on_crash=d.get("continue_on_crash", False),
        )


@dataclass(slots=True, frozen=True)
class EdgeDef:
    source: str
    target: str
    kind: EdgeKind
    condition: str = ""

    @property
    def label(self) -> str:
        """How messages name the edge: ``a -> b (SUCCESS)``."""
        return f"{self.source} -> {self.target} ({self.kind.name})"

    def to_dict(self) -> JSONDict:
        return {
            "source": self.source,
            "target": self.target,
            "kind": int(self.kind),
            "condition": self.condition,
        }

    @classmethod
    def from_dict(cls, d: JSONDict) -> EdgeDef:
        return cls(
            source=d["source"], target=d["target"], kind=EdgeKind(d["kind"]), condition=d.get("condition", "")
        )


@dataclass(slots=True)
class WorkflowDef:
    name: str
    steps: list[StepDef]
    edges: list[EdgeDef] = field(default_factory=list)
    version: int = 0
    description: str = ""
    context: dict[str, str] = field(default_factory=dict)
    #: a template of the run's output; None: the completed leaf steps' results by name
    output: JSONDict | None = None
    #: seconds; None: no run deadline
    run_timeout: float | None = None
    continue_on_crash: bool = False
    created_at: float = 0.0
    created_by: str = ""
    digest: str = ""

    def content(self) -> JSONDict:
        """What makes two definitions the same (the digest covers it; version and stamps do not)."""
        return {
            "name": self.name,
            "description": self.description,
            "steps": [s.to_dict() for s in self.steps],
            "edges": [e.to_dict() for e in self.edges],
            "context": dict(sorted(self.context.items())),
            "output": self.output,
            "run_timeout": self.run_timeout,
            "continue_on_crash": self.continue_on_crash,
        }

    def content_digest(self) -> str:
        encoded = orjson.dumps(self.content(), option=orjson.OPT_SORT_KEYS)
        return hashlib.sha256(encoded).hexdigest()

    def step(self, name: str) -> StepDef | None:
        for step in self.steps:
            if step.name == name:
                return step
        return None

    def to_dict(self) -> JSONDict:
        return {
            **self.content(),
            "version": self.version,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "digest": self.digest,
        }

    @classmethod
    def from_dict(cls, d: JSONDict) -> WorkflowDef:
        return cls(
            name=d["name"],
            steps=[StepDef.from_dict(s) for s in d.get("steps") or ()],
            edges=[EdgeDef.from_dict(e) for e in d.get("edges") or ()],
            version=d.get("version", 0),
            description=d.get("description", ""),
            context=d.get("context") or {},
            output=d.get("output"),
            run_timeout=d.get("run_timeout"),
            continue_on_crash=d.get("continue_on_crash", False),
            created_at=d.get("created_at", 0.0),
            created_by=d.get("created_by", ""),
            digest=d.get("digest", ""),
        )


class Graph:
    """The steps and edges of a (checked) definition as a graph: neighbours, order, reach."""

    def __init__(self, definition: WorkflowDef) -> None:
        self.names = [s.name for s in definition.steps]
        self.incoming: dict[str, list[int]] = {name: [] for name in self.names}
        self.outgoing: dict[str, list[int]] = {name: [] for name in self.names}
        for index, edge in enumerate(definition.edges):
            if edge.source in self.outgoing and edge.target in self.incoming:
                self.outgoing[edge.source].append(index)
                self.incoming[edge.target].append(index)
        self.edges = definition.edges
        self.roots = [name for name in self.names if not self.incoming[name]]
        self.leaves = [name for name in self.names if not self.outgoing[name]]
        self._ancestors: dict[str, frozenset[str]] = {}

    def successors(self, name: str) -> list[str]:
        return [self.edges[i].target for i in self.outgoing[name]]

    def predecessors(self, name: str) -> list[str]:
        return [self.edges[i].source for i in self.incoming[name]]

    def find_cycle(self) -> list[str] | None:
        """One cycle as the steps along it (first step repeated at the end), or None."""
        white, grey, black = 0, 1, 2
        color = dict.fromkeys(self.names, white)
        for start in self.names:
            if color[start] != white:
                continue
            path: list[str] = [start]
            iters = [iter(self.successors(start))]
            color[start] = grey
            while iters:
                nxt = next(iters[-1], None)
                if nxt is None:
                    color[path.pop()] = black
                    iters.pop()
                    continue
                if color[nxt] == grey:
                    return [*path[path.index(nxt) :], nxt]
                if color[nxt] == white:
                    color[nxt] = grey
                    path.append(nxt)
                    iters.append(iter(self.successors(nxt)))
        return None

    def topological(self) -> list[str]:
        """Every step after all of its predecessors (definition order among equals); acyclic graphs only."""
        remaining = {name: len(self.incoming[name]) for name in self.names}
        ready = deque(name for name in self.names if remaining[name] == 0)
        order = []
        while ready:
            name = ready.popleft()
            order.append(name)
            for succ in self.successors(name):
                remaining[succ] -= 1
                if remaining[succ] == 0:
                    ready.append(succ)
        return order

    def ancestors(self, name: str) -> frozenset[str]:
        """Every step with a path to ``name`` (not ``name`` itself)."""
        cached = self._ancestors.get(name)
        if cached is None:
            seen: set[str] = set()
            stack = self.predecessors(name)
            while stack:
                step = stack.pop()
                if step not in seen:
                    seen.add(step)
                    stack.extend(self.predecessors(step))
            cached = self._ancestors[name] = frozenset(seen)
        return cached

    def descendants(self, name: str) -> set[str]:
        """``name`` and every step a path from it reaches."""
        seen = {name}
        stack = [name]
        while stack:
            for succ in self.successors(stack.pop()):
                if succ not in seen:
                    seen.add(succ)
                    stack.append(succ)
        return seen
