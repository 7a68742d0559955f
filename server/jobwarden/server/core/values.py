"""Value types the engine takes and gives: its configuration, worker messages in, stats out."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

from jobwarden.contract import (
    ErrorKind,
    JobStatus,
)

from .model import (
    ActionConfig,
    JobError,
)
from .sessions import (
    ExecutorSpec,
)

__all__ = [
    "WORKER_ERROR_KINDS",
    "ActionStatsView",
    "EngineConfig",
    "JobResultIn",
    "JobUpdateIn",
    "Registration",
    "StatsView",
    "sqlite_path",
]

log = logging.getLogger("jobwarden.engine")


def sqlite_path(url: str) -> str | None:
    """The file a ``sqlite:///...`` URL names; None for an in-memory database."""
    if not url.startswith("sqlite"):
        return None
    _, _, rest = url.partition(":///")
    path = rest.split("?", 1)[0]
    if not path or path == ":memory:":
        return None
    return path


@dataclass(slots=True)
class EngineConfig:
    db_url: str = "sqlite:///jobwarden.db"
    #: how often workers must send a heartbeat; a session silent for ``session_timeout_intervals`` of
    #: these is dead
    heartbeat_interval: float = 5.0
    session_timeout_intervals: float = 3.0
    #: the second deadline when neither the job nor its action sets one
    default_takeover_timeout: float = 60.0
    #: how long a running job may take to confirm a cancel before it is CANCELLED anyway
    cancel_grace: float = 30.0
    #: events a watcher may fall behind before its stream is cut
    watch_max_pending: int = 50_000
    finished_cache_size: int = 10_000
    #: how long a caller waits for a commit before it is told the store is unavailable
    commit_timeout: float = 10.0
    #: action configurations from the config file; they replace stored ones at start
    actions: list[ActionConfig] = field(default_factory=list)
    #: several engines on one PostgreSQL (docs/high-availability.md): this engine's id in the
    #: ``engines`` table ('' makes one: host-pid-random)
    engine_id: str = ""
    #: the address clients reach this engine at, written in the lease ('' uses the listen address)
    advertise: str = ""
    #: how long a leader's lease lasts; a standby takes it this long after the leader's last renewal
    lease_duration: float = 2.0
    #: how often the leader renews its lease (well inside ``lease_duration``)
    lease_renew_interval: float = 0.5
    #: the leader stops acknowledging this long before its lease would end without a renewal
    lease_margin: float = 0.5
    #: how often a standby looks at the lease (and, without notifications, at new events)
    standby_poll_interval: float = 0.25

    @property
    def shown_db_url(self) -> str:
        """``db_url`` without its credentials, for logs and messages."""
        scheme, sep, rest = self.db_url.partition("://")
        return f"{scheme}://***@{rest.split('@', 1)[1]}" if sep and "@" in rest else self.db_url

    def check_store(self) -> str:
        """'' when ``db_url`` names a store jobwarden has (``postgres://`` is taken as
        ``postgresql://``, as many hosting services write it), else what is wrong."""
        scheme, sep, rest = self.db_url.partition("://")
        if scheme == "postgres" and sep:
            self.db_url = f"postgresql://{rest}"
            return ""
        if sep and scheme.split("+", 1)[0] == "postgresql":
            return ""
        if sep and scheme.split("+", 1)[0] == "sqlite":
            path = sqlite_path(self.db_url)
            if path is None:
                return (
                    "an in-memory SQLite database keeps nothing (and each connection would have its "
                    "own): give a file, sqlite:///FILE"
                )
            folder = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(folder):
                return f"the SQLite database {path} cannot be made: its folder {folder} does not exist"
            return ""
        what = f"a {scheme!r} URL" if sep else f"{self.db_url!r}, which is not a URL"
        return (
            f"the database must be SQLite or PostgreSQL, not {what}: "
            "use sqlite:///FILE or postgresql://USER@HOST:PORT/DATABASE"
        )

    def check_lease(self) -> str:
        """'' when the lease settings hold together, else what is wrong."""
        if self.lease_duration <= 0 or self.lease_renew_interval <= 0 or self.standby_poll_interval <= 0:
            return "lease_duration, lease_renew_interval and standby_poll_interval must be positive"
        if self.lease_margin < 0:
            return "lease_margin must not be negative"
        if self.lease_renew_interval + self.lease_margin >= self.lease_duration:
            return (
                f"lease_renew_interval ({self.lease_renew_interval:g}s) plus lease_margin "
                f"({self.lease_margin:g}s) must be less than lease_duration ({self.lease_duration:g}s): "
                "the leader must renew before it has to stop acting"
            )
        return ""


@dataclass(slots=True)
class Registration:
    worker_name: str
    executors: list[ExecutorSpec]
    capacity: int
    labels: dict[str, str] = field(default_factory=dict)
    running_jobs: list[tuple[str, int]] = field(default_factory=list)
    worker_id: str = ""
    peer: str = ""
    #: the secret of the live session of ``worker_id`` it replaces (a reconnect), if any
    session_token: str = ""


@dataclass(slots=True)
class JobUpdateIn:
    job_id: str
    attempt: int
    progress: int | None = None
    message: str | None = None
    step: str | None = None
    #: (name, data) of a step that finished
    completed_step: tuple[str, dict[str, Any]] | None = None
    job_variables: dict[str, str] = field(default_factory=dict)
    workflow_variables: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class JobResultIn:
    job_id: str
    attempt: int
    status: int
    result: dict[str, Any] | None = None
    job_variables: dict[str, str] = field(default_factory=dict)
    workflow_variables: dict[str, str] = field(default_factory=dict)
    error: JobError | None = None
    #: raw error kind number from the wire, checked here
    error_kind: int = 0


@dataclass(slots=True)
class ActionStatsView:
    action: str
    counts: dict[JobStatus, int]
    paused: bool
    workers: int
    free_capacity: int
    max_running: int


@dataclass(slots=True)
class StatsView:
    statuses: dict[JobStatus, int]
    actions: list[ActionStatsView]
    running: int
    queued: int
    throughput: float
    actions_without_workers: list[str]
    head_sequence: int
    workers: int
    watchers: int


WORKER_ERROR_KINDS = frozenset({ErrorKind.JOB_ERROR, ErrorKind.CRASHED})
