"""Workflow definitions in files: TOML, YAML (the ``yaml`` extra, PyYAML) or JSON, one layout.

::

    name = "media-publish"
    run_timeout = "30m"
    context = { channel = "web" }

    [[steps]]
    name = "ingest"
    action = "media.ingest"
    input = { asset_id = "{{ input.asset_id }}" }
    locks = ["asset:{{ input.asset_id }}"]
    timeouts = { heartbeat = "30s", execution = "10m" }
    retry = { max_attempts = 3, initial_interval = "1s" }
    on_success = ["transcode"]
    on_failure = [{ step = "notify", when = "step.error.kind == 'JOB_ERROR'" }]

A step is an action step (``action``), a delay step (``delay = "5m"``) or a sub-workflow step
(``workflow = "NAME"``, ``version``). Its edges are ``on_success``, ``on_failure`` and ``always``:
lists of step names or of ``{ step = NAME, when = CEL }``; a top-level ``[[edges]]`` list
(``source``, ``target``, ``kind`` = success|failure|always, ``when``) says the same another way.
Every file is read through ``Workflow`` (the builder), so it makes the message the same code
would; every error names the file, the step and the field.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jobwarden.sdk._exceptions import WorkflowDefinitionError
from jobwarden.sdk._workflow import Step, Workflow

__all__ = ["SUFFIXES", "load_workflow", "workflow_from_mapping"]

#: the file kinds ``load_workflow`` reads, by suffix
SUFFIXES = (".toml", ".yaml", ".yml", ".json")

_TOP = {"name", "description", "context", "output", "run_timeout", "continue_on_crash", "steps", "edges"}
_COMMON = {"name", "description", "join", "on_success", "on_failure", "always"}
_ACTION = _COMMON | {
    "action",
    "input",
    "priority",
    "labels",
    "locks",
    "timeouts",
    "retry",
    "continue_on_crash",
}
_DELAY = _COMMON | {"delay"}
_SUB_WORKFLOW = _COMMON | {"workflow", "version", "input", "continue_on_crash"}
_EDGE_LISTS = ("on_success", "on_failure", "always")
_EDGE = {"source", "target", "kind", "when"}


def load_workflow(path: str | Path) -> Workflow:
    """The workflow a ``.toml``, ``.yaml``/``.yml`` or ``.json`` file defines (``.definition()`` is
    its message); ``WorkflowDefinitionError`` naming the file (and step, field) for a bad one."""
    path = Path(path)
    source = str(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise WorkflowDefinitionError(
            f"cannot tell the file's format from its name: use {', '.join(SUFFIXES)}", source=source
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise WorkflowDefinitionError(f"cannot read the file: {_reason(error)}", source=source) from None
    return workflow_from_mapping(_parse(text, suffix, source), source=source)


def _parse(text: str, suffix: str, source: str) -> Any:
    if suffix == ".toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise WorkflowDefinitionError(f"not valid TOML: {error}", source=source) from None
    if suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as error:
            raise WorkflowDefinitionError(f"not valid JSON: {error}", source=source) from None
    try:
        import yaml
    except ModuleNotFoundError:
        raise WorkflowDefinitionError(
            "YAML files need PyYAML, which is not installed (pip install 'jobwarden[yaml]'); "
            "TOML and JSON files need nothing more",
            source=source,
        ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise WorkflowDefinitionError(f"not valid YAML: {error}", source=source) from None


def workflow_from_mapping(data: Any, *, source: str | None = None) -> Workflow:
    """The workflow a parsed file (or any mapping in the file layout) defines."""
    where = {"source": source}
    if not isinstance(data, Mapping):
        raise WorkflowDefinitionError(
            f"must hold a table (a mapping) of the workflow, got {type(data).__name__}", **where
        )
    name = data.get("name")
    _unknown(data, _TOP, "the top level", source, name)
    if not isinstance(name, str):
        raise WorkflowDefinitionError("name: missing or not text (the workflow's name)", **where)
    workflow = Workflow(
        name,
        description=data.get("description", ""),
        context=data.get("context"),
        output=data.get("output"),
        run_timeout=data.get("run_timeout"),
        continue_on_crash=data.get("continue_on_crash", False),
        source=source,
    )
    steps = data.get("steps")
    if not isinstance(steps, list) or not steps:
        raise workflow._error("steps: a workflow needs a list of steps ([[steps]] in TOML)")
    edges: list[tuple[Step, str, Any, int]] = []
    for index, spec in enumerate(steps):
        step = _step(workflow, spec, index)
        for kind in _EDGE_LISTS:
            targets = spec.get(kind, [])
            if isinstance(targets, str | Mapping):
                targets = [targets]
            if not isinstance(targets, list):
                raise workflow._error(f"{kind}: must be a list of step names, got {targets!r}", step.name)
            for position, target in enumerate(targets):
                edges.append((step, kind, target, position))
    for step, kind, target, position in edges:
        field = f"{kind}[{position}]"
        if isinstance(target, Mapping):
            _unknown(target, {"step", "when"}, field, source, name, step.name)
            target_name, when = target.get("step"), target.get("when", "")
        else:
            target_name, when = target, ""
        _edge(workflow, step, kind, target_name, when, field)
    top_edges = data.get("edges", [])
    if not isinstance(top_edges, list):
        raise workflow._error(f"edges: must be a list of edges, got {top_edges!r}")
    for index, spec in enumerate(top_edges):
        field = f"edges[{index}]"
        if not isinstance(spec, Mapping):
            raise workflow._error(f"{field}: must be a table (source, target, kind, when), got {spec!r}")
        _unknown(spec, _EDGE, field, source, name)
        for required in ("source", "target"):
            if not isinstance(spec.get(required), str):
                raise workflow._error(f"{field}.{required}: must name a step, got {spec.get(required)!r}")
        kind = spec.get("kind", "success")
        if not isinstance(kind, str) or kind.lower() not in _EDGE_LISTS_BY_KIND:
            raise workflow._error(f"{field}.kind: {kind!r} is not success, failure or always")
        source_step = workflow.step(spec["source"]) if spec["source"] in _names(workflow) else None
        if source_step is None:
            raise workflow._error(f"{field}.source: no step named {spec['source']!r}")
        _edge(
            workflow,
            source_step,
            _EDGE_LISTS_BY_KIND[kind.lower()],
            spec["target"],
            spec.get("when", ""),
            field,
        )
    names = _names(workflow)
    for step, kind, target, position in edges:
        target_name = target.get("step") if isinstance(target, Mapping) else target
        if target_name not in names:
            raise workflow._error(
                f"{kind}[{position}]: no step named {target_name!r} (steps: {', '.join(names)})", step.name
            )
    for index, spec in enumerate(top_edges):
        if spec["target"] not in names:
            raise workflow._error(
                f"edges[{index}].target: no step named {spec['target']!r} (steps: {', '.join(names)})"
            )
    return workflow


_EDGE_LISTS_BY_KIND = {"success": "on_success", "failure": "on_failure", "always": "always"}


def _names(workflow: Workflow) -> list[str]:
    return [step.name for step in workflow.steps]


def _edge(workflow: Workflow, step: Step, kind: str, target: Any, when: Any, field: str) -> None:
    if not isinstance(target, str):
        raise workflow._error(f"{field}: must name a step, got {target!r}", step.name)
    if not isinstance(when, str):
        raise workflow._error(f"{field}.when: must be a CEL expression (text), got {when!r}", step.name)
    try:
        getattr(step, kind)(target, when=when)
    except WorkflowDefinitionError as error:
        raise WorkflowDefinitionError(
            f"{field}: {error.detail}", source=workflow.source, workflow=workflow.name, step=step.name
        ) from None


def _step(workflow: Workflow, spec: Any, index: int) -> Step:
    if not isinstance(spec, Mapping):
        raise workflow._error(f"steps[{index}]: must be a table of the step, got {spec!r}")
    name = spec.get("name")
    if not isinstance(name, str):
        raise workflow._error(f"steps[{index}]: name: missing or not text (every step needs a name)")
    kinds = [kind for kind in ("action", "delay", "workflow") if kind in spec]
    if len(kinds) != 1:
        found = f" (it has {' and '.join(kinds)})" if kinds else ""
        raise workflow._error(
            f"a step is one of: an action step (action = ...), a delay step (delay = ...) or a "
            f"sub-workflow step (workflow = ...){found}",
            name,
        )
    kind = kinds[0]
    common: dict[str, Any] = {"join": spec.get("join"), "description": spec.get("description", "")}
    if kind == "action":
        _unknown(spec, _ACTION, "", workflow.source, workflow.name, name)
        return workflow.action(
            name,
            spec["action"],
            input=spec.get("input"),
            priority=spec.get("priority", 0),
            labels=spec.get("labels"),
            locks=_locks(workflow, spec.get("locks"), name),
            timeouts=spec.get("timeouts"),
            retry=spec.get("retry"),
            continue_on_crash=spec.get("continue_on_crash", False),
            **common,
        )
    if kind == "delay":
        _unknown(spec, _DELAY, "", workflow.source, workflow.name, name)
        return workflow.delay(name, spec["delay"], **common)
    _unknown(spec, _SUB_WORKFLOW, "", workflow.source, workflow.name, name)
    return workflow.sub_workflow(
        name,
        spec["workflow"],
        version=spec.get("version", 0),
        input=spec.get("input"),
        continue_on_crash=spec.get("continue_on_crash", False),
        **common,
    )


def _locks(workflow: Workflow, locks: Any, step: str) -> list[Any]:
    """Locks as written in a file: ``"resource"``, ``"resource:SHARED"`` or ``{ resource, mode }``."""
    if locks is None:
        return []
    if not isinstance(locks, list):
        raise workflow._error(f"locks: must be a list, got {locks!r}", step)
    out: list[Any] = []
    for index, lock in enumerate(locks):
        if isinstance(lock, Mapping):
            _unknown(lock, {"resource", "mode"}, f"locks[{index}]", workflow.source, workflow.name, step)
            resource, mode = lock.get("resource"), lock.get("mode", "EXCLUSIVE")
            if not isinstance(resource, str) or not isinstance(mode, str):
                raise workflow._error(f"locks[{index}]: resource and mode must be text, got {lock!r}", step)
            out.append((resource, mode))
        elif isinstance(lock, str):
            out.append(lock)
        else:
            raise workflow._error(
                f"locks[{index}]: must be text or a table (resource, mode), got {lock!r}", step
            )
    return out


def _unknown(
    spec: Mapping[str, Any],
    known: set[str],
    what: str,
    source: str | None,
    workflow: object,
    step: str | None = None,
) -> None:
    unknown = sorted(str(key) for key in set(spec) - known)
    if unknown:
        where = f"{what}: " if what else ""
        raise WorkflowDefinitionError(
            f"{where}unknown field(s) {', '.join(map(repr, unknown))} (known: {', '.join(sorted(known))})",
            source=source,
            workflow=workflow if isinstance(workflow, str) else None,
            step=step,
        )


def _reason(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror.lower()
    return str(error)
