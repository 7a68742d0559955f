"""The server around the engine: health, reflection, the serve command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from jobwarden.server.core import EngineConfig

from tests.conftest import EngineHandle, Stubs


async def test_health_serves_every_service(engine: EngineHandle, stubs: Stubs) -> None:
    health = health_pb2_grpc.HealthStub(stubs.channel)
    for service in (
        "",
        "jobwarden.v1.JobService",
        "jobwarden.v1.ExecutorService",
        "jobwarden.v1.LockService",
    ):
        response = await health.Check(health_pb2.HealthCheckRequest(service=service))
        assert response.status == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_lists_the_services(engine: EngineHandle, stubs: Stubs) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(stubs.channel)

    async def ask() -> reflection_pb2.ServerReflectionResponse:
        call = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        async for response in call:
            return response
        raise AssertionError("no answer")

    response = await ask()
    names = {s.name for s in response.list_services_response.service}
    assert {"jobwarden.v1.JobService", "jobwarden.v1.ExecutorService", "jobwarden.v1.LockService"} <= names


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobwarden.sdk.cli", *args], capture_output=True, text=True, timeout=60
    )


def test_serve_help_and_bad_config(tmp_path: Path) -> None:
    assert "--db" in run_cli("serve", "--help").stdout
    bad = tmp_path / "bad.toml"
    bad.write_text("[actions.transcode]\nmax_running = 2\nheartbeat_timeout = 'soon'\n")
    result = run_cli("serve", "--config", str(bad), "--port", "0")
    assert result.returncode == 2
    assert "actions.transcode.timeouts.heartbeat: 'soon' is not a duration" in result.stderr
    missing = run_cli("serve", "--config", str(tmp_path / "missing.toml"))
    assert missing.returncode == 2
    assert "does not exist" in missing.stderr


def test_serve_reports_an_unreachable_database(tmp_path: Path) -> None:
    result = run_cli("serve", "--db", "postgresql+psycopg://nobody:s3cret@127.0.0.1:1/none", "--port", "0")
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith(
        "jobwarden serve: cannot use the database postgresql+psycopg://***@127.0.0.1:1/none: "
        "connection failed"
    )
    assert "Connection refused" in line
    assert "s3cret" not in result.stderr


def test_serve_refuses_a_database_it_cannot_use_saying_why(tmp_path: Path) -> None:
    use = "use sqlite:///FILE or postgresql://USER@HOST:PORT/DATABASE"
    for url, message in (
        ("mysql://root:pw@db/jobs", f"the database must be SQLite or PostgreSQL, not a 'mysql' URL: {use}"),
        ("jobs.db", f"the database must be SQLite or PostgreSQL, not 'jobs.db', which is not a URL: {use}"),
        (
            "sqlite:///:memory:",
            "an in-memory SQLite database keeps nothing (and each connection would have its own): give "
            "a file, sqlite:///FILE",
        ),
        (
            f"sqlite:///{tmp_path}/no/such/folder/jobs.db",
            f"the SQLite database {tmp_path}/no/such/folder/jobs.db cannot be made: its folder "
            f"{tmp_path}/no/such/folder does not exist",
        ),
    ):
        result = run_cli("serve", "--db", url, "--port", "0")
        assert (result.returncode, result.stderr) == (2, f"jobwarden serve: {message}\n"), url
    assert list(tmp_path.iterdir()) == []  # nothing made
    config = tmp_path / "jobwarden.toml"
    config.write_text('[engine]\ndb = "mysql://db/jobs"\n')
    from_file = run_cli("serve", "--config", str(config), "--port", "0")
    assert from_file.returncode == 2
    assert f"engine: the database must be SQLite or PostgreSQL, not a 'mysql' URL: {use}" in from_file.stderr


def test_a_postgres_url_is_taken_as_postgresql() -> None:
    """Many hosting services write postgres://; SQLAlchemy knows only postgresql://."""
    config = EngineConfig(db_url="postgres://app@db.internal:5432/jobs")
    assert config.check_store() == ""
    assert config.db_url == "postgresql://app@db.internal:5432/jobs"
    assert config.shown_db_url == "postgresql://***@db.internal:5432/jobs"
