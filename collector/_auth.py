"""Credentials: who may report, read and act, and what a reporter may report about.

The operator's auth file (``lastactive serve --auth-file FILE``) holds one entry per credential:
a bearer token (only its SHA-256 is kept) or a client certificate identity (mTLS), each with its
scopes and, for a reporter, what it is bound to. ``lastactive token create|list|revoke`` manage
the file; ``serve`` re-reads it on SIGHUP.

Scopes (as ``coder tokens`` and JupyterHub's token scopes):

=========  ==========================================================================
``report`` OTLP Export (gRPC and HTTP), ``POST /v1/agent-events``
``read``   the query API, decisions, SSE and gRPC ``Watch``, ``/metrics``
``act``    hibernation records (``lastactive.source=hibernate``): what ``cull`` needs
=========  ==========================================================================

A bound reporter (``host``, optionally ``session_prefixes`` and ``agents``) reports about its
host only, as a Coder workspace agent's token is bound to its workspace: telemetry naming
another host, a session another host owns, a session id outside its prefixes or another agent
is rejected through OTLP partial success. Telemetry naming no host is about the bound host.

Tokens are 256 random bits, so a fast hash is not brute-forceable and every request can afford
it (~1 µs); each token carries its entry's public id, so lookup is one dict access and the
comparison is constant-time (:func:`hmac.compare_digest`).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import os
import secrets
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

__all__ = [
    "ANONYMOUS",
    "TOKEN_PREFIX",
    "AuthFileError",
    "Credential",
    "Credentials",
    "ForbiddenError",
    "Principal",
    "Scope",
    "UnauthenticatedError",
    "bearer",
    "create_credential",
    "read_auth_file",
    "revoke_credential",
]

_log = logging.getLogger(__name__)

TOKEN_PREFIX: Final = "la_"
"""Every token starts with it (secret scanners can find leaked ones)."""
_ID_HEX: Final = 12
"""Hex characters of a token's public id (48 bits: no collision in any real auth file)."""
_FILE_VERSION: Final = 1


class Scope(StrEnum):
    """What a credential may do (see the module docstring)."""

    REPORT = "report"
    READ = "read"
    ACT = "act"


class UnauthenticatedError(Exception):
    """No credential, or one the collector does not know: 401 / UNAUTHENTICATED."""


class ForbiddenError(Exception):
    """A known credential without the scope asked for: 403 / PERMISSION_DENIED."""


class AuthFileError(ValueError):
    """The auth file cannot be read or is not one lastactive wrote; the message says where."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a credential's name, scopes and bindings (empty: unbound)."""

    name: str
    scopes: frozenset[Scope]
    host: str | None = None
    session_prefixes: tuple[str, ...] = ()
    agents: tuple[str, ...] = ()

    @property
    def bound(self) -> bool:
        """True when what it reports about is restricted."""
        return bool(self.host or self.session_prefixes or self.agents)

    def require_any(self, scopes: Iterable[Scope]) -> None:
        """Raises :class:`ForbiddenError` unless this principal has one of ``scopes``."""
        wanted = tuple(scopes)
        if not self.scopes.intersection(wanted):
            raise ForbiddenError(
                f"credential {self.name!r} has scope {', '.join(sorted(self.scopes)) or 'none'};"
                f" this needs {' or '.join(wanted)}"
            )


ANONYMOUS: Final = Principal("anonymous", frozenset(Scope))
"""Every caller when no credentials are configured (loopback's zero-configuration default)."""


@dataclass(frozen=True, slots=True)
class Credential:
    """One auth file entry: a token (``sha256`` of it) or a client ``certificate`` identity
    (its first DNS subject alternative name, else its subject CN). ``created``: ISO 8601 UTC."""

    id: str
    name: str
    scopes: frozenset[Scope]
    created: str
    sha256: str | None = None
    certificate: str | None = None
    host: str | None = None
    session_prefixes: tuple[str, ...] = ()
    agents: tuple[str, ...] = ()

    def principal(self) -> Principal:
        return Principal(self.name, self.scopes, self.host, self.session_prefixes, self.agents)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "name": self.name,
                               "scopes": sorted(self.scopes), "created": self.created}  # fmt: skip
        for key in ("sha256", "certificate", "host"):
            if (value := getattr(self, key)) is not None:
                out[key] = value
        if self.session_prefixes:
            out["session_prefixes"] = list(self.session_prefixes)
        if self.agents:
            out["agents"] = list(self.agents)
        return out

    @classmethod
    def from_json(cls, raw: Any, where: str) -> Credential:
        """Raises :class:`AuthFileError` naming ``where`` for anything malformed."""
        if not isinstance(raw, dict):
            raise AuthFileError(f"{where}: an entry must be an object")
        try:
            scopes = frozenset(Scope(s) for s in raw["scopes"])
            strings = {k: raw.get(k) for k in ("sha256", "certificate", "host")}
            cred = cls(
                id=str(raw["id"]),
                name=str(raw["name"]),
                scopes=scopes,
                created=str(raw.get("created", "")),
                session_prefixes=tuple(str(p) for p in raw.get("session_prefixes", ())),
                agents=tuple(str(a) for a in raw.get("agents", ())),
                **{k: None if v is None else str(v) for k, v in strings.items()},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise AuthFileError(f"{where}: invalid entry ({exc!r})") from None
        if (cred.sha256 is None) == (cred.certificate is None):
            raise AuthFileError(f"{where}: an entry has either sha256 or certificate")
        return cred


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` value (RFC 6750), else ``None``."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def read_auth_file(path: Path) -> list[Credential]:
    """The entries of ``path``; an absent file has none.

    Raises:
        AuthFileError: the file is unreadable, not JSON, or has a malformed entry.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise AuthFileError(f"{path}: {exc}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AuthFileError(f"{path}: not JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("version") != _FILE_VERSION:
        raise AuthFileError(f"{path}: not a lastactive auth file (version {_FILE_VERSION})")
    entries = doc.get("credentials", [])
    if not isinstance(entries, list):
        raise AuthFileError(f"{path}: credentials must be a list")
    return [Credential.from_json(e, f"{path}: credentials[{i}]") for i, e in enumerate(entries)]


def _write(path: Path, creds: Iterable[Credential]) -> None:
    """Replace ``path`` atomically with ``creds``, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"version": _FILE_VERSION, "credentials": [c.to_json() for c in creds]}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        Path(tmp).replace(path)  # mkstemp made it 0600
    except BaseException:
        with contextlib.suppress(OSError):
            Path(tmp).unlink()
        raise


def create_credential(
    path: Path,
    scopes: Iterable[Scope],
    *,
    name: str | None = None,
    certificate: str | None = None,
    host: str | None = None,
    session_prefixes: Iterable[str] = (),
    agents: Iterable[str] = (),
    now: datetime | None = None,
) -> tuple[Credential, str | None]:
    """Add a credential to the auth file at ``path`` (created 0600 when absent).

    Returns:
        ``(entry, token)``: the new token, shown once and never stored, or ``None`` for a
        ``certificate`` identity.
    Raises:
        AuthFileError: as :func:`read_auth_file`; no scope; the name is taken.
    """
    scopes = frozenset(scopes)
    if not scopes:
        raise AuthFileError("a credential needs at least one scope")
    existing = read_auth_file(path)
    cid = secrets.token_hex(_ID_HEX // 2)
    name = name or certificate or f"token-{cid}"
    if any(c.name == name for c in existing):
        raise AuthFileError(f"{path}: a credential named {name!r} exists; revoke it first")
    token = None if certificate else f"{TOKEN_PREFIX}{cid}_{secrets.token_urlsafe(32)}"
    created = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    entry = Credential(
        id=cid, name=name, scopes=scopes, created=created,
        sha256=None if token is None else _hash(token), certificate=certificate, host=host,
        session_prefixes=tuple(session_prefixes), agents=tuple(agents),
    )  # fmt: skip
    _write(path, [*existing, entry])
    return entry, token


def revoke_credential(path: Path, name_or_id: str) -> Credential:
    """Remove the entry named (or with the id) ``name_or_id``; a running ``serve`` forgets
    it at its next SIGHUP.

    Raises:
        AuthFileError: as :func:`read_auth_file`, or no such entry.
    """
    existing = read_auth_file(path)
    gone = [c for c in existing if name_or_id in (c.name, c.id)]
    if not gone:
        raise AuthFileError(f"{path}: no credential named {name_or_id!r}")
    _write(path, [c for c in existing if c not in gone])
    return gone[0]


@dataclass(slots=True)
class Credentials:
    """The credentials ``serve`` checks, from the auth file at ``path`` (``None``: none are
    configured and every caller is :data:`ANONYMOUS`; with ``--tls-client-ca`` alone, the CA
    is the credential, as the OTel Collector's ``client_ca_file``)."""

    path: Path | None = None
    _tokens: dict[str, Credential] = field(default_factory=dict)
    _certificates: dict[str, Credential] = field(default_factory=dict)
    failures: dict[tuple[str, str], int] = field(default_factory=dict)
    """Refused calls by ``(transport, reason)``; reason ``unauthenticated`` or ``forbidden``."""

    def __post_init__(self) -> None:
        self.reload()

    @property
    def enabled(self) -> bool:
        """True when every call must carry a credential."""
        return self.path is not None

    def __len__(self) -> int:
        return len(self._tokens) + len(self._certificates)

    def reload(self) -> None:
        """Re-read the auth file (SIGHUP).

        Raises:
            AuthFileError: the file is missing (a mistyped path would lock every client out)
                or invalid; the credentials in force are kept.
        """
        if self.path is None:
            return
        if not self.path.is_file():
            raise AuthFileError(
                f"{self.path}: no such auth file; create credentials with "
                f"`lastactive token create --auth-file {self.path} ...`"
            )
        creds = read_auth_file(self.path)
        self._tokens = {c.id: c for c in creds if c.sha256 is not None}
        self._certificates = {c.certificate: c for c in creds if c.certificate is not None}

    def authenticate(self, authorization: str | None, certificate: str | None) -> Principal:
        """The principal of a call: its bearer token (``Authorization`` header value or
        gRPC metadata) when it has one, else its verified client certificate identity.

        Raises:
            UnauthenticatedError: credentials are required and none valid was given.
        """
        if not self.enabled:
            return ANONYMOUS
        token = bearer(authorization)
        if token is not None:
            cred = self._tokens.get(token[len(TOKEN_PREFIX) : len(TOKEN_PREFIX) + _ID_HEX])
            if (
                cred is None
                or not token.startswith(TOKEN_PREFIX)
                or not hmac.compare_digest(_hash(token), cred.sha256 or "")
            ):
                raise UnauthenticatedError("the bearer token is not valid (revoked or mistyped)")
            return cred.principal()
        if certificate is not None:
            cred = self._certificates.get(certificate)
            if cred is None:
                raise UnauthenticatedError(
                    f"client certificate {certificate!r} has no credential in the auth file"
                )
            return cred.principal()
        raise UnauthenticatedError(
            "credentials required: send Authorization: Bearer <token> "
            "(OTEL_EXPORTER_OTLP_HEADERS=Authorization=Bearer%20<token>) or a client certificate"
        )

    def refuse(self, transport: str, exc: Exception) -> None:
        """Count a call refused for ``exc`` (``/metrics``): :class:`ForbiddenError` (or a
        bound reporter's refused webhook call) is ``forbidden``, anything else
        ``unauthenticated``."""
        reason = "unauthenticated" if isinstance(exc, UnauthenticatedError) else "forbidden"
        key = (transport, reason)
        self.failures[key] = self.failures.get(key, 0) + 1
