"""``Workflow``: a typed builder of ``WorkflowDefinition`` messages.

::

    wf = Workflow("media-publish", run_timeout="30m")
    ingest = wf.action("ingest", "media.ingest", input={"asset": "{{ input.asset_id }}"},
                       locks=["asset:{{ input.asset_id }}"], retry={"max_attempts": 3})
    package = wf.action("package", "media.package", join="all")
    for rendition in ("1080p", "720p", "480p"):
        transcode = wf.action(f"transcode-{rendition}", "media.transcode")
        ingest.on_success(transcode)
        transcode.on_success(package)
    notify = wf.action("notify", "media.notify", join="any")
    ingest.on_failure(notify, when="step.error.kind == 'JOB_ERROR'")
    await client.put_workflow(wf)

The declarative files (``jobwarden workflows apply``, ``load_workflow``) are read through this
builder, so a file and the code that says the same build the same message. The builder checks the
shape of what it is given (names, kinds, durations, references to steps); the engine checks the
rest when the definition is put (cycles, unreachable steps, templates and conditions).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any, Literal

from google.protobuf import duration_pb2
from jobwarden.contract import ErrorKind, Limits, StartTimeoutAction
from jobwarden.sdk._convert import _check_json
from jobwarden.sdk._exceptions import WorkflowDefinitionError
from jobwarden.sdk._requests import LockSpec, int32, lock_request
from jobwarden.v1 import job_pb2, workflow_pb2
from jobwarden.wire import dict_to_struct, duration, parse_duration

__all__ = ["DurationSpec", "JoinSpec", "Step", "Workflow"]

#: a duration: seconds, a ``timedelta``, or text as people write it (``"30s"``, ``"5m"``, ``"1h30m"``)
DurationSpec = float | int | timedelta | str
#: how a step with several incoming edges runs: ``"all"`` (the engine's default) or ``"any"``
JoinSpec = Literal["all", "any"]

_STEP_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
_WORKFLOW_NAME = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_JOINS = {"all": workflow_pb2.JOIN_MODE_ALL, "any": workflow_pb2.JOIN_MODE_ANY}
_KIND_ORDER = {
    workflow_pb2.EDGE_KIND_SUCCESS: 0,
    workflow_pb2.EDGE_KIND_FAILURE: 1,
    workflow_pb2.EDGE_KIND_ALWAYS: 2,
}


class Step:
    """One step of a ``Workflow`` (made by ``Workflow.action``, ``delay`` or ``sub_workflow``).

    ``on_success``, ``on_failure`` and ``always`` add edges from it to other steps of the same
    workflow (``Step`` objects or their names); ``when`` is a CEL condition the edge also needs
    (it sees ``step``, ``steps``, ``input`` and ``context``). Each returns the step, so calls chain.
    """

    def __init__(self, workflow: Workflow, message: workflow_pb2.WorkflowStep) -> None:
        self._workflow = workflow
        self.message = message

    @property
    def name(self) -> str:
        return self.message.name

    def on_success(self, *targets: Step | str, when: str = "") -> Step:
        """Run ``targets`` when this step COMPLETED (and ``when`` gives true)."""
        return self._edges(workflow_pb2.EDGE_KIND_SUCCESS, targets, when)

    def on_failure(self, *targets: Step | str, when: str = "") -> Step:
        """Run ``targets`` when this step FAILED: the failure is then handled, not the run's."""
        return self._edges(workflow_pb2.EDGE_KIND_FAILURE, targets, when)

    def always(self, *targets: Step | str, when: str = "") -> Step:
        """Run ``targets`` whenever this step ended, COMPLETED or FAILED."""
        return self._edges(workflow_pb2.EDGE_KIND_ALWAYS, targets, when)

    def _edges(self, kind: workflow_pb2.EdgeKind.ValueType, targets: Iterable[Step | str], when: str) -> Step:
        if not isinstance(when, str):
            raise self._workflow._error(f"an edge's condition (when) must be text, got {when!r}", self.name)
        for target in targets:
            self._workflow._edge(self, target, kind, when)
        return self

    def __repr__(self) -> str:
        return f"Step({self.name!r}, {self.message.WhichOneof('kind')})"


class Workflow:
    """A workflow definition being built: steps (``action``, ``delay``, ``sub_workflow``) joined by
    edges (``Step.on_success``/``on_failure``/``always``, ``chain``); ``definition()`` makes the
    ``WorkflowDefinition`` message that ``JobClient.put_workflow`` stores (it takes the builder too).

    Args:
        name: letters, digits, ``.``, ``_`` and ``-``; at most 128.
        context: the context variables a run starts with (a start may override them).
        output: a template of the run's output; None: the results of the leaf steps, by name.
        run_timeout: the whole run's deadline; None: none.
        continue_on_crash: every step's CRASHED job follows its failure edges instead of aborting.
    """

    def __init__(
        self,
        name: str,
        *,
        description: str = "",
        context: Mapping[str, str] | None = None,
        output: Mapping[str, Any] | None = None,
        run_timeout: DurationSpec | None = None,
        continue_on_crash: bool = False,
        source: str | None = None,
    ) -> None:
        #: where the definition was read from (a file), named in every error
        self.source = source
        if not isinstance(name, str) or not _WORKFLOW_NAME.match(name):
            raise self._error(
                f"name: {name!r} is not a workflow name (letters, digits, '.', '_' and '-'; at most 128)"
            )
        self.name = name
        # Plain attributes a caller may change before ``definition()``, which checks them again.
        self.description = description
        self.context: dict[str, str] = dict(context or {})
        self.output = output
        self.run_timeout = run_timeout
        self.continue_on_crash = continue_on_crash
        self._settings()
        self._steps: dict[str, Step] = {}
        self._edges: list[tuple[str, str, workflow_pb2.EdgeKind.ValueType, str]] = []

    # -- steps ------------------------------------------------------------------------------------
    def action(
        self,
        name: str,
        action: str,
        *,
        input: Mapping[str, Any] | None = None,
        priority: int = 0,
        labels: Mapping[str, str] | None = None,
        locks: Iterable[LockSpec] | None = None,
        timeouts: job_pb2.JobTimeouts | Mapping[str, Any] | None = None,
        retry: job_pb2.RetryPolicy | Mapping[str, Any] | None = None,
        join: JoinSpec | None = None,
        continue_on_crash: bool = False,
        description: str = "",
    ) -> Step:
        """A step that runs one job of ``action``.

        ``input`` is a template over ``input``, ``context`` and ``steps`` (None: the run's input);
        ``locks`` take ``"resource"``, ``"resource:SHARED"`` or pairs, and may be templates
        (``"asset:{{ input.asset_id }}"``). ``timeouts`` takes ``heartbeat``, ``takeover``,
        ``execution`` and ``start`` (``duration``, ``action``, ``retry_interval``, ``retry_count``,
        ``retry_backoff_exponential``, ``run_request``: ``{"action": ..., "input": ...}`` or
        ``{"workflow": ..., "version": ..., "input": ..., "context": ...}``); ``retry`` takes
        ``max_attempts``, ``initial_interval``, ``backoff_coefficient``, ``max_interval`` and
        ``non_retryable_kinds``. Durations are seconds, timedeltas or text (``"30s"``). Fields left
        out take the action's configuration.
        """
        step = self._step(name, description, join, continue_on_crash)
        if not isinstance(action, str) or not action.strip():
            raise self._error(f"action: must name an action, got {action!r}", name)
        if len(action) > Limits.MAX_ACTION_LENGTH:
            raise self._error(f"action: longer than {Limits.MAX_ACTION_LENGTH} characters", name)
        message = step.action
        message.action = action
        if input is not None:
            message.input.CopyFrom(_template(input, "input", self, name))
        message.priority = _checked(
            lambda: _integer(priority, "priority", -Limits.MAX_PRIORITY, Limits.MAX_PRIORITY),
            self,
            name,
        )
        message.labels.update(_string_map(labels, "labels", self, name))
        for index, lock in enumerate(locks or ()):
            message.locks.append(
                _checked(lambda lock=lock: lock_request(lock), self, name, f"locks[{index}]")
            )
        if timeouts is not None:
            message.timeouts.CopyFrom(_timeouts(timeouts, self, name))
        if retry is not None:
            message.retry_policy.CopyFrom(_retry(retry, self, name))
        return self._add(step)

    def delay(
        self,
        name: str,
        duration: DurationSpec,
        *,
        join: JoinSpec | None = None,
        description: str = "",
    ) -> Step:
        """A step that waits ``duration``, durably (the run shows DELAYED while nothing else runs)."""
        step = self._step(name, description, join, False)
        step.delay.duration.CopyFrom(_duration(duration, "delay", self, name))
        return self._add(step)

    def sub_workflow(
        self,
        name: str,
        workflow: str,
        *,
        version: int = 0,
        input: Mapping[str, Any] | None = None,
        join: JoinSpec | None = None,
        continue_on_crash: bool = False,
        description: str = "",
    ) -> Step:
        """A step that starts a run of ``workflow`` (``version``, 0: the latest when the step starts)
        and waits for it: COMPLETED with its output as the step's result, or FAILED with its error.
        ``input`` is a template (None: this run's input)."""
        step = self._step(name, description, join, continue_on_crash)
        if not isinstance(workflow, str) or not _WORKFLOW_NAME.match(workflow):
            raise self._error(f"workflow: {workflow!r} is not a workflow name", name)
        step.workflow.workflow = workflow
        step.workflow.version = _checked(lambda: _integer(version, "version", 0), self, name)
        if input is not None:
            step.workflow.input.CopyFrom(_template(input, "input", self, name))
        return self._add(step)

    def step(self, name: str) -> Step:
        """The step named ``name``; ``WorkflowDefinitionError`` if there is none."""
        try:
            return self._steps[name]
        except KeyError:
            raise self._error(f"no step named {name!r}{_known(self._steps)}") from None

    @property
    def steps(self) -> list[Step]:
        """The steps, in the order they were added."""
        return list(self._steps.values())

    def chain(self, *steps: Step | str, when: str = "") -> Workflow:
        """Success edges from each step to the next: ``wf.chain(a, b, c)`` is a → b → c."""
        for source, target in itertools.pairwise(steps):
            self._resolve(source).on_success(target, when=when)
        return self

    # -- the message ------------------------------------------------------------------------------
    def definition(self) -> workflow_pb2.WorkflowDefinition:
        """The ``WorkflowDefinition``: steps in the order they were added; edges by their source
        step's order, then kind (success, failure, always), then their target's order, so two
        builders that say the same thing in another order make the same message (and digest)."""
        if not self._steps:
            raise self._error("a workflow needs at least one step")
        order = {name: index for index, name in enumerate(self._steps)}
        for source, target, _kind, _when in self._edges:
            if target not in order:
                raise self._error(f"an edge goes to {target!r}, which is no step{_known(order)}", source)
        message = self._settings()
        message.steps.extend(step.message for step in self._steps.values())
        for source, target, kind, when in sorted(
            self._edges, key=lambda edge: (order[edge[0]], _KIND_ORDER[edge[2]], order[edge[1]], edge[3])
        ):
            message.edges.append(
                workflow_pb2.WorkflowEdge(source=source, target=target, kind=kind, condition=when)
            )
        return message

    def _settings(self) -> workflow_pb2.WorkflowDefinition:
        """A definition with the workflow's own settings (no steps yet), each checked."""
        message = workflow_pb2.WorkflowDefinition(
            name=self.name,
            description=_text(self.description, "description", self),
            context=_string_map(self.context, "context", self),
            continue_on_crash=_flag(self.continue_on_crash, "continue_on_crash", self),
        )
        if self.output is not None:
            message.output.CopyFrom(_template(self.output, "output", self))
        if self.run_timeout is not None:
            message.run_timeout.CopyFrom(_duration(self.run_timeout, "run_timeout", self))
        return message

    def __repr__(self) -> str:
        return f"Workflow({self.name!r}, steps={list(self._steps)})"

    # -- inside -------------------------------------------------------------------------------------
    def _step(
        self, name: str, description: str, join: JoinSpec | None, continue_on_crash: bool
    ) -> workflow_pb2.WorkflowStep:
        if not isinstance(name, str) or not _STEP_NAME.match(name):
            raise self._error(
                f"{name!r} is not a step name "
                "(letters, digits, '_' and '-', starting with a letter; at most 64)"
            )
        if name in self._steps:
            raise self._error("a step of that name was already added; step names are unique", name)
        step = workflow_pb2.WorkflowStep(
            name=name,
            description=_text(description, "description", self, name),
            continue_on_crash=_flag(continue_on_crash, "continue_on_crash", self, name),
        )
        if join is not None:
            mode = _JOINS.get(join.lower()) if isinstance(join, str) else None
            if mode is None:
                raise self._error(f"join: {join!r} is not a join mode (all or any)", name)
            step.join = mode
        return step

    def _add(self, message: workflow_pb2.WorkflowStep) -> Step:
        step = Step(self, message)
        self._steps[message.name] = step
        return step

    def _resolve(self, step: Step | str) -> Step:
        if isinstance(step, Step):
            if step._workflow is not self:
                raise self._error(f"step {step.name!r} belongs to another workflow ({step._workflow.name!r})")
            return step
        return self.step(step)

    def _edge(
        self, source: Step, target: Step | str, kind: workflow_pb2.EdgeKind.ValueType, when: str
    ) -> None:
        if isinstance(target, Step):
            if target._workflow is not self:
                raise self._error(
                    f"an edge goes to step {target.name!r} of another workflow ({target._workflow.name!r})",
                    source.name,
                )
            target_name = target.name
        elif isinstance(target, str):
            target_name = target  # may be added later: checked by definition()
        else:
            raise self._error(
                f"an edge's target must be a step or a step's name, got {target!r}", source.name
            )
        if target_name == source.name:
            raise self._error("an edge from a step to itself makes a cycle", source.name)
        edge = (source.name, target_name, kind, when)
        if edge in self._edges:
            raise self._error(f"the same edge to {target_name!r} was added twice", source.name)
        self._edges.append(edge)

    def _error(
        self, message: str, step: str | None = None, field: str | None = None
    ) -> WorkflowDefinitionError:
        return WorkflowDefinitionError(
            message, source=self.source, workflow=getattr(self, "name", None), step=step, field=field
        )


# -- the values a definition holds, checked where they are given --------------------------------------
def _checked(make: Any, workflow: Workflow, step: str | None = None, field: str | None = None) -> Any:
    """``make()``, its ``ValueError``/``TypeError`` as a ``WorkflowDefinitionError`` naming the step."""
    try:
        return make()
    except WorkflowDefinitionError:
        raise
    except (ValueError, TypeError) as error:
        message = f"{field}: {error}" if field else str(error)
        raise workflow._error(message, step) from None


def _integer(value: object, what: str, low: int | None = None, high: int | None = None) -> int:
    """``value`` if it is a whole number in ``low``..``high`` (and an int32), else the error saying so."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be a whole number, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        lowest = "-2147483648" if low is None else low
        highest = "2147483647" if high is None else high
        raise ValueError(f"{what} must be between {lowest} and {highest}, got {value}")
    return int32(value, what, low, high)


def _flag(value: object, what: str, workflow: Workflow, step: str | None = None) -> bool:
    if not isinstance(value, bool):
        raise workflow._error(f"{what}: must be true or false, got {value!r}", step)
    return value


def _text(value: object, what: str, workflow: Workflow, step: str | None = None) -> str:
    if not isinstance(value, str):
        raise workflow._error(f"{what}: must be text, got {value!r}", step)
    if len(value) > Limits.MAX_MESSAGE_LENGTH:
        raise workflow._error(f"{what}: longer than {Limits.MAX_MESSAGE_LENGTH} characters", step)
    return value


def _string_map(
    value: Mapping[str, str] | None, what: str, workflow: Workflow, step: str | None = None
) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise workflow._error(f"{what}: must be a table of names to text, got {value!r}", step)
    for key, item in value.items():
        if not isinstance(key, str) or not isinstance(item, str):
            raise workflow._error(f"{what}: {key!r} must map to text, got {item!r}", step)
    return dict(value)


def _template(value: object, what: str, workflow: Workflow, step: str | None = None) -> Any:
    if not isinstance(value, Mapping):
        raise workflow._error(f"{what}: must be a table (a JSON object), got {value!r}", step)
    _checked(lambda: _check_json(value, what), workflow, step)
    return dict_to_struct(value)


def _duration(value: object, what: str, workflow: Workflow, step: str | None = None) -> duration_pb2.Duration:
    def make() -> duration_pb2.Duration:
        if isinstance(value, bool):
            raise TypeError(f"{value!r} is not a duration")
        if isinstance(value, str):
            seconds: float | timedelta = parse_duration(value)
        elif isinstance(value, int | float | timedelta):
            seconds = value
        else:
            raise TypeError(f"{value!r} is not a duration (e.g. 30, 250ms, 30s, 5m, 2h, 1h30m)")
        total = seconds.total_seconds() if isinstance(seconds, timedelta) else float(seconds)
        if not 0 <= total <= Limits.MAX_DURATION_SECONDS:
            raise ValueError(f"{value!r} is out of range (0 to {Limits.MAX_DURATION_SECONDS} seconds)")
        return duration(total)

    result: duration_pb2.Duration = _checked(make, workflow, step, what)
    return result


def _fields(
    spec: Mapping[str, Any], known: set[str], what: str, workflow: Workflow, step: str | None
) -> None:
    if not isinstance(spec, Mapping):
        raise workflow._error(f"{what}: must be a table, got {spec!r}", step)
    unknown = sorted(set(spec) - known)
    if unknown:
        raise workflow._error(
            f"{what}: unknown field(s) {', '.join(map(repr, unknown))} (known: {', '.join(sorted(known))})",
            step,
        )


def _timeouts(
    spec: job_pb2.JobTimeouts | Mapping[str, Any], workflow: Workflow, step: str
) -> job_pb2.JobTimeouts:
    if isinstance(spec, job_pb2.JobTimeouts):
        return spec
    _fields(spec, {"heartbeat", "takeover", "execution", "start"}, "timeouts", workflow, step)
    out = job_pb2.JobTimeouts()
    for name in ("heartbeat", "takeover", "execution"):
        if spec.get(name) is not None:
            getattr(out, name).CopyFrom(_duration(spec[name], f"timeouts.{name}", workflow, step))
    start = spec.get("start")
    if start is not None:
        _fields(
            start,
            {
                "duration",
                "action",
                "retry_interval",
                "retry_count",
                "retry_backoff_exponential",
                "run_request",
            },
            "timeouts.start",
            workflow,
            step,
        )
        if start.get("duration") is not None:
            out.start.duration.CopyFrom(
                _duration(start["duration"], "timeouts.start.duration", workflow, step)
            )
        if start.get("retry_interval") is not None:
            out.start.retry_interval.CopyFrom(
                _duration(start["retry_interval"], "timeouts.start.retry_interval", workflow, step)
            )
        if start.get("action") is not None:
            action = start["action"]
            member = StartTimeoutAction.__members__.get(action.upper()) if isinstance(action, str) else None
            if member is None:
                known = ", ".join(StartTimeoutAction.__members__)
                raise workflow._error(f"timeouts.start.action: {action!r} is not one of {known}", step)
            out.start.action = job_pb2.StartTimeoutAction.ValueType(int(member))
        out.start.retry_backoff_exponential = _flag(
            start.get("retry_backoff_exponential", False),
            "timeouts.start.retry_backoff_exponential",
            workflow,
            step,
        )
        out.start.retry_count = _checked(
            lambda: _integer(start.get("retry_count", 0), "retry_count", 0),
            workflow,
            step,
            "timeouts.start",
        )
        if start.get("run_request") is not None:
            out.start.run_request.CopyFrom(_run_request(start["run_request"], workflow, step))
    return out


def _run_request(spec: Mapping[str, Any], workflow: Workflow, step: str) -> job_pb2.RunRequest:
    what = "timeouts.start.run_request"
    _fields(
        spec, {"action", "workflow", "version", "input", "context", "correlation_id"}, what, workflow, step
    )
    if ("action" in spec) == ("workflow" in spec):
        raise workflow._error(f"{what}: name either an action or a workflow to start", step)
    out = job_pb2.RunRequest(
        correlation_id=_text(spec.get("correlation_id", ""), f"{what}.correlation_id", workflow, step)
    )
    if "action" in spec:
        if "version" in spec or "context" in spec:
            raise workflow._error(f"{what}: version and context are for a workflow, not an action", step)
        out.action = _text(spec["action"], f"{what}.action", workflow, step)
        if spec.get("input") is not None:
            out.input.CopyFrom(_template(spec["input"], f"{what}.input", workflow, step))
        return out
    target = out.workflow
    target.workflow = _text(spec["workflow"], f"{what}.workflow", workflow, step)
    target.version = _checked(lambda: _integer(spec.get("version", 0), "version", 0), workflow, step, what)
    target.context.update(_string_map(spec.get("context"), f"{what}.context", workflow, step))
    if spec.get("input") is not None:
        target.input.CopyFrom(_template(spec["input"], f"{what}.input", workflow, step))
    return out


def _retry(
    spec: job_pb2.RetryPolicy | Mapping[str, Any], workflow: Workflow, step: str
) -> job_pb2.RetryPolicy:
    if isinstance(spec, job_pb2.RetryPolicy):
        return spec
    known = {"max_attempts", "initial_interval", "backoff_coefficient", "max_interval", "non_retryable_kinds"}
    _fields(spec, known, "retry", workflow, step)
    out = job_pb2.RetryPolicy()
    if spec.get("max_attempts") is not None:
        out.max_attempts = _checked(
            lambda: _integer(spec["max_attempts"], "max_attempts", 1, Limits.MAX_RETRY_ATTEMPTS),
            workflow,
            step,
            "retry",
        )
    coefficient = spec.get("backoff_coefficient")
    if coefficient is not None:
        if isinstance(coefficient, bool) or not isinstance(coefficient, int | float) or coefficient < 1:
            raise workflow._error(
                f"retry.backoff_coefficient: must be a number of at least 1, got {coefficient!r}", step
            )
        out.backoff_coefficient = float(coefficient)
    for name in ("initial_interval", "max_interval"):
        if spec.get(name) is not None:
            getattr(out, name).CopyFrom(_duration(spec[name], f"retry.{name}", workflow, step))
    kinds = spec.get("non_retryable_kinds") or ()
    if isinstance(kinds, str):
        kinds = [kinds]
    for kind in kinds:
        member = ErrorKind.__members__.get(kind.upper()) if isinstance(kind, str) else None
        if member is None:
            raise workflow._error(
                f"retry.non_retryable_kinds: {kind!r} is not an error kind "
                f"({', '.join(ErrorKind.__members__)})",
                step,
            )
        out.non_retryable_kinds.append(job_pb2.ErrorKind.ValueType(int(member)))
    return out


def _known(names: Iterable[str]) -> str:
    listed = list(names)
    return f" (steps: {', '.join(listed)})" if listed else ""
