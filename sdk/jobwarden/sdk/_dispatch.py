"""The engine's messages on a worker's stream, each turned into what the worker does about it."""

from __future__ import annotations

import logging

import grpc
from jobwarden.contract import ErrorKind, ExecutionMode
from jobwarden.sdk._context import Checkpoint, JobContext
from jobwarden.sdk._heartbeats import Heartbeats
from jobwarden.sdk._hosting import Hosted
from jobwarden.sdk._ledger import Job, Ledger
from jobwarden.sdk._results import failure
from jobwarden.sdk._runner import Runner
from jobwarden.v1 import executor_service_pb2 as pb

__all__ = ["Dispatcher"]

logger = logging.getLogger("jobwarden.worker")

#: the checkpoint of a job that has none (shared: a Checkpoint is immutable)
_NO_CHECKPOINT = Checkpoint()
#: refusal codes that mean the engine no longer gives this attempt to the worker
_NOT_HELD_CODES = frozenset(
    {grpc.StatusCode.NOT_FOUND.value[0], grpc.StatusCode.FAILED_PRECONDITION.value[0]}
)


class Dispatcher:
    """Handles ``Registered`` and every later ``ConnectResponse`` of a session."""

    def __init__(
        self,
        ledger: Ledger,
        runner: Runner,
        hosted: dict[str, Hosted],
        heartbeats: Heartbeats,
        *,
        worker_name: str,
    ) -> None:
        self.ledger = ledger
        self.runner = runner
        self.hosted = hosted
        self.heartbeats = heartbeats
        self.worker_name = worker_name

    def on_registered(self, registered: pb.Registered) -> None:
        """A new session: drop what the engine did not re-attach, resend every unacknowledged result."""
        ledger = self.ledger
        if registered.HasField("heartbeat_interval"):
            interval = registered.heartbeat_interval.ToTimedelta().total_seconds()
            if interval > 0:
                self.heartbeats.interval = interval
        for rejected in registered.rejected_jobs:
            key = (rejected.job_id, rejected.attempt)
            ledger.drop_result(key)
            job = ledger.running.get(rejected.job_id)
            if job is not None and job.key == key:
                self.runner.detach(job, "the engine did not re-attach it after a reconnect")
        if registered.resumed_jobs:
            logger.info("worker %s re-attached %d job(s)", self.worker_name, len(registered.resumed_jobs))
        # Whatever was queued before the reconnect may not have left: send every unacknowledged result.
        ledger.outbox.clear_results()
        for result in ledger.unacked.values():
            ledger.outbox.result(result)
        if ledger.draining:
            ledger.outbox.set_draining()
        ledger.outbox.heartbeat()
        ledger.kick()
        ledger.check_idle()

    def on_message(self, message: pb.ConnectResponse) -> None:
        kind = message.WhichOneof("message")
        if kind == "assignment":
            self.on_assignment(message.assignment)
        elif kind == "assignments":
            for assignment in message.assignments.assignments:
                self.on_assignment(assignment)
        elif kind == "result_ack":
            self.on_result_ack(message.result_ack)
        elif kind == "result_acks":
            for ack in message.result_acks.acks:
                self.on_result_ack(ack)
        elif kind == "cancel_request":
            self.on_cancel_request(message.cancel_request)
        elif kind == "refusal":
            self.on_refusal(message.refusal)
        elif kind == "registered":
            logger.warning("worker %s: unexpected second Registered; ignored", self.worker_name)

    def on_assignment(self, assignment: pb.Assignment) -> None:
        ledger = self.ledger
        job_id = assignment.job_id or assignment.job.id
        key = (job_id, assignment.attempt)
        if ledger.draining:
            ledger.outbox.release([key], "the worker is draining")
            ledger.kick()
            return
        current = ledger.running.get(job_id)
        if current is not None:
            if current.key == key:
                return  # already running here (re-attached)
            self.runner.detach(current, f"superseded by attempt {assignment.attempt}")
        hosted = self.hosted.get(assignment.job.action)
        mode = ExecutionMode(assignment.mode or ExecutionMode.EXECUTE)
        if hosted is None:
            ledger.send_result(
                failure(
                    key,
                    ErrorKind.JOB_ERROR,
                    f"worker {self.worker_name} has no executor for action {assignment.job.action!r} "
                    f"(it serves {', '.join(sorted(self.hosted))})",
                )
            )
            return
        method, is_async = hosted.method(mode)
        proto_checkpoint = (
            assignment.checkpoint if assignment.HasField("checkpoint") else assignment.job.checkpoint
        )
        checkpoint = (
            Checkpoint.from_proto(proto_checkpoint)
            if proto_checkpoint.step or proto_checkpoint.completed_steps
            else _NO_CHECKPOINT
        )
        ctx = JobContext(
            job=assignment.job,
            attempt=assignment.attempt,
            mode=mode,
            checkpoint=checkpoint,
            reporter=ledger,
            loop=self.runner.loop,
            sync=not is_async,
        )
        job = Job(key=key, hosted=hosted, ctx=ctx, is_async=is_async)
        if assignment.job.timeouts.HasField("heartbeat"):
            self.heartbeats.watch_job(job, assignment.job.timeouts.heartbeat.ToTimedelta().total_seconds())
        ledger.add(job)
        self.runner.start(job, method)

    def on_result_ack(self, ack: pb.ResultAck) -> None:
        ledger = self.ledger
        key = (ack.job_id, ack.attempt)
        fallback = key in ledger.fallbacks
        ledger.fallbacks.discard(key)
        if ledger.unacked.pop(key, None) is not None and not ack.accepted:
            logger.warning(
                "worker %s: the result of job %s was refused: %s", self.worker_name, ack.job_id, ack.reason
            )
            if ack.code == grpc.StatusCode.INVALID_ARGUMENT.value[0] and not fallback:
                # The engine changed nothing and the job is still ours: a failure that says why beats a
                # job left running until its heartbeat deadline.
                ledger.fallbacks.add(key)
                message = f"the engine refused the result: {ack.reason}"
                ledger.send_result(failure(key, ErrorKind.CRASHED, message, retryable=False), counted=False)
        ledger.check_idle()

    def on_cancel_request(self, request: pb.CancelRequest) -> None:
        job = self.ledger.running.get(request.job_id)
        if job is None or job.key[1] != request.attempt:
            logger.info(
                "worker %s: cancel of job %s, which is not running here", self.worker_name, request.job_id
            )
            return
        self.runner.cancel(job, request.reason or "cancelled")

    def on_refusal(self, refusal: pb.Refusal) -> None:
        logger.warning(
            "worker %s: the engine refused %s for job %s (attempt %d): %s",
            self.worker_name,
            refusal.refused or "a message",
            refusal.job_id,
            refusal.attempt,
            refusal.message,
        )
        key = (refusal.job_id, refusal.attempt)
        if refusal.refused in ("job_result", "job_results"):
            self.ledger.drop_result(key)
            self.ledger.check_idle()
        job = self.ledger.running.get(refusal.job_id)
        if (
            job is not None
            and job.key == key
            and refusal.code in _NOT_HELD_CODES
            and refusal.refused in ("job_update", "job_updates", "heartbeat")
        ):
            # The engine no longer gives this attempt to us (taken over, cancelled): stop it quietly.
            self.runner.detach(job, f"the engine no longer gives it to this worker: {refusal.message}")
