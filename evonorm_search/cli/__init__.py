"""The `evonorm` command line: one click group; each command lives in its own module."""

from __future__ import annotations

import click

from evonorm_search.cli.common import run_command_group


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="evonorm-search")
def cli() -> None:
    """Discover normalization-activation layers by evolution (Liu et al., NeurIPS 2020)."""


def _register_commands() -> None:
    from evonorm_search.cli import dashboard, evaluate, inspect, layers, report, rerank, search

    for module in (layers, search, inspect, rerank, report, evaluate, dashboard):
        for command in module.COMMANDS:
            cli.add_command(command)


_register_commands()


def main() -> None:
    """Console-script entry point: user errors become a message and exit code 2."""
    run_command_group(cli)
