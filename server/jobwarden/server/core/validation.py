"""Checks on everything that comes in. Each failure is an InvalidArgument naming the field and the rule.

Checks run before anything changes, so a refused request changes nothing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from jobwarden.contract import ErrorKind, Limits, LockMode, StartTimeoutAction

from .errors import InvalidArgument
from .model import LockRequest, RetryPolicy, StartTimeout, Timeouts

__all__ = [
    "SubmitSpec",
    "check_action",
    "check_duration",
    "check_lock_requests",
    "check_name",
    "check_payload",
    "check_retry_policy",
    "check_string",
    "check_string_map",
    "check_timeouts",
    "check_trace_context",
    "expand_lock_templates",
]

_ACTION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/\-]*$")
_TEMPLATE_FIELD_RE = re.compile(r"\{([^{}]*)\}")


@dataclass(slots=True)
class SubmitSpec:
    """A submit request, in domain terms (the API layer builds it from the proto)."""

    action: str
    input: dict[str, Any] = field(default_factory=dict)
    priority: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    #: (resource, mode) with the mode as a raw number, so an unknown mode can be refused here
    locks: list[tuple[str, int]] = field(default_factory=list)
    timeouts: Timeouts = field(default_factory=Timeouts)
    retry_policy: RetryPolicy | None = None
    run_at: float | None = None
    correlation_id: str = ""
    idempotency_key: str = ""
    workflow_variables: dict[str, str] = field(default_factory=dict)
    trace_context: dict[str, str] = field(default_factory=dict)
    #: set by the workflow runner for a step's job (never from the wire)
    workflow_run_id: str = ""
    workflow_step: str = ""
    work_order_id: str = ""


def check_name(name: str, what: str, max_length: int, pattern: re.Pattern[str], rule: str) -> str:
    """``name`` if it is given, at most ``max_length`` characters and matches ``pattern``; else
    ``InvalidArgument`` naming ``what`` (and, for a name that does not match, saying ``rule``)."""
    if not name:
        raise InvalidArgument(f"{what} is required")
    if len(name) > max_length:
        raise InvalidArgument(f"{what} is longer than {max_length} characters")
    if not pattern.match(name):
        raise InvalidArgument(f"{what} {name!r} {rule}")
    return name


def check_action(action: str, what: str = "action") -> str:
    return check_name(
        action,
        what,
        Limits.MAX_ACTION_LENGTH,
        _ACTION_RE,
        "is not a valid action name (letters, digits and _ . : / - ; starting with a letter or digit)",
    )


def check_string(value: str, what: str, limit: int = Limits.MAX_STRING_LENGTH) -> str:
    if len(value) > limit:
        raise InvalidArgument(f"{what} is longer than {limit} characters")
    return value


def check_string_map(
    values: Mapping[str, str], what: str, max_items: int, max_key: int, max_value: int
) -> None:
    if len(values) > max_items:
        raise InvalidArgument(f"{what}: {len(values)} entries, at most {max_items} allowed")
    for key, value in values.items():
        if not key:
            raise InvalidArgument(f"{what}: empty key")
        if len(key) > max_key:
            raise InvalidArgument(f"{what}: key {key[:40]!r}... is longer than {max_key} characters")
        if len(value) > max_value:
            raise InvalidArgument(f"{what}[{key!r}] is longer than {max_value} characters")


def check_trace_context(values: Mapping[str, str]) -> None:
    """Within the size limits; what the values say is not checked here: the core only carries them,
    and tracing ignores a context its propagator cannot read."""
    check_string_map(
        values,
        "trace_context",
        Limits.MAX_TRACE_CONTEXT_ENTRIES,
        Limits.MAX_TRACE_CONTEXT_KEY_LENGTH,
        Limits.MAX_TRACE_CONTEXT_VALUE_LENGTH,
    )


def check_payload(value: Any, what: str) -> int:
    """A JSON object within the size and depth limits; returns its encoded size."""
    if not isinstance(value, dict):
        raise InvalidArgument(f"{what} must be a JSON object")
    too_deep = _too_deep(value, what)
    if too_deep:
        raise InvalidArgument(
            f"{what} nests objects and lists deeper than {Limits.MAX_PAYLOAD_DEPTH} levels "
            f"(at {too_deep}); at most {Limits.MAX_PAYLOAD_DEPTH} are allowed"
        )
    try:
        encoded = orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError) as error:
        raise InvalidArgument(f"{what} is not JSON-serializable: {error}") from None
    # orjson writes NaN and the infinities as null: stored, the number would silently become null.
    if b"null" in encoded and _has_non_finite(value):
        raise InvalidArgument(f"{what} holds NaN or an infinity, which JSON cannot hold")
    size = len(encoded)
    if size > Limits.MAX_PAYLOAD_BYTES:
        raise InvalidArgument(f"{what} is {size} bytes encoded, over the limit of {Limits.MAX_PAYLOAD_BYTES}")
    return size


def _too_deep(value: Any, what: str) -> str:
    """Where ``value`` first nests deeper than ``Limits.MAX_PAYLOAD_DEPTH``, or ''. Iterative, and the
    path is spelled only when found: this runs on every submit."""
    # (container, depth, (key, parent link)): the links rebuild the path of the one that is too deep.
    stack: list[tuple[Any, int, tuple[Any, Any]]] = [(value, 1, (None, None))]
    while stack:
        item, depth, link = stack.pop()
        if depth > Limits.MAX_PAYLOAD_DEPTH:
            return _path(what, link)
        children = item.items() if isinstance(item, dict) else enumerate(item)
        for key, child in children:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1, (key, link)))
    return ""


def _path(what: str, link: tuple[Any, Any]) -> str:
    parts: list[str] = []
    while link[1] is not None:
        key, link = link
        parts.append(f"[{key}]" if isinstance(key, int) else f".{key}")
    path = what + "".join(reversed(parts))
    return path if len(path) <= 200 else path[:200] + "…"


def _has_non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_has_non_finite(item) for item in value.values())
    if isinstance(value, list):
        return any(_has_non_finite(item) for item in value)
    return False


def check_duration(value: float | None, what: str, *, allow_zero: bool = False) -> None:
    if value is None:
        return
    if math.isnan(value) or math.isinf(value):
        raise InvalidArgument(f"{what} must be a finite duration")
    if value < 0 or (value == 0 and not allow_zero):
        raise InvalidArgument(f"{what} must be positive, got {value:g}s")
    if value > Limits.MAX_DURATION_SECONDS:
        raise InvalidArgument(f"{what} of {value:g}s is absurd (more than {Limits.MAX_DURATION_SECONDS}s)")


def check_lock_requests(locks: list[tuple[str, int]], what: str = "locks") -> list[LockRequest]:
    if len(locks) > Limits.MAX_LOCKS_PER_JOB:
        raise InvalidArgument(
            f"{what}: {len(locks)} lock requests, at most {Limits.MAX_LOCKS_PER_JOB} allowed"
        )
    merged: dict[str, LockMode] = {}
    for resource, mode in locks:
        if not resource or not resource.strip():
            raise InvalidArgument(f"{what}: a lock request has an empty resource")
        if len(resource) > Limits.MAX_RESOURCE_LENGTH:
            raise InvalidArgument(
                f"{what}: resource {resource[:40]!r}... is longer than {Limits.MAX_RESOURCE_LENGTH}"
            )
        try:
            lock_mode = LockMode(mode)
        except ValueError:
            raise InvalidArgument(
                f"{what}: unknown lock mode {mode} for {resource!r} (LOCK_MODE_SHARED or LOCK_MODE_EXCLUSIVE)"
            ) from None
        # The same resource twice in one job: the stronger mode wins.
        if merged.get(resource) is not LockMode.EXCLUSIVE:
            merged[resource] = lock_mode
    return [LockRequest(resource, mode) for resource, mode in merged.items()]


def check_start_timeout(start: StartTimeout, what: str) -> None:
    check_duration(start.duration, f"{what}.duration")
    try:
        StartTimeoutAction(start.action)
    except ValueError:
        raise InvalidArgument(f"{what}.action: unknown start timeout action {start.action}") from None
    check_duration(start.retry_interval, f"{what}.retry_interval", allow_zero=True)
    if start.retry_count < 0 or start.retry_count > Limits.MAX_RETRY_ATTEMPTS:
        raise InvalidArgument(f"{what}.retry_count must be between 0 and {Limits.MAX_RETRY_ATTEMPTS}")
    if start.action is StartTimeoutAction.RETRY and start.retry_count == 0:
        raise InvalidArgument(f"{what}: action RETRY needs a retry_count of at least 1")
    if start.retry_backoff_exponential and start.retry_count:
        longest = start.retry_delay(start.retry_count - 1)
        if longest > Limits.MAX_DURATION_SECONDS:
            raise InvalidArgument(f"{what}: the exponential backoff reaches an absurd {longest:g}s")
    if start.run_request is not None and start.run_request.workflow is not None:
        request = start.run_request.workflow
        if start.run_request.action:
            raise InvalidArgument(f"{what}.run_request: give an action or a workflow, not both")
        if not request.workflow:
            raise InvalidArgument(f"{what}.run_request.workflow.workflow (the workflow's name) is required")
        check_string(request.workflow, f"{what}.run_request.workflow.workflow")
        if request.version < 0:
            raise InvalidArgument(f"{what}.run_request.workflow.version must not be negative")
        if request.input is not None:
            check_payload(request.input, f"{what}.run_request.workflow.input")
        check_string_map(
            request.context,
            f"{what}.run_request.workflow.context",
            Limits.MAX_VARIABLES,
            Limits.MAX_VARIABLE_KEY_LENGTH,
            Limits.MAX_VARIABLE_VALUE_LENGTH,
        )
        check_string(start.run_request.correlation_id, f"{what}.run_request.correlation_id")
    elif start.run_request is not None:
        check_action(start.run_request.action, f"{what}.run_request.action")
        check_payload(start.run_request.input, f"{what}.run_request.input")
        check_string(start.run_request.correlation_id, f"{what}.run_request.correlation_id")


def check_timeouts(timeouts: Timeouts, what: str = "timeouts") -> None:
    if timeouts.start is not None:
        check_start_timeout(timeouts.start, f"{what}.start")
    check_duration(timeouts.heartbeat, f"{what}.heartbeat")
    check_duration(timeouts.takeover, f"{what}.takeover", allow_zero=True)
    check_duration(timeouts.execution, f"{what}.execution")


def check_retry_policy(policy: RetryPolicy, what: str = "retry_policy") -> None:
    if policy.max_attempts < 1 or policy.max_attempts > Limits.MAX_RETRY_ATTEMPTS:
        raise InvalidArgument(f"{what}.max_attempts must be between 1 and {Limits.MAX_RETRY_ATTEMPTS}")
    check_duration(policy.initial_interval, f"{what}.initial_interval", allow_zero=True)
    check_duration(policy.max_interval, f"{what}.max_interval", allow_zero=True)
    if math.isnan(policy.backoff_coefficient) or not 1.0 <= policy.backoff_coefficient <= 100.0:
        raise InvalidArgument(f"{what}.backoff_coefficient must be between 1 and 100")
    if policy.max_interval and policy.initial_interval > policy.max_interval:
        raise InvalidArgument(
            f"{what}: initial_interval {policy.initial_interval:g}s exceeds "
            f"max_interval {policy.max_interval:g}s"
        )
    for kind in policy.non_retryable_kinds:
        try:
            ErrorKind(kind)
        except ValueError:
            raise InvalidArgument(f"{what}.non_retryable_kinds: unknown error kind {kind}") from None


def lookup_field(data: Mapping[str, Any], path: str) -> Any:
    """``input.asset_id`` or ``input.a.b`` in ``{"input": ...}``; KeyError names what is missing."""
    value: Any = data
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            raise KeyError(path)
        value = value[part]
    return value


def expand_lock_templates(
    templates: list[LockRequest], job_input: Mapping[str, Any]
) -> list[tuple[str, int]]:
    """``asset:{input.asset_id}`` with the job's input; a missing field is an InvalidArgument."""
    expanded = []
    scope = {"input": job_input}
    for template in templates:

        def substitute(match: re.Match[str], template: LockRequest = template) -> str:
            path = match.group(1).strip()
            try:
                value = lookup_field(scope, path)
            except KeyError:
                raise InvalidArgument(
                    f"lock template {template.resource!r} names {path!r}, which the job's input does not have"
                ) from None
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            return str(value)

        expanded.append((_TEMPLATE_FIELD_RE.sub(substitute, template.resource), int(template.mode)))
    return expanded


def check_template(template: str) -> None:
    for match in _TEMPLATE_FIELD_RE.finditer(template):
        path = match.group(1).strip()
        if not path.startswith("input.") or path == "input.":
            raise InvalidArgument(f"lock template {template!r}: {{{path}}} must name a field of the input")
