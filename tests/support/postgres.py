"""The private PostgreSQL of ``private_postgres.py``, with what the chaos tests add to it.

One implementation runs ``initdb`` and ``pg_ctl`` (``private_postgres.PrivatePostgres``); this names
the rest the chaos tests and the bench smoke test use::

    with PrivatePostgres() as pg:
        pg.url_via(proxy.address)         # the same database through a TCP proxy in front of it
        pg.crash()                        # pg_ctl stop -m immediate: no checkpoint, like a kill -9
        pg.start()                        # crash recovery, then the same data

``PrivatePostgres.unavailable()`` says why one cannot run here (no binaries, root without a
``postgres`` user, no psycopg), for a ``pytest.skip`` with that reason.
"""

from __future__ import annotations

from . import private_postgres

__all__ = ["PrivatePostgres"]


class PrivatePostgres(private_postgres.PrivatePostgres):
    """A PostgreSQL server of a test's own, on ``127.0.0.1:port``, trust authentication."""

    @staticmethod
    def unavailable() -> str | None:
        """Why a private PostgreSQL cannot run on this machine, or None when it can."""
        reason = private_postgres.PrivatePostgres.available()
        if reason:
            return reason
        try:
            import psycopg  # noqa: F401
        except ImportError:
            return "psycopg is not installed (pip install 'jobwarden[server]')"
        return None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url_via(self, address: str) -> str:
        """The URL of this database reached through ``address`` (a proxy in front of it)."""
        return f"postgresql+psycopg://postgres@{address}/{self.database}"

    @property
    def dsn(self) -> str:
        """A libpq connection string, for psycopg."""
        return self.plain_url

    def crash(self) -> None:
        """Stop at once, as a crash would: no checkpoint; the next start runs crash recovery."""
        self.stop("immediate")

    @property
    def running(self) -> bool:
        done = self._run("pg_ctl", "-D", str(self.data), "status", check=False)
        return done.returncode == 0

    def remove(self) -> None:
        """Stop the server and delete its directories."""
        self.close()
