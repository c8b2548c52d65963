"""The `gatepass` command line: --version, help text on every command and option, and
messages that name commands, never argparse's internal dests."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from importlib import metadata

import pytest

from gatepass.cli import build_parser, main


def walk(
    parser: argparse.ArgumentParser, path: str = "gatepass"
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from walk(sub, f"{path} {name}")


def test_version_comes_from_the_package_metadata(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out == f"gatepass {metadata.version('gatepass')}\n"


def test_every_command_and_option_has_help() -> None:
    missing = []
    for path, parser in walk(build_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                helped = {a.dest for a in action._choices_actions if a.help}
                missing += [f"{path} {n}" for n in action.choices if n not in helped]
            elif not action.help:
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, "no help text: " + ", ".join(missing)


@pytest.mark.parametrize(
    "argv,line",
    [
        (
            [],
            (
                "gatepass: choose a command: run, demo, playground, wechat, db, config, members, "
                "webhooks "
                "(see gatepass --help)"
            ),
        ),
        (["db"], "gatepass db: choose a command: upgrade (see gatepass db --help)"),
        (["config"], "gatepass config: choose a command: check (see gatepass config --help)"),
        (["members"], "gatepass members: choose a command: import (see gatepass members --help)"),
        (
            ["webhooks"],
            "gatepass webhooks: choose a command: replay (see gatepass webhooks --help)",
        ),
    ],
)
def test_a_missing_command_names_the_choices_in_one_line(
    argv: list[str], line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", line + "\n")


@pytest.mark.parametrize(
    "argv",
    [["nope"], ["db", "nope"], ["config", "check"], ["members", "import"], ["run"], ["wechat"]],
)
def test_usage_errors_never_name_internal_dests(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 2
    err = capsys.readouterr().err
    for dest in ("cmd", "db_cmd", "config_cmd", "members_cmd", "webhooks_cmd", "handler"):
        assert f" {dest}" not in err.replace("COMMAND", ""), err
    assert "Traceback" not in err


def test_a_new_command_is_a_few_lines() -> None:
    """How another command joins: an add function in COMMANDS (the parser picks it up)."""
    import gatepass.cli as cli

    def add_hello(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
        p = commands.add_parser("hello", help="say hello")
        p.set_defaults(handler=lambda args: 7)

    saved = cli.COMMANDS
    cli.COMMANDS = (*saved, add_hello)
    try:
        assert main(["hello"]) == 7
    finally:
        cli.COMMANDS = saved
