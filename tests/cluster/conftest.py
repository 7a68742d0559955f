"""Several engines on one PostgreSQL of the tests' own (tests/support/private_postgres.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.support.private_postgres import PrivatePostgres


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[PrivatePostgres]:
    """One private server per test module (starting one takes seconds); skipped with the reason when
    the PostgreSQL binaries are missing."""
    reason = PrivatePostgres.available()
    if reason:
        pytest.skip(reason)
    with PrivatePostgres() as pg:
        yield pg


@pytest.fixture
def cluster_db(private_postgres: PrivatePostgres) -> str:
    """A fresh database on the private server: the URL the engines of one test share."""
    name = f"c_{uuid.uuid4().hex[:10]}"
    private_postgres.execute(f'CREATE DATABASE "{name}"')
    return private_postgres.url.rsplit("/", 1)[0] + f"/{name}"
