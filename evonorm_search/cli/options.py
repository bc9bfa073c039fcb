"""Options grouped by concern: each option names its group where it is declared, and
`--help` prints one section per group.

click has no option groups. `GroupedOption` carries the group (and whether the option is
a comma-separated list, which a settings file writes as a TOML array: see
cli/config_file.py); `GroupedCommand` knows its groups' titles, in order, refuses an
option whose group it does not know (when the command is built, so at import) and prints
the sections. A new option is one decorator: `@option("--islands", group="engine", ...)`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import click

# What an option without a group (--help) is listed under, after the groups.
UNGROUPED_TITLE = "Other options"
# Widest option column before click moves an option's help below it (its default).
NAME_COLUMN_MAX = 30


class GroupedOption(click.Option):
    """A click option that knows its help section (`group`) and whether its value is a
    comma-separated list (`comma_list`: a TOML array in a settings file)."""

    def __init__(self, *args: Any, group: str, comma_list: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.group = group
        self.comma_list = comma_list


def option(*declarations: str, group: str, comma_list: bool = False,
           **kwargs: Any) -> Callable[[Any], Any]:
    """`click.option` for a `GroupedCommand`: the same arguments plus its `group`."""
    return click.option(*declarations, cls=GroupedOption, group=group, comma_list=comma_list,
                        **kwargs)


class GroupedCommand(click.Command):
    """A click command whose `--help` lists options in sections, one per group of
    `groups` (key -> title, in the order printed); options without a group (--help)
    come last."""

    def __init__(self, *args: Any, groups: dict[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.groups = dict(groups)
        unknown = [f"{p.opts[0]} ({p.group!r})" for p in self.params
                   if isinstance(p, GroupedOption) and p.group not in self.groups]
        if unknown:
            raise ValueError(f"command {self.name!r}: options of unknown groups "
                             f"{', '.join(unknown)}; its groups are {', '.join(self.groups)}")

    def grouped_options(self) -> list[GroupedOption]:
        return [p for p in self.params if isinstance(p, GroupedOption)]

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        sections: dict[str, list[tuple[str, str]]] = {key: [] for key in self.groups}
        ungrouped: list[tuple[str, str]] = []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None or isinstance(param, click.Argument):  # as click.Command does
                continue
            group = param.group if isinstance(param, GroupedOption) else None
            (ungrouped if group is None else sections[group]).append(record)
        titled: Sequence[tuple[str, list[tuple[str, str]]]] = [
            *((self.groups[key], rows) for key, rows in sections.items()),
            (UNGROUPED_TITLE, ungrouped),
        ]
        # One column of help texts for every section, as click aligns one option list.
        width = min(NAME_COLUMN_MAX, max(len(name) for _, rows in titled for name, _ in rows))
        for title, rows in titled:
            if rows:
                with formatter.section(title):
                    formatter.write_dl([(name.ljust(width), text) for name, text in rows],
                                       col_max=NAME_COLUMN_MAX)
