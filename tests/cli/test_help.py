"""`audit-sdk COMMAND [SUBCOMMAND] --help` works for every command, and every option says what it does."""

from __future__ import annotations

import argparse

import pytest

from audit_sdk.cli import build_parser, main


def _commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out.append(((*prefix, name), sub))
                out += _commands(sub, (*prefix, name))
    return out


COMMANDS = _commands(build_parser())


def test_every_command_is_found() -> None:
    names = {c[0] for c, _ in COMMANDS}
    assert {"plugins", "audit", "demo", "train", "epsilon", "dp-audit", "calibrate", "config", "compare"} <= names
    assert ("config", "check") in [c for c, _ in COMMANDS]


@pytest.mark.parametrize("command", [c for c, _ in COMMANDS], ids=" ".join)
def test_help_exits_zero(command: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: audit-sdk " + " ".join(command))


@pytest.mark.parametrize(("command", "parser"), COMMANDS, ids=[" ".join(c) for c, _ in COMMANDS])
def test_every_option_has_help(command: tuple[str, ...], parser: argparse.ArgumentParser) -> None:
    missing = [
        a.option_strings[0] if a.option_strings else a.dest
        for a in parser._actions
        if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction)) and not (a.help or "").strip()
    ]
    assert not missing, f"audit-sdk {' '.join(command)}: options without help text: {missing}"


def test_compute_commands_take_threads_and_quiet() -> None:
    for command, parser in COMMANDS:
        if command[0] in ("audit", "demo", "train", "epsilon", "dp-audit", "calibrate", "compare") and len(command) == 1:
            opts = parser._option_string_actions
            assert "--threads" in opts and "--quiet" in opts, command
