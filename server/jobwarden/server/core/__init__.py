"""The domain core of the jobwarden engine: no gRPC, no Textual, only jobs, locks, timers and the store.

The API layer (``jobwarden.server.api``) translates the wire to these objects and back, and imports
the core only from here: what it needs is exported on purpose. The engine is made of parts
(``JobFlow``, ``Dispatcher``, ``WorkerProtocol``, ``DeadlineHandlers``, ``ExternalLocks``, ``Jobs``)
joined by the ``Engine`` façade; docs/architecture.md draws them.
"""

from .configs import ActionConfigs
from .deadlines import DeadlineHandlers
from .dispatch import Dispatcher
from .engine import (
    ActionStatsView,
    Engine,
    EngineConfig,
    JobResultIn,
    JobUpdateIn,
    Registration,
    StatsView,
)
from .errors import (
    AlreadyExists,
    EngineStopping,
    FailedPrecondition,
    InvalidArgument,
    InvalidTransition,
    JobNotFound,
    JobwardenError,
    LockNotHeld,
    NotFound,
    ResourceExhausted,
    StaleAttempt,
    StoreUnavailable,
)
from .events import EventBatch, EventBus, EventFilter, Overflowed, Subscription
from .external_locks import ExternalLocks
from .flow import Dispatch, JobFlow
from .jobs import Jobs, JobSnapshot
from .locks import LockHolding, LockTable, ResourceView
from .memory_store import MemoryStore
from .migrations import SCHEMA_VERSION, SchemaVersionError
from .model import (
    ActionConfig,
    Attempt,
    Checkpoint,
    CompletedStep,
    Deadlines,
    Event,
    Job,
    JobError,
    LockRequest,
    LogLine,
    RetryPolicy,
    RunRequest,
    StartTimeout,
    Timeouts,
    WorkflowRunRequest,
)
from .registry import Registry
from .sessions import (
    AssignmentOut,
    CancelOut,
    ExecutorSpec,
    OutMessage,
    RefusalOut,
    RegisteredOut,
    ResultAckOut,
    WorkerSession,
)
from .store import JobQuery, SqlStore, Store
from .store_api import JobStore, LockRow, WorkOrderQuery, WriteSet
from .timers import TimerHandler, TimerKind, Timers
from .validation import SubmitSpec, check_action, check_lock_requests
from .worker_protocol import WorkerProtocol
from .workflow_runner import StartRequest, WorkflowRunner, WorkflowTimer
from .workflows.definitions import (
    ActionStepDef,
    DelayStepDef,
    EdgeDef,
    StepDef,
    SubWorkflowStepDef,
    WorkflowDef,
)
from .workflows.runs import EdgeRun, StepRun, WorkflowError, WorkflowEvent, WorkflowRun, WorkOrder
from .writer import CommitReport, Writer

__all__ = [
    "SCHEMA_VERSION",
    "ActionConfig",
    "ActionConfigs",
    "ActionStatsView",
    "ActionStepDef",
    "AlreadyExists",
    "AssignmentOut",
    "Attempt",
    "CancelOut",
    "Checkpoint",
    "CommitReport",
    "CompletedStep",
    "DeadlineHandlers",
    "Deadlines",
    "DelayStepDef",
    "Dispatch",
    "Dispatcher",
    "EdgeDef",
    "EdgeRun",
    "Engine",
    "EngineConfig",
    "EngineStopping",
    "Event",
    "EventBatch",
    "EventBus",
    "EventFilter",
    "ExecutorSpec",
    "ExternalLocks",
    "FailedPrecondition",
    "InvalidArgument",
    "InvalidTransition",
    "Job",
    "JobError",
    "JobFlow",
    "JobNotFound",
    "JobQuery",
    "JobResultIn",
    "JobSnapshot",
    "JobStore",
    "JobUpdateIn",
    "Jobs",
    "JobwardenError",
    "LockHolding",
    "LockNotHeld",
    "LockRequest",
    "LockRow",
    "LockTable",
    "LogLine",
    "MemoryStore",
    "NotFound",
    "OutMessage",
    "Overflowed",
    "RefusalOut",
    "RegisteredOut",
    "Registration",
    "Registry",
    "ResourceExhausted",
    "ResourceView",
    "ResultAckOut",
    "RetryPolicy",
    "RunRequest",
    "SchemaVersionError",
    "SqlStore",
    "StaleAttempt",
    "StartRequest",
    "StartTimeout",
    "StatsView",
    "StepDef",
    "StepRun",
    "Store",
    "StoreUnavailable",
    "SubWorkflowStepDef",
    "SubmitSpec",
    "Subscription",
    "Timeouts",
    "TimerHandler",
    "TimerKind",
    "Timers",
    "WorkOrder",
    "WorkOrderQuery",
    "WorkerProtocol",
    "WorkerSession",
    "WorkflowDef",
    "WorkflowError",
    "WorkflowEvent",
    "WorkflowRun",
    "WorkflowRunRequest",
    "WorkflowRunner",
    "WorkflowTimer",
    "WriteSet",
    "Writer",
    "check_action",
    "check_lock_requests",
]
