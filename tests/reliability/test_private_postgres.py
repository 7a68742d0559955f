"""The private PostgreSQL of the chaos tests: it starts, crashes and comes back with its data."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.postgres import PrivatePostgres


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    reason = PrivatePostgres.unavailable()
    if reason:
        pytest.skip(reason)
    with PrivatePostgres() as server:
        yield server


def test_a_crashed_private_postgres_comes_back_with_its_committed_rows(
    private_postgres: PrivatePostgres,
) -> None:
    import psycopg

    with psycopg.connect(private_postgres.dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (n int)")
        conn.execute("INSERT INTO kept VALUES (1), (2)")
    private_postgres.crash()
    assert not private_postgres.running
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(private_postgres.dsn, connect_timeout=2)
    private_postgres.start()
    with psycopg.connect(private_postgres.dsn) as conn:
        assert conn.execute("SELECT count(*) FROM kept").fetchone() == (2,)
    assert private_postgres.url.startswith("postgresql+psycopg://postgres@127.0.0.1:")


def test_without_the_binaries_it_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.support import private_postgres

    monkeypatch.setattr(private_postgres, "_find", lambda binary: None)
    reason = PrivatePostgres.unavailable()
    assert reason is not None
    assert "initdb, pg_ctl, postgres" in reason


async def test_reads_while_the_database_is_down_answer_unavailable_and_work_again_after(
    private_postgres: PrivatePostgres,
) -> None:
    """A read the engine cannot make answers UNAVAILABLE (a client waits or fails over), naming the
    database, not an unexplained UNKNOWN; once the database is back, the same read works."""
    import grpc
    from jobwarden.v1 import job_service_pb2 as js
    from jobwarden.v1 import job_service_pb2_grpc

    from tests.support import EngineProcess

    with EngineProcess(private_postgres.url) as engine:
        async with grpc.aio.insecure_channel(engine.address) as channel:
            jobs = job_service_pb2_grpc.JobServiceStub(channel)
            submitted = (await jobs.SubmitJob(js.SubmitJobRequest(action="outage"), timeout=30)).job
            private_postgres.crash()
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await jobs.ListJobs(js.ListJobsRequest(action="outage"), timeout=30)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, refused.value.details()
            assert "the database cannot be read now" in (refused.value.details() or "")
            private_postgres.start()
            listed = await jobs.ListJobs(js.ListJobsRequest(action="outage"), timeout=30)
            assert [job.id for job in listed.jobs] == [submitted.id]
