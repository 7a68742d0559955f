"""Several engines on one PostgreSQL: which one leads, the fence on its writes, and the standbys' tail.

One row, ``engine_leader(id=1)``, holds the lease: the leader's id and address, an ``epoch`` bumped by
every takeover (one UPDATE), and ``lease_expires_at`` in the database's clock (so the engines' clocks
never need to agree). The leader renews it every ``lease_renew_interval``; a standby polls it every
``standby_poll_interval`` and takes it when it is free, expired, or (for an instant hand-over) when the
leader's session advisory lock is gone: PostgreSQL drops it the moment the leader's process dies.

Safety does not rest on timing. Every write transaction of the leader first runs
``SELECT epoch FROM engine_leader WHERE id = 1 AND epoch = :mine FOR SHARE`` (``SqlStore.write``), the
way Temporal checks a shard's range_id: a takeover's UPDATE waits for a write in flight and every later
write of the old leader finds no row and fails (``Fenced``), so nothing the old leader does after the
new epoch can commit, and the new leader, which reads the newest event after its UPDATE committed,
continues the sequence without a gap. Timing only keeps the old leader from *trying*: it stops
acknowledging once its lease is within ``lease_margin`` of its end without a renewal.

``Leadership`` is the engine's part that runs this (its own task, its own threads); ``LeaderLease``
is its SQL; ``EventTail`` follows the events table on a standby (LISTEN/NOTIFY, with polling as the
fallback) and feeds the engine's event bus, so WatchJobs on a standby sees the leader's commits in
order, gap-free. ``SingleEngineLock`` keeps a second engine off a SQLite file.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import socket
import time
import uuid
import zlib
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum
from pathlib import Path
from typing import Any

from jobwarden.contract import JobEventType, JobStatus
from sqlalchemy import create_engine, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine as SqlEngine

from .errors import FailedPrecondition, Fenced, StoreUnavailable
from .model import Event
from .workflows.runs import WorkflowEvent

#: what a standby's tail reads: job and workflow events, numbered from one sequence
TailedEvent = Event | WorkflowEvent

__all__ = [
    "ADVISORY_LOCK_NAME",
    "EngineMember",
    "EngineRole",
    "EventTail",
    "LeaderLease",
    "Leadership",
    "LeaseRow",
    "SingleEngineLock",
    "default_engine_id",
]

log = logging.getLogger("jobwarden.leadership")

#: the session advisory lock the leader holds while it leads: this, with the schema's name, makes the
#: key (advisory locks are per database; engines in other schemas of it must not share one)
ADVISORY_LOCK_NAME = "jobwarden-leader"
#: held while one engine creates or migrates the schema, so engines started together do not race
SCHEMA_LOCK_NAME = "jobwarden-schema"
#: PostgreSQL's SQLSTATE for a statement that gave up waiting for a lock (``lock_timeout``)
_LOCK_NOT_AVAILABLE = "55P03"

#: the channel the leader notifies (in its write transaction) when it commits events
EVENTS_CHANNEL = "jobwarden_events"
#: a member row not renewed for this long is not listed (and, after an hour, deleted)
MEMBER_STALE_SECONDS = 10.0
#: a new leader whose recovery has made no progress for this long says so (and again as often)
STALL_REPORT_SECONDS = 10.0


class EngineRole(IntEnum):
    """The values of ``cluster_service.proto`` ``EngineRole``."""

    #: holds the lease: runs the registry, dispatch, timers and locks, and accepts writes
    LEADER = 1
    #: serves reads; takes the lease when the leader's expires or is freed
    STANDBY = 2
    #: found its epoch taken by a newer leader; stopped acknowledging, becoming a standby
    FENCED = 3


def default_engine_id() -> str:
    """host-pid-random: unique across processes and restarts."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:4]}"


@dataclass(slots=True, frozen=True)
class LeaseRow:
    epoch: int
    leader_id: str | None
    address: str
    lease_expires_at: datetime | None
    #: the database's clock when the row was read
    now: datetime

    @property
    def held(self) -> bool:
        return (
            self.leader_id is not None
            and self.lease_expires_at is not None
            and self.lease_expires_at > self.now
        )


@dataclass(slots=True, frozen=True)
class EngineMember:
    engine_id: str
    address: str
    role: EngineRole
    epoch: int
    started_at: float
    seen_at: float
    version: str
    lease_expires_at: float | None = None


def _read_lease(conn: Any) -> LeaseRow:
    row = conn.execute(
        text(
            "SELECT epoch, leader_id, address, lease_expires_at, clock_timestamp() AS now"
            " FROM engine_leader WHERE id = 1"
        )
    ).one()
    return LeaseRow(row.epoch, row.leader_id, row.address, row.lease_expires_at, row.now)


class LeaderLease:
    """The lease's SQL (PostgreSQL only). Every method is synchronous and runs in a thread."""

    def __init__(self, url: str, *, lease_seconds: float) -> None:
        self.url = url
        self.lease_seconds = lease_seconds
        timeout_ms = max(int(lease_seconds * 1000), 500)
        # A takeover waits for the old leader's write in flight (its FOR SHARE) at most this long,
        # then tries again at the next poll; a query never hangs past it.
        options = f"-c lock_timeout={timeout_ms} -c statement_timeout={2 * timeout_ms}"
        self.engine: SqlEngine = create_engine(
            url,
            pool_size=4,
            max_overflow=4,
            pool_pre_ping=True,
            connect_args={
                "options": with_options(url, options),
                "connect_timeout": max(1, int(lease_seconds)),
            },
        )
        self._keys: tuple[int, int] | None = None
        #: the connection whose session holds the advisory lock while this engine leads
        self._lock_connection: Any = None

    def close(self) -> None:
        self.unlock()
        self.engine.dispose()

    def keys(self) -> tuple[int, int]:
        """The advisory lock keys (leader, schema) of this store's schema (below 2**32: classid 0)."""
        if self._keys is None:
            with self.engine.connect() as conn:
                schema = str(conn.execute(text("SELECT current_schema()")).scalar() or "")
            self._keys = (
                zlib.crc32(f"{ADVISORY_LOCK_NAME}:{schema}".encode()),
                zlib.crc32(f"{SCHEMA_LOCK_NAME}:{schema}".encode()),
            )
        return self._keys

    @contextlib.contextmanager
    def schema_lock(self) -> Iterator[None]:
        """One engine at a time creates or migrates the schema."""
        key = self.keys()[1]
        with self.engine.connect() as conn:
            # No lock_timeout here: another engine may take a while to migrate.
            conn.execute(text("SET lock_timeout = 0"))
            conn.execute(text("SET statement_timeout = 0"))
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()

    def create_tables(self) -> None:
        """The lease row and the members table (outside the job schema's version: they hold no job
        data and any engine may recreate them)."""
        with self.engine.begin() as conn:
            conn.execute(
                text(
                    "CREATE TABLE IF NOT EXISTS engine_leader ("
                    " id INTEGER PRIMARY KEY CHECK (id = 1),"
                    " epoch BIGINT NOT NULL,"
                    " leader_id TEXT,"
                    " address TEXT NOT NULL DEFAULT '',"
                    " lease_expires_at TIMESTAMPTZ,"
                    " holds_lock BOOLEAN NOT NULL DEFAULT FALSE)"
                )
            )
            conn.execute(
                text("INSERT INTO engine_leader (id, epoch) VALUES (1, 0) ON CONFLICT (id) DO NOTHING")
            )
            conn.execute(
                text(
                    "CREATE TABLE IF NOT EXISTS engines ("
                    " id TEXT PRIMARY KEY,"
                    " address TEXT NOT NULL,"
                    " role INTEGER NOT NULL,"
                    " epoch BIGINT NOT NULL,"
                    " started_at TIMESTAMPTZ NOT NULL,"
                    " seen_at TIMESTAMPTZ NOT NULL,"
                    " version TEXT NOT NULL DEFAULT '')"
                )
            )

    def read(self) -> LeaseRow:
        with self.engine.connect() as conn:
            return _read_lease(conn)

    def try_take(self, engine_id: str, address: str) -> tuple[int, float] | None:
        """Take the lease if it is free, expired, or its leader's advisory lock is gone: the new
        epoch and when (``time.monotonic()``) the UPDATE that took it was sent, or None. One UPDATE:
        two standbys never both take it.

        The UPDATE waits (``lock_timeout``) for the old leader's writes in flight, which hold the row
        FOR SHARE. A write cut off mid-transaction by a partition can hold it for as long as TCP
        takes to notice (hours, by default): PostgreSQL's ``idle_in_transaction_session_timeout``
        does not cover a session stopped inside a pipeline. Once the lease has run out, those
        sessions may commit nothing anyway, so they are ended and the UPDATE is tried again."""
        try:
            return self._take(engine_id, address)
        except sa_exc.OperationalError as error:
            if getattr(error.orig, "sqlstate", None) != _LOCK_NOT_AVAILABLE or not self.end_stuck_writes(
                engine_id
            ):
                raise
        return self._take(engine_id, address)

    def end_stuck_writes(self, engine_id: str) -> int:
        """Terminate the sessions holding the lease row FOR SHARE, if the lease (not ours) has run
        out: how many. Only the leader's write transactions take that lock."""
        with self.engine.begin() as conn:
            rows = conn.execute(
                text(
                    "SELECT l.pid, pg_terminate_backend(l.pid) AS ended, e.leader_id FROM pg_locks l"
                    " JOIN engine_leader e ON e.id = 1"
                    " WHERE l.locktype = 'relation' AND l.mode = 'RowShareLock' AND l.granted"
                    "  AND l.relation = 'engine_leader'::regclass AND l.pid <> pg_backend_pid()"
                    "  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                    "  AND e.leader_id IS DISTINCT FROM :me AND e.lease_expires_at < clock_timestamp()"
                ),
                {"me": engine_id},
            ).all()
        ended = [row for row in rows if row.ended]
        if ended:
            log.warning(
                "engine %s ended %d write transaction(s) of the old leader %s stuck past its lease "
                "(sessions %s): they held the lease row and kept every standby from taking over",
                engine_id,
                len(ended),
                ended[0].leader_id,
                ", ".join(str(row.pid) for row in ended),
            )
        return len(ended)

    def _take(self, engine_id: str, address: str) -> tuple[int, float] | None:
        with self.engine.begin() as conn:
            # The lease ends ``lease`` after this UPDATE runs: the leader acts until then, counted from
            # here (not from before a wait on the row lock, which may take longer than the lease).
            sent = time.monotonic()
            row = conn.execute(
                text(
                    "UPDATE engine_leader SET epoch = epoch + 1, leader_id = :me, address = :address,"
                    " lease_expires_at = clock_timestamp() + make_interval(secs => :lease),"
                    " holds_lock = FALSE"
                    " WHERE id = 1 AND (leader_id IS NULL OR lease_expires_at IS NULL"
                    "  OR lease_expires_at < clock_timestamp()"
                    "  OR (holds_lock AND leader_id <> :me AND NOT EXISTS (SELECT 1 FROM pg_locks"
                    "   WHERE locktype = 'advisory' AND granted AND classid = 0 AND objid::bigint = :key"
                    "   AND objsubid = 1 AND database ="
                    "   (SELECT oid FROM pg_database WHERE datname = current_database()))))"
                    " RETURNING epoch"
                ),
                {"me": engine_id, "address": address, "lease": self.lease_seconds, "key": self.keys()[0]},
            ).first()
        return (int(row.epoch), sent) if row is not None else None

    def renew(self, engine_id: str, epoch: int) -> bool:
        """Extend the lease; False when it is no longer ours (a newer epoch, or released)."""
        holds_lock = self._lock_alive()
        if not holds_lock:
            # Lost with its session (a database restart): take it again, so a kill -9 of this
            # engine hands over at once again.
            with contextlib.suppress(Exception):
                holds_lock = self.lock()
        with self.engine.begin() as conn:
            row = conn.execute(
                text(
                    "UPDATE engine_leader SET"
                    " lease_expires_at = clock_timestamp() + make_interval(secs => :lease),"
                    " holds_lock = :holds_lock"
                    " WHERE id = 1 AND epoch = :epoch AND leader_id = :me RETURNING epoch"
                ),
                {"me": engine_id, "epoch": epoch, "lease": self.lease_seconds, "holds_lock": holds_lock},
            ).first()
        return row is not None

    def release(self, engine_id: str, epoch: int) -> None:
        """Give the lease up (a clean stop): the next standby need not wait for it to expire."""
        with self.engine.begin() as conn:
            conn.execute(
                text(
                    "UPDATE engine_leader SET leader_id = NULL, lease_expires_at = NULL, holds_lock = FALSE"
                    " WHERE id = 1 AND epoch = :epoch AND leader_id = :me"
                ),
                {"me": engine_id, "epoch": epoch},
            )

    def lock(self) -> bool:
        """Take the session advisory lock on a connection of its own (kept while leading)."""
        self.unlock()
        connection = self.engine.raw_connection()
        try:
            cursor = connection.cursor()
            cursor.execute("SELECT pg_try_advisory_lock(%s)", (self.keys()[0],))
            row = cursor.fetchone()
            taken = bool(row is not None and row[0])
            connection.commit()
        except Exception:
            with contextlib.suppress(Exception):
                connection.invalidate()
            raise
        if not taken:
            connection.close()
            return False
        self._lock_connection = connection
        return True

    def unlock(self) -> None:
        connection, self._lock_connection = self._lock_connection, None
        if connection is not None:
            # Closing the session frees the lock; never hand it back to the pool still holding it.
            with contextlib.suppress(Exception):
                connection.invalidate()
            with contextlib.suppress(Exception):
                connection.close()

    def _lock_alive(self) -> bool:
        connection = self._lock_connection
        if connection is None:
            return False
        try:
            cursor = connection.cursor()
            cursor.execute("SELECT 1")
            cursor.fetchone()
            connection.commit()
            return True
        except Exception:
            self.unlock()
            return False

    def heartbeat(self, member: EngineMember) -> int:
        """Renew this engine's member row; how many other engines renewed theirs lately."""
        with self.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO engines (id, address, role, epoch, started_at, seen_at, version)"
                    " VALUES (:id, :address, :role, :epoch, to_timestamp(:started_at), clock_timestamp(),"
                    " :version) ON CONFLICT (id) DO UPDATE SET address = EXCLUDED.address,"
                    " role = EXCLUDED.role, epoch = EXCLUDED.epoch, seen_at = EXCLUDED.seen_at,"
                    " version = EXCLUDED.version"
                ),
                {
                    "id": member.engine_id,
                    "address": member.address,
                    "role": int(member.role),
                    "epoch": member.epoch,
                    "started_at": member.started_at,
                    "version": member.version,
                },
            )
            conn.execute(text("DELETE FROM engines WHERE seen_at < clock_timestamp() - interval '1 hour'"))
            others = conn.execute(
                text(
                    "SELECT count(*) FROM engines WHERE id <> :id"
                    " AND seen_at > clock_timestamp() - make_interval(secs => :stale)"
                ),
                {"id": member.engine_id, "stale": MEMBER_STALE_SECONDS},
            ).scalar()
        return int(others or 0)

    def leave(self, engine_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(text("DELETE FROM engines WHERE id = :id"), {"id": engine_id})

    def members(self) -> tuple[LeaseRow, list[EngineMember]]:
        """The lease and the engines seen lately: the leader first, then the others by id."""
        with self.engine.connect() as conn:
            lease = _read_lease(conn)
            rows = conn.execute(
                text(
                    "SELECT id, address, role, epoch, extract(epoch FROM started_at) AS started_at,"
                    " extract(epoch FROM seen_at) AS seen_at, version FROM engines"
                    " WHERE seen_at > clock_timestamp() - make_interval(secs => :stale) ORDER BY id"
                ),
                {"stale": MEMBER_STALE_SECONDS},
            ).all()
        members = []
        for row in rows:
            leads = lease.held and row.id == lease.leader_id
            role = EngineRole.LEADER if leads else EngineRole(row.role)
            if role is EngineRole.LEADER and not leads:
                # It believed it led when it last wrote its row; the lease says otherwise.
                role = EngineRole.FENCED
            members.append(
                EngineMember(
                    engine_id=row.id,
                    address=row.address,
                    role=role,
                    epoch=int(row.epoch),
                    started_at=float(row.started_at),
                    seen_at=float(row.seen_at),
                    version=row.version,
                    lease_expires_at=lease.lease_expires_at.timestamp()
                    if leads and lease.lease_expires_at is not None
                    else None,
                )
            )
        members.sort(key=lambda m: (m.role is not EngineRole.LEADER, m.engine_id))
        return lease, members

    def counts_at_head(self) -> tuple[int, list[tuple[str, int, int]]]:
        """The newest sequence and the (action, status, count) triples as of it, in one snapshot."""
        with self.engine.connect() as conn:
            conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
            head = conn.execute(text("SELECT COALESCE(MAX(sequence), 0) FROM events")).scalar()
            rows = conn.execute(
                text("SELECT action, status, COUNT(*) FROM jobs GROUP BY action, status")
            ).all()
            conn.rollback()
        return int(head or 0), [(r[0], int(r[1]), int(r[2])) for r in rows]

    def wait_for_events(self, connection: Any, timeout: float) -> None:
        """Block until the leader notifies a commit, or ``timeout`` passes (the polling fallback)."""
        for _ in connection.notifies(timeout=timeout, stop_after=1):
            break

    def listener(self) -> Any:
        """An autocommit psycopg connection that LISTENs to the events channel."""
        import psycopg

        url = self.engine.url.set(drivername="postgresql")
        connection = psycopg.connect(
            url.render_as_string(hide_password=False), autocommit=True, connect_timeout=5
        )
        connection.execute(f"LISTEN {EVENTS_CHANNEL}")
        return connection


@dataclass(slots=True)
class LeadershipSettings:
    engine_id: str
    address: str
    lease_seconds: float = 2.0
    renew_interval: float = 0.5
    poll_interval: float = 0.25
    margin: float = 0.5
    version: str = ""


#: what the engine does when this engine is elected (recover and lead) and when it stops leading
Elected = Callable[[int], Coroutine[Any, Any, None]]
Deposed = Callable[[str], Awaitable[None]]


@dataclass(slots=True)
class LeadershipStats:
    #: role changes by the role entered
    changes: dict[EngineRole, int] = field(default_factory=lambda: dict.fromkeys(EngineRole, 0))
    renewals: int = 0
    renewal_failures: int = 0
    last_renewal_seconds: float = 0.0
    takeovers: int = 0


class Leadership:
    """The leadership part of an engine on PostgreSQL: its role, the lease's upkeep, the fence."""

    def __init__(self, lease: LeaderLease, settings: LeadershipSettings) -> None:
        self.lease = lease
        self.settings = settings
        self.role = EngineRole.STANDBY
        #: this engine's epoch while it leads; the last epoch it saw otherwise
        self.epoch = 0
        #: the lease as last read (a standby's idea of who leads)
        self.last_seen: LeaseRow | None = None
        self.started_at = time.time()
        self.stats = LeadershipStats()
        #: monotonic time after which the leader must stop acting unless it renewed
        self.acting_until = 0.0
        self._elected: Elected | None = None
        self._deposed: Deposed | None = None
        self._task: asyncio.Task[None] | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._changing = asyncio.Lock()
        self._stopping = False
        self._threads = ThreadPoolExecutor(max_workers=4, thread_name_prefix="jobwarden-lease")
        self._renewal_observers: list[Callable[[float, bool], None]] = []
        self._role_observers: list[Callable[[EngineRole, int, str], None]] = []
        self._last_heartbeat = 0.0
        #: when another engine's member row was last seen fresh (monotonic; -inf: never)
        self._others_seen_at = float("-inf")
        #: a lone leader whose lease lapsed: it holds its state and commits nothing until renewed
        self.suspended = False
        #: steps a new leader's recovery has reported (``note_progress``); its lease renews on them
        self._progress = 0
        #: after giving a takeover up: no new try before this (monotonic)
        self._hold_off_until = 0.0

    @property
    def engine_id(self) -> str:
        return self.settings.engine_id

    @property
    def is_leader(self) -> bool:
        return self.role is EngineRole.LEADER

    def leader_address(self) -> str:
        """The leader's address as last seen ('' while nobody holds the lease)."""
        if self.is_leader:
            return self.settings.address
        seen = self.last_seen
        return seen.address if seen is not None and seen.held else ""

    def leader_id(self) -> str:
        if self.is_leader:
            return self.engine_id
        seen = self.last_seen
        return (seen.leader_id or "") if seen is not None and seen.held else ""

    def observe_renewals(self, observer: Callable[[float, bool], None]) -> None:
        """``observer(seconds, ok)`` after each renewal attempt."""
        self._renewal_observers.append(observer)

    def observe_roles(self, observer: Callable[[EngineRole, int, str], None]) -> None:
        """``observer(role, epoch, reason)`` on each role change."""
        self._role_observers.append(observer)

    def note_progress(self) -> None:
        """The new leader's recovery moved on (read a page, settled a batch): the lease may renew."""
        self._progress += 1

    async def run_sql(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._threads, lambda: fn(*args))

    async def start(self, elected: Elected, deposed: Deposed, prepare: Callable[[], None]) -> None:
        """Create the schema (``prepare``, one engine at a time) and the lease's tables, try once to
        take the lease (``elected`` runs if so), then keep at it in the background."""
        self._elected, self._deposed = elected, deposed

        def setup() -> None:
            with self.lease.schema_lock():
                prepare()
                self.lease.create_tables()

        await self.run_sql(setup)
        await self._beat()
        await self._try_take()
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._run(), name="jobwarden-leadership")
        self._watchdog = loop.create_task(self._watch(), name="jobwarden-lease-watchdog")

    def check_acting(self) -> None:
        """Raises when the leader must not commit now (the writer calls it before each commit):
        ``Fenced`` once it no longer leads; ``LeaseLapsed`` (the writer retries) while its lease is too
        close to its end without a renewal."""
        if self.role is not EngineRole.LEADER:
            raise Fenced(f"engine {self.engine_id} no longer leads (epoch {self.epoch})")
        if time.monotonic() > self.acting_until:
            raise LeaseLapsed(
                f"engine {self.engine_id} could not renew its lease (epoch {self.epoch}) in time; "
                "it acknowledges nothing until it does"
            )

    async def fenced(self, reason: str) -> None:
        """The writer found the epoch taken (or the lease run out): stop leading now."""
        await self._depose(reason)

    async def stop(self) -> None:
        """Stop taking part; the engine has stopped (and written what was pending) before."""
        self._stopping = True
        for task in (self._task, self._watchdog):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        with contextlib.suppress(Exception):
            if self.is_leader:
                await self.run_sql(self.lease.release, self.engine_id, self.epoch)
            await self.run_sql(self.lease.leave, self.engine_id)
        self.role = EngineRole.STANDBY
        with contextlib.suppress(Exception):
            await self.run_sql(self.lease.close)
        self._threads.shutdown(wait=False, cancel_futures=True)

    # -- the loop -----------------------------------------------------------------------------------

    async def _run(self) -> None:
        settings = self.settings
        while not self._stopping:
            if self.is_leader:
                await self._renew()
                await asyncio.sleep(settings.renew_interval)
            else:
                await self._try_take()
                await asyncio.sleep(settings.poll_interval)
            if time.monotonic() - self._last_heartbeat >= settings.renew_interval:
                await self._beat()

    async def _watch(self) -> None:
        """A leader whose renewals fail or hang (a partition, a database outage) stops acting before
        its lease can end (``check_acting`` holds every commit back). With other engines alive to
        take over it steps down, so its workers go to the next leader; alone, it keeps its state
        and goes on, as one engine always did, once its lease is renewed under the same epoch (the
        fence in every write makes that safe either way)."""
        while not self._stopping:
            await asyncio.sleep(min(0.1, self.settings.margin / 2))
            if not self.is_leader or time.monotonic() <= self.acting_until:
                if self.suspended and self.is_leader:
                    self.suspended = False
                    log.warning(
                        "engine %s renewed its lease (epoch %d): acting again", self.engine_id, self.epoch
                    )
                continue
            within = self.settings.lease_seconds - self.settings.margin
            if time.monotonic() - self._others_seen_at < MEMBER_STALE_SECONDS:
                await self._depose(f"its lease was not renewed within {within:g}s", unless_renewed=True)
            elif not self.suspended:
                self.suspended = True
                log.error(
                    "engine %s could not renew its lease within %gs and no other engine is there to take "
                    "over: it acknowledges nothing until the database answers",
                    self.engine_id,
                    within,
                )

    async def _beat(self) -> None:
        self._last_heartbeat = time.monotonic()
        member = EngineMember(
            engine_id=self.engine_id,
            address=self.settings.address,
            role=self.role,
            epoch=self.epoch,
            started_at=self.started_at,
            seen_at=0.0,
            version=self.settings.version,
        )
        try:
            others = await asyncio.wait_for(
                self.run_sql(self.lease.heartbeat, member), self.settings.lease_seconds
            )
            if others:
                self._others_seen_at = time.monotonic()
        except Exception as error:
            log.debug("engine %s could not renew its member row: %s", self.engine_id, error)

    async def _renew(self) -> None:
        if await self._renewal() is False:
            await self._depose(f"its lease (epoch {self.epoch}) was taken by a newer leader")

    async def _renewal(self) -> bool | None:
        """Renew the lease, extending the acting time: whether it was still ours (None: the
        database did not answer in time)."""
        started = time.monotonic()
        try:
            ok = await asyncio.wait_for(
                self.run_sql(self.lease.renew, self.engine_id, self.epoch), self.settings.lease_seconds
            )
        except Exception as error:
            self.stats.renewal_failures += 1
            self._report_renewal(time.monotonic() - started, False)
            log.warning("engine %s could not renew its lease: %s", self.engine_id, error)
            return None
        self._report_renewal(time.monotonic() - started, ok)
        if not ok:
            return False
        self.stats.renewals += 1
        # From when the renewal was sent: the database's lease end is at least this late.
        self.acting_until = max(
            self.acting_until, started + self.settings.lease_seconds - self.settings.margin
        )
        return True

    def _report_renewal(self, seconds: float, ok: bool) -> None:
        self.stats.last_renewal_seconds = seconds
        for observer in self._renewal_observers:
            try:
                observer(seconds, ok)
            except Exception:
                log.exception("renewal observer failed")

    async def _try_take(self) -> None:
        if self._changing.locked() or time.monotonic() < self._hold_off_until:
            return
        try:
            seen = await asyncio.wait_for(self.run_sql(self.lease.read), self.settings.lease_seconds)
            self.last_seen = seen
            self.epoch = max(self.epoch, seen.epoch)
            taken = await asyncio.wait_for(
                self.run_sql(self.lease.try_take, self.engine_id, self.settings.address),
                3 * self.settings.lease_seconds,
            )
        except Exception as error:
            log.debug("engine %s could not read or take the lease: %s", self.engine_id, error)
            return
        if taken is None:
            return
        epoch, started = taken
        async with self._changing:
            previous = seen.leader_id if seen.held else None
            self.epoch = epoch
            self.acting_until = started + self.settings.lease_seconds - self.settings.margin
            self.role = EngineRole.LEADER
            try:
                locked = await self.run_sql(self.lease.lock)
                if not locked:
                    log.warning(
                        "engine %s leads without the advisory lock (a stale session holds it)", self.engine_id
                    )
                await self._recover_as_leader(epoch)
            except TakeoverAbandoned as error:
                log.error("engine %s gives up leading at epoch %d: %s", self.engine_id, epoch, error)
                await self._step_down(str(error))
                # Another engine gets the first chance: the lease is free now, and this one waits a
                # lease before it tries again.
                self._hold_off_until = time.monotonic() + self.settings.lease_seconds
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(
                        self.run_sql(self.lease.release, self.engine_id, epoch), self.settings.lease_seconds
                    )
                return
            except Exception as error:
                log.exception("engine %s could not start leading at epoch %d", self.engine_id, epoch)
                await self._step_down(f"it could not start leading: {error}")
                return
            self.stats.takeovers += 1
            reason = f"took the lease from {previous}" if previous else "the lease was free or expired"
            log.warning(
                "engine %s at %s leads at epoch %d (%s)", self.engine_id, self.settings.address, epoch, reason
            )
            self._changed(EngineRole.LEADER, reason)
        await self._beat()

    async def _recover_as_leader(self, epoch: int) -> None:
        """Run ``elected`` (the new leader's recovery) and keep the lease while it makes progress.

        Recovering a large backlog takes longer than a lease (200,000 queued jobs: seconds), and
        a leader that did not renew meanwhile was deposed the moment it finished, by every engine in
        turn: none ever led. Renewing regardless was no better: a recovery hung on the database (a
        partition) kept the lease for minutes and no other engine could lead. So the lease renews
        after each step the recovery reports (``note_progress``: a page read, a batch settled);
        one that reports nothing until its acting time is spent is given up, and another engine
        takes over. Alone (no other engine to take over), it keeps the lease and waits, as a lone
        leader does when its database is slow."""
        assert self._elected is not None
        started = time.monotonic()
        if self.acting_until - started < self.settings.lease_seconds / 2:
            # The takeover's UPDATE waited on the lease row (an old leader's write) for most of the
            # lease: renew first, or the recovery would have almost no time to show progress.
            await self._renewal()
        recovery: asyncio.Task[None] = asyncio.get_running_loop().create_task(self._elected(epoch))
        seen = self._progress
        moved_at = said_at = time.monotonic()
        try:
            while not recovery.done():
                await asyncio.wait({recovery}, timeout=self.settings.renew_interval)
                if recovery.done():
                    break
                if self._stopping:
                    # stop() cancels this task, but Python 3.11's wait_for (in a renewal) can swallow
                    # a cancellation that lands as its call returns: the flag ends it regardless.
                    raise asyncio.CancelledError
                moved, seen = self._progress != seen, self._progress
                now = time.monotonic()
                if moved:
                    moved_at = now
                elif now - moved_at >= STALL_REPORT_SECONDS and now - said_at >= STALL_REPORT_SECONDS:
                    # Alone, it keeps the lease while it waits: say so, or the wait is invisible.
                    said_at = now
                    log.warning(
                        "engine %s has been taking over (epoch %d) for %.0fs: its recovery has made no "
                        "progress for %.0fs (a database read that does not answer?)",
                        self.engine_id,
                        epoch,
                        now - started,
                        now - moved_at,
                    )
                if time.monotonic() - self._last_heartbeat >= self.settings.renew_interval:
                    await self._beat()  # so the others (and ListEngines) see this engine lead
                alone = time.monotonic() - self._others_seen_at >= MEMBER_STALE_SECONDS
                if (moved or alone) and await self._renewal() is False:
                    raise TakeoverAbandoned(
                        f"its lease (epoch {epoch}) was taken by a newer leader while it recovered"
                    )
                if time.monotonic() > self.acting_until:
                    within = self.settings.lease_seconds - self.settings.margin
                    raise TakeoverAbandoned(
                        f"its recovery made no progress (or no renewal was answered) within {within:g}s, "
                        "so another engine may take over"
                    )
        except BaseException:
            recovery.cancel()
            with contextlib.suppress(BaseException):
                await recovery
            raise
        recovery.result()
        # The event loop ran the recovery's last steps, which may have let no renewal run.
        if await self._renewal() is False:
            raise TakeoverAbandoned(
                f"its lease (epoch {epoch}) was taken by a newer leader while it recovered"
            )

    async def _depose(self, reason: str, *, unless_renewed: bool = False) -> None:
        """Stop leading. With ``unless_renewed`` (the watchdog's call), not if the lease was renewed
        while this waited for ``_changing`` (held by a takeover that renews as it recovers)."""
        if not self.is_leader:
            return
        async with self._changing:
            if not self.is_leader or (unless_renewed and time.monotonic() <= self.acting_until):
                return
            self.role = EngineRole.FENCED
            log.error("engine %s stops leading (epoch %d): %s", self.engine_id, self.epoch, reason)
            self._changed(EngineRole.FENCED, reason)
            await self._step_down(reason)
        await self._beat()

    async def _step_down(self, reason: str) -> None:
        self.role = EngineRole.FENCED
        with contextlib.suppress(Exception):
            await self.run_sql(self.lease.unlock)
        try:
            assert self._deposed is not None
            await self._deposed(reason)
        except Exception:
            log.exception("engine %s failed to drop its state cleanly", self.engine_id)
        self.role = EngineRole.STANDBY
        with contextlib.suppress(Exception):
            # So the first refusal as a standby names the new leader.
            self.last_seen = await asyncio.wait_for(
                self.run_sql(self.lease.read), self.settings.lease_seconds
            )
        self._changed(EngineRole.STANDBY, reason)

    def _changed(self, role: EngineRole, reason: str) -> None:
        self.stats.changes[role] += 1
        for observer in self._role_observers:
            try:
                observer(role, self.epoch, reason)
            except Exception:
                log.exception("role observer failed")


class EventTail:
    """A standby's view of the events the leader commits: read from the store in sequence order and
    published on the engine's bus, so WatchJobs on a standby works as on the leader.

    The leader NOTIFYs in its write transaction; the tail also polls every ``poll_interval`` (a lost
    notification, a listener that could not connect). It publishes only a contiguous run from its
    head: one writer commits batches one after another, so a gap would be a bug, waited out, not
    skipped silently."""

    def __init__(
        self,
        lease: LeaderLease,
        read_events: Callable[[int, int, int], Awaitable[list[TailedEvent]]],
        publish: Callable[[list[TailedEvent]], None],
        run_sql: Callable[..., Awaitable[Any]],
        *,
        head: int,
        poll_interval: float = 0.5,
        page: int = 1000,
        prepare: Callable[[EventTail], Awaitable[None]] | None = None,
        refresh: Callable[[], Awaitable[None]] | None = None,
        refresh_interval: float = 1.0,
    ) -> None:
        self.lease = lease
        self._read_events = read_events
        self._publish = publish
        self._run_sql = run_sql
        self.head = head
        self.poll_interval = poll_interval
        self.page = page
        #: (action, status) counts as of ``head``, kept up to date from the events
        self.counts: dict[tuple[str, JobStatus], int] = {}
        #: counts already include every event up to here (the snapshot they were read at)
        self.counted_through = head
        self._task: asyncio.Task[None] | None = None
        self._listener: Any = None
        self._gap_since = 0.0
        #: reads what the standby shows besides events (counts at a snapshot, configs), first
        self._prepare = prepare
        #: reads again, every ``refresh_interval``, what no event carries (the action configs)
        self._refresh = refresh
        self.refresh_interval = refresh_interval
        self._refreshed_at = time.monotonic()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="jobwarden-event-tail")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(Exception):
                listener.close()

    async def catch_up(self, progress: Callable[[], None] = lambda: None) -> None:
        """Publish every committed event past ``head`` (a new leader before it starts writing),
        telling ``progress`` after each page."""
        while await self._poll_once():
            progress()

    async def _run(self) -> None:
        while True:
            try:
                if self._prepare is not None:
                    await self._prepare(self)
                    self._prepare = None
                if self._listener is None:
                    self._listener = await self._run_sql(self.lease.listener)
                while await self._poll_once():
                    pass
                if (
                    self._refresh is not None
                    and time.monotonic() - self._refreshed_at >= self.refresh_interval
                ):
                    self._refreshed_at = time.monotonic()
                    await self._refresh()
                await self._run_sql(self.lease.wait_for_events, self._listener, self.poll_interval)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.debug("event tail: %s; polling", error)
                listener, self._listener = self._listener, None
                if listener is not None:
                    with contextlib.suppress(Exception):
                        listener.close()
                await asyncio.sleep(self.poll_interval)

    async def _poll_once(self) -> bool:
        events = await self._read_events(self.head, 2**62, self.page)
        if not events:
            return False
        run: list[TailedEvent] = []
        expected = self.head + 1
        for ev in events:
            if ev.sequence != expected:
                break
            run.append(ev)
            expected += 1
        if not run:
            if not self._gap_since:
                self._gap_since = time.monotonic()
            if time.monotonic() - self._gap_since < 5.0:
                return False
            log.error(
                "event tail: sequences %d..%d are missing; going on", self.head + 1, events[0].sequence - 1
            )
            run = events
        self._gap_since = 0.0
        for ev in run:
            if isinstance(ev, Event) and ev.sequence > self.counted_through:
                self._count(ev)
        self.head = run[-1].sequence
        self._publish(run)
        return len(run) == len(events) and len(events) == self.page

    def _count(self, ev: Event) -> None:
        action, status = ev.snapshot["action"], JobStatus(ev.snapshot["status"])
        counts = self.counts
        if ev.type is JobEventType.SUBMITTED:
            counts[(action, status)] = counts.get((action, status), 0) + 1
        elif ev.previous_status is not None and ev.previous_status is not status:
            counts[(action, status)] = counts.get((action, status), 0) + 1
            counts[(action, ev.previous_status)] = counts.get((action, ev.previous_status), 0) - 1


def with_options(url: str, options: str) -> str:
    """``options`` added to the libpq ``options`` a URL already carries (a search_path, say): a
    connect argument replaces the URL's, it does not add to it."""
    from sqlalchemy.engine import make_url

    existing = make_url(url).query.get("options")
    if isinstance(existing, tuple):
        existing = " ".join(existing)
    return f"{existing} {options}" if existing else options


class SingleEngineLock:
    """An exclusive lock on ``<database>.engine.lock`` beside a SQLite file, held while an engine
    serves it; the operating system frees it when the process dies, however it dies."""

    def __init__(self, db_path: str) -> None:
        self.db_path = db_path
        self.path = Path(f"{db_path}.engine.lock")
        self._file: Any = None

    def acquire(self) -> None:
        """Raises ``EngineAlreadyRunning`` naming the process that holds it."""
        handle = open(self.path, "a+")  # noqa: SIM115 (kept open while the engine runs)
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise EngineAlreadyRunning(
                f"the SQLite database {self.db_path} is already served by {holder}; SQLite serves one "
                "engine: stop that one, or run several engines on PostgreSQL "
                "(--db postgresql+psycopg://..., see docs/high-availability.md)"
            ) from None
        handle.seek(0)
        handle.truncate()
        started = datetime.now().astimezone().isoformat(timespec="seconds")
        handle.write(f"engine pid {os.getpid()} on host {socket.gethostname()} (since {started})\n")
        handle.flush()
        self._file = handle

    def release(self) -> None:
        handle, self._file = self._file, None
        if handle is not None:
            with contextlib.suppress(Exception):
                handle.seek(0)
                handle.truncate()
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            handle.close()


class TakeoverAbandoned(Exception):
    """A new leader stops taking over: its recovery stalled past its lease, or lost the lease."""


class LeaseLapsed(StoreUnavailable):
    """The leader's lease is too close to its end without a renewal: nothing commits until it is
    renewed (or the engine steps down)."""


class EngineAlreadyRunning(FailedPrecondition):
    """Another engine serves this SQLite file."""
