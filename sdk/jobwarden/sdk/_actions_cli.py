"""``jobwarden actions list|get|set|pause|resume``: read and change per-action configuration.

Registered through the ``jobwarden.commands`` entry point ``actions``. ``set`` changes only the
settings it is given (it reads the current configuration first); ``none`` clears a duration.
Exit codes: 0 done, 1 the engine refused or could not be reached, 2 the command line is wrong.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from jobwarden.contract import ErrorKind, Limits, StartTimeoutAction
from jobwarden.sdk import _format as fmt
from jobwarden.sdk._cli_support import (
    OK,
    UsageError,
    client_for,
    command_group,
    parse_json,
    print_json,
    print_table,
)
from jobwarden.sdk._requests import lock_request
from jobwarden.v1 import job_pb2
from jobwarden.wire import (
    NONE,
    dict_to_struct,
    duration,
    duration_seconds,
    format_duration,
    parse_optional_duration,
    struct_to_dict,
)

__all__ = ["register"]

#: a duration flag given this value clears the setting
CLEAR = NONE


def register(subparsers: Any) -> None:
    """Add ``jobwarden actions`` and its sub-commands."""
    add = command_group(
        subparsers,
        "actions",
        help="list, show and change per-action configuration; pause and resume dispatch",
        description="Per-action configuration: limits, timeouts, retry policy, lock templates, pause.",
    )

    add("list", _list, "Every action the engine knows of, with its limits and counts.")
    get = add("get", _get, "Show one action's configuration.")
    get.add_argument("action")
    for name, run, text, create_help in (
        (
            "pause",
            _pause,
            "Stop dispatching the action's jobs (they keep queueing).",
            "pause an action no job, worker or configuration has named yet (else refused)",
        ),
        (
            "resume",
            _resume,
            "Dispatch the action's jobs again.",
            "configure an action no job, worker or configuration has named yet (else refused)",
        ),
    ):
        switch = add(name, run, text)
        switch.add_argument("action")
        switch.add_argument("--create", action="store_true", help=create_help)

    set_ = add(
        "set",
        _set,
        "Change an action's configuration: only the settings given change. Durations are "
        "seconds or 250ms / 30s / 5m / 2h / 1d; 'none' clears one.",
    )
    set_.add_argument("action")
    set_.add_argument(
        "--from-file",
        metavar="FILE",
        help="start from this JSON ActionConfig instead of the current one (the flags apply on top)",
    )
    limits = set_.add_argument_group("limits")
    limits.add_argument("--max-running", type=_count, metavar="N", help="most running at once; 0 unlimited")
    limits.add_argument(
        "--max-queued", type=_count, metavar="N", help="most waiting; beyond it REJECTED; 0 off"
    )
    timeouts = set_.add_argument_group("timeouts")
    timeouts.add_argument("--heartbeat-timeout", metavar="DUR", help="no update for this long: TIMED_OUT")
    timeouts.add_argument(
        "--takeover-timeout", metavar="DUR", help="TIMED_OUT this long more: taken over or LOST"
    )
    timeouts.add_argument("--execution-timeout", metavar="DUR", help="total running time: cancelled, KILLED")
    start = set_.add_argument_group("start timeout")
    start.add_argument(
        "--start-timeout", metavar="DUR", help="not started within this long (none: no start timeout)"
    )
    start.add_argument("--start-action", type=_start_action, metavar="FAIL|RETRY|NONE", help="what then")
    start.add_argument("--start-retry-interval", metavar="DUR", help="wait before re-queueing (RETRY)")
    start.add_argument(
        "--start-retry-count", type=_count, metavar="N", help="re-queues before failing (RETRY)"
    )
    start.add_argument(
        "--start-retry-exponential",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="double the retry interval each time",
    )
    start.add_argument(
        "--run-request", metavar="ACTION", help="submit a job of ACTION when it fires (none: no)"
    )
    start.add_argument("--run-request-input", metavar="JSON", help="that job's input, a JSON object")
    start.add_argument("--run-request-correlation-id", metavar="ID", help="that job's correlation id")
    retry = set_.add_argument_group("retry policy")
    retry.add_argument(
        "--max-attempts", type=_count, metavar="N", help="attempts in all (0: no retry policy)"
    )
    retry.add_argument("--initial-interval", metavar="DUR", help="backoff before the second attempt")
    retry.add_argument("--backoff-coefficient", type=float, metavar="X", help="backoff multiplier (>= 1)")
    retry.add_argument("--max-interval", metavar="DUR", help="the longest backoff")
    retry.add_argument(
        "--non-retryable",
        action="append",
        type=_error_kind,
        metavar="KIND",
        help="an error kind that is never retried (repeatable; 'none' clears the list)",
    )
    locks = set_.add_argument_group("lock templates")
    locks.add_argument(
        "--lock",
        action="append",
        metavar="TEMPLATE[:MODE]",
        help="e.g. 'asset:{input.asset_id}:SHARED'; EXCLUSIVE without a mode; only a last :SHARED or "
        ":EXCLUSIVE is a mode (another last part in capitals is refused); replaces the templates "
        "(repeatable)",
    )
    locks.add_argument("--no-locks", action="store_true", help="remove every lock template")


# -- argument types (argparse turns their ValueError into a usage error, exit 2) ---------------------
def _count(text: str) -> int:
    value = int(text)
    if not 0 <= value < 2**31:
        raise ValueError(text)
    return value


def _start_action(text: str) -> StartTimeoutAction:
    try:
        return StartTimeoutAction[text.strip().upper()]
    except KeyError:
        raise ValueError(text) from None


def _error_kind(text: str) -> ErrorKind | None:
    if text.strip().lower() == CLEAR:
        return None
    try:
        return ErrorKind[text.strip().upper()]
    except KeyError:
        raise ValueError(text) from None


_count.__name__ = f"count (a whole number from 0 to {2**31 - 1})"
_start_action.__name__ = "start action (FAIL, RETRY or NONE)"
_error_kind.__name__ = "error kind (" + ", ".join(k.name for k in ErrorKind) + ")"


def parse_duration(text: str, flag: str) -> float | None:
    """Seconds from ``30``, ``250ms``, ``5m``, ``1h30m``...; None for ``none``. UsageError names the flag."""
    try:
        seconds = parse_optional_duration(text)
    except ValueError as error:
        raise UsageError(f"{flag}: {error}") from None
    if seconds is None:
        return None
    try:
        duration(seconds)
    except ValueError:
        # Beyond what a Duration holds: the engine never sees it, so say here what it takes.
        raise UsageError(
            f"{flag}: {text} is far longer than the engine takes "
            f"(at most {format_duration(Limits.MAX_DURATION_SECONDS)}, about 10 years)"
        ) from None
    return seconds


# -- commands ----------------------------------------------------------------------------------------
async def _list(args: argparse.Namespace) -> int:
    async with client_for(args) as client:
        response = await client.list_actions()
    if args.json:
        print_json(fmt.message_json(response))
        return OK
    configs = {c.action: c for c in response.configs}
    rows = []
    for stats in response.stats:
        config = configs.get(stats.action, job_pb2.ActionConfig(action=stats.action))
        rows.append(
            [
                stats.action,
                "paused" if config.paused else "",
                str(config.max_running or "-"),
                str(config.max_queued or "-"),
                str(stats.queued + stats.delayed + stats.waiting_for_lock),
                str(stats.running + stats.timed_out),
                str(stats.workers),
                str(stats.free_capacity),
            ]
        )
    headers = ["ACTION", "STATE", "MAX_RUNNING", "MAX_QUEUED", "WAITING", "RUNNING", "WORKERS", "FREE"]
    print_table(headers, rows, empty="no actions yet (none configured, submitted or served)")
    return OK


async def _get(args: argparse.Namespace) -> int:
    async with client_for(args) as client:
        config = await client.get_action_config(args.action)
    _show(config, args.json)
    return OK


async def _pause(args: argparse.Namespace) -> int:
    return await _switch_dispatch(args, paused=True)


async def _resume(args: argparse.Namespace) -> int:
    return await _switch_dispatch(args, paused=False)


async def _switch_dispatch(args: argparse.Namespace, *, paused: bool) -> int:
    """``pause`` and ``resume``: switch the action's dispatch, then say what it does now."""
    async with client_for(args) as client:
        switch = client.pause_action if paused else client.resume_action
        config = await switch(args.action, create_if_unknown=args.create)
    if args.json:
        _show(config, True)
    elif paused:
        print(f"{config.action}: paused (jobs keep queueing; running ones go on)")
    else:
        print(f"{config.action}: dispatching again")
    return OK


async def _set(args: argparse.Namespace) -> int:
    base = _read_config_file(args.from_file, args.action) if args.from_file else None
    # Check the whole command line before talking to the engine.
    apply = _changes(args)
    async with client_for(args) as client:
        config = base if base is not None else await client.get_action_config(args.action)
        config.action = args.action
        apply(config)
        saved = await client.set_action_config(config)
    _show(saved, args.json)
    return OK


def _read_config_file(path: str, action: str) -> job_pb2.ActionConfig:
    try:
        text = Path(path).read_text()
    except OSError as error:
        raise UsageError(f"--from-file: cannot read {path}: {error.strerror}") from None
    config = job_pb2.ActionConfig()
    try:
        json_format.Parse(text, config)
    except json_format.ParseError as error:
        detail = str(error).splitlines()[0] if str(error) else "unreadable"
        raise UsageError(f"--from-file: {path} is not a JSON ActionConfig: {detail}") from None
    if config.action and config.action != action:
        raise UsageError(f"--from-file: {path} configures {config.action!r}, not {action!r}")
    return config


def _changes(args: argparse.Namespace) -> Callable[[job_pb2.ActionConfig], None]:
    """What the flags change, checked now; applied to a config later."""
    steps: list[Callable[[job_pb2.ActionConfig], None]] = []
    if args.max_running is not None:
        steps.append(lambda c: setattr(c, "max_running", args.max_running))
    if args.max_queued is not None:
        steps.append(lambda c: setattr(c, "max_queued", args.max_queued))
    for flag, field in (
        ("heartbeat_timeout", "heartbeat"),
        ("takeover_timeout", "takeover"),
        ("execution_timeout", "execution"),
    ):
        text = getattr(args, flag)
        if text is not None:
            steps.append(
                _set_duration(("timeouts", field), parse_duration(text, "--" + flag.replace("_", "-")))
            )

    start_flags = [
        args.start_timeout,
        args.start_action,
        args.start_retry_interval,
        args.start_retry_count,
        args.start_retry_exponential,
        args.run_request,
        args.run_request_input,
        args.run_request_correlation_id,
    ]
    if args.start_timeout is not None and args.start_timeout.strip().lower() == CLEAR:
        if any(flag is not None for flag in start_flags[1:]):
            raise UsageError(
                "--start-timeout none removes the start timeout: give no other --start/--run flag"
            )
        steps.append(lambda c: c.timeouts.ClearField("start"))
    elif any(flag is not None for flag in start_flags):
        steps.append(_start_changes(args))

    retry_flags = [args.initial_interval, args.backoff_coefficient, args.max_interval, args.non_retryable]
    if args.max_attempts == 0:
        if any(flag is not None for flag in retry_flags):
            raise UsageError("--max-attempts 0 removes the retry policy: give no other retry flag")
        steps.append(lambda c: c.ClearField("retry_policy"))
    elif args.max_attempts is not None or any(flag is not None for flag in retry_flags):
        steps.append(_retry_changes(args))

    if args.lock and args.no_locks:
        raise UsageError("--lock and --no-locks together: give one")
    if args.no_locks:
        steps.append(lambda c: c.ClearField("lock_templates"))
    elif args.lock:
        try:
            templates = [lock_request(text) for text in args.lock]
        except ValueError as error:
            raise UsageError(f"--lock: {error}") from None

        def set_locks(config: job_pb2.ActionConfig) -> None:
            del config.lock_templates[:]
            config.lock_templates.extend(templates)

        steps.append(set_locks)
    if not steps and not args.from_file:
        raise UsageError("nothing to change: give at least one setting (see --help)")

    def apply(config: job_pb2.ActionConfig) -> None:
        for step in steps:
            step(config)

    return apply


def _set_duration(path: tuple[str, str], seconds: float | None) -> Callable[[job_pb2.ActionConfig], None]:
    parent_name, field = path

    def step(config: job_pb2.ActionConfig) -> None:
        parent = getattr(config, parent_name)
        if seconds is None:
            parent.ClearField(field)
        else:
            getattr(parent, field).CopyFrom(duration(seconds))

    return step


def _required_duration(text: str, flag: str) -> float:
    seconds = parse_duration(text, flag)
    if seconds is None:
        raise UsageError(f"{flag} cannot be none")
    return seconds


def _start_changes(args: argparse.Namespace) -> Callable[[job_pb2.ActionConfig], None]:
    start_duration = (
        None if args.start_timeout is None else _required_duration(args.start_timeout, "--start-timeout")
    )
    interval = (
        None
        if args.start_retry_interval is None
        else _required_duration(args.start_retry_interval, "--start-retry-interval")
    )
    run_input = None
    if args.run_request_input is not None:
        run_input = parse_json(args.run_request_input, "--run-request-input")
        if not isinstance(run_input, dict):
            raise UsageError("--run-request-input must be a JSON object ({...})")
    clear_run = args.run_request is not None and args.run_request.strip().lower() == CLEAR
    if clear_run and (args.run_request_input is not None or args.run_request_correlation_id is not None):
        raise UsageError("--run-request none removes the run request: give no other --run-request flag")

    def step(config: job_pb2.ActionConfig) -> None:
        start = config.timeouts.start
        if not config.timeouts.HasField("start") and start_duration is None:
            raise UsageError(f"{config.action} has no start timeout yet: give --start-timeout DUR too")
        if start_duration is not None:
            start.duration.CopyFrom(duration(start_duration))
        if args.start_action is not None:
            start.action = job_pb2.StartTimeoutAction.ValueType(int(args.start_action))
        if interval is not None:
            start.retry_interval.CopyFrom(duration(interval))
        if args.start_retry_count is not None:
            start.retry_count = args.start_retry_count
        if args.start_retry_exponential is not None:
            start.retry_backoff_exponential = args.start_retry_exponential
        if clear_run:
            start.ClearField("run_request")
            return
        if args.run_request is not None:
            start.run_request.action = args.run_request
        if run_input is not None or args.run_request_correlation_id is not None:
            if not start.HasField("run_request"):
                raise UsageError("--run-request-input/--run-request-correlation-id need --run-request ACTION")
            if run_input is not None:
                start.run_request.input.CopyFrom(dict_to_struct(run_input))
            if args.run_request_correlation_id is not None:
                start.run_request.correlation_id = args.run_request_correlation_id

    return step


def _retry_changes(args: argparse.Namespace) -> Callable[[job_pb2.ActionConfig], None]:
    initial = (
        None
        if args.initial_interval is None
        else _required_duration(args.initial_interval, "--initial-interval")
    )
    maximum = None if args.max_interval is None else _required_duration(args.max_interval, "--max-interval")
    kinds = None
    if args.non_retryable is not None:
        kinds = [k for k in args.non_retryable if k is not None]

    def step(config: job_pb2.ActionConfig) -> None:
        policy = config.retry_policy
        if not config.HasField("retry_policy"):
            # The engine's defaults for a policy the command line starts from scratch.
            policy.max_attempts = 1
            policy.initial_interval.CopyFrom(duration(1.0))
            policy.backoff_coefficient = 2.0
        if args.max_attempts is not None:
            policy.max_attempts = args.max_attempts
        if initial is not None:
            policy.initial_interval.CopyFrom(duration(initial))
        if args.backoff_coefficient is not None:
            policy.backoff_coefficient = args.backoff_coefficient
        if maximum is not None:
            policy.max_interval.CopyFrom(duration(maximum))
        if kinds is not None:
            del policy.non_retryable_kinds[:]
            policy.non_retryable_kinds.extend(job_pb2.ErrorKind.ValueType(int(k)) for k in kinds)

    return step


# -- output ------------------------------------------------------------------------------------------
def _show(config: job_pb2.ActionConfig, as_json: bool) -> None:
    if as_json:
        print_json(fmt.message_json(config))
        return
    print(describe(config))


def describe(config: job_pb2.ActionConfig) -> str:
    """An action's configuration as a person reads it, one setting a line."""
    t = config.timeouts
    lines = [
        ("action", config.action),
        ("state", "paused" if config.paused else "dispatching"),
        ("max_running", str(config.max_running) if config.max_running else "unlimited"),
        ("max_queued", str(config.max_queued) if config.max_queued else "unlimited"),
    ]
    for name in ("heartbeat", "takeover", "execution"):
        value = format_duration(duration_seconds(getattr(t, name))) if t.HasField(name) else "-"
        lines.append((f"{name}_timeout", value))
    lines.append(("start_timeout", _describe_start(t.start) if t.HasField("start") else "-"))
    lines.append(
        ("retry_policy", _describe_retry(config.retry_policy) if config.HasField("retry_policy") else "-")
    )
    templates = ", ".join(f"{lk.resource} {fmt.lock_mode_name(lk.mode)}" for lk in config.lock_templates)
    lines.append(("locks", templates or "-"))
    width = max(len(name) for name, _ in lines)
    return "\n".join(f"{name.ljust(width)}  {value}" for name, value in lines)


def _describe_start(start: job_pb2.StartTimeout) -> str:
    try:
        action = StartTimeoutAction(start.action or StartTimeoutAction.FAIL).name
    except ValueError:
        action = str(start.action)
    text = f"{format_duration(duration_seconds(start.duration))}, then {action}"
    if action == "RETRY":
        every = format_duration(duration_seconds(start.retry_interval))
        growth = ", doubling" if start.retry_backoff_exponential else ""
        text += f" after {every}{growth}, {start.retry_count} times, then FAIL"
    if start.HasField("run_request"):
        run = start.run_request
        text += f"; submits {run.action}"
        if run.input.fields:
            text += f" {json.dumps(struct_to_dict(run.input), sort_keys=True)}"
        if run.correlation_id:
            text += f" (correlation {run.correlation_id})"
    return text


def _describe_retry(policy: job_pb2.RetryPolicy) -> str:
    attempts = f"{policy.max_attempts} attempt" + ("" if policy.max_attempts == 1 else "s")
    backoff = format_duration(duration_seconds(policy.initial_interval))
    text = f"{attempts}, backoff {backoff} x{policy.backoff_coefficient:g}"
    if policy.HasField("max_interval") and duration_seconds(policy.max_interval):
        text += f" up to {format_duration(duration_seconds(policy.max_interval))}"
    if policy.non_retryable_kinds:
        kinds = ", ".join(
            ErrorKind(k).name for k in policy.non_retryable_kinds if k in ErrorKind._value2member_map_
        )
        text += f"; never retried: {kinds}"
    return text
