"""Passphrase sources, in order: file, systemd credential, TTY prompt, else refusal."""

from __future__ import annotations

import io
import logging
import sys
from pathlib import Path

import pytest

from walletd.errors import KeyStoreError
from walletd.keys.passphrase import read_passphrase

NO_SOURCE = (
    "no passphrase: pass --passphrase-file, use systemd LoadCredential=walletd-passphrase, "
    "or run on a TTY"
)


def _file(path: Path, content: bytes, mode: int = 0o600) -> Path:
    path.write_bytes(content)
    path.chmod(mode)
    return path


def _creds(tmp_path: Path, content: bytes) -> dict[str, str]:
    directory = tmp_path / "creds"
    directory.mkdir()
    _file(directory / "walletd-passphrase", content, 0o400)
    return {"CREDENTIALS_DIRECTORY": str(directory)}


def _never_asked(prompt: str) -> str:
    raise AssertionError("must not prompt")


def _answers(*replies: str):
    queue = list(replies)
    asked: list[str] = []

    def ask(prompt: str) -> str:
        asked.append(prompt)
        return queue.pop(0)

    return ask, asked


def test_explicit_file_comes_first(tmp_path: Path) -> None:
    path = _file(tmp_path / "pw", b"from file\n")
    got = read_passphrase(
        path,
        environ=_creds(tmp_path, b"from creds"),
        stdin_isatty=lambda: True,
        getpass_fn=_never_asked,
    )
    assert got == b"from file"


def test_systemd_credential_comes_before_the_prompt(tmp_path: Path) -> None:
    got = read_passphrase(
        None,
        environ=_creds(tmp_path, b"from creds\n"),
        stdin_isatty=lambda: True,
        getpass_fn=_never_asked,
    )
    assert got == b"from creds"


def test_tty_prompt_is_last(tmp_path: Path) -> None:
    ask, asked = _answers("typed")
    assert read_passphrase(None, environ={}, stdin_isatty=lambda: True, getpass_fn=ask) == b"typed"
    assert len(asked) == 1


def test_credentials_directory_without_the_credential_falls_through(tmp_path: Path) -> None:
    ask, _ = _answers("typed")
    env = {"CREDENTIALS_DIRECTORY": str(tmp_path)}
    assert read_passphrase(None, environ=env, stdin_isatty=lambda: True, getpass_fn=ask) == b"typed"


def test_refusal_when_no_source_and_stdin_is_not_a_tty() -> None:
    with pytest.raises(KeyStoreError) as info:
        read_passphrase(None, environ={}, stdin_isatty=lambda: False, getpass_fn=_never_asked)
    assert str(info.value) == NO_SOURCE


def test_refusal_when_prompting_is_disabled() -> None:
    with pytest.raises(KeyStoreError, match="no passphrase"):
        read_passphrase(
            None, environ={}, prompt=False, stdin_isatty=lambda: True, getpass_fn=_never_asked
        )


@pytest.mark.parametrize(
    "name", ["WALLETD_PASSPHRASE", "PASSPHRASE", "walletd-passphrase", "WALLETD_KEY_PASSPHRASE"]
)
def test_environment_values_are_never_a_passphrase(name: str) -> None:
    with pytest.raises(KeyStoreError, match="no passphrase"):
        read_passphrase(None, environ={name: "secret"}, stdin_isatty=lambda: False)


def test_default_tty_check_refuses_when_stdin_is_not_a_tty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    with pytest.raises(KeyStoreError, match="no passphrase"):
        read_passphrase(None, environ={}, getpass_fn=_never_asked)
    monkeypatch.setattr(sys, "stdin", None)
    with pytest.raises(KeyStoreError, match="no passphrase"):
        read_passphrase(None, environ={}, getpass_fn=_never_asked)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"pw", b"pw"),
        (b"pw\n", b"pw"),
        (b"pw\r\n", b"pw"),
        (b"pw\n\n", b"pw\n"),
        (b" pw \n", b" pw "),
        (b"pw\t", b"pw\t"),
        (b"\xff\x00binary\n", b"\xff\x00binary"),
    ],
)
def test_exactly_one_trailing_newline_is_stripped(
    tmp_path: Path, content: bytes, expected: bytes
) -> None:
    assert read_passphrase(_file(tmp_path / "pw", content), environ={}) == expected


@pytest.mark.parametrize("content", [b"", b"\n", b"\r\n"])
def test_empty_passphrase_file_is_refused(tmp_path: Path, content: bytes) -> None:
    with pytest.raises(KeyStoreError, match="is empty"):
        read_passphrase(_file(tmp_path / "pw", content), environ={})


def test_empty_credential_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyStoreError, match="is empty"):
        read_passphrase(None, environ=_creds(tmp_path, b"\n"), stdin_isatty=lambda: False)


def test_empty_typed_passphrase_is_refused() -> None:
    ask, _ = _answers("")
    with pytest.raises(KeyStoreError, match="empty"):
        read_passphrase(None, environ={}, stdin_isatty=lambda: True, getpass_fn=ask)


def test_missing_explicit_file_is_final_and_does_not_fall_through(tmp_path: Path) -> None:
    with pytest.raises(KeyStoreError, match="cannot read passphrase file") as info:
        read_passphrase(
            tmp_path / "absent",
            environ=_creds(tmp_path, b"creds"),
            stdin_isatty=lambda: True,
            getpass_fn=_never_asked,
        )
    assert "\n" not in str(info.value)


def test_oversized_passphrase_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyStoreError, match="larger than"):
        read_passphrase(_file(tmp_path / "pw", b"x" * 5000), environ={})


def test_confirm_asks_twice_and_accepts_a_match() -> None:
    ask, asked = _answers("same", "same")
    got = read_passphrase(None, environ={}, confirm=True, stdin_isatty=lambda: True, getpass_fn=ask)
    assert got == b"same"
    assert len(asked) == 2


def test_confirm_refuses_a_mismatch() -> None:
    ask, _ = _answers("one", "two")
    with pytest.raises(KeyStoreError, match="do not match") as info:
        read_passphrase(None, environ={}, confirm=True, stdin_isatty=lambda: True, getpass_fn=ask)
    assert "one" not in str(info.value)
    assert "two" not in str(info.value)


def test_typed_passphrase_is_utf8() -> None:
    ask, _ = _answers("pässwörd")
    got = read_passphrase(None, environ={}, stdin_isatty=lambda: True, getpass_fn=ask)
    assert got == "pässwörd".encode()


def test_group_readable_passphrase_file_warns_without_the_secret(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _file(tmp_path / "pw", b"hunter2\n", 0o644)
    with caplog.at_level(logging.WARNING, logger="walletd.keys.passphrase"):
        assert read_passphrase(path, environ={}) == b"hunter2"
    assert "readable by group/others" in caplog.text
    assert "hunter2" not in caplog.text


def test_private_passphrase_file_does_not_warn(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _file(tmp_path / "pw", b"hunter2\n", 0o600)
    with caplog.at_level(logging.WARNING, logger="walletd.keys.passphrase"):
        read_passphrase(path, environ={})
    assert caplog.text == ""
