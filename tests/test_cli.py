"""``lastactive``: parses and delegates; ``--version``; bad arguments are exit status 2."""

from __future__ import annotations

import pytest

import lastactive
from lastactive.cli import main
from lastactive.instrumentation._tmux import default_command


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"lastactive {lastactive.__version__}"


@pytest.mark.parametrize(
    "argv",
    [
        ["lease", "--ttl", "soon", "--", "true"],
        ["lease", "--ttl", "-5", "--", "true"],
        ["proxy", "--listen", "nohost", "--target", "127.0.0.1:5900"],
        ["serve", "--grpc-port", "many"],
        ["nonsense"],
    ],
)
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2 and "error" in capsys.readouterr().err


def test_commands_without_a_command_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run"]) == 2 and "give a command" in capsys.readouterr().err
    assert main(["lease", "--ttl", "1m", "--session-id", "s"]) == 2
    assert main(["cull", "--once"]) == 2 and "--dry-run" in capsys.readouterr().err


def test_serve_refuses_invalid_settings(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--grpc-port", "70000"]) == 2
    assert "invalid settings" in capsys.readouterr().err


def test_hooks_call_back_through_an_unshadowable_command() -> None:
    assert default_command()[1:] == ["-P", "-m", "lastactive"]
