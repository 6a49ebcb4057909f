"""Collector configuration: one typed place, read from the ``lastactive serve`` flags, then
``LASTACTIVE_*`` environment variables, then a TOML file (``--config``, ``LASTACTIVE_CONFIG``),
then the defaults; the first that says wins. The file uses the same names (``grpc_port = 4317``,
``auth_file = "/etc/lastactive/auth.json"``); a key it does not know is an error.
``lastactive serve --print-config`` prints what is in force, as such a file."""

from __future__ import annotations

import ipaddress
import os
import textwrap
import tomllib
from pathlib import Path
from typing import Any, Self

import tomli_w
from pydantic import Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from lastactive.collector._admission import DEFAULT_MAX_BYTES, DEFAULT_MAX_REQUESTS
from lastactive.collector._logging import LogFormat, LogLevel
from lastactive.collector.store import check_postgres_url

__all__ = [
    "ConfigFileError",
    "Settings",
    "default_db_path",
    "is_loopback",
    "load_settings",
    "settings_toml",
]

ENV_CONFIG = "LASTACTIVE_CONFIG"
"""The environment variable naming the TOML configuration file."""


class ConfigFileError(ValueError):
    """The configuration file cannot be read, is not TOML, or has a key that is no setting."""


def default_db_path() -> Path:
    """``$XDG_STATE_HOME/lastactive/lastactive.db``, default ``~/.local/state/lastactive/...``."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "lastactive" / "lastactive.db"


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Settings(BaseSettings):
    """Everything ``lastactive serve`` can be told. Environment: ``LASTACTIVE_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="LASTACTIVE_", extra="ignore")

    host: str = Field("127.0.0.1", description="Address both servers bind to.")
    grpc_port: int = Field(4317, ge=0, le=65535, description="OTLP/gRPC + query gRPC; 0 = any.")
    http_port: int = Field(4318, ge=0, le=65535, description="OTLP/HTTP + query HTTP; 0 = any.")
    db: Path = Field(default_factory=default_db_path, description="SQLite database file.")
    store: str | None = Field(
        None,
        description="PostgreSQL connection URL (postgresql://USER@HOST:PORT/DATABASE; the "
        "password in PGPASSWORD or ~/.pgpass) to keep state in instead of the SQLite db; needs "
        "the extra lastactive[postgresql].",
    )
    replica: str | None = Field(
        None,
        description="This replica's name among those sharing the PostgreSQL store (on "
        "/metrics and in the shard leases); default: host name, process id and a random part.",
    )
    lease: float = Field(
        5.0,
        ge=1.0,
        le=300.0,
        description="Seconds a replica's shard leases last without renewal (renewed every "
        "third of it): a dead or stalled replica's sessions are taken over by the others "
        "within about this plus one renewal period.",
    )
    flush_interval: float = Field(
        1.0,
        gt=0,
        description="Seconds between commits of changes no export waits for (and, without "
        "synchronous_commit, of every change).",
    )
    synchronous_commit: bool = Field(
        True,
        description="Answer an export only once what it changed is committed (group commit). "
        "false: answer on receipt and commit within flush_interval, faster, but a crash loses "
        "what was acknowledged meanwhile (as PostgreSQL's synchronous_commit=off).",
    )
    max_request_bytes: int = Field(
        64 * 1024 * 1024,
        gt=0,
        description="Largest (decompressed) OTLP request, bytes: 413 / RESOURCE_EXHAUSTED past "
        "it (OTLP spec recommends supporting 64 MiB; grpcio's default is 4 MiB).",
    )
    policy: Path | None = Field(
        None,
        description="Idle policy file (TOML, see collector/policy.py); built-in defaults "
        "when unset.",
    )
    retention: float = Field(
        86400.0,
        gt=0,
        description="Seconds a completed or failed session is kept before it is forgotten "
        "(seed 004: 24 h). Active sessions are never forgotten.",
    )
    metrics_top_sessions: int = Field(
        20,
        ge=0,
        description="Per-session series on /metrics: runaway and stuck sessions plus this many "
        "busiest by output bytes/s (Prometheus cannot take a series per session at 100k).",
    )
    max_inflight_requests: int = Field(
        DEFAULT_MAX_REQUESTS,
        gt=0,
        description="Exports being applied or awaiting their commit at most; beyond, an export "
        "is refused with UNAVAILABLE + RetryInfo / 503 + Retry-After (the exporters retry).",
    )
    max_inflight_bytes: int = Field(
        DEFAULT_MAX_BYTES,
        gt=0,
        description="Bytes of export bodies in flight at most (the same refusal past it).",
    )
    max_entities: int = Field(
        1_000_000,
        gt=0,
        description="Sessions, agents and hosts tracked at most; telemetry naming a new one "
        "beyond is rejected (partial success) until the retention purge makes room.",
    )
    max_watchers: int = Field(
        256,
        gt=0,
        description="Open Watch and SSE streams at most; another is refused with "
        "UNAVAILABLE / 503 + Retry-After.",
    )
    max_clock_skew: float = Field(
        10.0,
        ge=0,
        description="Seconds a timestamp may be ahead of the receive time before it "
        "is clamped to the receive time.",
    )
    auth_file: Path | None = Field(
        None,
        description="Credentials file (`lastactive token create`); every call then needs a "
        "bearer token or a client certificate with the right scope. Re-read on SIGHUP.",
    )
    tls_cert: Path | None = Field(
        None, description="PEM certificate chain both ports serve TLS with (re-read on SIGHUP)."
    )
    tls_key: Path | None = Field(None, description="PEM private key of tls_cert.")
    tls_client_ca: Path | None = Field(
        None,
        description="PEM CA a client certificate must be signed by (mTLS, required on both "
        "ports); its identity matches an auth file `certificate` entry.",
    )
    insecure: bool = Field(
        False,
        description="Serve beyond loopback without credentials or TLS (refused otherwise); "
        "warned at start and on /metrics (lastactive_insecure).",
    )

    log_level: LogLevel = Field(LogLevel.WARNING, description="Least severe log level written.")
    log_format: LogFormat = Field(
        LogFormat.TEXT, description="text, or json: one object per line (time, level, ...)."
    )
    access_log: bool = Field(False, description="Log every HTTP request (uvicorn's access log).")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Flags (init), environment, then the TOML file's table :func:`load_settings` read
        and checked (passed as ``_config_table``)."""
        assert isinstance(init_settings, InitSettingsSource)
        table = init_settings.init_kwargs.pop("_config_table", None)
        if table is None:
            return init_settings, env_settings
        return init_settings, env_settings, InitSettingsSource(settings_cls, init_kwargs=table)

    @field_validator("store")
    @classmethod
    def _postgres_url(cls, url: str | None) -> str | None:
        return None if url is None else check_postgres_url(url)

    @model_validator(mode="after")
    def _tls_pair(self) -> Self:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ValueError("tls_client_ca needs tls_cert and tls_key")
        return self

    def exposure(self) -> str | None:
        """What is unprotected about this bind, or ``None`` when it is safe: loopback, or
        credentials (an auth file or client certificates) and TLS."""
        if is_loopback(self.host):
            return None
        missing = []
        if self.auth_file is None and self.tls_client_ca is None:
            missing.append("credentials (--auth-file)")
        if self.tls_cert is None:
            missing.append("TLS (--tls-cert, --tls-key)")
        return " and ".join(missing) if missing else None


def load_settings(flags: dict[str, Any], config: Path | None = None) -> Settings:
    """The settings in force: ``flags`` (field names), then ``LASTACTIVE_*``, then the TOML
    file ``config`` (default ``$LASTACTIVE_CONFIG``, none when unset), then the defaults.

    Raises:
        ConfigFileError: the file is missing, not TOML, or names a key that is no setting.
        pydantic.ValidationError: a value is invalid (the message names the field).
    """
    if config is None and os.environ.get(ENV_CONFIG):
        config = Path(os.environ[ENV_CONFIG])
    if config is None:
        return Settings(**flags)
    try:
        table = tomllib.loads(config.read_text())
    except OSError as exc:
        raise ConfigFileError(f"cannot read {config}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigFileError(f"{config} is not TOML: {exc}") from None
    unknown = sorted(set(table) - set(Settings.model_fields))
    if unknown:
        raise ConfigFileError(
            f"{config}: {', '.join(unknown)} is not a setting; the settings are "
            f"{', '.join(Settings.model_fields)}"
        )
    return Settings(**flags, _config_table=table)


def settings_toml(settings: Settings) -> str:
    """``settings`` as a TOML configuration file, each key under its description; one that is
    unset is a comment."""
    lines = [
        "# lastactive serve configuration (--config FILE or LASTACTIVE_CONFIG).",
        "# Flags and LASTACTIVE_* variables take precedence over this file.",
    ]
    for name, field in Settings.model_fields.items():
        lines.append("")
        lines.extend(textwrap.wrap(str(field.description), 98, initial_indent="# ",
                                   subsequent_indent="# "))  # fmt: skip
        value = getattr(settings, name)
        if value is None:
            lines.append(f"# {name} =")
            continue
        if isinstance(value, Path | str):  # paths and str enums as plain strings
            value = str(value)
        lines.append(tomli_w.dumps({name: value}).rstrip("\n"))
    return "\n".join(lines) + "\n"
