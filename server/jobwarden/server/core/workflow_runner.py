"""The ``WorkflowRunner`` part: definitions, work orders and runs, and how a run advances (the
values it works with, and the pure decisions, are in ``workflows/``).

A step's job is an ordinary job (submitted through ``Jobs``), tagged with its run and step. The
flow tells the runner when a job ends (``flow.on_job_ended``) in the same turn of the event loop as
its terminal transition, so the step's outcome, the edges it decides and the next steps' jobs join
the batch that holds the job's terminal status: after ``kill -9`` the store has all of it or none of
it (no edge taken twice, no step lost). Delay steps and run deadlines are timers of this part's own
kinds. Every change of a work order, run or step is a ``WorkflowEvent`` numbered from the job
events' sequence, written in the same batch and published after it commits.

Everything runs in the engine's event loop. A change that finishes a sub-workflow's run tells its
parent run only once the change at hand is done (``_settle``), so no run advances inside another's
advance.
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from jobwarden.contract import (
    TERMINAL_STATUSES,
    ErrorKind,
    JobStatus,
    JoinMode,
    Limits,
    StepStatus,
    WorkflowEventType,
    WorkflowLimits,
    WorkflowRunStatus,
)

from .deadlines import DeadlineHandlers
from .errors import FailedPrecondition, InvalidArgument, NotFound
from .flow import FlowPart, JobFlow
from .ids import id_abbreviation, new_job_id, parse_job_id
from .jobs import Jobs
from .model import Job, WorkflowRunRequest
from .store_api import WorkOrderQuery
from .validation import SubmitSpec, check_payload, check_string, check_string_map
from .workflows.checks import CompiledWorkflow, check_workflow_name, compile_workflow
from .workflows.definitions import WorkflowDef
from .workflows.expressions import ExpressionError
from .workflows.machine import activation, default_output, edge_matches, run_outcome
from .workflows.runs import EdgeRun, StepRun, WorkflowError, WorkflowEvent, WorkflowRun, WorkOrder

__all__ = ["StartRequest", "WorkflowRunner", "WorkflowTimer"]

log = logging.getLogger("jobwarden.workflows")


class WorkflowTimer:
    #: a delay step's wake time (key: "RUN_ID/STEP")
    DELAY = "workflow_delay"
    #: a run's deadline (key: the run id)
    DEADLINE = "workflow_deadline"


@dataclass(slots=True)
class StartRequest:
    workflow: str
    version: int = 0
    input: dict[str, Any] = field(default_factory=dict)
    context: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    correlation_id: str = ""
    idempotency_key: str = ""


@dataclass(slots=True)
class _JoinScan:
    """How far a step's incoming edges (in the graph's order) are known decided, and what they took."""

    seen: int = 0
    any_taken: bool = False
    all_taken: bool = True


#: a run as callers see it: the run, and its steps' live job statuses (by step name)
RunView = tuple[WorkflowRun, dict[str, Job]]


class WorkflowRunner(FlowPart):
    """Workflows: definitions, work orders, runs, and the steps' jobs."""

    def __init__(self, flow: JobFlow, jobs: Jobs, deadlines: DeadlineHandlers) -> None:
        super().__init__(flow)
        self.jobs = jobs
        #: name -> its versions, oldest first (index = version - 1)
        self.definitions: dict[str, list[CompiledWorkflow]] = {}
        #: every unfinished run, and the last finished ones
        self.runs: dict[str, WorkflowRun] = {}
        self._finished_runs: OrderedDict[str, WorkflowRun] = OrderedDict()
        #: the work orders of the unfinished runs, and the last finished ones
        self.orders: dict[str, WorkOrder] = {}
        self._finished_orders: OrderedDict[str, WorkOrder] = OrderedDict()
        #: idempotency key -> work order id, for every work order in memory
        self.order_keys: dict[str, str] = {}
        self._finished_cache_size = 1000
        #: runs advancing now, and the steps each must look at
        self._advancing: set[str] = set()
        self._worklists: dict[str, set[str]] = {}
        #: runs being stopped (cancel, crash, deadline): their steps' ends change nothing more
        self._stopping: set[str] = set()
        #: per run, the first step (in the definition's order) that may be unfinished: a step never
        #: becomes unfinished again within a run, so the scans for "every step ended" and "a step
        #: still runs" start there, and a 1,000-step fan-out is not quadratic
        self._finished_prefix: dict[str, int] = {}
        #: per run and step: how far its incoming edges are known decided; decided edges stay
        #: decided, so each incoming edge is looked at once, not once per advance
        self._joins: dict[str, dict[str, _JoinScan]] = {}
        #: what must happen once the change at hand is done (a parent hearing of its child's end)
        self._later: deque[Callable[[], None]] = deque()
        flow.on_job_ended(self._job_ended)
        self.timers.on(WorkflowTimer.DELAY, self._on_delay)
        self.timers.on(WorkflowTimer.DEADLINE, self._on_deadline)
        deadlines.start_workflow = self._start_from_timeout

    # -- definitions ------------------------------------------------------------------------------

    async def put_definition(
        self, definition: WorkflowDef, *, actor: str = "api"
    ) -> tuple[WorkflowDef, bool]:
        """Store ``definition`` as its name's next version (checked first: InvalidArgument naming the
        step or edge); the same content as the latest version returns that one, created False."""
        self.flow.check_running()
        compiled = compile_workflow(definition)
        digest = definition.content_digest()
        versions = self.definitions.get(definition.name, [])
        if versions and versions[-1].definition.digest == digest:
            return versions[-1].definition, False
        definition.version = len(versions) + 1
        definition.digest = digest
        definition.created_at = self.clock()
        definition.created_by = actor
        self.definitions.setdefault(definition.name, []).append(compiled)
        self.writer.workflow_definition(definition)
        await self.writer.flush()
        return definition, True

    def get_definition(self, name: str, version: int = 0) -> WorkflowDef:
        return self._compiled(name, version).definition

    def list_definitions(self, *, name: str = "", all_versions: bool = False) -> list[WorkflowDef]:
        if name:
            check_workflow_name(name)
        found: list[WorkflowDef] = []
        for key in sorted(self.definitions):
            if name and key != name:
                continue
            versions = self.definitions[key]
            found.extend(c.definition for c in (versions if all_versions else versions[-1:]))
        return found

    def _compiled(self, name: str, version: int = 0) -> CompiledWorkflow:
        check_workflow_name(name)
        if version < 0:
            raise InvalidArgument("version must not be negative")
        versions = self.definitions.get(name)
        if not versions:
            known = ", ".join(sorted(self.definitions)[:20]) or "none"
            raise NotFound(f"no workflow {name!r} (workflows: {known})")
        if version == 0:
            return versions[-1]
        if version > len(versions):
            raise NotFound(
                f"workflow {name!r} has no version {version} (its versions are 1 to {len(versions)})"
            )
        return versions[version - 1]

    # -- work orders and runs ---------------------------------------------------------------------

    async def start(
        self, request: StartRequest, *, actor: str = "api"
    ) -> tuple[WorkOrder, WorkflowRun, bool]:
        """A work order and its first run; with a used idempotency key, the first work order (the same
        request) or FailedPrecondition (a different one)."""
        self.flow.check_running()
        compiled = self._compiled(request.workflow, request.version)
        check_payload(request.input, "input")
        _check_variables(request.context, "context")
        check_string_map(
            request.labels,
            "labels",
            Limits.MAX_LABELS,
            Limits.MAX_LABEL_KEY_LENGTH,
            Limits.MAX_LABEL_VALUE_LENGTH,
        )
        check_string(request.correlation_id, "correlation_id")
        check_string(request.idempotency_key, "idempotency_key")
        key = request.idempotency_key
        if key:
            existing = self._order_by_key(key)
            if existing is None:
                existing = await self.read(self.store.work_order_by_idempotency_key, key)
                self.flow.check_running()
                existing = self._order_by_key(key) or existing
            if existing is not None:
                _refuse_other_request(key, request, existing)
                runs = await self.runs_of(existing)
                return existing, runs[-1] if runs else self._no_run(existing), True
        order, run = self._create_order(compiled, request, actor=actor)
        self._settle()
        await self.writer.flush()
        return order, run, False

    def _order_by_key(self, key: str) -> WorkOrder | None:
        order_id = self.order_keys.get(key)
        if not order_id:
            return None
        return self.orders.get(order_id) or self._finished_orders.get(order_id)

    def _no_run(self, order: WorkOrder) -> WorkflowRun:
        raise NotFound(f"work order {order.id} has no run")

    def _create_order(
        self,
        compiled: CompiledWorkflow,
        request: StartRequest,
        *,
        actor: str,
        parent: tuple[WorkflowRun, str] | None = None,
    ) -> tuple[WorkOrder, WorkflowRun]:
        now = self.clock()
        order = WorkOrder(
            id=new_job_id(),
            workflow=compiled.name,
            status=WorkflowRunStatus.RUNNING,
            input=request.input,
            created_at=now,
            updated_at=now,
            context=dict(request.context),
            labels=dict(request.labels),
            correlation_id=request.correlation_id,
            idempotency_key=request.idempotency_key,
            version=compiled.version,
            created_by=actor,
            requested_version=request.version,
        )
        self.orders[order.id] = order
        if order.idempotency_key:
            self.order_keys[order.idempotency_key] = order.id
        context = {**compiled.definition.context, **request.context}
        run = self._new_run(compiled, order, context=context, parent=parent)
        self._event(WorkflowEventType.ORDER_CREATED, run, order, actor=actor)
        self._event(WorkflowEventType.RUN_STARTED, run, order, actor=actor)
        self._enqueue(run, compiled.graph.roots)
        self._advance(run)
        return order, run

    def _new_run(
        self,
        compiled: CompiledWorkflow,
        order: WorkOrder,
        *,
        context: dict[str, str],
        parent: tuple[WorkflowRun, str] | None = None,
        previous: WorkflowRun | None = None,
        from_step: str = "",
    ) -> WorkflowRun:
        now = self.clock()
        definition = compiled.definition
        run = WorkflowRun(
            id=new_job_id(),
            work_order_id=order.id,
            workflow=definition.name,
            version=definition.version,
            number=order.run_count + 1,
            status=WorkflowRunStatus.RUNNING,
            input=order.input,
            context=context,
            steps={s.name: StepRun(s.name) for s in definition.steps},
            edges=[EdgeRun() for _ in definition.edges],
            created_at=now,
            updated_at=now,
            deadline=now + definition.run_timeout if definition.run_timeout else None,
            rerun_from_step=from_step,
            previous_run_id=previous.id if previous else "",
            parent_run_id=parent[0].id if parent else "",
            parent_step=parent[1] if parent else "",
            correlation_id=order.correlation_id,
            depth=parent[0].depth + 1 if parent else 0,
        )
        order.run_count += 1
        order.last_run_id = run.id
        order.version = definition.version
        order.status = WorkflowRunStatus.RUNNING
        order.updated_at = now
        self.runs[run.id] = run
        self.writer.work_order(order)
        self.writer.workflow_run(run)
        if run.deadline is not None:
            self.timers.arm(WorkflowTimer.DEADLINE, run.id, run.deadline)
        return run

    async def retry(
        self, work_order_id: str, *, from_step: str = "", latest_version: bool = False, actor: str = "api"
    ) -> tuple[WorkOrder, WorkflowRun]:
        """A new run of a work order whose last run ended: from the start, or from ``from_step``
        (reusing the outcome of every step not downstream of it)."""
        self.flow.check_running()
        check_string(from_step, "from_step", WorkflowLimits.MAX_STEP_NAME_LENGTH)
        order = await self.get_order(work_order_id)
        last = await self.get_run(order.last_run_id)
        if not last.finished:
            raise FailedPrecondition(
                f"work order {order.id}'s last run {last.id} is {last.status.name}; retry it once it has "
                "ended (or cancel it first); nothing changed"
            )
        compiled = self._compiled(order.workflow, 0 if latest_version else last.version)
        if from_step and from_step not in compiled.steps:
            steps = ", ".join(compiled.graph.names[:30])
            raise InvalidArgument(
                f"from_step: workflow {compiled.name!r} version {compiled.version} has no step "
                f"{from_step!r} (its steps: {steps}); nothing changed"
            )
        self._finished_orders.pop(order.id, None)
        self.orders[order.id] = order
        if order.idempotency_key:
            self.order_keys[order.idempotency_key] = order.id
        context = {**compiled.definition.context, **order.context}
        parent = None
        if last.parent_run_id:
            parent_run = self.runs.get(last.parent_run_id)
            if parent_run is not None and not parent_run.finished:
                parent = (parent_run, last.parent_step)
        run = self._new_run(
            compiled, order, context=context, previous=last, from_step=from_step, parent=parent
        )
        run.depth = last.depth
        what = f"from step {from_step!r}" if from_step else "from the start"
        if from_step:
            self._reuse(run, compiled, last, from_step)
        self._event(
            WorkflowEventType.RUN_STARTED, run, order, actor=actor, reason=f"retried by {actor} {what}"
        )
        if from_step:
            self._enqueue(run, compiled.graph.names)
            self._start_step(run, compiled, run.steps[from_step])
        else:
            self._enqueue(run, compiled.graph.roots)
        self._advance(run)
        self._settle()
        await self.writer.flush()
        return order, run

    def _reuse(
        self, run: WorkflowRun, compiled: CompiledWorkflow, previous: WorkflowRun, from_step: str
    ) -> None:
        """Take every step not downstream of ``from_step`` as it ended in ``previous``, with the
        context updates and edge decisions it made."""
        downstream = compiled.graph.descendants(from_step)
        for name in compiled.order:
            if name in downstream:
                continue
            before = previous.steps.get(name)
            if before is None or not before.finished:
                continue
            step = run.steps[name]
            step.status = before.status
            step.job_id = before.job_id
            step.child_run_id = before.child_run_id
            step.started_at, step.finished_at = before.started_at, before.finished_at
            step.result = before.result
            step.job_variables = dict(before.job_variables)
            step.workflow_variables = dict(before.workflow_variables)
            step.error = before.error
            step.attempt = before.attempt
            step.reused_from_run_id = before.reused_from_run_id or previous.id
            run.context.update(step.workflow_variables)
        for name in compiled.order:
            if name not in downstream and run.steps[name].finished:
                self._decide_outgoing(run, compiled, run.steps[name], quiet=True)

    async def cancel(self, run_id: str, *, reason: str = "", actor: str = "api") -> WorkflowRun:
        """Cancel an unfinished run: its queued and running steps are cancelled (running jobs' workers
        are told), the run is CANCELLED."""
        self.flow.check_running()
        check_string(reason, "reason", Limits.MAX_MESSAGE_LENGTH)
        run = await self.get_run(run_id)
        if run.finished:
            raise FailedPrecondition(
                f"workflow run {run.id} is already {run.status.name}; only an unfinished run can be "
                "cancelled; nothing changed"
            )
        run = self.runs[run.id]
        reason = reason or f"cancelled by {actor}"
        run.cancel_requested = True
        self._event(WorkflowEventType.CANCEL_REQUESTED, run, None, actor=actor, reason=reason)
        self._stop(run, WorkflowRunStatus.CANCELLED, None, reason=reason, actor=actor)
        self._settle()
        await self.writer.flush()
        return run

    # -- reads ------------------------------------------------------------------------------------

    async def resolve_id(self, text: str, table: str, what: str) -> str:
        try:
            part = id_abbreviation(text)
            if part is None:
                return parse_job_id(text)
        except InvalidArgument as error:
            raise InvalidArgument(error.message.replace("job_id", what).replace("job id", what)) from None
        await self.writer.flush()
        found = await self.read(self.store.workflow_ids_abbreviated, table, part, 6)
        if not found:
            raise NotFound(f"no {what} starts or ends with {text!r}")
        if len(found) > 1:
            raise InvalidArgument(f"{what} {text!r} is ambiguous: it matches {', '.join(found[:5])}")
        return str(found[0])

    async def get_order(self, work_order_id: str) -> WorkOrder:
        order_id = await self.resolve_id(work_order_id, "work_orders", "work_order_id")
        order = self.orders.get(order_id) or self._finished_orders.get(order_id)
        await self.writer.flush()
        if order is not None:
            return order
        order = await self.read(self.store.get_work_order, order_id)
        if order is None:
            raise NotFound(f"no work order {order_id}")
        return order

    async def get_run(self, run_id: str) -> WorkflowRun:
        run_id = await self.resolve_id(run_id, "workflow_runs", "run_id")
        run = self.runs.get(run_id) or self._finished_runs.get(run_id)
        await self.writer.flush()
        if run is None:
            run = await self.read(self.store.get_workflow_run, run_id)
        if run is None:
            raise NotFound(f"no workflow run {run_id}")
        return run

    async def runs_of(self, order: WorkOrder) -> list[WorkflowRun]:
        await self.writer.flush()
        stored = await self.read(self.store.workflow_runs_of_order, order.id)
        return [self.runs.get(r.id) or r for r in stored]

    async def list_orders(self, query: WorkOrderQuery) -> tuple[list[WorkOrder], str]:
        if query.limit < 0 or query.limit > Limits.MAX_PAGE_SIZE:
            raise InvalidArgument(f"limit must be between 0 and {Limits.MAX_PAGE_SIZE}")
        limit = query.limit or 100
        if query.workflow:
            check_workflow_name(query.workflow)
        check_string(query.correlation_id, "correlation_id")
        if query.before_id:
            try:
                query.before_id = parse_job_id(query.before_id)
            except InvalidArgument:
                raise InvalidArgument("malformed page_token") from None
        query.limit = limit + 1
        await self.writer.flush()
        orders = await self.read(self.store.list_work_orders, query)
        token = ""
        if len(orders) > limit:
            orders = orders[:limit]
            token = orders[-1].id
        return orders, token

    def live_jobs(self, run: WorkflowRun) -> dict[str, Job]:
        """The unfinished jobs of the run's running steps, by step (for their live status)."""
        live = {}
        for step in run.steps.values():
            if step.job_id and not step.finished:
                job = self.registry.jobs.get(step.job_id)
                if job is not None:
                    live[step.name] = job
        return live

    async def events_between(
        self,
        after: int,
        up_to: int,
        limit: int,
        run_ids: Sequence[str] = (),
        work_order_ids: Sequence[str] = (),
    ) -> list[WorkflowEvent]:
        return await self.read(
            self.store.workflow_events_between, after, up_to, limit, run_ids, work_order_ids
        )

    # -- recovery ---------------------------------------------------------------------------------

    async def recover(self, progress: Callable[[], None] = lambda: None) -> None:
        """Load the definitions and every unfinished run; re-arm delays and deadlines; settle the
        steps whose job (or sub-run) ended without the run hearing of it. Each read is told to
        ``progress`` (a new leader's lease renews on it)."""
        for definition in await self.read(self.store.load_workflow_definitions):
            try:
                compiled = compile_workflow(definition)
            except InvalidArgument as error:
                log.error(
                    "stored workflow %s v%d no longer compiles: %s",
                    definition.name,
                    definition.version,
                    error,
                )
                continue
            versions = self.definitions.setdefault(definition.name, [])
            versions.append(compiled)
        runs = await self.flow.read_pages(self.store.unfinished_run_pages, progress)
        for run in runs:
            self.runs[run.id] = run
            if run.work_order_id not in self.orders:
                order = await self.read(self.store.get_work_order, run.work_order_id)
                progress()
                if order is not None:
                    self.orders[order.id] = order
                    if order.idempotency_key:
                        self.order_keys[order.idempotency_key] = order.id
        now = self.clock()
        for run in runs:
            if run.deadline is not None:
                self.timers.arm(WorkflowTimer.DEADLINE, run.id, run.deadline)
            for step in run.steps.values():
                if step.status is StepStatus.DELAYED and step.wake_at is not None:
                    self.timers.arm(WorkflowTimer.DELAY, f"{run.id}/{step.name}", step.wake_at)
        for run in runs:
            run_compiled = self._compiled_of(run)
            if run_compiled is None:
                continue
            for step in list(run.steps.values()):
                if step.status is not StepStatus.RUNNING or run.finished:
                    continue
                if step.job_id and step.job_id not in self.registry.jobs:
                    job = await self.read(self.store.get_job, step.job_id)
                    if job is not None and job.status in TERMINAL_STATUSES:
                        log.warning(
                            "run %s: step %s's job %s ended unheard; settling it", run.id, step.name, job.id
                        )
                        self._step_job_ended(run, run_compiled, step, job)
                elif step.child_run_id and step.child_run_id not in self.runs:
                    child = await self.read(self.store.get_workflow_run, step.child_run_id)
                    if child is not None and child.finished:
                        self._child_finished(run, step.name, child)
            if not run.finished:
                self._enqueue(run, run_compiled.graph.names)
                self._advance(run)
        self._settle()
        log.info("recovered %d unfinished workflow runs at %.3f", len(runs), now)

    # -- how a run advances -----------------------------------------------------------------------

    def _compiled_of(self, run: WorkflowRun) -> CompiledWorkflow | None:
        versions = self.definitions.get(run.workflow)
        if not versions or run.version > len(versions):
            log.error("run %s: workflow %s version %d is not loaded", run.id, run.workflow, run.version)
            return None
        return versions[run.version - 1]

    def _enqueue(self, run: WorkflowRun, names: Sequence[str]) -> None:
        self._worklists.setdefault(run.id, set()).update(names)

    def _advance(self, run: WorkflowRun) -> None:
        """Decide every enqueued PENDING step whose incoming edges are all decided (run it or skip it),
        until nothing more can be decided; then end the run if every step has."""
        if run.id in self._advancing:
            return  # the advance under way picks up what was enqueued
        compiled = self._compiled_of(run)
        if compiled is None:
            return
        self._advancing.add(run.id)
        position = compiled.position
        try:
            while not run.finished:
                work = self._worklists.pop(run.id, None)
                if not work:
                    break
                for name in sorted(work, key=position.__getitem__):
                    if run.finished:
                        break
                    step = run.steps[name]
                    if step.status is not StepStatus.PENDING:
                        continue
                    decision = self._join_decision(run, compiled, name)
                    if decision is None:
                        continue
                    if decision:
                        self._start_step(run, compiled, step)
                    else:
                        self._set_step(run, step, StepStatus.SKIPPED, reason="no edge into it was taken")
                        self._decide_outgoing(run, compiled, step)
            if not run.finished:
                self._maybe_finish(run, compiled)
        finally:
            self._advancing.discard(run.id)
            if run.finished:
                self._worklists.pop(run.id, None)

    def _join_decision(self, run: WorkflowRun, compiled: CompiledWorkflow, name: str) -> bool | None:
        """``join_decision`` over the step's incoming edges, looking at each decided edge only once."""
        incoming = compiled.graph.incoming[name]
        if not incoming:
            return True
        joins = self._joins.setdefault(run.id, {})
        scan = joins.get(name)
        if scan is None:
            scan = joins[name] = _JoinScan()
        edges = run.edges
        while scan.seen < len(incoming):
            edge = edges[incoming[scan.seen]]
            if not edge.decided:
                return None  # as join_decision: undecided while any incoming edge is
            scan.any_taken = scan.any_taken or edge.taken
            scan.all_taken = scan.all_taken and edge.taken
            scan.seen += 1
        return scan.any_taken if compiled.steps[name].definition.join is JoinMode.ANY else scan.all_taken

    def _unfinished_from(self, run: WorkflowRun, compiled: CompiledWorkflow) -> int:
        """The first step (its index in the definition) not finished, or len(steps) when all are."""
        names = compiled.graph.names
        steps = run.steps
        at = self._finished_prefix.get(run.id, 0)
        while at < len(names) and steps[names[at]].finished:
            at += 1
        self._finished_prefix[run.id] = at
        return at

    def _start_step(self, run: WorkflowRun, compiled: CompiledWorkflow, step: StepRun) -> None:
        spec = compiled.steps[step.name]
        definition = spec.definition
        now = self.clock()
        step.started_at = now
        step.finished_at = None
        step.error = None
        step.result = None
        step.reused_from_run_id = ""
        try:
            names = activation(run) if spec.input is not None or spec.locks else {}
            step_input = spec.input.render(names) if spec.input is not None else run.input
            if not isinstance(step_input, dict):
                raise ExpressionError(f"the input template gave {type(step_input).__name__}, not an object")
            locks = []
            for template, mode in spec.locks:
                resource = template.render(names)
                if not isinstance(resource, str):
                    resource = str(resource)
                locks.append((resource, mode))
        except ExpressionError as error:
            self._step_failed(
                run, compiled, step, WorkflowError(f"step {step.name!r}: {error.message}", step.name)
            )
            return
        if definition.action is not None:
            action = definition.action
            job_spec = SubmitSpec(
                action=action.action,
                input=step_input,
                priority=action.priority,
                labels=dict(action.labels),
                locks=locks,
                timeouts=action.timeouts,
                retry_policy=action.retry_policy,
                correlation_id=run.correlation_id or run.work_order_id,
                workflow_variables=dict(run.context),
                workflow_run_id=run.id,
                workflow_step=step.name,
                work_order_id=run.work_order_id,
            )
            try:
                checked_locks = self.jobs.check_submit(job_spec)  # checks the input too
            except InvalidArgument as error:
                self._step_failed(
                    run, compiled, step, WorkflowError(f"step {step.name!r}: {error.message}", step.name)
                )
                return
            job = self.jobs.create(job_spec, checked_locks, actor=f"workflow:{run.id}")
            step.job_id = job.id
            step.attempt = job.attempt
            step.workflow_variables = dict(run.context)  # what it was given; its updates replace this
            self._set_step(run, step, StepStatus.RUNNING)
            if job.status in TERMINAL_STATUSES:  # REJECTED at admission
                self._step_job_ended(run, compiled, step, job)
        elif definition.delay is not None:
            step.wake_at = now + definition.delay.duration
            self._set_step(run, step, StepStatus.DELAYED, reason=f"waits {definition.delay.duration:g}s")
            self.timers.arm(WorkflowTimer.DELAY, f"{run.id}/{step.name}", step.wake_at)
        elif definition.workflow is not None:
            sub = definition.workflow
            try:
                child_compiled = self._compiled(sub.workflow, sub.version)
            except (NotFound, InvalidArgument) as error:
                self._step_failed(
                    run, compiled, step, WorkflowError(f"step {step.name!r}: {error.message}", step.name)
                )
                return
            if run.depth + 1 > WorkflowLimits.MAX_NESTING:
                self._step_failed(
                    run,
                    compiled,
                    step,
                    WorkflowError(
                        f"step {step.name!r}: sub-workflows nest deeper than "
                        f"{WorkflowLimits.MAX_NESTING} levels",
                        step.name,
                    ),
                )
                return
            request = StartRequest(
                workflow=child_compiled.name,
                version=child_compiled.version,
                input=step_input,
                context=dict(run.context),
                labels={"jobwarden.parent_run": run.id, "jobwarden.parent_step": step.name},
                correlation_id=run.correlation_id,
            )
            self._set_step(run, step, StepStatus.RUNNING)
            _, child = self._create_order(
                child_compiled, request, actor=f"workflow:{run.id}", parent=(run, step.name)
            )
            step.child_run_id = child.id
            self.writer.workflow_run(run)

    def _step_failed(
        self, run: WorkflowRun, compiled: CompiledWorkflow, step: StepRun, error: WorkflowError
    ) -> None:
        step.error = error
        step.finished_at = self.clock()
        self._set_step(run, step, StepStatus.FAILED, reason=error.message)
        self._decide_outgoing(run, compiled, step)

    def _job_ended(self, job: Job) -> None:
        """The flow's hook: a job ended. A step's job settles its step and advances its run."""
        if not job.workflow_run_id:
            return
        run = self.runs.get(job.workflow_run_id)
        if run is None or run.finished or run.id in self._stopping:
            return
        step = run.steps.get(job.workflow_step)
        if step is None or step.job_id != job.id or step.finished:
            return
        compiled = self._compiled_of(run)
        if compiled is None:
            return
        self._step_job_ended(run, compiled, step, job)
        self._advance(run)
        self._settle()

    def _step_job_ended(self, run: WorkflowRun, compiled: CompiledWorkflow, step: StepRun, job: Job) -> None:
        step.attempt = job.attempt
        step.finished_at = self.clock()
        step.job_variables = dict(job.job_variables)
        given = step.workflow_variables
        updates = {k: v for k, v in job.workflow_variables.items() if given.get(k) != v}
        step.workflow_variables = updates
        if job.status is JobStatus.COMPLETED:
            step.result = job.result or {}
            run.context.update(updates)
            self._set_step(run, step, StepStatus.COMPLETED)
            self._decide_outgoing(run, compiled, step)
            return
        if job.status is JobStatus.FAILED:
            kind = job.error.kind if job.error else ErrorKind.ENGINE
            message = job.error.message if job.error else job.status_reason
            error = WorkflowError(message, step=step.name, kind=kind, job_id=job.id)
            continues = (
                compiled.definition.continue_on_crash
                or compiled.steps[step.name].definition.continue_on_crash
            )
            if kind is ErrorKind.CRASHED and not continues:
                step.error = error
                self._set_step(run, step, StepStatus.FAILED, reason=f"CRASHED: {message[:200]}")
                self._stop(
                    run,
                    WorkflowRunStatus.FAILED,
                    WorkflowError(f"step {step.name!r} crashed: {message}", step.name, kind, job.id),
                    reason=f"step {step.name!r} crashed, which aborts the run",
                )
                return
            self._step_failed(run, compiled, step, error)
            return
        if job.status is JobStatus.REJECTED:
            self._step_failed(
                run,
                compiled,
                step,
                WorkflowError(
                    f"its job was REJECTED: {job.status_reason}", step.name, ErrorKind.ENGINE, job.id
                ),
            )
            return
        step.error = WorkflowError(
            job.status_reason or "its job was cancelled", step.name, ErrorKind.JOB_ERROR, job.id
        )
        self._set_step(run, step, StepStatus.CANCELLED, reason=step.error.message)
        self._decide_outgoing(run, compiled, step)

    def _decide_outgoing(
        self, run: WorkflowRun, compiled: CompiledWorkflow, step: StepRun, *, quiet: bool = False
    ) -> None:
        """Decide the step's outgoing edges from how it ended, and look at their targets next."""
        targets = []
        names: dict[str, Any] | None = None
        for index in compiled.graph.outgoing[step.name]:
            edge = compiled.definition.edges[index]
            state = run.edges[index]
            if state.decided:
                continue
            taken = edge_matches(edge.kind, step.status)
            condition = compiled.conditions[index]
            failure: WorkflowError | None = None
            if taken and condition is not None:
                if names is None:
                    names = activation(run, step)
                try:
                    taken = condition.evaluate_bool(names)
                except ExpressionError as error:
                    taken = False
                    failure = WorkflowError(f"edge {edge.label}: condition {error.message}", edge.target)
            state.decided = True
            state.taken = taken
            targets.append(edge.target)
            if failure is not None:
                target = run.steps[edge.target]
                if target.status is StepStatus.PENDING:
                    self._step_failed(run, compiled, target, failure)
        if not quiet:
            self.writer.workflow_run(run)
        self._enqueue(run, targets)

    def _set_step(
        self, run: WorkflowRun, step: StepRun, status: StepStatus, *, reason: str = "", actor: str = "engine"
    ) -> None:
        previous = step.status
        step.status = status
        if status in (StepStatus.SKIPPED, StepStatus.CANCELLED) and step.finished_at is None:
            step.finished_at = self.clock()
        run.updated_at = self.clock()
        self.writer.workflow_run(run)
        self._event(
            WorkflowEventType.STEP_CHANGED,
            run,
            None,
            step=step.name,
            previous_step=previous,
            reason=reason,
            actor=actor,
        )
        if not run.finished:
            self._update_run_status(run, status)

    def _update_run_status(self, run: WorkflowRun, changed: StepStatus) -> None:
        if changed is StepStatus.RUNNING:
            target = WorkflowRunStatus.RUNNING
        elif run.status is WorkflowRunStatus.DELAYED and changed is StepStatus.DELAYED:
            return
        else:
            # The steps before the finished prefix have ended: neither RUNNING nor DELAYED.
            start = self._finished_prefix.get(run.id, 0)
            if any(s.status is StepStatus.RUNNING for s in islice(run.steps.values(), start, None)):
                target = WorkflowRunStatus.RUNNING
            elif any(s.status is StepStatus.DELAYED for s in islice(run.steps.values(), start, None)):
                target = WorkflowRunStatus.DELAYED
            else:
                return
        if run.status is not target:
            self._set_run_status(
                run, target, reason="" if target is WorkflowRunStatus.RUNNING else "a step waits"
            )

    def _maybe_finish(self, run: WorkflowRun, compiled: CompiledWorkflow) -> None:
        if self._unfinished_from(run, compiled) < len(compiled.graph.names):
            return  # a step has not ended (what run_outcome's first scan finds, without rescanning)
        outcome = run_outcome(run, compiled)
        if outcome is None:
            return
        status, error = outcome
        output: dict[str, Any] | None = None
        if status is WorkflowRunStatus.COMPLETED:
            if compiled.output is not None:
                try:
                    rendered = compiled.output.render(activation(run))
                    output = rendered if isinstance(rendered, dict) else {"value": rendered}
                except ExpressionError as failure:
                    status = WorkflowRunStatus.FAILED
                    error = WorkflowError(f"output: template {failure.message}", "", ErrorKind.JOB_ERROR)
            else:
                output = default_output(run, compiled)
        run.output = output
        run.error = error
        self._finish(run, status, reason=error.message if error else "every step ended")

    def _stop(
        self,
        run: WorkflowRun,
        status: WorkflowRunStatus,
        error: WorkflowError | None,
        *,
        reason: str,
        actor: str = "engine",
    ) -> None:
        """End ``run`` now as ``status``: cancel its running steps (their workers are told), skip the
        pending ones, and cancel its sub-runs."""
        self._stopping.add(run.id)
        try:
            for step in run.steps.values():
                if step.status is StepStatus.PENDING:
                    self._set_step(run, step, StepStatus.SKIPPED, reason=reason, actor=actor)
                elif step.status in (StepStatus.RUNNING, StepStatus.DELAYED):
                    if step.job_id:
                        job = self.registry.jobs.get(step.job_id)
                        if job is not None and job.status not in TERMINAL_STATUSES:
                            self.jobs.cancel_unfinished(
                                job, reason=f"workflow run {run.id}: {reason}", actor=actor
                            )
                    elif step.child_run_id:
                        child = self.runs.get(step.child_run_id)
                        if child is not None and not child.finished:
                            self._stop(
                                child,
                                WorkflowRunStatus.CANCELLED,
                                None,
                                reason=f"its parent run {run.id} ended: {reason}",
                                actor=actor,
                            )
                    else:
                        self.timers.disarm(WorkflowTimer.DELAY, f"{run.id}/{step.name}")
                    step.error = step.error or WorkflowError(
                        reason, step.name, ErrorKind.JOB_ERROR, step.job_id
                    )
                    self._set_step(run, step, StepStatus.CANCELLED, reason=reason, actor=actor)
            run.error = error
            self._finish(run, status, reason=reason, actor=actor)
        finally:
            self._stopping.discard(run.id)

    def _finish(
        self, run: WorkflowRun, status: WorkflowRunStatus, *, reason: str, actor: str = "engine"
    ) -> None:
        now = self.clock()
        run.finished_at = now
        self.timers.disarm(WorkflowTimer.DEADLINE, run.id)
        self._set_run_status(run, status, reason=reason, actor=actor)
        self.runs.pop(run.id, None)
        self._finished_prefix.pop(run.id, None)
        self._joins.pop(run.id, None)
        self._finished_runs[run.id] = run
        while len(self._finished_runs) > self._finished_cache_size:
            self._finished_runs.popitem(last=False)
        order = self.orders.get(run.work_order_id)
        if order is not None and order.last_run_id == run.id:
            # Its last run ended: the order leaves memory for a bounded cache (the store has it).
            del self.orders[order.id]
            self._finished_orders[order.id] = order
            while len(self._finished_orders) > self._finished_cache_size:
                _, old = self._finished_orders.popitem(last=False)
                if old.idempotency_key and self.order_keys.get(old.idempotency_key) == old.id:
                    del self.order_keys[old.idempotency_key]
        if run.parent_run_id:
            parent = self.runs.get(run.parent_run_id)
            if parent is not None:
                self._later.append(lambda: self._child_finished(parent, run.parent_step, run))

    def _set_run_status(
        self, run: WorkflowRun, status: WorkflowRunStatus, *, reason: str, actor: str = "engine"
    ) -> None:
        previous = run.status
        run.status = status
        run.status_reason = reason
        run.updated_at = self.clock()
        self.writer.workflow_run(run)
        order = self.orders.get(run.work_order_id)
        if order is not None and order.last_run_id == run.id:
            order.status = status
            order.updated_at = run.updated_at
            self.writer.work_order(order)
        else:
            order = None
        self._event(
            WorkflowEventType.RUN_STATUS_CHANGED,
            run,
            order,
            previous_status=previous,
            reason=reason,
            actor=actor,
        )

    def _child_finished(self, parent: WorkflowRun, step_name: str, child: WorkflowRun) -> None:
        if parent.finished or parent.id in self._stopping:
            return
        step = parent.steps.get(step_name)
        if step is None or step.child_run_id != child.id or step.finished:
            return
        compiled = self._compiled_of(parent)
        if compiled is None:
            return
        step.finished_at = self.clock()
        if child.status is WorkflowRunStatus.COMPLETED:
            step.result = child.output or {}
            self._set_step(parent, step, StepStatus.COMPLETED)
            self._decide_outgoing(parent, compiled, step)
        else:
            inner = child.error.message if child.error else child.status_reason
            kind = child.error.kind if child.error else ErrorKind.JOB_ERROR
            self._step_failed(
                parent,
                compiled,
                step,
                WorkflowError(
                    f"sub-workflow run {child.id} ({child.workflow}) {child.status.name}: {inner}",
                    step.name,
                    ErrorKind.JOB_ERROR if kind is ErrorKind.CRASHED else kind,
                ),
            )
        self._advance(parent)

    def _settle(self) -> None:
        """Do what the change at hand left for after it (parents hearing of their children)."""
        while self._later:
            self._later.popleft()()

    # -- timers -----------------------------------------------------------------------------------

    def _on_delay(self, key: str) -> None:
        if not self.flow.running:
            return
        run_id, _, name = key.partition("/")
        run = self.runs.get(run_id)
        if run is None or run.finished:
            return
        step = run.steps.get(name)
        if step is None or step.status is not StepStatus.DELAYED:
            return
        now = self.clock()
        if step.wake_at is not None and step.wake_at > now + 0.001:
            self.timers.arm(WorkflowTimer.DELAY, key, step.wake_at)
            return
        compiled = self._compiled_of(run)
        if compiled is None:
            return
        step.finished_at = now
        step.result = {}
        self._set_step(run, step, StepStatus.COMPLETED, reason="its delay passed")
        self._decide_outgoing(run, compiled, step)
        self._advance(run)
        self._settle()

    def _on_deadline(self, run_id: str) -> None:
        if not self.flow.running:
            return
        run = self.runs.get(run_id)
        if run is None or run.finished or run.deadline is None:
            return
        now = self.clock()
        if run.deadline > now + 0.001:
            self.timers.arm(WorkflowTimer.DEADLINE, run_id, run.deadline)
            return
        compiled = self._compiled_of(run)
        timeout = compiled.definition.run_timeout if compiled else None
        running = [s.name for s in run.steps.values() if s.status in (StepStatus.RUNNING, StepStatus.DELAYED)]
        message = f"the run deadline of {timeout or 0:g}s passed" + (
            f" while {', '.join(running[:5])} ran" if running else ""
        )
        self._stop(
            run,
            WorkflowRunStatus.FAILED,
            WorkflowError(message, running[0] if running else "", ErrorKind.ENGINE),
            reason=message,
        )
        self._settle()

    def _start_from_timeout(self, job: Job, request: WorkflowRunRequest, correlation_id: str) -> None:
        """A start timeout's run request that names a workflow: start a work order of it."""
        try:
            compiled = self._compiled(request.workflow, request.version)
            start = StartRequest(
                workflow=compiled.name,
                version=compiled.version,
                input=request.input if request.input is not None else dict(job.input),
                context=dict(request.context),
                labels={"jobwarden.start_timeout_of": job.id},
                correlation_id=correlation_id or job.id,
            )
            self._create_order(compiled, start, actor=f"start-timeout:{job.id}")
        except (NotFound, InvalidArgument) as error:
            log.error("start timeout run request of job %s refused: %s", job.id, error.message)
            return
        self._settle()

    # -- events -----------------------------------------------------------------------------------

    def _event(
        self,
        event_type: WorkflowEventType,
        run: WorkflowRun,
        order: WorkOrder | None,
        *,
        step: str = "",
        previous_step: StepStatus | None = None,
        previous_status: WorkflowRunStatus | None = None,
        actor: str = "engine",
        reason: str = "",
    ) -> None:
        registry = self.registry
        registry.sequence += 1
        sequence = registry.sequence
        run.sequence = sequence
        if order is not None:
            order.sequence = sequence
        if event_type is WorkflowEventType.STEP_CHANGED:
            snapshot = _run_header(run)
            snapshot["steps"] = [run.steps[step].to_dict(results=False)]
        else:
            snapshot = run.to_dict(payloads=False)
        self.writer.workflow_event(
            WorkflowEvent(
                sequence=sequence,
                type=event_type,
                time=self.clock(),
                run_id=run.id,
                work_order_id=run.work_order_id,
                run=snapshot,
                order=order.to_dict(payloads=False) if order is not None else None,
                step=step,
                previous_step_status=previous_step,
                previous_status=previous_status,
                actor=actor,
                reason=reason,
            )
        )


def _run_header(run: WorkflowRun) -> dict[str, Any]:
    return run.to_dict(payloads=False, steps=False)


def _check_variables(values: dict[str, str], what: str) -> None:
    check_string_map(
        values, what, Limits.MAX_VARIABLES, Limits.MAX_VARIABLE_KEY_LENGTH, Limits.MAX_VARIABLE_VALUE_LENGTH
    )


def _refuse_other_request(key: str, request: StartRequest, order: WorkOrder) -> None:
    fields = {
        "workflow": (request.workflow, order.workflow),
        "version": (request.version, order.requested_version),
        "input": (request.input, order.input),
        "context": (request.context, order.context),
        "labels": (request.labels, order.labels),
        "correlation_id": (request.correlation_id, order.correlation_id),
    }
    differ = [name for name, (asked, first) in fields.items() if asked != first]
    if differ:
        raise FailedPrecondition(
            f"idempotency_key {key!r} was already used for work order {order.id} with a different request "
            f"({', '.join(differ)} differ); send the same request to get that work order back, or use a new "
            "key; nothing was started"
        )
