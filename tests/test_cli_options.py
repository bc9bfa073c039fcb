"""Options grouped by concern in `--help` (evonorm_search/cli/options.py)."""

from __future__ import annotations

import re

import click
import pytest
from click.testing import CliRunner

from evonorm_search.cli import cli
from evonorm_search.cli.options import UNGROUPED_TITLE, GroupedCommand, GroupedOption, option

GROUPED_COMMANDS = ("search", "evaluate")


@pytest.mark.parametrize("name", GROUPED_COMMANDS)
def test_every_option_names_a_group_of_its_command(name: str) -> None:
    """An option added without a group would land under "Other options": this names it."""
    command = cli.commands[name]
    assert isinstance(command, GroupedCommand)
    ungrouped = [p.opts[0] for p in command.params
                 if isinstance(p, click.Option) and not isinstance(p, GroupedOption)]
    assert ungrouped == [], f"give these options of `{name}` a group=: {ungrouped}"


@pytest.mark.parametrize("name", GROUPED_COMMANDS)
def test_help_lists_each_option_once_under_its_section_within_80_columns(name: str) -> None:
    command = cli.commands[name]
    assert isinstance(command, GroupedCommand)
    result = CliRunner().invoke(cli, [name, "--help"], terminal_width=80)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    titles = [*command.groups.values(), UNGROUPED_TITLE]
    headings = [line[:-1] for line in lines if line.endswith(":") and line[:-1] in titles]
    assert headings == [t for t in titles if t != UNGROUPED_TITLE] + [UNGROUPED_TITLE]
    section_of: dict[str, str] = {}  # option -> the section it is listed in
    help_columns = set()  # where the help texts start, on the lines of options
    title = ""
    for line in lines:
        title = line[:-1] if line[:-1] in titles and line.endswith(":") else title
        if not title or not line.startswith("  -"):  # the description, or a wrapped text
            continue
        listed = re.match(r"^  (?:-\w, )?(--[\w-]+)", line)
        assert listed and listed[1] not in section_of, line
        section_of[listed[1]] = title
        if text := re.match(r"^  -\S*(?: \S+)*?  +(?=\S)", line):
            help_columns.add(text.end())
    expected = {p.opts[0]: command.groups[p.group] for p in command.params
                if isinstance(p, GroupedOption)}
    assert section_of == {**expected, "--help": UNGROUPED_TITLE}
    assert len(help_columns) == 1, help_columns  # one column across the sections


def test_an_option_of_an_unknown_group_is_refused_when_the_command_is_built() -> None:
    with pytest.raises(ValueError, match=r"--islands \('engin'\).*groups are search"):
        @click.command(cls=GroupedCommand, groups={"search": "Search"})
        @option("--islands", group="engin", type=int)
        def command(islands: int) -> None:
            """A command with a misspelt group."""
