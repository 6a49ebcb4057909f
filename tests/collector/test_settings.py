"""``Settings``: what a bind beyond loopback lacks, and the TLS flags that go together."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from lastactive.collector.settings import ConfigFileError, Settings, load_settings, settings_toml


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


def test_a_toml_file_with_the_same_names_below_the_environment_and_the_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "lastactive.toml"
    config.write_text('grpc_port = 1234\nhttp_port = 1235\nretention = 60.0\nlog_format = "json"\n')
    monkeypatch.setenv("LASTACTIVE_HTTP_PORT", "2235")
    s = load_settings({"retention": 30.0}, config)
    assert (s.grpc_port, s.http_port, s.retention, s.log_format) == (1234, 2235, 30.0, "json")
    monkeypatch.setenv("LASTACTIVE_CONFIG", str(config))  # the variable names the file too
    assert load_settings({}).grpc_port == 1234


def test_print_config_writes_a_file_that_reads_back_the_same(tmp_path: Path) -> None:
    s = load_settings({"grpc_port": 9, "auth_file": tmp_path / "a.json", "max_watchers": 3})
    text = settings_toml(s)
    assert "# tls_cert =" in text  # unset: a comment, with its description above it
    config = tmp_path / "printed.toml"
    config.write_text(text)
    assert load_settings({}, config) == s


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("grpc-port = 1\n", "grpc-port is not a setting"),
        ("grpc_port = \n", "is not TOML"),
    ],
)
def test_a_bad_file_is_named_with_what_is_wrong(tmp_path: Path, text: str, says: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(text)
    with pytest.raises(ConfigFileError, match=says):
        load_settings({}, config)
    with pytest.raises(ConfigFileError, match="cannot read"):
        load_settings({}, tmp_path / "missing.toml")
    config.write_text("grpc_port = 70000\n")
    with pytest.raises(ValidationError, match="grpc_port"):
        load_settings({}, config)
