"""Fixtures of the security tests: certificates made with ``cryptography``, token files, and engines
started with TLS and/or tokens (in the test's event loop, on free ports)."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from jobwarden.server.api import EngineServer, ServerOptions
from jobwarden.server.api.auth import Tokens

from tests.conftest import TEST_CONFIG, EngineHandle

#: name -> (role, token); worker tokens serve "transcode" only
TOKENS = {
    "vera": ("viewer", "viewer-token-0123456789"),
    "otto": ("operator", "operator-token-0123456789"),
    "wanda": ("worker", "worker-token-0123456789"),
    "ada": ("admin", "admin-token-0123456789"),
}
WORKER_ACTIONS = ("transcode",)


def token_of(name: str) -> str:
    return TOKENS[name][1]


def token_file_text() -> str:
    entries = []
    for name, (role, token) in TOKENS.items():
        actions = f"actions = {list(WORKER_ACTIONS)!r}\n".replace("'", '"') if role == "worker" else ""
        entries.append(f'[[token]]\nname = "{name}"\nrole = "{role}"\ntoken = "{token}"\n{actions}')
    return "\n".join(entries)


@pytest.fixture
def tokens(tmp_path: Path) -> Tokens:
    path = tmp_path / "tokens.toml"
    path.write_text(token_file_text())
    path.chmod(0o600)
    return Tokens.from_file(path)


@dataclass
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    #: a CA nobody trusts, and a client certificate it signed
    rogue_ca: Path
    rogue_cert: Path
    rogue_key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    path.chmod(0o600)


def _ca(common_name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _leaf(
    common_name: str, ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, *, server: bool
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(ca_key, hashes.SHA256()), key


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA, a server certificate for 127.0.0.1 and localhost, a client certificate, and a rogue CA."""
    folder = tmp_path_factory.mktemp("pki")
    ca, ca_key = _ca("jobwarden test CA")
    server, server_key = _leaf("jobwarden engine", ca, ca_key, server=True)
    client, client_key = _leaf("worker-7", ca, ca_key, server=False)
    rogue_ca, rogue_ca_key = _ca("rogue CA")
    rogue, rogue_key = _leaf("intruder", rogue_ca, rogue_ca_key, server=False)
    pem = serialization.Encoding.PEM
    paths = Pki(
        ca=folder / "ca.pem",
        server_cert=folder / "server.pem",
        server_key=folder / "server.key",
        client_cert=folder / "client.pem",
        client_key=folder / "client.key",
        rogue_ca=folder / "rogue-ca.pem",
        rogue_cert=folder / "rogue.pem",
        rogue_key=folder / "rogue.key",
    )
    paths.ca.write_bytes(ca.public_bytes(pem))
    paths.server_cert.write_bytes(server.public_bytes(pem))
    paths.client_cert.write_bytes(client.public_bytes(pem))
    paths.rogue_ca.write_bytes(rogue_ca.public_bytes(pem))
    paths.rogue_cert.write_bytes(rogue.public_bytes(pem))
    _write_key(server_key, paths.server_key)
    _write_key(client_key, paths.client_key)
    _write_key(rogue_key, paths.rogue_key)
    return paths


SecureEngineFactory = Callable[..., Awaitable[EngineHandle]]


@pytest.fixture
async def secure_engine_factory(sqlite_url: str) -> AsyncIterator[SecureEngineFactory]:
    """Start engines with any ``ServerOptions`` (tokens, tls, limits): ``await factory(tokens=...)``."""
    started: list[EngineServer] = []

    async def start(config: dict[str, Any] | None = None, **options: Any) -> EngineHandle:
        server = EngineServer(
            replace(TEST_CONFIG, db_url=sqlite_url, **(config or {})),
            ServerOptions(port=0, watch_keepalive=0.5, **options),
        )
        await server.start()
        started.append(server)
        return EngineHandle(server)

    yield start
    for server in reversed(started):
        await server.stop(grace=0)
