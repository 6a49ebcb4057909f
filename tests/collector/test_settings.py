"""``Settings``: what a bind beyond loopback lacks, and the TLS flags that go together."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from lastactive.collector.settings import Settings


def test_settings_say_what_an_exposed_bind_lacks(tmp_path: Path) -> None:
    assert Settings(host="127.0.0.1").exposure() is None
    assert Settings(host="::1").exposure() is None
    assert (
        Settings(host="0.0.0.0").exposure()
        == "credentials (--auth-file) and TLS (--tls-cert, --tls-key)"
    )
    tls = {"tls_cert": tmp_path / "c.pem", "tls_key": tmp_path / "k.pem"}
    assert Settings(host="10.0.0.5", auth_file=tmp_path / "a.json", **tls).exposure() is None
    assert Settings(host="10.0.0.5", tls_client_ca=tmp_path / "ca.pem", **tls).exposure() is None
    assert Settings(host="::", **tls).exposure() == "credentials (--auth-file)"


def test_tls_flags_go_together(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="go together"):
        Settings(tls_cert=tmp_path / "c.pem")
    with pytest.raises(ValidationError, match="needs tls_cert"):
        Settings(tls_client_ca=tmp_path / "ca.pem")
