"""Token authentication and roles for every call.

A client sends ``authorization: Bearer <token>`` with each call. The engine keeps each token's
SHA-256 digest with the principal it names; a presented token is hashed and compared with *every*
known digest with ``hmac.compare_digest``, so neither a match nor its position shows in the time taken.

Roles, from least to most:

    viewer     read and watch: jobs, events, logs, stats, workers, locks, action configs, workflows,
               work orders and runs, reflection
    operator   a viewer who also submits, cancels, retries, pauses and resumes, holds external locks,
               puts workflow definitions, and starts, retries and cancels work orders and runs
    worker     connects as a worker for its named actions only (and reads, or adds lock templates to,
               those actions' configuration: what the SDK's worker does at start)
    admin      everything, configuration included, and force-releasing a stopping job's locks

Health checks need no token. Every refusal is UNAUTHENTICATED (no token, an unknown one, or a header
not exactly ``Bearer <token>``) or PERMISSION_DENIED (the role may not), is logged without the token,
and happens before the servicer runs: a refused call changes nothing.

Tokens come from a file (``--tokens-file`` or ``$JOBWARDEN_TOKENS_FILE``) or from the environment
(``$JOBWARDEN_TOKENS``), never from a command-line argument. The file is TOML::

    [[token]]
    name = "alice"            # the actor recorded in the events of what alice does
    role = "operator"
    sha256 = "9f86d08..."     # the token's SHA-256 in hex (or: token = "..." in clear)

    [[token]]
    name = "transcoders"
    role = "worker"
    actions = ["transcode", "thumbnail"]
    token = "..."

``$JOBWARDEN_TOKENS`` holds entries ``NAME:ROLE:TOKEN`` separated by whitespace or ``;``, a worker's
role written ``worker=action1+action2``.
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import logging
import os
import stat
import tomllib
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import grpc
from grpc import aio
from jobwarden.server.core import Engine, InvalidArgument, check_action
from jobwarden.v1 import executor_service_pb2 as ep

from ._intercept import Continuation, Handler, guard
from .convert import action_config_from_proto
from .identity import set_identity

__all__ = [
    "METHOD_PERMISSIONS",
    "AuthInterceptor",
    "Permission",
    "Principal",
    "Role",
    "TokenError",
    "Tokens",
    "lock_templates_only",
    "tokens_from_environment",
]

log = logging.getLogger("jobwarden.auth")

TOKENS_ENV = "JOBWARDEN_TOKENS"
TOKENS_FILE_ENV = "JOBWARDEN_TOKENS_FILE"
#: a token given in clear must be at least this long (a digest entry cannot be checked)
MIN_TOKEN_LENGTH = 16
ROLE_HEADER = "jobwarden-role"
PRINCIPAL_HEADER = "jobwarden-principal"
#: worker ids whose owner is remembered (the oldest are forgotten past this)
MAX_REMEMBERED_WORKERS = 100_000

# The principal of the call being handled (each grpc.aio call runs in its own task).
_principal: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "jobwarden_principal", default=None
)


class Role(StrEnum):
    #: read and watch
    VIEWER = "viewer"
    #: read, watch, submit, cancel, retry, pause, resume, external locks
    OPERATOR = "operator"
    #: connect as a worker for named actions only
    WORKER = "worker"
    #: everything, configuration included (and ForceReleaseJobLocks)
    ADMIN = "admin"


class Permission(StrEnum):
    #: no token needed (health checks)
    OPEN = "open"
    READ = "read"
    OPERATE = "operate"
    CONFIGURE = "configure"
    #: ExecutorService.Connect, for the principal's actions
    WORK = "work"


ROLE_PERMISSIONS: Mapping[Role, frozenset[Permission]] = {
    Role.VIEWER: frozenset({Permission.READ}),
    Role.OPERATOR: frozenset({Permission.READ, Permission.OPERATE}),
    Role.WORKER: frozenset({Permission.WORK}),
    Role.ADMIN: frozenset({Permission.READ, Permission.OPERATE, Permission.CONFIGURE, Permission.WORK}),
}

_J = "/jobwarden.v1.JobService/"
_E = "/jobwarden.v1.ExecutorService/"
_L = "/jobwarden.v1.LockService/"
_W = "/jobwarden.v1.WorkflowService/"
#: What each method needs. A method missing here is refused to everyone but an admin.
METHOD_PERMISSIONS: Mapping[str, Permission] = {
    _J + "SubmitJob": Permission.OPERATE,
    _J + "SubmitJobs": Permission.OPERATE,
    _J + "GetJob": Permission.READ,
    _J + "ListJobs": Permission.READ,
    _J + "GetJobEvents": Permission.READ,
    _J + "CancelJob": Permission.OPERATE,
    _J + "RetryJob": Permission.OPERATE,
    _J + "WatchJobs": Permission.READ,
    _J + "GetStats": Permission.READ,
    _J + "GetJobLogs": Permission.READ,
    _J + "PauseAction": Permission.OPERATE,
    _J + "ResumeAction": Permission.OPERATE,
    _J + "GetActionConfig": Permission.READ,
    _J + "SetActionConfig": Permission.CONFIGURE,
    _J + "ListActions": Permission.READ,
    _E + "Connect": Permission.WORK,
    _E + "ListWorkers": Permission.READ,
    _L + "AcquireLock": Permission.OPERATE,
    _L + "ReleaseLock": Permission.OPERATE,
    _L + "ListLocks": Permission.READ,
    _L + "ForceReleaseJobLocks": Permission.CONFIGURE,
    # Putting a definition is like submitting: what it runs is jobs of actions an operator may submit.
    _W + "PutWorkflow": Permission.OPERATE,
    _W + "GetWorkflow": Permission.READ,
    _W + "ListWorkflows": Permission.READ,
    _W + "StartWorkflow": Permission.OPERATE,
    _W + "GetWorkOrder": Permission.READ,
    _W + "ListWorkOrders": Permission.READ,
    _W + "GetWorkflowRun": Permission.READ,
    _W + "RetryWorkOrder": Permission.OPERATE,
    _W + "CancelWorkflowRun": Permission.OPERATE,
    "/grpc.health.v1.Health/Check": Permission.OPEN,
    "/grpc.health.v1.Health/Watch": Permission.OPEN,
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": Permission.READ,
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo": Permission.READ,
}
_GET_CONFIG = _J + "GetActionConfig"
_SET_CONFIG = _J + "SetActionConfig"
_CONNECT = _E + "Connect"


class TokenError(ValueError):
    """A token file or ``$JOBWARDEN_TOKENS`` that cannot be used; the message says where and why."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a token names: the actor of what it does, its role, and (for a worker) its actions."""

    name: str
    role: Role
    #: the actions a worker may serve (empty for other roles)
    actions: frozenset[str] = frozenset()

    def may(self, permission: Permission) -> bool:
        return permission is Permission.OPEN or permission in ROLE_PERMISSIONS[self.role]

    def may_serve(self, action: str) -> bool:
        return self.role is Role.ADMIN or (self.role is Role.WORKER and action in self.actions)


class Tokens:
    """The known tokens. ``lookup`` compares a token with every one of them in constant time."""

    def __init__(self, entries: Iterable[tuple[bytes, Principal]]) -> None:
        self._entries = list(entries)
        if not self._entries:
            raise TokenError("no tokens: authentication needs at least one")

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def principals(self) -> list[Principal]:
        return [principal for _, principal in self._entries]

    def lookup(self, token: str) -> Principal | None:
        """The principal ``token`` names, or None. Every entry is compared, whatever matches."""
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        found: Principal | None = None
        for known, principal in self._entries:
            # No early exit: the time taken is the same wherever (and whether) the token matches.
            if hmac.compare_digest(known, digest) and found is None:
                found = principal
        return found

    @classmethod
    def from_file(cls, path: str | Path) -> Tokens:
        """Read a TOML token file (see the module docstring)."""
        path = Path(path)
        try:
            mode = path.stat().st_mode
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise TokenError(f"cannot read the token file {path}: {error.strerror or error}") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            log.warning("token file %s can be read by other users (chmod 600 it)", path)
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise TokenError(f"token file {path}: {error}") from None
        raw = data.get("token")
        if not isinstance(raw, list) or not raw:
            raise TokenError(f"token file {path}: no [[token]] entries")
        entries = []
        for index, item in enumerate(raw):
            where = f"token file {path}, entry {index + 1}"
            if not isinstance(item, dict):
                raise TokenError(f"{where}: not a table")
            unknown = set(item) - {"name", "role", "actions", "token", "sha256"}
            if unknown:
                raise TokenError(f"{where}: unknown keys {sorted(unknown)}")
            entries.append(
                _entry(
                    where,
                    item.get("name"),
                    item.get("role"),
                    item.get("actions", []),
                    token=item.get("token"),
                    sha256=item.get("sha256"),
                )
            )
        return cls(_unique(entries, f"token file {path}"))

    @classmethod
    def from_text(cls, text: str, source: str = TOKENS_ENV) -> Tokens:
        """Entries ``NAME:ROLE:TOKEN`` separated by whitespace or ``;`` (a worker: ``worker=a+b``)."""
        entries = []
        for index, item in enumerate(text.replace(";", " ").split()):
            where = f"{source}, entry {index + 1}"
            parts = item.split(":", 2)
            if len(parts) != 3:
                raise TokenError(f"{where}: expected NAME:ROLE:TOKEN")
            name, role, token = parts
            role, _, actions = role.partition("=")
            entries.append(
                _entry(where, name, role, [a for a in actions.split("+") if a], token=token, sha256=None)
            )
        return cls(_unique(entries, source))


def tokens_from_environment(
    tokens_file: str | None = None, environ: Mapping[str, str] | None = None
) -> Tokens | None:
    """The tokens named by ``tokens_file``, else ``$JOBWARDEN_TOKENS_FILE``, else ``$JOBWARDEN_TOKENS``;
    None when none is set (authentication off)."""
    env = os.environ if environ is None else environ
    path = tokens_file or env.get(TOKENS_FILE_ENV)
    if path:
        return Tokens.from_file(path)
    text = env.get(TOKENS_ENV, "").strip()
    if text:
        return Tokens.from_text(text)
    return None


def _entry(
    where: str,
    name: Any,
    role: Any,
    actions: Any,
    *,
    token: Any,
    sha256: Any,
) -> tuple[bytes, Principal]:
    if not isinstance(name, str) or not name.strip() or len(name) > 128:
        raise TokenError(f"{where}: name must be a non-empty string of at most 128 characters")
    try:
        parsed_role = Role(role)
    except ValueError:
        raise TokenError(
            f"{where}: role must be one of {', '.join(r.value for r in Role)}, not {role!r}"
        ) from None
    if not isinstance(actions, list) or not all(isinstance(a, str) for a in actions):
        raise TokenError(f"{where}: actions must be a list of action names")
    if parsed_role is Role.WORKER and not actions:
        raise TokenError(f"{where}: a worker token must name the actions it may serve")
    if parsed_role is not Role.WORKER and actions:
        raise TokenError(f"{where}: only a worker token names actions")
    for action in actions:
        try:
            check_action(action)
        except InvalidArgument as error:
            raise TokenError(f"{where}: {error.message}") from None
    if (token is None) == (sha256 is None):
        raise TokenError(f"{where}: give exactly one of token or sha256")
    if token is not None:
        if not isinstance(token, str) or len(token) < MIN_TOKEN_LENGTH:
            raise TokenError(f"{where}: a token must be at least {MIN_TOKEN_LENGTH} characters")
        digest = hashlib.sha256(token.encode()).digest()
    else:
        try:
            digest = bytes.fromhex(sha256) if isinstance(sha256, str) else b""
        except ValueError:
            digest = b""
        if len(digest) != 32:
            raise TokenError(f"{where}: sha256 must be 64 hexadecimal digits")
    return digest, Principal(name.strip(), parsed_role, frozenset(actions))


def _unique(entries: list[tuple[bytes, Principal]], source: str) -> list[tuple[bytes, Principal]]:
    digests = [digest for digest, _ in entries]
    if len(set(digests)) != len(digests):
        raise TokenError(f"{source}: the same token is given twice")
    return entries


def lock_templates_only(engine: Engine) -> Callable[[Any], str]:
    """A check for a worker's SetActionConfig: '' when the new config only adds lock templates to the
    current one, else why not."""

    def check(config: Any) -> str:
        try:
            new = action_config_from_proto(config).to_dict()
        except InvalidArgument as error:
            return error.message
        old = engine.action_config(config.action).to_dict()
        old_templates = old.pop("lock_templates", [])
        new_templates = new.pop("lock_templates", [])
        if new != old:
            return "a worker may only add lock templates to its action's configuration"
        missing = [t for t in old_templates if t not in new_templates]
        if missing:
            return "a worker may not remove lock templates"
        return ""

    return check


class AuthInterceptor(aio.ServerInterceptor):
    """Authenticates every call and checks its role before the servicer runs (see the module docstring).

    With ``tokens`` None the engine is open to anyone who reaches it; a verified client certificate
    (mutual TLS) then still names the actor (``cert:<common name>``).
    """

    def __init__(
        self,
        tokens: Tokens | None,
        *,
        worker_config_check: Callable[[Any], str] | None = None,
    ) -> None:
        self.tokens = tokens
        self.worker_config_check = worker_config_check
        #: refusals so far, by gRPC status code name (metrics read it)
        self.refusals: Counter[str] = Counter()
        #: worker id -> the principal whose session registered it, so no token can take over another's
        self._worker_owners: dict[str, str] = {}

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method: str = handler_call_details.method
        permission = METHOD_PERMISSIONS.get(method)
        if permission is Permission.OPEN:
            return handler
        if self.tokens is None:
            return guard(handler, self._name_by_certificate)
        tokens = self.tokens

        async def gate(request: Any, context: aio.ServicerContext[Any, Any]) -> None:
            token, problem = _bearer(context.invocation_metadata())
            principal = tokens.lookup(token) if token is not None else None
            if principal is None:
                await self._refuse(
                    context,
                    grpc.StatusCode.UNAUTHENTICATED,
                    method,
                    "",
                    problem or "unknown token",
                )
                return
            # A method not in the table (a service added later) is for admins only.
            allowed = principal.role is Role.ADMIN if permission is None else principal.may(permission)
            if not allowed:
                reason = self._worker_exception(principal, method, request)
                if reason:
                    await self._refuse(
                        context, grpc.StatusCode.PERMISSION_DENIED, method, principal.name, reason
                    )
            set_identity(principal.name)
            _principal.set(principal)
            await context.send_initial_metadata(
                ((PRINCIPAL_HEADER, principal.name), (ROLE_HEADER, principal.role.value))
            )

        if method != _CONNECT:
            return guard(handler, gate)

        async def first_message(message: Any, context: aio.ServicerContext[Any, Any]) -> None:
            principal = _principal.get()
            if principal is None or not isinstance(message, ep.ConnectRequest):
                return  # the servicer refuses a stream that ends at once or whose message does not decode
            if message.WhichOneof("message") != "register":
                return  # the servicer refuses a stream that does not start with register
            register = message.register
            refused = sorted({e.action for e in register.executors if not principal.may_serve(e.action)})
            if refused:
                await self._refuse(
                    context,
                    grpc.StatusCode.PERMISSION_DENIED,
                    method,
                    principal.name,
                    f"{principal.name} may not serve {', '.join(refused)[:500]}",
                )
            owner = self._worker_owners.get(register.worker_id)
            if register.worker_id and owner is not None and owner != principal.name:
                await self._refuse(
                    context,
                    grpc.StatusCode.PERMISSION_DENIED,
                    method,
                    principal.name,
                    f"worker id {register.worker_id[:64]} belongs to another principal",
                )

        def on_response(response: Any, context: aio.ServicerContext[Any, Any]) -> None:
            principal = _principal.get()
            if principal is not None and response.WhichOneof("message") == "registered":
                owners = self._worker_owners
                owners[response.registered.worker_id] = principal.name
                while len(owners) > MAX_REMEMBERED_WORKERS:
                    del owners[next(iter(owners))]

        return guard(handler, gate, first_message=first_message, on_response=on_response)

    def _worker_exception(self, principal: Principal, method: str, request: Any) -> str:
        """'' when a worker may make this call for its own action; else why the principal may not."""
        denied = f"{principal.name} ({principal.role.value}) may not call {method.rsplit('/', 1)[-1]}"
        if principal.role is not Role.WORKER or request is None:
            return denied
        if method == _GET_CONFIG:
            return "" if principal.may_serve(request.action) else denied
        if method == _SET_CONFIG and self.worker_config_check is not None:
            if not principal.may_serve(request.config.action):
                return denied
            return self.worker_config_check(request.config)
        return denied

    async def _name_by_certificate(self, request: Any, context: aio.ServicerContext[Any, Any]) -> None:
        names = context.auth_context().get("x509_common_name")
        if names:
            set_identity(f"cert:{next(iter(names)).decode(errors='replace')}")

    async def _refuse(
        self,
        context: aio.ServicerContext[Any, Any],
        code: grpc.StatusCode,
        method: str,
        principal: str,
        reason: str,
    ) -> None:
        self.refusals[code.name] += 1
        log.warning(
            "refused %s for %s from %s: %s %s",
            method,
            principal or "an unauthenticated caller",
            context.peer(),
            code.name,
            reason,
            extra={"method": method, "principal": principal, "peer": context.peer(), "code": code.name},
        )
        await context.abort(code, reason)


_BEARER = "Bearer "
_EXPECTED_FORM = "the authorization header must be 'Bearer <token>' (Bearer, one space, the token)"


def _bearer(metadata: Any) -> tuple[str | None, str]:
    """The token of the first ``authorization`` header, or None and why not. Only the documented form
    is taken: a header another client or proxy spells differently is refused, not guessed at."""
    for key, value in metadata or ():
        if key == "authorization":
            text = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
            token = text[len(_BEARER) :] if text.startswith(_BEARER) else ""
            if not token or token != token.strip():
                return None, _EXPECTED_FORM
            return token, ""
    return None, "no token: send 'authorization: Bearer <token>'"
