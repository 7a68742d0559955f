"""How clients reach a secured engine: TLS and a bearer token, taken from the environment.

Every channel the SDK, the ``jobwarden`` CLI and the console open goes through ``aio_channel`` (or
``sync_channel``), which reads:

=============================  ==========================================================================
``JOBWARDEN_TOKEN_FILE``       a file whose first line is the token (preferred: nothing secret in the
                               environment of every child process)
``JOBWARDEN_TOKEN``            the token itself
``JOBWARDEN_TLS_CA``           CA certificates (PEM) to check the engine's certificate; turns TLS on
``JOBWARDEN_TLS``              ``1`` turns TLS on with the system's CA certificates
``JOBWARDEN_TLS_CERT``/``_KEY``  a client certificate and key (PEM), for an engine with mutual TLS
``JOBWARDEN_TLS_SERVER_NAME``  the name the engine's certificate is checked against, when the address
                               does not carry it
=============================  ==========================================================================

With none of them set, a channel is the plain ``insecure_channel`` it always was. A token is sent as
``authorization: Bearer <token>`` on every call, and only over TLS or to an engine on this machine
(loopback): sending it in clear across a network is refused with a ``ValueError``. A token is never
taken from a command-line argument, where every user of the machine could read it.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import grpc.aio

__all__ = [
    "TOKEN_ENV",
    "TOKEN_FILE_ENV",
    "ClientSecurity",
    "aio_channel",
    "caller_role",
    "sync_channel",
]

TOKEN_ENV = "JOBWARDEN_TOKEN"
TOKEN_FILE_ENV = "JOBWARDEN_TOKEN_FILE"
TLS_ENV = "JOBWARDEN_TLS"
TLS_CA_ENV = "JOBWARDEN_TLS_CA"
TLS_CERT_ENV = "JOBWARDEN_TLS_CERT"
TLS_KEY_ENV = "JOBWARDEN_TLS_KEY"
TLS_SERVER_NAME_ENV = "JOBWARDEN_TLS_SERVER_NAME"
#: the response header in which a secured engine names the caller's role
ROLE_HEADER = "jobwarden-role"

Options = Sequence[tuple[str, Any]]


@dataclass(frozen=True, slots=True)
class ClientSecurity:
    """What a client presents to the engine: a token, TLS roots, a client certificate."""

    token: str | None = None
    tls: bool = False
    ca: bytes | None = None
    cert: bytes | None = None
    key: bytes | None = None
    server_name: str | None = None

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> ClientSecurity:
        """Read the ``JOBWARDEN_TOKEN*`` and ``JOBWARDEN_TLS*`` variables; ``ValueError`` says what is
        wrong with them (an unreadable file, a certificate without its key, ...)."""
        env = os.environ if environ is None else environ
        token = None
        token_file = env.get(TOKEN_FILE_ENV, "").strip()
        if token_file:
            lines = _read(token_file, TOKEN_FILE_ENV).decode("utf-8", "replace").splitlines()
            token = lines[0].strip() if lines else ""
            if not token:
                raise ValueError(f"${TOKEN_FILE_ENV} ({token_file}) holds no token")
        elif env.get(TOKEN_ENV, "").strip():
            token = env[TOKEN_ENV].strip()
        ca_file = env.get(TLS_CA_ENV, "").strip()
        cert_file = env.get(TLS_CERT_ENV, "").strip()
        key_file = env.get(TLS_KEY_ENV, "").strip()
        if bool(cert_file) != bool(key_file):
            raise ValueError(f"${TLS_CERT_ENV} and ${TLS_KEY_ENV} go together")
        tls = bool(ca_file or cert_file) or env.get(TLS_ENV, "").strip().lower() in ("1", "true", "yes")
        return cls(
            token=token,
            tls=tls,
            ca=_read(ca_file, TLS_CA_ENV) if ca_file else None,
            cert=_read(cert_file, TLS_CERT_ENV) if cert_file else None,
            key=_read(key_file, TLS_KEY_ENV) if key_file else None,
            server_name=env.get(TLS_SERVER_NAME_ENV, "").strip() or None,
        )

    def credentials(self, address: str) -> grpc.ChannelCredentials | None:
        """The channel credentials for ``address``, or None for a plain (insecure) channel."""
        if self.tls:
            channel: grpc.ChannelCredentials = grpc.ssl_channel_credentials(self.ca, self.key, self.cert)
        elif self.token is not None:
            if not _is_loopback(address):
                raise ValueError(
                    f"a jobwarden token is sent only over TLS or to this machine, and {address} is "
                    f"neither: set ${TLS_CA_ENV} (or ${TLS_ENV}=1) for an engine that serves TLS"
                )
            channel = grpc.local_channel_credentials(grpc.LocalConnectionType.LOCAL_TCP)
        else:
            return None
        if self.token is not None:
            channel = grpc.composite_channel_credentials(
                channel, grpc.metadata_call_credentials(_BearerToken(self.token), name="jobwarden-token")
            )
        return channel

    def options(self, options: Options) -> list[tuple[str, Any]]:
        merged = list(options)
        if self.tls and self.server_name:
            merged.append(("grpc.ssl_target_name_override", self.server_name))
        return merged


class _BearerToken(grpc.AuthMetadataPlugin):
    def __init__(self, token: str) -> None:
        self._metadata = (("authorization", f"Bearer {token}"),)

    def __call__(self, context: grpc.AuthMetadataContext, callback: grpc.AuthMetadataPluginCallback) -> None:
        callback(self._metadata, None)


def aio_channel(
    address: str, options: Options = (), security: ClientSecurity | None = None
) -> grpc.aio.Channel:
    """An asyncio channel to ``address`` with the environment's TLS and token (plain without them)."""
    security = security or ClientSecurity.from_environment()
    credentials = security.credentials(address)
    if credentials is None:
        return grpc.aio.insecure_channel(address, options=list(options))
    return grpc.aio.secure_channel(address, credentials, options=security.options(options))


def sync_channel(address: str, options: Options = (), security: ClientSecurity | None = None) -> grpc.Channel:
    """A blocking channel to ``address`` with the environment's TLS and token (plain without them)."""
    security = security or ClientSecurity.from_environment()
    credentials = security.credentials(address)
    if credentials is None:
        return grpc.insecure_channel(address, options=list(options))
    return grpc.secure_channel(address, credentials, options=security.options(options))


def caller_role(address: str, *, timeout: float = 3.0, security: ClientSecurity | None = None) -> str | None:
    """The role the engine gives this client's token ("viewer", "operator", "worker", "admin"), or
    None when the engine does not say (authentication off, engine unreachable). ``ValueError`` when
    the engine refuses the client (no token, an unknown one) or the environment's TLS or token
    settings cannot be used; the message says what to do."""
    from jobwarden.v1 import job_service_pb2, job_service_pb2_grpc

    security = security or ClientSecurity.from_environment()
    try:
        with sync_channel(address, security=security) as channel:
            stub = job_service_pb2_grpc.JobServiceStub(channel)
            _, call = stub.GetStats.with_call(job_service_pb2.GetStatsRequest(), timeout=timeout)
            metadata = call.initial_metadata() or ()
    except grpc.RpcError as error:
        code = error.code()
        if code == grpc.StatusCode.UNAUTHENTICATED:
            raise ValueError(
                f"the engine at {address} refused this client ({error.details()}): "
                f"set ${TOKEN_FILE_ENV} (or ${TOKEN_ENV}) to a token it knows"
            ) from None
        # A worker's token may not read stats, and says so with its refusal.
        return "worker" if code == grpc.StatusCode.PERMISSION_DENIED else None
    for key, value in metadata:
        if key == ROLE_HEADER:
            return value.decode() if isinstance(value, bytes) else str(value)
    return None


def _read(path: str, variable: str) -> bytes:
    try:
        return Path(path).expanduser().read_bytes()
    except OSError as error:
        raise ValueError(f"${variable}: cannot read {path}: {error.strerror or error}") from None


def _is_loopback(address: str) -> bool:
    host = address.rpartition(":")[0].strip("[]") if ":" in address else address
    host = host.removeprefix("ipv4:").removeprefix("ipv6:")
    if host in ("localhost", "localhost.localdomain", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
