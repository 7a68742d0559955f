"""Token authentication and roles, on every method of every service: who may call what, what a refusal
looks like (UNAUTHENTICATED or PERMISSION_DENIED, logged, nothing changed), the worker role's limits,
and the audit trail (the actor of each cancel and retry in the job's events)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import message_factory
from jobwarden.contract import JobEventType, JobStatus
from jobwarden.server.api.auth import TokenError, Tokens, tokens_from_environment
from jobwarden.v1 import executor_service_pb2 as ep
from jobwarden.v1 import job_pb2, job_service_pb2, lock_service_pb2
from jobwarden.v1 import job_service_pb2 as js
from jobwarden.v1 import lock_service_pb2 as ls

from tests.conftest import EngineHandle
from tests.security.conftest import TOKENS, SecureEngineFactory, token_of
from tests.support import wait_for, wait_for_async

READ = {
    "GetJob",
    "ListJobs",
    "GetJobEvents",
    "WatchJobs",
    "GetStats",
    "GetJobLogs",
    "GetActionConfig",
    "ListActions",
    "ListWorkers",
    "ListLocks",
    "GetWorkflow",
    "ListWorkflows",
    "GetWorkOrder",
    "ListWorkOrders",
    "GetWorkflowRun",
}
OPERATE = {
    "SubmitJob",
    "SubmitJobs",
    "CancelJob",
    "RetryJob",
    "PauseAction",
    "ResumeAction",
    "AcquireLock",
    "ReleaseLock",
    "PutWorkflow",
    "StartWorkflow",
    "RetryWorkOrder",
    "CancelWorkflowRun",
}
#: admin only
ADMIN = {"SetActionConfig", "ForceReleaseJobLocks"}
ALL = READ | OPERATE | ADMIN | {"Connect"}
#: what each principal may call (the worker: its own action's config, and Connect for it)
ALLOWED = {
    "vera": READ,
    "otto": READ | OPERATE,
    "wanda": {"Connect", "GetActionConfig"},
    "ada": ALL,
}
DENIED_CODES = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)


def _methods() -> Iterator[tuple[str, str, Any, Any, bool, bool]]:
    from jobwarden.v1 import executor_service_pb2, workflow_service_pb2

    for module, service in (
        (job_service_pb2, "JobService"),
        (executor_service_pb2, "ExecutorService"),
        (lock_service_pb2, "LockService"),
        (workflow_service_pb2, "WorkflowService"),
    ):
        descriptor = module.DESCRIPTOR.services_by_name[service]
        for method in descriptor.methods:
            yield (
                method.name,
                f"/{descriptor.full_name}/{method.name}",
                message_factory.GetMessageClass(method.input_type),
                message_factory.GetMessageClass(method.output_type),
                method.client_streaming,
                method.server_streaming,
            )


METHODS = list(_methods())


def test_the_role_table_covers_every_method() -> None:
    # A new RPC must be given to a role here (and in auth.METHOD_PERMISSIONS) on purpose.
    assert {name for name, *_ in METHODS} == ALL


def _request(name: str, request_class: Any) -> Any:
    request = request_class()
    if name == "GetActionConfig":
        request.action = "transcode"
    return request


async def call(channel: grpc.aio.Channel, name: str, token: str | None) -> grpc.StatusCode:
    """Make the call ``name`` (a request that changes nothing) and return its status code."""
    metadata = (("authorization", f"Bearer {token}"),) if token is not None else ()
    for method_name, path, request_class, response_class, client_streaming, server_streaming in METHODS:
        if method_name != name:
            continue
        serialize, deserialize = request_class.SerializeToString, response_class.FromString
        try:
            if client_streaming:
                stream = channel.stream_stream(
                    path, request_serializer=serialize, response_deserializer=deserialize
                )
                connect = stream(metadata=metadata, timeout=10)
                register = ep.Register(
                    worker_name="matrix", executors=[ep.ExecutorSpec(action="transcode")], capacity=1
                )
                await connect.write(ep.ConnectRequest(register=register))
                first = await connect.read()
                connect.cancel()
                assert first.WhichOneof("message") == "registered"
            elif server_streaming:
                watch = channel.unary_stream(
                    path, request_serializer=serialize, response_deserializer=deserialize
                )
                stream_call = watch(_request(name, request_class), metadata=metadata, timeout=10)
                await stream_call.read()
                stream_call.cancel()
            else:
                unary = channel.unary_unary(
                    path, request_serializer=serialize, response_deserializer=deserialize
                )
                await unary(_request(name, request_class), metadata=metadata, timeout=10)
        except grpc.aio.AioRpcError as error:
            return error.code()
        return grpc.StatusCode.OK
    raise AssertionError(f"no method {name}")


def fingerprint(engine: EngineHandle) -> tuple[Any, ...]:
    core = engine.core
    return (
        core.bus.head,
        core.registry.sequence,
        sorted(core.sessions),
        [c.to_dict() for c in core.action_configs()],
        [(v.resource, [h.holder for h in v.holders]) for v in core.list_locks()],
        core.writer.stats.rows,
    )


@pytest.fixture
async def auth_engine(secure_engine_factory: SecureEngineFactory, tokens: Tokens) -> EngineHandle:
    return await secure_engine_factory(tokens=tokens)


@pytest.fixture
async def channel(auth_engine: EngineHandle) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(auth_engine.address) as open_channel:
        yield open_channel


async def test_every_refusal_is_unauthenticated_or_denied_logged_and_changes_nothing(
    auth_engine: EngineHandle, channel: grpc.aio.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="jobwarden.auth")
    await auth_engine.core.writer.flush()
    before = fingerprint(auth_engine)
    refused = 0
    for name in sorted(ALL):
        assert await call(channel, name, None) == grpc.StatusCode.UNAUTHENTICATED, name
        assert await call(channel, name, "not-a-known-token-at-all") == grpc.StatusCode.UNAUTHENTICATED, name
        refused += 2
        for principal, allowed in ALLOWED.items():
            if name not in allowed:
                assert await call(channel, name, token_of(principal)) == grpc.StatusCode.PERMISSION_DENIED, (
                    principal,
                    name,
                )
                refused += 1
    await auth_engine.core.writer.flush()
    assert fingerprint(auth_engine) == before, "a refused call changed the engine"
    records = [
        r for r in caplog.records if r.name == "jobwarden.auth" and r.getMessage().startswith("refused")
    ]
    assert len(records) == refused
    assert auth_engine.server.auth is not None
    assert sum(auth_engine.server.auth.refusals.values()) == refused
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert not any(token in logged for _, token in TOKENS.values()), "a token reached the log"
    assert "not-a-known-token-at-all" not in logged
    print(f"auth: {refused} refused calls, each logged, none changed anything")


async def test_each_role_may_call_what_it_is_given(channel: grpc.aio.Channel) -> None:
    for principal, allowed in ALLOWED.items():
        for name in sorted(allowed):
            code = await call(channel, name, token_of(principal))
            assert code not in DENIED_CODES, (principal, name, code)


async def test_health_needs_no_token(channel: grpc.aio.Channel) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    response = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    assert response.status == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_needs_a_reader(channel: grpc.aio.Channel) -> None:
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")

    async def first(metadata: tuple[tuple[str, str], ...]) -> Any:
        stream = stub.ServerReflectionInfo(metadata=metadata)
        await stream.write(request)
        try:
            return await stream.read()
        finally:
            stream.cancel()

    # Refused on its metadata alone, before any request: nothing is written, since a write racing the
    # refusal fails on the client with gRPC's own INTERNAL ("Failed execute_batch") instead.
    anonymous = stub.ServerReflectionInfo()
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await asyncio.wait_for(anonymous.read(), 30)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    listed = await first((("authorization", f"Bearer {token_of('vera')}"),))
    assert "jobwarden.v1.JobService" in {s.name for s in listed.list_services_response.service}


async def test_the_actor_of_each_cancel_and_retry_is_in_the_job_events(channel: grpc.aio.Channel) -> None:
    from jobwarden.v1 import job_service_pb2_grpc

    jobs = job_service_pb2_grpc.JobServiceStub(channel)

    def as_(name: str) -> tuple[tuple[str, str]]:
        return (("authorization", f"Bearer {token_of(name)}"),)

    job = (await jobs.SubmitJob(js.SubmitJobRequest(action="audit"), metadata=as_("otto"))).job
    await jobs.CancelJob(js.CancelJobRequest(job_id=job.id, reason="wrong input"), metadata=as_("otto"))
    await jobs.RetryJob(js.RetryJobRequest(job_id=job.id), metadata=as_("ada"))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await jobs.CancelJob(js.CancelJobRequest(job_id=job.id), metadata=as_("vera"))
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    events = (await jobs.GetJobEvents(js.GetJobEventsRequest(job_id=job.id), metadata=as_("vera"))).events
    trail = [
        (JobStatus(ev.job.status).name, ev.actor)
        for ev in events
        if ev.type in (JobEventType.SUBMITTED, JobEventType.STATUS_CHANGED)
    ]
    assert trail == [("QUEUED", "otto"), ("CANCELLED", "otto"), ("QUEUED", "ada")]
    assert events[1].reason == "wrong input"


async def test_only_an_admin_force_releases_a_stopping_jobs_locks_and_is_named_for_it(
    auth_engine: EngineHandle, channel: grpc.aio.Channel
) -> None:
    from jobwarden.v1 import executor_service_pb2_grpc, job_service_pb2_grpc, lock_service_pb2_grpc

    def as_(name: str) -> tuple[tuple[str, str]]:
        return (("authorization", f"Bearer {token_of(name)}"),)

    jobs = job_service_pb2_grpc.JobServiceStub(channel)
    locks = lock_service_pb2_grpc.LockServiceStub(channel)
    stream = executor_service_pb2_grpc.ExecutorServiceStub(channel).Connect(metadata=as_("wanda"))
    register = ep.Register(worker_name="deaf", executors=[ep.ExecutorSpec(action="transcode")], capacity=2)
    await stream.write(ep.ConnectRequest(register=register))
    assert (await stream.read()).WhichOneof("message") == "registered"

    async def next_message(kind: str) -> Any:
        while True:
            message = await asyncio.wait_for(stream.read(), 15)
            if message.WhichOneof("message") == kind:
                return getattr(message, kind)
            if kind == "assignment" and message.WhichOneof("message") == "assignments":
                return message.assignments.assignments[0]

    asset = [job_pb2.LockRequest(resource="asset:7", mode=job_pb2.LOCK_MODE_EXCLUSIVE)]
    quick = job_pb2.JobTimeouts()
    quick.execution.FromMilliseconds(50)
    submit = js.SubmitJobRequest(action="transcode", locks=asset, timeouts=quick)
    job = (await jobs.SubmitJob(submit, metadata=as_("otto"))).job
    await next_message("assignment")
    assert (await next_message("cancel_request")).job_id == job.id  # and the worker ignores it
    waiter = (
        await jobs.SubmitJob(js.SubmitJobRequest(action="transcode", locks=asset), metadata=as_("otto"))
    ).job

    async def waiting() -> bool:
        got = await jobs.GetJob(js.GetJobRequest(job_id=waiter.id), metadata=as_("vera"))
        return bool(got.job.status == JobStatus.WAITING_FOR_LOCK)

    await wait_for_async(waiting, message="the second job to wait for the lock")
    release = ls.ForceReleaseJobLocksRequest(job_id=job.id, reason="encoder wedged")
    await auth_engine.core.writer.flush()
    before = fingerprint(auth_engine)
    for name in ("vera", "otto", "wanda"):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await locks.ForceReleaseJobLocks(release, metadata=as_(name))
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED, name
    with pytest.raises(grpc.aio.AioRpcError) as not_stopping:
        await locks.ForceReleaseJobLocks(
            ls.ForceReleaseJobLocksRequest(job_id=waiter.id, reason="no"), metadata=as_("ada")
        )
    assert not_stopping.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    await auth_engine.core.writer.flush()
    assert fingerprint(auth_engine) == before, "a refused force release changed something"

    released = await locks.ForceReleaseJobLocks(release, metadata=as_("ada"))
    assert (released.released, JobStatus(released.job.status)) == (1, JobStatus.FAILED)
    history = (await jobs.GetJobEvents(js.GetJobEventsRequest(job_id=job.id), metadata=as_("vera"))).events
    assert history[-1].actor == "ada"
    assert "locks force-released by admin:ada: encoder wedged" in history[-1].reason
    assert (await next_message("assignment")).job_id == waiter.id, "the lock passed on"
    stream.cancel()


async def test_a_worker_token_serves_its_actions_only(
    auth_engine: EngineHandle, channel: grpc.aio.Channel
) -> None:
    async def register(actions: list[str], token: str, worker_id: str = "") -> ep.ConnectResponse:
        from jobwarden.v1 import executor_service_pb2_grpc

        stub = executor_service_pb2_grpc.ExecutorServiceStub(channel)
        stream = stub.Connect(metadata=(("authorization", f"Bearer {token}"),))
        await stream.write(
            ep.ConnectRequest(
                register=ep.Register(
                    worker_name="w",
                    executors=[ep.ExecutorSpec(action=a) for a in actions],
                    capacity=1,
                    worker_id=worker_id,
                )
            )
        )
        try:
            return await stream.read()
        finally:
            stream.cancel()

    assert (await register(["transcode"], token_of("wanda"))).WhichOneof("message") == "registered"
    for actions in (["thumbnail"], ["transcode", "thumbnail"]):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await register(actions, token_of("wanda"))
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "thumbnail" in (refused.value.details() or "")
    # A worker id registered by one principal cannot be taken by another one's token.
    admins = await register(["transcode"], token_of("ada"))
    with pytest.raises(grpc.aio.AioRpcError) as taken:
        await register(["transcode"], token_of("wanda"), worker_id=admins.registered.worker_id)
    assert taken.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # Its own action's configuration: it may read it and add lock templates (what the SDK does)...
    from jobwarden.v1 import job_service_pb2_grpc

    jobs = job_service_pb2_grpc.JobServiceStub(channel)
    md = (("authorization", f"Bearer {token_of('wanda')}"),)
    config = (await jobs.GetActionConfig(js.GetActionConfigRequest(action="transcode"), metadata=md)).config
    config.lock_templates.append(
        job_pb2.LockRequest(resource="asset:{input.asset}", mode=job_pb2.LOCK_MODE_EXCLUSIVE)
    )
    await jobs.SetActionConfig(js.SetActionConfigRequest(config=config), metadata=md)
    assert [t.resource for t in auth_engine.core.action_config("transcode").lock_templates] == [
        "asset:{input.asset}"
    ]
    # ...and nothing else.
    before = auth_engine.core.action_config("transcode").to_dict()
    for change in ("max_running", "remove_template", "other_action"):
        changed = job_pb2.ActionConfig()
        changed.CopyFrom(config)
        if change == "max_running":
            changed.max_running = 1
        elif change == "remove_template":
            del changed.lock_templates[:]
        else:
            changed.action = "thumbnail"
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await jobs.SetActionConfig(js.SetActionConfigRequest(config=changed), metadata=md)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED, change
    assert auth_engine.core.action_config("transcode").to_dict() == before


async def test_sdk_worker_and_client_with_tokens_from_the_environment(
    auth_engine: EngineHandle, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from jobwarden.sdk import Executor, JobClient, JobContext, PermissionDenied, Worker

    class Transcode(Executor):
        action = "transcode"
        locks = ("asset:{input.asset}",)

        async def execute(self, ctx: JobContext) -> dict[str, Any]:
            return {"done": ctx.input["asset"]}

    token_file = tmp_path / "worker.token"
    token_file.write_text(token_of("wanda") + "\n")
    monkeypatch.setenv("JOBWARDEN_TOKEN_FILE", str(token_file))
    worker = Worker([Transcode], engine=auth_engine.address, capacity=2, name="sdk-secure")
    task = asyncio.get_running_loop().create_task(worker.run())
    try:
        await asyncio.wait_for(worker.wait_connected(), 30)
        # With its worker token, the worker adds its lock template to its action's configuration.
        await wait_for(
            lambda: auth_engine.core.action_config("transcode").lock_templates,
            timeout=30,
            message="the template",
        )
        monkeypatch.delenv("JOBWARDEN_TOKEN_FILE")
        monkeypatch.setenv("JOBWARDEN_TOKEN", token_of("otto"))
        async with JobClient(auth_engine.address) as client:
            job = await client.submit("transcode", {"asset": 7})
            done = await asyncio.wait_for(client.wait(job.id), 30)
            assert done.status == JobStatus.COMPLETED
            assert done.result["done"] == 7
            assert [lock.resource for lock in done.locks] == ["asset:7"]  # the worker declared its template
        monkeypatch.setenv("JOBWARDEN_TOKEN", token_of("vera"))
        async with JobClient(auth_engine.address) as viewer:
            with pytest.raises(PermissionDenied):
                await viewer.submit("transcode", {"asset": 8})
    finally:
        worker.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)


def test_cli_uses_the_token_from_the_environment(auth_engine_process: str, tmp_path: Path) -> None:
    jobwarden = str(Path(sys.executable).with_name("jobwarden"))
    base = {"PATH": "/usr/bin:/bin", "JOBWARDEN_ENGINE": auth_engine_process}
    submitted = subprocess.run(
        [jobwarden, "submit", "cli-action", "--json"],
        env={**base, "JOBWARDEN_TOKEN": token_of("otto")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert submitted.returncode == 0, submitted.stderr
    anonymous = subprocess.run([jobwarden, "jobs"], env=base, capture_output=True, text=True, timeout=60)
    assert anonymous.returncode != 0
    assert "UNAUTHENTICATED" in anonymous.stderr or "token" in anonymous.stderr.lower(), anonymous.stderr
    listed = subprocess.run(
        [jobwarden, "jobs"],
        env={**base, "JOBWARDEN_TOKEN": token_of("vera")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    assert "cli-action" in listed.stdout


@pytest.fixture
def auth_engine_process(tmp_path: Path) -> Iterator[str]:
    from tests.security.conftest import token_file_text
    from tests.support import EngineProcess

    tokens = tmp_path / "tokens.toml"
    tokens.write_text(token_file_text())
    tokens.chmod(0o600)
    engine = EngineProcess(
        f"sqlite:///{tmp_path / 'cli.db'}",
        extra_args=("--tokens-file", str(tokens)),
        log_path=tmp_path / "e.log",
    ).start()
    try:
        yield engine.address
    finally:
        engine.terminate()


def test_serve_takes_no_token_on_the_command_line() -> None:
    jobwarden = str(Path(sys.executable).with_name("jobwarden"))
    result = subprocess.run(
        [jobwarden, "serve", "--token", "s3cr3t-s3cr3t-s3cr3t"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "unrecognized arguments" in result.stderr


def test_serve_refuses_a_bad_token_file(tmp_path: Path) -> None:
    jobwarden = str(Path(sys.executable).with_name("jobwarden"))
    bad = tmp_path / "tokens.toml"
    bad.write_text('[[token]]\nname = "x"\nrole = "superuser"\ntoken = "0123456789abcdefgh"\n')
    result = subprocess.run(
        [
            jobwarden,
            "serve",
            "--port",
            "0",
            "--db",
            f"sqlite:///{tmp_path / 'x.db'}",
            "--tokens-file",
            str(bad),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "role must be one of" in result.stderr


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ops:operator:short", "at least 16"),
        ("ops:root:0123456789abcdefgh", "role must be one of"),
        ("w:worker:0123456789abcdefgh", "must name the actions"),
        ("ops:operator=a:0123456789abcdefgh", "only a worker token names actions"),
        ("a:viewer:0123456789abcdefgh b:admin:0123456789abcdefgh", "same token is given twice"),
        ("just-a-token-without-a-name", "expected NAME:ROLE:TOKEN"),
        ("w:worker=bad action:0123456789abcdefgh", "expected NAME:ROLE:TOKEN"),
    ],
)
def test_bad_token_entries_are_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(TokenError, match=message):
        Tokens.from_text(text)


def test_token_sources() -> None:
    entry = "ops:operator:0123456789abcdefgh; w:worker=transcode+thumbnail:abcdefghijklmnop0123"
    tokens = tokens_from_environment(environ={"JOBWARDEN_TOKENS": entry})
    assert tokens is not None
    assert tokens.lookup("abcdefghijklmnop0123").actions == frozenset({"transcode", "thumbnail"})  # type: ignore[union-attr]
    assert tokens.lookup("0123456789abcdefgh").role == "operator"  # type: ignore[union-attr]
    assert tokens.lookup("0123456789abcdefgX") is None
    assert tokens_from_environment(environ={}) is None


def test_a_digest_entry_matches_its_token(tmp_path: Path) -> None:
    digest = hashlib.sha256(b"only-the-digest-is-stored").hexdigest()
    path = tmp_path / "tokens.toml"
    path.write_text(f'[[token]]\nname = "ci"\nrole = "viewer"\nsha256 = "{digest}"\n')
    path.chmod(0o600)
    tokens = Tokens.from_file(path)
    assert tokens.lookup("only-the-digest-is-stored").name == "ci"  # type: ignore[union-attr]


def test_lookup_compares_every_token_whatever_matches(monkeypatch: pytest.MonkeyPatch) -> None:
    tokens = Tokens.from_text(" ".join(f"p{i}:viewer:token-number-{i:04d}-padding" for i in range(50)))
    compared: list[int] = []
    original = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        compared.append(1)
        return original(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    counts = []
    for token in ("token-number-0000-padding", "token-number-0049-padding", "nobody-has-this-token-at-all"):
        compared.clear()
        tokens.lookup(token)
        counts.append(len(compared))
    # The same work for the first token, the last one and an unknown one: no early exit to time.
    assert counts == [50, 50, 50]


@pytest.mark.parametrize(
    "header",
    [
        "bearer {token}",
        "BEARER {token}",
        "Bearer  {token}",
        " Bearer {token}",
        "Bearer {token} ",
        "Bearer{token}",
        "Token {token}",
        "{token}",
        "Bearer ",
        "Bearer",
    ],
)
async def test_only_the_documented_authorization_form_is_accepted(
    auth_engine: EngineHandle, channel: grpc.aio.Channel, caplog: pytest.LogCaptureFixture, header: str
) -> None:
    """``authorization: Bearer <token>`` exactly; any other spelling of a valid token is refused with
    the form expected, logged without the token, and changes nothing."""
    from jobwarden.v1 import job_service_pb2_grpc

    jobs = job_service_pb2_grpc.JobServiceStub(channel)
    token = token_of("otto")
    await auth_engine.core.writer.flush()
    before = fingerprint(auth_engine)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await jobs.SubmitJob(
            js.SubmitJobRequest(action="audit"), metadata=(("authorization", header.format(token=token)),)
        )
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    details = refused.value.details() or ""
    assert "the authorization header must be 'Bearer <token>'" in details, details
    assert token not in details
    await auth_engine.core.writer.flush()
    assert fingerprint(auth_engine) == before
    assert token not in caplog.text
    # The documented form with the same token is accepted.
    done = await jobs.SubmitJob(
        js.SubmitJobRequest(action="audit"), metadata=(("authorization", f"Bearer {token}"),)
    )
    assert done.job.id
