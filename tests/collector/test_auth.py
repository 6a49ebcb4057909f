"""The auth file and credential checks (:mod:`lastactive.collector._auth`)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from lastactive.collector._auth import (
    ANONYMOUS,
    TOKEN_PREFIX,
    AuthFileError,
    Credentials,
    ForbiddenError,
    Scope,
    UnauthenticatedError,
    bearer,
    create_credential,
    read_auth_file,
    revoke_credential,
)


def test_a_token_is_shown_once_and_only_its_hash_is_stored(tmp_path: Path) -> None:
    path = tmp_path / "auth.json"
    entry, token = create_credential(path, [Scope.REPORT], name="h1", host="host-1")
    assert token is not None and token.startswith(TOKEN_PREFIX) and len(token) > 40
    text = path.read_text()
    assert token not in text and token.split("_", 2)[2] not in text  # the secret may hold "_"
    assert entry.sha256 in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    [stored] = read_auth_file(path)
    assert stored == entry and stored.host == "host-1" and stored.scopes == {Scope.REPORT}


def test_authenticate_by_token_then_scope(tmp_path: Path) -> None:
    path = tmp_path / "auth.json"
    _, reader = create_credential(path, [Scope.READ, Scope.ACT], name="culler")
    creds = Credentials(path)
    p = creds.authenticate(f"Bearer {reader}", None)
    assert p.name == "culler" and not p.bound
    p.require_any([Scope.READ])
    p.require_any([Scope.REPORT, Scope.ACT])
    with pytest.raises(ForbiddenError, match="needs report"):
        p.require_any([Scope.REPORT])
    assert reader is not None
    wrongs = [None, "", "Bearer", "Basic dXNlcjpwYXNz", f"Bearer {reader}x", f"Token {reader}",
              f"Bearer {reader[:-1]}", "Bearer la_000000000000_x"]  # fmt: skip
    for wrong in wrongs:
        with pytest.raises(UnauthenticatedError):
            creds.authenticate(wrong, None)


def test_no_auth_file_means_everyone_is_anonymous_with_every_scope() -> None:
    creds = Credentials()
    assert not creds.enabled
    assert creds.authenticate(None, None) is ANONYMOUS
    assert ANONYMOUS.scopes == frozenset(Scope)


def test_certificate_identities_and_tokens_side_by_side(tmp_path: Path) -> None:
    path = tmp_path / "auth.json"
    entry, token = create_credential(path, [Scope.REPORT], certificate="host-2.example",
                                     host="host-2")  # fmt: skip
    assert token is None and entry.name == "host-2.example"
    creds = Credentials(path)
    assert creds.authenticate(None, "host-2.example").host == "host-2"
    with pytest.raises(UnauthenticatedError, match="no credential"):
        creds.authenticate(None, "host-3.example")


def test_revoke_and_reload(tmp_path: Path) -> None:
    path = tmp_path / "auth.json"
    _, old = create_credential(path, [Scope.REPORT], name="old")
    creds = Credentials(path)
    _, new = create_credential(path, [Scope.REPORT], name="new")
    with pytest.raises(UnauthenticatedError):
        creds.authenticate(f"Bearer {new}", None)  # not before the reload (SIGHUP)
    revoke_credential(path, "old")
    creds.reload()
    assert creds.authenticate(f"Bearer {new}", None).name == "new"
    with pytest.raises(UnauthenticatedError):
        creds.authenticate(f"Bearer {old}", None)
    assert len(creds) == 1


def test_an_invalid_file_on_reload_keeps_the_credentials_in_force(tmp_path: Path) -> None:
    path = tmp_path / "auth.json"
    _, token = create_credential(path, [Scope.READ], name="r")
    creds = Credentials(path)
    for broken in ("{not json", json.dumps({"version": 9}),
                   json.dumps({"version": 1, "credentials": [{"id": 1}]})):  # fmt: skip
        path.write_text(broken)
        with pytest.raises(AuthFileError):
            creds.reload()
        assert creds.authenticate(f"Bearer {token}", None).name == "r"


def test_names_are_unique_and_a_credential_needs_a_scope(tmp_path: Path) -> None:
    path = tmp_path / "auth.json"
    create_credential(path, [Scope.READ], name="a")
    with pytest.raises(AuthFileError, match="exists"):
        create_credential(path, [Scope.READ], name="a")
    with pytest.raises(AuthFileError, match="scope"):
        create_credential(path, [], name="b")
    with pytest.raises(AuthFileError, match="no credential"):
        revoke_credential(path, "zzz")


def test_bearer_parsing() -> None:
    assert bearer("Bearer abc") == "abc"
    assert bearer("bearer  abc ") == "abc"
    assert bearer("Basic abc") is None
    assert bearer(None) is None


def test_a_missing_auth_file_is_an_error_not_a_lockout(tmp_path: Path) -> None:
    with pytest.raises(AuthFileError, match="no such auth file"):
        Credentials(tmp_path / "typo.json")
