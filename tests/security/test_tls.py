"""TLS on the engine's port, mutual TLS as an option, and the clients (SDK, CLI, console) that reach
it with the CA, a client certificate and a token from the environment."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import pytest
from jobwarden.contract import JobEventType, JobStatus
from jobwarden.sdk import EngineUnavailable, Executor, JobClient, JobContext, Worker
from jobwarden.sdk._credentials import ClientSecurity, aio_channel, caller_role
from jobwarden.server.api.auth import Tokens
from jobwarden.server.api.tls import TlsError, TlsFiles, server_credentials
from jobwarden.v1 import job_service_pb2 as js
from jobwarden.v1 import job_service_pb2_grpc

from tests.conftest import EngineHandle
from tests.security.conftest import Pki, SecureEngineFactory, token_of

JOBWARDEN = str(Path(sys.executable).with_name("jobwarden"))


def security(
    pki: Pki, *, ca: Path | None = None, client: bool = False, token: str | None = None
) -> ClientSecurity:
    return ClientSecurity(
        token=token,
        tls=True,
        ca=(ca or pki.ca).read_bytes(),
        cert=pki.client_cert.read_bytes() if client else None,
        key=pki.client_key.read_bytes() if client else None,
    )


async def stats(channel: grpc.aio.Channel) -> js.GetStatsResponse:
    return await job_service_pb2_grpc.JobServiceStub(channel).GetStats(js.GetStatsRequest(), timeout=5)


@pytest.fixture
async def tls_engine(secure_engine_factory: SecureEngineFactory, pki: Pki, tokens: Tokens) -> EngineHandle:
    return await secure_engine_factory(tls=TlsFiles(pki.server_cert, pki.server_key), tokens=tokens)


@pytest.fixture
async def mtls_engine(secure_engine_factory: SecureEngineFactory, pki: Pki) -> EngineHandle:
    return await secure_engine_factory(tls=TlsFiles(pki.server_cert, pki.server_key, client_ca=pki.ca))


async def test_tls_with_a_token(tls_engine: EngineHandle, pki: Pki) -> None:
    async with aio_channel(tls_engine.address, security=security(pki, token=token_of("vera"))) as channel:
        await stats(channel)
    # Plaintext, an untrusted CA, or no token: no way in.
    async with grpc.aio.insecure_channel(tls_engine.address) as plain:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stats(plain)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    async with aio_channel(
        tls_engine.address, security=security(pki, ca=pki.rogue_ca, token=token_of("vera"))
    ) as rogue:
        with pytest.raises(grpc.aio.AioRpcError) as untrusted:
            await stats(rogue)
        assert untrusted.value.code() == grpc.StatusCode.UNAVAILABLE
    async with aio_channel(tls_engine.address, security=security(pki)) as anonymous:
        with pytest.raises(grpc.aio.AioRpcError) as unauthenticated:
            await stats(anonymous)
        assert unauthenticated.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_mutual_tls_names_the_actor_by_certificate(mtls_engine: EngineHandle, pki: Pki) -> None:
    for bad in (
        security(pki),
        ClientSecurity(
            tls=True, ca=pki.ca.read_bytes(), cert=pki.rogue_cert.read_bytes(), key=pki.rogue_key.read_bytes()
        ),
    ):
        async with aio_channel(mtls_engine.address, security=bad) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stats(channel)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    async with aio_channel(mtls_engine.address, security=security(pki, client=True)) as channel:
        jobs = job_service_pb2_grpc.JobServiceStub(channel)
        job = (await jobs.SubmitJob(js.SubmitJobRequest(action="mtls"))).job
        events = (await jobs.GetJobEvents(js.GetJobEventsRequest(job_id=job.id))).events
        assert events[0].type == JobEventType.SUBMITTED
        assert events[0].actor == "cert:worker-7"


async def test_sdk_worker_over_mutual_tls(
    mtls_engine: EngineHandle, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBWARDEN_TLS_CA", str(pki.ca))
    monkeypatch.setenv("JOBWARDEN_TLS_CERT", str(pki.client_cert))
    monkeypatch.setenv("JOBWARDEN_TLS_KEY", str(pki.client_key))

    class Echo(Executor):
        action = "echo"

        async def execute(self, ctx: JobContext) -> dict[str, Any]:
            return dict(ctx.input)

    worker = Worker([Echo], engine=mtls_engine.address, capacity=1, name="mtls-worker")
    task = asyncio.get_running_loop().create_task(worker.run())
    try:
        await asyncio.wait_for(worker.wait_connected(), 30)
        async with JobClient(mtls_engine.address) as client:
            job = await client.submit("echo", {"x": 1})
            done = await asyncio.wait_for(client.wait(job.id), 30)
            assert done.status == JobStatus.COMPLETED
            assert done.result["x"] == 1
    finally:
        worker.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)
    # Without its certificate the same worker cannot get in.
    monkeypatch.delenv("JOBWARDEN_TLS_CERT")
    monkeypatch.delenv("JOBWARDEN_TLS_KEY")
    with pytest.raises(EngineUnavailable):
        await Worker([Echo], engine=mtls_engine.address, connect_timeout=1.0, reconnect_initial=0.05).run()


def test_a_token_is_never_sent_in_clear_across_a_network() -> None:
    plain = ClientSecurity(token="a-token-of-sixteen-chars")
    assert plain.credentials("127.0.0.1:50051") is not None  # loopback: local credentials
    assert plain.credentials("localhost:50051") is not None
    with pytest.raises(ValueError, match="only over TLS"):
        plain.credentials("10.1.2.3:50051")
    with pytest.raises(ValueError, match="go together"):
        ClientSecurity.from_environment({"JOBWARDEN_TLS_CERT": "/x.pem"})
    with pytest.raises(ValueError, match="cannot read"):
        ClientSecurity.from_environment({"JOBWARDEN_TOKEN_FILE": "/nonexistent/token"})
    assert ClientSecurity.from_environment({}).credentials("10.1.2.3:1") is None


def test_bad_tls_files_are_refused(pki: Pki, tmp_path: Path) -> None:
    with pytest.raises(TlsError, match="cannot read"):
        server_credentials(TlsFiles(tmp_path / "missing.pem", pki.server_key))
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello")
    with pytest.raises(TlsError, match="not PEM"):
        server_credentials(TlsFiles(pki.server_cert, not_pem))
    with pytest.raises(TlsError, match="no private key"):
        server_credentials(TlsFiles(pki.server_cert, pki.server_cert))


def test_serve_with_tls_and_the_cli_through_it(pki: Pki, tmp_path: Path) -> None:
    from tests.support import EngineProcess

    engine = EngineProcess(
        f"sqlite:///{tmp_path / 'tls.db'}",
        extra_args=("--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key)),
        log_path=tmp_path / "engine.log",
    ).start()
    try:
        env = {"PATH": "/usr/bin:/bin", "JOBWARDEN_ENGINE": engine.address}
        ok = subprocess.run(
            [JOBWARDEN, "submit", "tls-cli"],
            env={**env, "JOBWARDEN_TLS_CA": str(pki.ca)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert ok.returncode == 0, ok.stderr
        plain = subprocess.run([JOBWARDEN, "jobs"], env=env, capture_output=True, text=True, timeout=60)
        assert plain.returncode != 0
    finally:
        engine.terminate()
    for args, message in (
        (("--tls-cert", str(pki.server_cert)), "go together"),
        (("--tls-client-ca", str(pki.ca)), "needs --tls-cert"),
        (("--tls-cert", str(tmp_path / "none.pem"), "--tls-key", str(pki.server_key)), "cannot read"),
    ):
        result = subprocess.run(
            [JOBWARDEN, "serve", "--port", "0", "--db", f"sqlite:///{tmp_path / 'x.db'}", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2, result
        assert message in result.stderr


async def test_the_console_opens_read_only_for_a_viewer(
    tls_engine: EngineHandle, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jobwarden.tui import _app, commands

    monkeypatch.setenv("JOBWARDEN_TLS_CA", str(pki.ca))
    opened: list[bool] = []
    # Everything real up to the point where the console would take over the terminal.
    monkeypatch.setattr(_app.ConsoleApp, "run", lambda self, *a, **k: opened.append(self.read_only))
    for name, read_only in (("vera", True), ("otto", False), ("ada", False)):
        monkeypatch.setenv("JOBWARDEN_TOKEN", token_of(name))
        assert (
            await asyncio.to_thread(caller_role, tls_engine.address)
            == {"vera": "viewer", "otto": "operator", "ada": "admin"}[name]
        )
        args = argparse.Namespace(engine=tls_engine.address, read_only=False, keep_finished=10)
        assert await asyncio.to_thread(commands._console, args) == 0
        assert opened.pop() is read_only, name
    # Without a token it says so and stops, rather than showing an engine that cannot be reached.
    monkeypatch.delenv("JOBWARDEN_TOKEN")
    args = argparse.Namespace(engine=tls_engine.address, read_only=False, keep_finished=10)
    assert await asyncio.to_thread(commands._console, args) == 2
    assert not opened
