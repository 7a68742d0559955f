"""A private PostgreSQL server for tests that must kill it, restart it or cut engines off from it.

The shared server on 5432 must not be touched by a test that crashes its database, so these tests run
their own, made with ``initdb`` and run with ``pg_ctl`` (PostgreSQL's binaries on PATH) in a temporary
directory on a free loopback port::

    with PrivatePostgres() as pg:
        url = pg.url                      # postgresql+psycopg://postgres@127.0.0.1:PORT/jobwarden
        pg.crash()                        # pg_ctl stop -m immediate: no checkpoint, like a kill -9
        pg.start()                        # crash recovery, then the same data

``PrivatePostgres.unavailable()`` says why one cannot run here (no binaries, root without a
``postgres`` user), for a ``pytest.skip`` with that reason. initdb refuses to run as root, so as
root the server runs as the ``postgres`` user, in a directory it owns.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from .net import free_port

__all__ = ["PrivatePostgres"]

_BINARIES = ("initdb", "pg_ctl", "postgres")
#: the server runs as this user when the tests run as root (initdb refuses root)
_SERVER_USER = "postgres"


class PrivatePostgres:
    """A PostgreSQL server of a test's own, on ``127.0.0.1:port``, trust authentication."""

    #: every server started and not yet removed: fixtures remove what a test leaves behind
    live: set[PrivatePostgres] = set()

    def __init__(self, *, port: int | None = None, database: str = "jobwarden") -> None:
        self.port = port or free_port()
        self.database = database
        self.directory = Path(tempfile.mkdtemp(prefix="jobwarden-pg-"))
        self.data = self.directory / "data"
        self.log = self.directory / "postgres.log"
        self._user = _SERVER_USER if os.geteuid() == 0 else None
        self._initialized = False

    @staticmethod
    def unavailable() -> str | None:
        """Why a private PostgreSQL cannot run on this machine, or None when it can."""
        missing = [name for name in _BINARIES if shutil.which(name) is None]
        if missing:
            return f"PostgreSQL's {', '.join(missing)} not on PATH: cannot run a private PostgreSQL"
        if os.geteuid() == 0:
            try:
                pwd.getpwnam(_SERVER_USER)
            except KeyError:
                return f"running as root and there is no {_SERVER_USER!r} user for initdb to run as"
        try:
            import psycopg  # noqa: F401
        except ImportError:
            return "psycopg is not installed (pip install 'jobwarden[server]')"
        return None

    # -- addresses ----------------------------------------------------------------------------
    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The SQLAlchemy URL engines take (``--db``)."""
        return self.url_via(self.address)

    def url_via(self, address: str) -> str:
        """The URL of this database reached through ``address`` (a proxy in front of it)."""
        return f"postgresql+psycopg://postgres@{address}/{self.database}"

    @property
    def dsn(self) -> str:
        """A libpq connection string, for psycopg."""
        return f"postgresql://postgres@{self.address}/{self.database}"

    # -- life cycle ---------------------------------------------------------------------------
    def start(self, timeout: float = 60.0) -> PrivatePostgres:
        """Start the server (made on first start), and wait until it takes connections."""
        if not self._initialized:
            self._initdb()
        options = " ".join(
            [
                f"-p {self.port}",
                "-c listen_addresses=127.0.0.1",
                f"-c unix_socket_directories={self.directory}",
                "-c max_connections=300",
                # A crash of the server process loses nothing with fsync off (the OS still has the
                # pages); only a crash of the machine would, and no test crashes the machine.
                "-c fsync=off",
                "-c full_page_writes=off",
                "-c shared_buffers=32MB",
            ]
        )
        self._run(
            [
                "pg_ctl",
                "-D",
                str(self.data),
                "-l",
                str(self.log),
                "-w",
                "-t",
                str(int(timeout)),
                "-o",
                options,
                "start",
            ],
            timeout=timeout + 10,
        )
        PrivatePostgres.live.add(self)
        self._wait_ready(timeout)
        if not self._database_made:
            self._make_database()
        return self

    def crash(self) -> None:
        """Stop at once, as a crash would: no checkpoint; the next start runs crash recovery."""
        self._stop("immediate")

    def stop(self) -> None:
        """A clean shutdown (sessions are ended, a checkpoint is written)."""
        self._stop("fast")

    def restart(self, *, crash: bool = True) -> None:
        if crash:
            self.crash()
        else:
            self.stop()
        self.start()

    def remove(self) -> None:
        """Stop the server and delete its directory."""
        with contextlib.suppress(Exception):
            self._stop("immediate")
        PrivatePostgres.live.discard(self)
        shutil.rmtree(self.directory, ignore_errors=True)

    @property
    def running(self) -> bool:
        done = self._run(["pg_ctl", "-D", str(self.data), "status"], check=False)
        return done.returncode == 0

    def __enter__(self) -> PrivatePostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.remove()

    # -- internals ----------------------------------------------------------------------------
    _database_made = False

    def _initdb(self) -> None:
        if self._user is not None:
            entry = pwd.getpwnam(self._user)
            os.chown(self.directory, entry.pw_uid, entry.pw_gid)
        self._run(
            ["initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"],
            timeout=120,
        )
        self._initialized = True

    def _make_database(self) -> None:
        import psycopg

        admin = f"postgresql://postgres@{self.address}/postgres"
        with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{self.database}"')
        self._database_made = True

    def _wait_ready(self, timeout: float) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                admin = f"postgresql://postgres@{self.address}/postgres"
                with psycopg.connect(admin, connect_timeout=3):
                    return
            except psycopg.OperationalError as error:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"private PostgreSQL did not start: {error}; see {self.log}") from None
                time.sleep(0.1)

    def _stop(self, mode: str) -> None:
        if not self.data.exists():
            return
        self._run(
            ["pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop"], check=False, timeout=70
        )

    def _run(
        self, command: list[str], *, check: bool = True, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        if self._user is not None:
            command = ["runuser", "-u", self._user, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        if check and done.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            said = done.stderr.strip() or done.stdout.strip()
            raise RuntimeError(
                f"{' '.join(command)} failed ({done.returncode}): {said}" + (f"\n{log}" if log else "")
            )
        return done
