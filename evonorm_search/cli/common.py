"""Shared CLI plumbing: turning library errors into clean messages and exit codes, and
help texts shared by several commands."""

from __future__ import annotations

import sys

import click

from evonorm_search.errors import USER_ERRORS
from evonorm_search.task import DATASET_TRAINING, TRANSFORMER_TRAINING, DatasetSpec, TrainSettings

USER_ERROR_EXIT_CODE = 2


def run_command_group(group: click.Group) -> None:
    """Run `group`; a user error (`EvonormError` or the database's `StoreError`) prints
    `error: ...` and exits 2, no traceback."""
    try:
        status = group.main(standalone_mode=False)
    except USER_ERRORS as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(USER_ERROR_EXIT_CODE)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    # Without standalone mode click returns the code given to ctx.exit() instead of exiting.
    if isinstance(status, int) and status != 0:
        sys.exit(status)


def training_default_help(setting: str) -> str:
    """`[default: ...]` for a training setting whose default depends on the data set or on
    the proxies (the Transformer proxies have their own recipe)."""
    text = f"{getattr(TrainSettings(), setting)}"
    overrides = {name: values[setting] for name, values in DATASET_TRAINING.items()
                 if setting in values}
    if overrides:
        text += f" on {DatasetSpec().name}"
    for value in sorted(set(overrides.values())):
        text += f", {value} on {' and '.join(n for n, v in overrides.items() if v == value)}"
    if setting in TRANSFORMER_TRAINING:
        text += f"; {TRANSFORMER_TRAINING[setting]} for the Transformer proxies (vit, charlm)"
    return f"[default: {text}]"
