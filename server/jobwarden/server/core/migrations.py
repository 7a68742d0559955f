"""The schema version of a SQL store, and the steps that bring an older database up to it.

The version is the ``schema_version`` row of the ``meta`` table. On start (``SqlStore.create_schema``):

- an empty database gets today's tables and is stamped ``SCHEMA_VERSION``;
- a database stamped with a newer version is refused (``SchemaVersionError``) and left untouched: this
  jobwarden would misread it;
- an older one (or one with jobwarden's tables and no version: 0) goes through ``MIGRATIONS`` in order,
  each step in its own transaction together with the version it reaches, so a crash between steps
  leaves a database of a known version that the next start carries on from.

Every decision is taken under a lock held for the whole transaction (``BEGIN IMMEDIATE`` on SQLite,
a transaction-scoped advisory lock on PostgreSQL), with the version read again inside it: engines
starting at once on one database create or migrate it once, the others find it done.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import delete, insert, inspect, select, text
from sqlalchemy.engine import Connection, Engine
from sqlmodel import SQLModel

from .errors import FailedPrecondition
from .tables import ALL_TABLES, VERSION_1_TABLES, WORKFLOW_TABLES, meta_t

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "Migration", "SchemaVersionError", "stored_version", "upgrade"]

log = logging.getLogger("jobwarden.store")

#: the version of the schema ``tables.py`` defines
SCHEMA_VERSION = 2

VERSION_KEY = "schema_version"

#: any fixed number: PostgreSQL advisory locks are named by a bigint (this one spells "jobwarden")
_ADVISORY_LOCK_KEY = 0x6A6F627761726465


class SchemaVersionError(FailedPrecondition):
    """The database's schema version is one this jobwarden cannot use; nothing was changed."""


@dataclass(frozen=True, slots=True)
class Migration:
    #: the version a database has once this step ran
    version: int
    description: str
    apply: Callable[[Connection], None]


def _create_missing_version_1_tables(conn: Connection) -> None:
    # The version-1 tables are unchanged since. Once a later version changes one, this step must keep
    # creating the version-1 shape (a frozen copy of the definition), and the later step alters it.
    SQLModel.metadata.create_all(conn, tables=list(VERSION_1_TABLES), checkfirst=True)


def _create_workflow_tables(conn: Connection) -> None:
    SQLModel.metadata.create_all(conn, tables=list(WORKFLOW_TABLES), checkfirst=True)


#: in order: MIGRATIONS[n] takes a database of version n to version n + 1
MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "stamp a database made by a jobwarden that wrote no version (creating any missing table)",
        _create_missing_version_1_tables,
    ),
    Migration(
        2,
        "add the workflow tables (definitions, work orders, runs, workflow events)",
        _create_workflow_tables,
    ),
)


def upgrade(engine: Engine) -> None:
    """Make the database at ``engine`` one of ``SCHEMA_VERSION`` (see the module's docstring)."""
    while True:
        with _locked_transaction(engine) as conn:
            version = stored_version(conn)
            if version is None:
                SQLModel.metadata.create_all(conn, tables=list(ALL_TABLES), checkfirst=True)
                _stamp(conn, SCHEMA_VERSION)
                conn.commit()
                return
            if version > SCHEMA_VERSION:
                raise SchemaVersionError(
                    f"the database at {_shown(engine)} has schema version {version}; this jobwarden "
                    f"knows up to {SCHEMA_VERSION}: upgrade jobwarden"
                )
            if version == SCHEMA_VERSION:
                return
            step = MIGRATIONS[version]
            step.apply(conn)
            _stamp(conn, step.version)
            conn.commit()
            log.info(
                "database at %s migrated to schema version %d: %s",
                _shown(engine),
                step.version,
                step.description,
            )


def stored_version(conn: Connection) -> int | None:
    """The database's schema version; 0 for jobwarden's tables without one; None for none of them."""
    inspector = inspect(conn)
    if inspector.has_table(meta_t.name):
        value = conn.execute(select(meta_t.c.value).where(meta_t.c.key == VERSION_KEY)).scalar()
        if value is not None:
            try:
                return int(value)
            except ValueError:
                raise SchemaVersionError(
                    f"the database at {_shown(conn.engine)} has an unreadable schema version {value!r}"
                ) from None
    if any(inspector.has_table(table.name) for table in ALL_TABLES):
        return 0
    return None


def _stamp(conn: Connection, version: int) -> None:
    conn.execute(delete(meta_t).where(meta_t.c.key == VERSION_KEY))
    conn.execute(insert(meta_t), [{"key": VERSION_KEY, "value": str(version)}])


@contextmanager
def _locked_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that holds the database's migration lock until it ends (rolled back unless the
    caller commits)."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            # The write lock now, not at the first write: two engines never both read "empty".
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        elif engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK_KEY})
        try:
            yield conn
        finally:
            if conn.in_transaction():
                conn.rollback()


def _shown(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)
