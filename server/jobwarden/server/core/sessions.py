"""Worker sessions: who is connected, what each serves, what each holds, and what to send it.

A session's outbox carries domain messages; the API layer turns them into ``ConnectResponse``s,
several at once when they are ready together.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from jobwarden.contract import ExecutionMode

from .model import Deadlines, Job

__all__ = [
    "AssignmentOut",
    "CancelOut",
    "ExecutorSpec",
    "OutMessage",
    "RefusalOut",
    "RegisteredOut",
    "ResultAckOut",
    "WorkerSession",
]


@dataclass(slots=True, frozen=True)
class ExecutorSpec:
    action: str
    supports_resume: bool = False
    #: most jobs of this action on this worker at once; 0 is the worker's capacity
    max_concurrency: int = 0


@dataclass(slots=True)
class RegisteredOut:
    worker_id: str
    heartbeat_interval: float
    resumed: list[tuple[str, int]]
    rejected: list[tuple[str, int]]
    session_token: str = ""


@dataclass(slots=True)
class AssignmentOut:
    #: the job as it was at assignment, with its input
    job: dict[str, Any]
    attempt: int
    mode: ExecutionMode
    deadlines: Deadlines


@dataclass(slots=True)
class ResultAckOut:
    job_id: str
    attempt: int
    accepted: bool
    reason: str = ""
    #: why a refused result was refused, as an error code (FAILED_PRECONDITION, INVALID_ARGUMENT, ...)
    code: str = ""


@dataclass(slots=True)
class CancelOut:
    job_id: str
    attempt: int
    reason: str


@dataclass(slots=True)
class RefusalOut:
    job_id: str
    attempt: int
    code: str
    message: str
    refused: str


OutMessage = RegisteredOut | AssignmentOut | ResultAckOut | CancelOut | RefusalOut


@dataclass(slots=True, eq=False)
class WorkerSession:
    id: str
    name: str
    executors: dict[str, ExecutorSpec]
    capacity: int
    labels: dict[str, str]
    connected_at: float
    last_seen: float
    #: job id -> attempt, for every job this worker holds
    jobs: dict[str, int] = field(default_factory=dict)
    #: action -> jobs of it held here
    per_action: dict[str, int] = field(default_factory=dict)
    draining: bool = False
    closed: bool = False
    outbox: asyncio.Queue[OutMessage | None] = field(default_factory=asyncio.Queue)
    info: dict[str, Any] = field(default_factory=dict)
    #: a secret only this session's worker knows: a new stream presenting it may replace this session
    token: str = field(default="", repr=False)

    @property
    def free(self) -> int:
        return 0 if self.draining or self.closed else self.capacity - len(self.jobs)

    def can_take(self, action: str) -> bool:
        if self.free <= 0:
            return False
        spec = self.executors.get(action)
        if spec is None:
            return False
        limit = spec.max_concurrency or self.capacity
        return self.per_action.get(action, 0) < limit

    def free_for(self, action: str) -> int:
        spec = self.executors.get(action)
        if spec is None or self.draining or self.closed:
            return 0
        limit = spec.max_concurrency or self.capacity
        return max(0, min(self.free, limit - self.per_action.get(action, 0)))

    def hold(self, job: Job) -> None:
        self.jobs[job.id] = job.attempt
        self.per_action[job.action] = self.per_action.get(job.action, 0) + 1

    def drop(self, job: Job) -> None:
        if self.jobs.pop(job.id, None) is not None:
            self.per_action[job.action] -= 1

    def send(self, message: OutMessage) -> None:
        if not self.closed:
            self.outbox.put_nowait(message)

    def close(self) -> None:
        """End the session: the API layer's stream sees None and finishes."""
        if not self.closed:
            self.closed = True
            self.outbox.put_nowait(None)
