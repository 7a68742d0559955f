"""The tables of the durable store (SQLModel), as of ``migrations.SCHEMA_VERSION``.

A change here is a new schema version: add a step to ``migrations.MIGRATIONS`` that brings a database
of the previous version to this shape (see docs/storage.md).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, Table, Text
from sqlmodel import Field, SQLModel

__all__ = [
    "ALL_TABLES",
    "VERSION_1_TABLES",
    "WORKFLOW_TABLES",
    "configs_t",
    "events_t",
    "jobs_t",
    "locks_t",
    "logs_t",
    "meta_t",
    "work_orders_t",
    "workers_t",
    "workflow_definitions_t",
    "workflow_events_t",
    "workflow_runs_t",
]


class JobTable(SQLModel, table=True):
    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_status_id", "status", "id"),
        Index("ix_jobs_action_id", "action", "id"),
    )
    id: str = Field(primary_key=True, max_length=36)
    action: str = Field(max_length=200)
    status: int
    priority: int = 0
    created_at: float
    updated_at: float
    idempotency_key: str | None = Field(default=None, unique=True, max_length=1024)
    correlation_id: str = Field(default="", max_length=1024)
    #: "\nkey=value\n..." so a label filter is one LIKE
    labels: str = Field(default="", sa_type=Text)
    #: lower-case id, action, message, correlation id and error message, for the text filter
    search: str = Field(default="", sa_type=Text)
    #: the job without input and result, as JSON
    doc: str = Field(sa_type=Text)
    input: str = Field(sa_type=Text)
    result: str | None = Field(default=None, sa_type=Text)


class EventTable(SQLModel, table=True):
    __tablename__ = "events"
    sequence: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    job_id: str = Field(index=True, max_length=36)
    type: int
    time: float
    previous_status: int | None = None
    actor: str = Field(default="engine", max_length=1024)
    reason: str = Field(default="", sa_type=Text)
    snapshot: str = Field(sa_type=Text)


class LockTableRow(SQLModel, table=True):
    __tablename__ = "locks"
    resource: str = Field(primary_key=True, max_length=512)
    holder: str = Field(primary_key=True, max_length=1024)
    mode: int
    job_id: str | None = Field(default=None, max_length=36)
    since: float
    expires_at: float | None = None


class JobLogTable(SQLModel, table=True):
    __tablename__ = "job_logs"
    job_id: str = Field(primary_key=True, max_length=36)
    idx: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    attempt: int
    time: float
    level: str = Field(max_length=32)
    message: str = Field(sa_type=Text)


class ActionConfigTable(SQLModel, table=True):
    __tablename__ = "action_configs"
    action: str = Field(primary_key=True, max_length=200)
    doc: str = Field(sa_type=Text)


class WorkerTable(SQLModel, table=True):
    __tablename__ = "workers"
    id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=1024)
    doc: str = Field(sa_type=Text)
    connected_at: float
    last_seen_at: float
    connected: bool = True


class MetaTable(SQLModel, table=True):
    __tablename__ = "meta"
    key: str = Field(primary_key=True, max_length=64)
    value: str = Field(sa_type=Text)


class WorkflowDefinitionTable(SQLModel, table=True):
    __tablename__ = "workflow_definitions"
    name: str = Field(primary_key=True, max_length=128)
    version: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    digest: str = Field(max_length=64)
    created_at: float
    #: the definition as JSON
    doc: str = Field(sa_type=Text)


class WorkOrderTable(SQLModel, table=True):
    __tablename__ = "work_orders"
    __table_args__ = (Index("ix_work_orders_workflow_id", "workflow", "id"),)
    id: str = Field(primary_key=True, max_length=36)
    workflow: str = Field(max_length=128)
    status: int
    created_at: float
    updated_at: float
    idempotency_key: str | None = Field(default=None, unique=True, max_length=1024)
    correlation_id: str = Field(default="", max_length=1024)
    #: the work order without its input, as JSON
    doc: str = Field(sa_type=Text)
    input: str = Field(sa_type=Text)


class WorkflowRunTable(SQLModel, table=True):
    __tablename__ = "workflow_runs"
    __table_args__ = (Index("ix_workflow_runs_status_id", "status", "id"),)
    id: str = Field(primary_key=True, max_length=36)
    work_order_id: str = Field(index=True, max_length=36)
    status: int
    created_at: float
    #: the whole run (steps, edges, results) as JSON
    doc: str = Field(sa_type=Text)


class WorkflowEventTable(SQLModel, table=True):
    __tablename__ = "workflow_events"
    #: numbered from the same sequence as the job events
    sequence: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    run_id: str = Field(index=True, max_length=36)
    work_order_id: str = Field(index=True, max_length=36)
    type: int
    time: float
    doc: str = Field(sa_type=Text)


jobs_t = JobTable.__table__  # type: ignore[attr-defined]
events_t = EventTable.__table__  # type: ignore[attr-defined]
locks_t = LockTableRow.__table__  # type: ignore[attr-defined]
logs_t = JobLogTable.__table__  # type: ignore[attr-defined]
configs_t = ActionConfigTable.__table__  # type: ignore[attr-defined]
workers_t = WorkerTable.__table__  # type: ignore[attr-defined]
meta_t = MetaTable.__table__  # type: ignore[attr-defined]

workflow_definitions_t = WorkflowDefinitionTable.__table__  # type: ignore[attr-defined]
work_orders_t = WorkOrderTable.__table__  # type: ignore[attr-defined]
workflow_runs_t = WorkflowRunTable.__table__  # type: ignore[attr-defined]
workflow_events_t = WorkflowEventTable.__table__  # type: ignore[attr-defined]

#: the tables of schema version 1
VERSION_1_TABLES: tuple[Table, ...] = (jobs_t, events_t, locks_t, logs_t, configs_t, workers_t, meta_t)
#: added by schema version 2: workflows
WORKFLOW_TABLES: tuple[Table, ...] = (
    workflow_definitions_t,
    work_orders_t,
    workflow_runs_t,
    workflow_events_t,
)
ALL_TABLES: tuple[Table, ...] = (*VERSION_1_TABLES, *WORKFLOW_TABLES)
