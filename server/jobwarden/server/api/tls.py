"""TLS for the engine's port: a certificate and key, and optionally a CA that client certificates
must be signed by (mutual TLS, the option for workers on machines that carry certificates)."""

from __future__ import annotations

import logging
import stat
from dataclasses import dataclass
from pathlib import Path

import grpc

__all__ = ["TlsError", "TlsFiles", "server_credentials"]

log = logging.getLogger("jobwarden.server")


class TlsError(ValueError):
    """A certificate or key that cannot be used; the message names the file and why."""


@dataclass(frozen=True, slots=True)
class TlsFiles:
    #: the server's certificate chain (PEM)
    cert: Path
    #: its private key (PEM)
    key: Path
    #: with it, every client must present a certificate signed by this CA (mutual TLS)
    client_ca: Path | None = None


def _read(path: Path, what: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise TlsError(f"cannot read the TLS {what} {path}: {error.strerror or error}") from None
    if b"-----BEGIN " not in data:
        raise TlsError(f"the TLS {what} {path} is not PEM")
    return data


def server_credentials(files: TlsFiles) -> grpc.ServerCredentials:
    """Credentials for ``add_secure_port``; TlsError when a file is missing or not PEM."""
    cert = _read(files.cert, "certificate")
    key = _read(files.key, "key")
    if b"PRIVATE KEY" not in key:
        raise TlsError(f"the TLS key {files.key} holds no private key")
    if files.key.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("TLS key %s can be read by other users (chmod 600 it)", files.key)
    client_ca = _read(files.client_ca, "client CA") if files.client_ca is not None else None
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )
