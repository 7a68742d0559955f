"""JobService: submit, read, steer and watch jobs. A thin translation onto the engine."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
from grpc import aio
from jobwarden.contract import JobStatus
from jobwarden.server.core import Engine, EventFilter, InvalidArgument, JobQuery, check_action
from jobwarden.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc

from .convert import (
    action_config_from_proto,
    action_config_to_proto,
    action_stats_to_proto,
    event_to_proto,
    job_to_proto,
    log_line_to_proto,
    submit_spec_from_proto,
    wire_enum,
)
from .errors import grpc_errors, grpc_stream_errors
from .identity import actor_of
from .limits import watch_slot
from .wire import frame_batch, frame_events, frame_workflow_events, head_field

__all__ = ["JobService"]

log = logging.getLogger("jobwarden.api")

Context = aio.ServicerContext[Any, Any]


def _statuses(values: Any, what: str = "statuses") -> list[JobStatus]:
    out = []
    for value in values:
        try:
            out.append(JobStatus(value))
        except ValueError:
            raise InvalidArgument(f"{what}: unknown job status {value}") from None
    return out


class JobService(job_service_pb2_grpc.JobServiceServicer):
    def __init__(
        self,
        engine: Engine,
        *,
        keepalive_seconds: float = 5.0,
        replay_page: int = 500,
        linger_seconds: float = 0.01,
    ) -> None:
        self.engine = engine
        self.keepalive_seconds = keepalive_seconds
        self.replay_page = replay_page
        self.linger_seconds = linger_seconds

    @grpc_errors
    async def SubmitJob(
        self, request: job_service_pb2.SubmitJobRequest, context: Context
    ) -> job_service_pb2.SubmitJobResponse:
        [(job, duplicate)] = await self.engine.submit(
            [submit_spec_from_proto(request)], actor=actor_of(context)
        )
        return job_service_pb2.SubmitJobResponse(job=job_to_proto(job), duplicate=duplicate)

    @grpc_errors
    async def SubmitJobs(
        self, request: job_service_pb2.SubmitJobsRequest, context: Context
    ) -> job_service_pb2.SubmitJobsResponse:
        specs = []
        for index, item in enumerate(request.jobs):
            try:
                specs.append(submit_spec_from_proto(item))
            except InvalidArgument as error:
                raise InvalidArgument(f"jobs[{index}]: {error.message}") from None
        results = await self.engine.submit(specs, actor=actor_of(context))
        # Each answer made in its place: built apart, each was copied into the list (2-5 µs a job).
        response = job_service_pb2.SubmitJobsResponse()
        add = response.jobs.add
        for job, duplicate in results:
            add(duplicate=duplicate).job.CopyFrom(job_to_proto(job))
        return response

    @grpc_errors
    async def GetJob(
        self, request: job_service_pb2.GetJobRequest, context: Context
    ) -> job_service_pb2.GetJobResponse:
        job = await self.engine.get_job(request.job_id)
        return job_service_pb2.GetJobResponse(job=job_to_proto(job.to_dict()))

    @grpc_errors
    async def ListJobs(
        self, request: job_service_pb2.ListJobsRequest, context: Context
    ) -> job_service_pb2.ListJobsResponse:
        query = JobQuery(
            statuses=_statuses(request.statuses),
            action=request.action,
            label=request.label,
            text=request.text,
            page_size=request.page_size,
            before_id=request.page_token,
            summary=request.summary,
        )
        jobs, next_token, sequence = await self.engine.list_jobs(query)
        return job_service_pb2.ListJobsResponse(
            jobs=[job_to_proto(job.to_dict(payloads=not request.summary)) for job in jobs],
            next_page_token=next_token,
            sequence=sequence,
        )

    @grpc_errors
    async def GetJobEvents(
        self, request: job_service_pb2.GetJobEventsRequest, context: Context
    ) -> job_service_pb2.GetJobEventsResponse:
        events = await self.engine.job_events(request.job_id)
        return job_service_pb2.GetJobEventsResponse(events=[event_to_proto(ev) for ev in events])

    @grpc_errors
    async def CancelJob(
        self, request: job_service_pb2.CancelJobRequest, context: Context
    ) -> job_service_pb2.CancelJobResponse:
        job = await self.engine.cancel(request.job_id, reason=request.reason, actor=actor_of(context))
        return job_service_pb2.CancelJobResponse(job=job_to_proto(job))

    @grpc_errors
    async def RetryJob(
        self, request: job_service_pb2.RetryJobRequest, context: Context
    ) -> job_service_pb2.RetryJobResponse:
        job = await self.engine.retry(
            request.job_id, from_step=request.from_step, reason=request.reason, actor=actor_of(context)
        )
        return job_service_pb2.RetryJobResponse(job=job_to_proto(job))

    @grpc_stream_errors
    async def WatchJobs(
        self, request: job_service_pb2.WatchJobsRequest, context: Context
    ) -> AsyncIterator[bytes]:
        """Yields ``WatchJobsResponse`` messages already encoded (see ``wire``): the server registers
        this method with a pass-through serializer."""
        job_ids = frozenset([await self.engine.resolve_job_id(job_id) for job_id in request.job_ids])
        workflows = request.workflow_events
        if not workflows and (request.run_ids or request.work_order_ids or request.exclude_job_events):
            raise InvalidArgument("run_ids, work_order_ids and exclude_job_events need workflow_events")
        run_ids = frozenset(
            [await self.engine.resolve_workflow_id(i, "workflow_runs", "run_id") for i in request.run_ids]
        )
        order_ids = frozenset(
            [
                await self.engine.resolve_workflow_id(i, "work_orders", "work_order_id")
                for i in request.work_order_ids
            ]
        )
        event_filter = EventFilter(
            statuses=frozenset(_statuses(request.statuses)),
            actions=frozenset(request.actions),
            job_ids=job_ids,
            workflow_events=workflows,
            run_ids=run_ids,
            work_order_ids=order_ids,
            exclude_job_events=request.exclude_job_events,
        )
        engine = self.engine
        peer = context.peer()
        release_slot = watch_slot()

        def cut() -> None:
            # Now, not when gRPC gets to resume us: that waits for a client that may never read again.
            release_slot()
            log.warning("watcher %s cut: it fell more than %d events behind", peer, subscription.max_pending)

        subscription = engine.subscribe(event_filter, peer=peer, on_cut=cut)
        try:
            #: live events up to here were sent by the replay (or asked to be skipped)
            skip_through = subscription.start_head
            if request.HasField("after_sequence"):
                cursor = request.after_sequence
                if cursor < 0:
                    raise InvalidArgument("after_sequence must not be negative")
                if cursor > engine.registry.sequence and not await engine.caught_up(cursor):
                    await context.abort(
                        grpc.StatusCode.OUT_OF_RANGE,
                        f"after_sequence {cursor} is beyond the newest event {engine.registry.sequence}",
                    )
                # A job read may be newer than what is committed: its events come live, and are skipped.
                skip_through = max(skip_through, cursor)
                # Replay from the store up to where the live subscription starts: no gap, no duplicate.
                async for payload, _reached in self._replay(event_filter, cursor, subscription.start_head):
                    yield payload + head_field(engine.bus.head)
            while not subscription.closed:
                batches = await subscription.next_batches(timeout=self.keepalive_seconds)
                if batches and batches[0].first_sequence <= skip_through:
                    events = [ev for batch in batches for ev in batch.events if ev.sequence > skip_through]
                    flows = [
                        ev for batch in batches for ev in batch.workflow_events if ev.sequence > skip_through
                    ]
                    payload = frame_events(events) + frame_workflow_events(flows)
                else:
                    payload = b"".join(frame_batch(batch) for batch in batches)
                    skip_through = 0
                yield payload + head_field(engine.bus.head)
                if batches and self.linger_seconds:
                    # Let the next commits gather: fewer, larger messages for a busy stream.
                    await asyncio.sleep(self.linger_seconds)
        finally:
            subscription.close()

    async def _replay(
        self, event_filter: EventFilter, cursor: int, up_to: int
    ) -> AsyncIterator[tuple[bytes, int]]:
        """The stored events after ``cursor`` up to ``up_to``, job and workflow events merged by
        sequence, framed a page at a time, each with the cursor it reached."""
        engine = self.engine
        page = self.replay_page
        job_ids = sorted(event_filter.job_ids)
        wants_jobs = not event_filter.exclude_job_events
        wants_workflows = event_filter.workflow_events
        while cursor < up_to:
            events = await engine.events_between(cursor, up_to, page, job_ids) if wants_jobs else []
            flows = (
                await engine.workflow_events_between(
                    cursor, up_to, page, sorted(event_filter.run_ids), sorted(event_filter.work_order_ids)
                )
                if wants_workflows
                else []
            )
            if not events and not flows:
                return
            # A full page may end before the other list's last event: go only as far as both reach.
            reach = up_to
            if len(events) == page:
                reach = min(reach, events[-1].sequence)
            if len(flows) == page:
                reach = min(reach, flows[-1].sequence)
            events = [ev for ev in events if ev.sequence <= reach and event_filter.matches(ev)]
            flows = [ev for ev in flows if ev.sequence <= reach]
            if events or flows:
                yield frame_events(events) + frame_workflow_events(flows), reach
            cursor = reach

    @grpc_errors
    async def GetStats(
        self, request: job_service_pb2.GetStatsRequest, context: Context
    ) -> job_service_pb2.GetStatsResponse:
        stats = self.engine.stats()
        return job_service_pb2.GetStatsResponse(
            statuses=[
                job_service_pb2.StatusCount(status=wire_enum(status), count=count)
                for status, count in sorted(stats.statuses.items())
            ],
            actions=[action_stats_to_proto(view) for view in stats.actions],
            running=stats.running,
            queued=stats.queued,
            throughput=stats.throughput,
            actions_without_workers=stats.actions_without_workers,
            head_sequence=stats.head_sequence,
            workers=stats.workers,
            watchers=stats.watchers,
        )

    @grpc_errors
    async def GetJobLogs(
        self, request: job_service_pb2.GetJobLogsRequest, context: Context
    ) -> job_service_pb2.GetJobLogsResponse:
        lines = await self.engine.job_logs(request.job_id, request.after_index, request.limit)
        return job_service_pb2.GetJobLogsResponse(lines=[log_line_to_proto(line) for line in lines])

    @grpc_errors
    async def PauseAction(
        self, request: job_service_pb2.PauseActionRequest, context: Context
    ) -> job_service_pb2.PauseActionResponse:
        return job_service_pb2.PauseActionResponse(config=await self._set_paused(request, True, context))

    @grpc_errors
    async def ResumeAction(
        self, request: job_service_pb2.ResumeActionRequest, context: Context
    ) -> job_service_pb2.ResumeActionResponse:
        return job_service_pb2.ResumeActionResponse(config=await self._set_paused(request, False, context))

    async def _set_paused(
        self,
        request: job_service_pb2.PauseActionRequest | job_service_pb2.ResumeActionRequest,
        paused: bool,
        context: Context,
    ) -> job_pb2.ActionConfig:
        """PauseAction and ResumeAction: the two requests ask the same of the engine but ``paused``."""
        config = await self.engine.set_paused(
            request.action, paused, actor=actor_of(context), create_if_unknown=request.create_if_unknown
        )
        return action_config_to_proto(config)

    @grpc_errors
    async def GetActionConfig(
        self, request: job_service_pb2.GetActionConfigRequest, context: Context
    ) -> job_service_pb2.GetActionConfigResponse:
        check_action(request.action)
        return job_service_pb2.GetActionConfigResponse(
            config=action_config_to_proto(self.engine.action_config(request.action))
        )

    @grpc_errors
    async def SetActionConfig(
        self, request: job_service_pb2.SetActionConfigRequest, context: Context
    ) -> job_service_pb2.SetActionConfigResponse:
        config = await self.engine.set_action_config(
            action_config_from_proto(request.config), actor=actor_of(context)
        )
        return job_service_pb2.SetActionConfigResponse(config=action_config_to_proto(config))

    @grpc_errors
    async def ListActions(
        self, request: job_service_pb2.ListActionsRequest, context: Context
    ) -> job_service_pb2.ListActionsResponse:
        stats = self.engine.stats()
        configs = [self.engine.action_config(view.action) for view in stats.actions]
        return job_service_pb2.ListActionsResponse(
            configs=[action_config_to_proto(c) for c in configs],
            stats=[action_stats_to_proto(view) for view in stats.actions],
        )
