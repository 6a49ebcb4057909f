"""TLS for both ports: one certificate and key (and optionally a client CA, mTLS), reloaded on
SIGHUP without dropping a connection.

* HTTP: one :class:`ssl.SSLContext` serves; each handshake's SNI callback (OpenSSL calls it
  with or without SNI) moves the connection to the context loaded last.
* gRPC: ``grpc.dynamic_ssl_server_credentials``; grpcio asks for a newer configuration before
  each handshake.

With a client CA, both ports require a client certificate signed by it (grpcio's Python API
cannot make one optional). A certificate's identity is its first DNS subject alternative name,
else its subject common name: what :class:`~lastactive.collector._auth.Credentials` matches an
auth file's ``certificate`` entry against.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import grpc
from uvicorn.protocols.http.auto import AutoHTTPProtocol

__all__ = [
    "CLIENT_CERTIFICATE_SCOPE_KEY",
    "ServerTls",
    "TlsFiles",
    "certificate_identity",
    "grpc_identity",
]

CLIENT_CERTIFICATE_SCOPE_KEY: Final = "lastactive.client_certificate"
"""ASGI scope key holding the verified client certificate's identity (mTLS)."""


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """PEM files: the server's certificate chain and key, and the CA client certificates must
    be signed by (``None``: no client certificates)."""

    cert: Path
    key: Path
    client_ca: Path | None = None


def certificate_identity(peercert: dict[str, Any] | None) -> str | None:
    """The identity of a verified peer certificate as :meth:`ssl.SSLSocket.getpeercert`
    gives it: its first DNS subject alternative name, else its subject CN, else ``None``."""
    if not peercert:
        return None
    for kind, value in peercert.get("subjectAltName", ()):
        if kind == "DNS":
            return str(value)
    for rdn in peercert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


def grpc_identity(auth_context: dict[str, list[bytes]]) -> str | None:
    """The same identity from a gRPC call's ``auth_context()`` (``None`` without mTLS)."""
    for key in ("peer_dns", "x509_common_name"):  # grpc's names: DNS SANs, the subject CN
        values = auth_context.get(key)
        if values and values[0]:
            return values[0].decode()
    return None


class ServerTls:
    """The TLS both servers use; :meth:`reload` re-reads the files.

    Raises (constructor and :meth:`reload`):
        OSError, ssl.SSLError: a file is missing or not a matching certificate and key; on
            reload, the certificates in force are kept.
    """

    def __init__(self, files: TlsFiles) -> None:
        self.files = files
        self._context = self._http_context()
        self._current = self._context
        self._context.sni_callback = self._choose
        self._grpc_fresh: grpc.ServerCertificateConfiguration | None = None
        self._grpc_initial = self._grpc_config()

    def _http_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.files.cert, self.files.key)
        if self.files.client_ca is not None:
            ctx.load_verify_locations(cafile=self.files.client_ca)
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    def _grpc_config(self) -> grpc.ServerCertificateConfiguration:
        ca = self.files.client_ca
        return grpc.ssl_server_certificate_configuration(
            [(self.files.key.read_bytes(), self.files.cert.read_bytes())],
            root_certificates=None if ca is None else ca.read_bytes(),
        )

    def _choose(self, conn: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext) -> None:
        if self._current is not self._context:
            conn.context = self._current

    def reload(self) -> None:
        """Load the files again; new handshakes on both ports use them."""
        ctx = self._http_context()
        config = self._grpc_config()
        self._current, self._grpc_fresh = ctx, config

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        fresh, self._grpc_fresh = self._grpc_fresh, None
        return fresh

    @property
    def http_context(self) -> ssl.SSLContext:
        """For uvicorn (``ssl_context_factory``)."""
        return self._context

    def grpc_credentials(self) -> grpc.ServerCredentials:
        """For ``server.add_secure_port``."""
        return grpc.dynamic_ssl_server_credentials(
            self._grpc_initial,
            self._fetch,
            require_client_authentication=self.files.client_ca is not None,
        )

    def http_protocol(self) -> type[asyncio.Protocol]:
        """uvicorn's HTTP protocol, each connection's verified client certificate identity
        put in the ASGI scope under :data:`CLIENT_CERTIFICATE_SCOPE_KEY`."""
        return _with_client_certificate()


def _with_client_certificate() -> type[asyncio.Protocol]:
    base: Any = AutoHTTPProtocol

    class _Protocol(base):  # type: ignore[misc]
        def connection_made(self, transport: asyncio.Transport) -> None:
            super().connection_made(transport)
            ssl_object = transport.get_extra_info("ssl_object")
            identity = certificate_identity(ssl_object.getpeercert() if ssl_object else None)
            if identity is not None:
                self.app: Callable[..., Any] = _identified(self.app, identity)

    return _Protocol


def _identified(app: Callable[..., Any], identity: str) -> Callable[..., Any]:
    async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
        scope[CLIENT_CERTIFICATE_SCOPE_KEY] = identity
        await app(scope, receive, send)

    return asgi
