"""Every option of every command says what it does (the click tree, walked)."""

from __future__ import annotations

from collections.abc import Iterator

import click
from click.testing import CliRunner

from walletd.cli import main


def _commands(
    command: click.Command, path: tuple[str, ...] = ("walletd",)
) -> Iterator[tuple[str, click.Command]]:
    yield " ".join(path), command
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from _commands(sub, (*path, name))


def _help_of(*argv: str) -> str:
    result = CliRunner().invoke(main, [*argv, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())  # unwrapped


def test_every_option_of_every_command_has_a_help_text() -> None:
    missing = [
        f"{path} {'/'.join(param.opts)}"
        for path, command in _commands(main)
        for param in command.params
        if isinstance(param, click.Option) and not param.hidden and not (param.help or "").strip()
    ]
    assert missing == []


def test_every_command_has_a_help_text_and_takes_json() -> None:
    """The README says every command takes --json."""
    leaves = [(p, c) for p, c in _commands(main) if not isinstance(c, click.Group)]
    assert len(leaves) > 20
    assert [p for p, c in _commands(main) if not (c.help or "").strip()] == []
    no_json = [p for p, c in leaves if not any("--json" in q.opts for q in c.params)]
    assert no_json == []


def test_socket_and_token_file_name_their_defaults_and_variables() -> None:
    for argv in (("pay",), ("chat",), ("image",), ("models",)):
        text = _help_of(*argv)
        assert "$WALLETD_SOCKET" in text, argv
        assert "~/.local/share/walletd/walletd.sock" in text, argv
        assert "$WALLETD_TOKEN_FILE" in text, argv
    assert "Cluster Protocol" in _help_of("chat")  # why the default provider is venice


def test_budget_set_says_what_zero_means_and_how_to_remove_a_limit() -> None:
    text = _help_of("budget", "set")
    assert "A limit of 0 refuses every payment" in text
    assert "To remove one limit, give --clear" in text


def test_the_key_import_and_tls_options_explain_themselves() -> None:
    init, serve, pay = _help_of("init"), _help_of("serve"), _help_of("pay")
    assert "V3 keystore" in init
    assert "passphrase of --import-keystore" in init
    assert "64 hex digits" in init
    assert "PEM certificate" in serve
    assert "private key of --tls-cert" in serve
    assert "HTTP method of the request that answered 402" in pay
