"""A PostgreSQL of the test's own: ``initdb`` in a temp dir, ``pg_ctl`` on a free loopback port.

Tests of several engines kill engines, stop and restart the database, and pause processes; they must
not do that to the machine's shared PostgreSQL. ``PrivatePostgres.available()`` says why not when the
binaries are missing (the fixture skips with that reason). When the tests run as root, the server
runs as the ``postgres`` user (PostgreSQL refuses root).

    with PrivatePostgres(tmp_path) as pg:
        url = pg.url            # postgresql+psycopg://postgres@127.0.0.1:PORT/jobwarden
        pg.restart()            # the chaos tests: the database goes away and comes back
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Self

from .net import free_port

__all__ = ["PrivatePostgres"]

_BINARIES = ("initdb", "pg_ctl", "postgres")


def _find(binary: str) -> str | None:
    found = shutil.which(binary)
    if found:
        return found
    for base in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (base / binary).exists():
            return str(base / binary)
    return None


class PrivatePostgres:
    def __init__(self, directory: Path | None = None, *, database: str = "jobwarden") -> None:
        # Short socket paths: a Unix socket path is limited to ~100 bytes.
        self._own_dir = directory is None
        self.directory = Path(directory or tempfile.mkdtemp(prefix="jw-pg-"))
        self.data = self.directory / "data"
        self.socket_dir = Path(tempfile.mkdtemp(prefix="jw-pgs-"))
        self.log = self.directory / "postgres.log"
        self.database = database
        self.port = free_port()
        self._user = self._run_as()

    @staticmethod
    def available() -> str | None:
        """None when a private PostgreSQL can run here, else why not."""
        missing = [b for b in _BINARIES if _find(b) is None]
        if missing:
            return f"PostgreSQL server binaries not found ({', '.join(missing)}): install postgresql"
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                return "running as root and there is no postgres user to run PostgreSQL as"
        return None

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{self.database}"

    @property
    def plain_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.database}"

    def _run_as(self) -> pwd.struct_passwd | None:
        return pwd.getpwnam("postgres") if os.geteuid() == 0 else None

    def _command(self, *args: str) -> list[str]:
        binary = _find(args[0])
        assert binary is not None
        return [binary, *args[1:]]

    def _run(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[bytes]:
        kwargs: dict[str, Any] = {}
        command = self._command(*args)
        if self._user is not None:
            setpriv = shutil.which("setpriv")
            if setpriv is not None:
                # The user is switched by setpriv, not by subprocess's user=/group=: those make Python
                # fork() instead of vfork(), and a fork child of this many-threaded process (gRPC's
                # threads) sometimes crashed before its exec (pg_ctl "died with SIGSEGV" in the chaos
                # test, under load).
                command = [
                    setpriv,
                    f"--reuid={self._user.pw_uid}",
                    f"--regid={self._user.pw_gid}",
                    "--clear-groups",
                    *command,
                ]
            else:
                kwargs["user"] = self._user.pw_uid
                kwargs["group"] = self._user.pw_gid
                kwargs["extra_groups"] = []
        return subprocess.run(
            command,
            check=check,
            capture_output=True,
            timeout=timeout,
            cwd=self.directory,
            env={**os.environ, "LC_ALL": "C"},
            **kwargs,
        )

    def _chown(self, path: Path) -> None:
        if self._user is not None:
            os.chown(path, self._user.pw_uid, self._user.pw_gid)

    def start(self) -> PrivatePostgres:
        reason = self.available()
        if reason:
            raise RuntimeError(reason)
        self.directory.mkdir(parents=True, exist_ok=True)
        for path in (self.directory, self.socket_dir):
            self._chown(path)
        if not self.data.exists():
            self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
            with open(self.data / "postgresql.conf", "a") as conf:
                conf.write(
                    f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\n"
                    f"unix_socket_directories = '{self.socket_dir}'\n"
                    "fsync = off\nsynchronous_commit = on\nfull_page_writes = off\n"
                    "max_connections = 200\nshared_buffers = 32MB\n"
                )
        self._start_server()
        self._create_database()
        return self

    def _start_server(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")

    def _create_database(self) -> None:
        import psycopg

        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(
                    f"postgresql://postgres@127.0.0.1:{self.port}/postgres",
                    autocommit=True,
                    connect_timeout=3,
                ) as conn:
                    exists = conn.execute(
                        "SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)
                    ).fetchone()
                    if not exists:
                        conn.execute(f'CREATE DATABASE "{self.database}"')
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self, mode: str = "fast") -> None:
        if self.data.exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop", check=False)

    def restart(self) -> None:
        """Stop (immediately: like a crash) and start again on the same port and data."""
        self.stop("immediate")
        self._start_server()

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run one statement (autocommit) and return its rows ([] for none)."""
        import psycopg

        with psycopg.connect(self.plain_url, autocommit=True, connect_timeout=5) as conn:
            cursor = conn.execute(sql, params)
            return list(cursor.fetchall()) if cursor.description else []

    def close(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.socket_dir, ignore_errors=True)
        if self._own_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
