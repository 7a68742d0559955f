"""The schema version: stamped on create, a newer one refused (and left alone), an older or missing
one migrated; engines starting at once on one new database create it once."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from jobwarden.contract import JobStatus
from jobwarden.server.core import SCHEMA_VERSION, Job, SchemaVersionError, SqlStore, WriteSet
from jobwarden.server.core.migrations import MIGRATIONS
from jobwarden.server.core.store import job_row
from jobwarden.server.core.tables import meta_t, workers_t
from sqlalchemy import delete, inspect, select, update


def stored_version(store: SqlStore) -> list[str]:
    """Every schema_version row (one, once stamped)."""
    with store.engine.connect() as conn:
        return list(conn.execute(select(meta_t.c.value).where(meta_t.c.key == "schema_version")).scalars())


def set_version(url: str, value: str | None) -> None:
    store = SqlStore(url)
    with store.engine.begin() as conn:
        if value is None:
            conn.execute(delete(meta_t).where(meta_t.c.key == "schema_version"))
        else:
            conn.execute(update(meta_t).where(meta_t.c.key == "schema_version").values(value=value))
    store.close()


def database_with_a_job(url: str) -> Job:
    job = Job(id="01900000-0000-7000-8000-000000000001", action="a", status=JobStatus.QUEUED, input={"x": 1},
              created_at=1.0, updated_at=1.0)  # fmt: skip
    store = SqlStore(url)
    store.create_schema()
    store.write(WriteSet(new_jobs=[job_row(job, with_input=True)]))
    store.close()
    return job


def table_names(store: SqlStore) -> list[str]:
    with store.engine.connect() as conn:
        return sorted(inspect(conn).get_table_names())


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest) -> str:
    value: str = request.getfixturevalue(f"{request.param}_url")
    return value


def test_the_migrations_are_numbered_in_order() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, SCHEMA_VERSION + 1))


def test_a_new_database_is_stamped_with_this_version(url: str) -> None:
    store = SqlStore(url)
    store.create_schema()
    store.create_schema()  # and starting again changes nothing
    assert stored_version(store) == [str(SCHEMA_VERSION)]
    store.close()


def test_a_database_of_a_newer_version_is_refused_and_left_unchanged(url: str) -> None:
    job = database_with_a_job(url)
    set_version(url, str(SCHEMA_VERSION + 1))
    store = SqlStore(url)
    tables = table_names(store)

    with pytest.raises(SchemaVersionError) as refused:
        store.create_schema()

    assert refused.value.message == (
        f"the database at {store.engine.url.render_as_string(hide_password=True)} has schema version "
        f"{SCHEMA_VERSION + 1}; this jobwarden knows up to {SCHEMA_VERSION}: upgrade jobwarden"
    )
    assert stored_version(store) == [str(SCHEMA_VERSION + 1)]
    assert table_names(store) == tables
    assert store.get_job(job.id) is not None
    store.close()


def test_an_unreadable_version_is_refused(url: str) -> None:
    database_with_a_job(url)
    set_version(url, "one")
    store = SqlStore(url)
    with pytest.raises(SchemaVersionError, match="has an unreadable schema version 'one'"):
        store.create_schema()
    assert stored_version(store) == ["one"]
    store.close()


def test_a_database_without_a_version_is_migrated_and_stamped(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    job = database_with_a_job(url)
    set_version(url, None)
    store = SqlStore(url)
    # An earlier jobwarden may also lack a table of today's.
    with store.engine.begin() as conn:
        workers_t.drop(conn)

    with caplog.at_level(logging.INFO, logger="jobwarden.store"):
        store.create_schema()

    assert stored_version(store) == [str(SCHEMA_VERSION)]
    assert "workers" in table_names(store)
    got = store.get_job(job.id)
    assert got is not None
    assert got.input == {"x": 1}
    assert (
        "migrated to schema version 1: stamp a database made by a jobwarden that wrote no version"
        in caplog.text
    )
    store.close()


def test_engines_starting_at_once_on_a_new_database_create_it_once(url: str) -> None:
    stores = [SqlStore(url) for _ in range(4)]
    start = threading.Barrier(len(stores))
    errors: list[BaseException] = []

    def open_store(store: SqlStore) -> None:
        start.wait()
        try:
            store.create_schema()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=open_store, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert stored_version(stores[0]) == [str(SCHEMA_VERSION)]
    for store in stores:
        store.close()


def test_engines_starting_at_once_on_an_unversioned_database_migrate_it_once(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    database_with_a_job(url)
    set_version(url, None)
    stores = [SqlStore(url) for _ in range(4)]
    start = threading.Barrier(len(stores))
    errors: list[BaseException] = []

    def open_store(store: SqlStore) -> None:
        start.wait()
        try:
            store.create_schema()
        except BaseException as error:
            errors.append(error)

    with caplog.at_level(logging.INFO, logger="jobwarden.store"):
        threads = [threading.Thread(target=open_store, args=(s,)) for s in stores]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    assert errors == []
    assert stored_version(stores[0]) == [str(SCHEMA_VERSION)]
    assert caplog.text.count("migrated to schema version 1") == 1
    for store in stores:
        store.close()


def test_serve_refuses_a_database_of_a_newer_version_in_one_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'future.db'}"
    database_with_a_job(url)
    set_version(url, "99")
    done = subprocess.run(
        [sys.executable, "-m", "jobwarden.sdk.cli", "serve", "--port", "0", "--db", url],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"jobwarden serve: the database at {url} has schema version 99; this jobwarden knows up to "
        f"{SCHEMA_VERSION}: upgrade jobwarden"
    )
    store = SqlStore(url)
    assert stored_version(store) == ["99"]
    store.close()
