"""The other subcommands' flags, for docs/configuration.md: read from the command line's own parser.

Every subcommand the parser has (but `serve`, whose options are the settings' table) gets a section, found by
walking the parser, so a new subcommand, or a new flag of one, is documented by adding it to `cli.py`.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from vps_snapshots_mcp.cli import PROG, build_parser

DOCUMENTED_ELSEWHERE = ("serve",)
"""The server's options come from the settings' declarations: the tables above the subcommands."""


def subcommands(
    parser: argparse.ArgumentParser, words: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Each leaf subcommand, depth first, with the words that name it (`("audit", "verify")`)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                if not words and name in DOCUMENTED_ELSEWHERE:
                    continue
                nested = list(subcommands(sub, (*words, name)))
                yield from nested or [((*words, name), sub)]


def _shown(action: argparse.Action) -> str:
    if not action.option_strings:
        return "(required)"
    if action.default is None or action.default is argparse.SUPPRESS:
        return "unset"
    return str(action.default)


def subcommand_reference(parser: argparse.ArgumentParser | None = None) -> str:
    """One section per subcommand: its description, and a row per flag or argument."""
    intro = f"Read from the command line's own parser; `{PROG} COMMAND --help` says the same."
    lines = ["## Other commands", "", intro, ""]
    for words, sub in subcommands(parser or build_parser()):
        lines += [f"### `{PROG} {' '.join(words)}`", "", (sub.description or "").strip(), ""]
        rows = [
            action
            for action in sub._actions
            if not isinstance(action, argparse._HelpAction | argparse._VersionAction | argparse._SubParsersAction)
        ]
        if not rows:
            lines += ["No flags.", ""]
            continue
        lines += ["| flag | default | meaning |", "|---|---|---|"]
        for action in rows:
            name = ", ".join(f"`{o}`" for o in action.option_strings) or f"`{action.metavar or action.dest.upper()}`"
            lines.append(f"| {name} | {_shown(action)} | {action.help or ''} |")
        lines.append("")
    return "\n".join(lines)
