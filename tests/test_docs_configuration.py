"""docs/configuration.md, where `--help` sends a reader, names every flag of every command and says true things
about secrets. (That it is current is tests/test_generated_files.py; that it ships is tests/test_sdist.py.)"""

from __future__ import annotations

import argparse
from pathlib import Path

from vps_snapshots_mcp.cli import PROG, build_parser, serve_parser

from .support.cli_reference import subcommands

DOC = Path(__file__).parent.parent / "docs" / "configuration.md"


def flags(parser: argparse.ArgumentParser) -> list[str]:
    return [
        option
        for action in parser._actions
        if not isinstance(action, argparse._HelpAction | argparse._VersionAction)
        for option in action.option_strings
    ]


def test_every_flag_of_the_server_is_in_the_reference() -> None:
    text = DOC.read_text()
    assert all(f"`{flag}`" in text for flag in flags(serve_parser()))


def test_every_other_command_and_each_of_its_flags_is_in_the_reference() -> None:
    text = DOC.read_text()
    found = list(subcommands(build_parser()))
    assert {words[0] for words, _ in found} >= {"sandbox", "demo", "audit"}
    for words, parser in found:
        section = text.split(f"### `{PROG} {' '.join(words)}`\n", 1)[1].split("\n### ", 1)[0]
        for flag in flags(parser):
            assert f"`{flag}`" in section, (words, flag)


def test_the_reference_says_which_secrets_have_a_flag() -> None:
    text = DOC.read_text()
    assert "Secrets have no flag" not in text  # --api-token is one
    assert "`--api-token` has one" in text and "`VPS_MCP_AUTH_TOKEN`" in text
    assert "--auth-token" not in flags(serve_parser()) and "--confirm-secret" not in flags(serve_parser())
