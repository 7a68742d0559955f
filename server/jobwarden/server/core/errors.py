"""Every error the engine reports, in one tree.

    JobwardenError                 base; .code names the gRPC status the API layer maps it to
    ├── InvalidArgument            bad input: malformed id, unknown lock mode, oversized input, ...
    ├── NotFound                   an unknown job, action config or lock holder
    │   └── JobNotFound
    ├── InvalidTransition          the state machine refuses the change (FAILED_PRECONDITION)
    ├── FailedPrecondition         any other refusal that depends on the current state
    │   ├── StaleAttempt           a worker message for an attempt that is no longer live (fencing)
    │   └── LockNotHeld            releasing a lock one does not hold
    ├── AlreadyExists              a worker id whose session is alive, claimed without its token
    ├── ResourceExhausted          a limit was reached (a slow watcher, watchers per client, ...)
    ├── StoreUnavailable           the database did not take a write in time (UNAVAILABLE);
    │                              nothing was acknowledged
    ├── EngineStopping             the engine is shutting down (UNAVAILABLE)
    └── NotLeader                  a standby asked to change state (UNAVAILABLE; names the leader)
        └── Fenced                 a newer leader took the epoch, or the lease ran out: nothing of
                                   this engine's commits any more

Each carries the ``job_id`` it is about, when there is one. The API layer maps ``code`` to a
gRPC status in one place (``jobwarden.server.api.errors``).
"""

from __future__ import annotations

__all__ = [
    "AlreadyExists",
    "EngineStopping",
    "FailedPrecondition",
    "Fenced",
    "InvalidArgument",
    "InvalidTransition",
    "JobNotFound",
    "JobwardenError",
    "LockNotHeld",
    "NotFound",
    "NotLeader",
    "ResourceExhausted",
    "StaleAttempt",
    "StoreUnavailable",
]


class JobwardenError(Exception):
    """Base of every error the engine reports to a caller."""

    code = "INTERNAL"

    def __init__(self, message: str, *, job_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.job_id = job_id


class InvalidArgument(JobwardenError):
    code = "INVALID_ARGUMENT"


class NotFound(JobwardenError):
    code = "NOT_FOUND"


class JobNotFound(NotFound):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id} not found", job_id=job_id)


class FailedPrecondition(JobwardenError):
    code = "FAILED_PRECONDITION"


class InvalidTransition(FailedPrecondition):
    """The state machine does not allow this change; nothing was changed."""


class StaleAttempt(FailedPrecondition):
    """A message for an attempt that is no longer the live one (or not this worker's)."""


class LockNotHeld(FailedPrecondition):
    pass


class AlreadyExists(JobwardenError):
    code = "ALREADY_EXISTS"


class ResourceExhausted(JobwardenError):
    code = "RESOURCE_EXHAUSTED"


class StoreUnavailable(JobwardenError):
    code = "UNAVAILABLE"


class EngineStopping(JobwardenError):
    code = "UNAVAILABLE"


class NotLeader(JobwardenError):
    """This engine is a standby (or stopped leading): the call must go to ``leader_address``."""

    code = "UNAVAILABLE"

    def __init__(self, message: str, *, leader_address: str = "") -> None:
        super().__init__(message)
        self.leader_address = leader_address


class Fenced(NotLeader):
    """The leader's epoch is no longer the stored one (or its lease ran out unrenewed)."""
