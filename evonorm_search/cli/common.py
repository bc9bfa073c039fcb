"""Shared CLI plumbing: turning library errors into clean messages and exit statuses, and
help texts shared by several commands.

Exit statuses (docs/faults.md): 0 done; 2 bad input, or a database that is missing,
foreign, too new or damaged (fix the input or the file); 3 the search is running in another
process; 74 an I/O error while writing (a full disk: free space or move the file, then run
the same command to resume); 75 the executor was lost (the Ray cluster: restart it, then
resume); 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import sqlite3
import sys

import click
from sqlalchemy.exc import DBAPIError

from db.errors import driver_error
from evonorm_search.errors import (
    USER_ERRORS,
    DatabaseWriteError,
    ExecutorLost,
    OutputWriteError,
    SearchRunning,
)
from evonorm_search.output import DISK_ERRNOS
from evonorm_search.task import DATASET_TRAINING, DatasetSpec, TrainSettings

USER_ERROR_EXIT_CODE = 2
SEARCH_RUNNING_EXIT_CODE = 3
IO_ERROR_EXIT_CODE = 74  # EX_IOERR of sysexits.h
EXECUTOR_LOST_EXIT_CODE = 75  # EX_TEMPFAIL: run the same command again later
INTERRUPTED_EXIT_CODE = 130  # as a shell reports a process stopped by SIGINT
_EXIT_CODES: tuple[tuple[type[Exception], int], ...] = (
    (SearchRunning, SEARCH_RUNNING_EXIT_CODE),
    (DatabaseWriteError, IO_ERROR_EXIT_CODE),
    (OutputWriteError, IO_ERROR_EXIT_CODE),
    (ExecutorLost, EXECUTOR_LOST_EXIT_CODE),
)


def exit_status(error: Exception) -> int:
    """The exit status for a user-facing error (2 unless a more specific kind says so)."""
    for kind, code in _EXIT_CODES:
        if isinstance(error, kind):
            return code
    return USER_ERROR_EXIT_CODE


def run_command_group(group: click.Group) -> None:
    """Run `group`; a user error (`EvonormError` or the database's `StoreError`) prints
    `error: ...` and exits with its status (`exit_status`), no traceback. So does a fault
    of the disk that escaped the library's own translation (the one place that catches
    the driver's and the operating system's errors for every command)."""
    try:
        status = group.main(standalone_mode=False)
    except USER_ERRORS as error:
        _fail(error)
    except (sqlite3.Error, DBAPIError) as error:
        original = error.orig if isinstance(error, DBAPIError) else error
        translated = (driver_error(original, None)
                      if isinstance(original, sqlite3.Error) else None)
        if translated is None:
            raise  # a bug: keep the traceback
        _fail(translated)
    except OSError as error:
        if error.errno not in DISK_ERRNOS:  # the machine's doing: a message, no traceback
            raise
        where = f" {error.filename}" if error.filename else ""
        _fail(OutputWriteError(
            f"cannot write{where} ({error.strerror}); free space on that disk (or fix it), "
            "then run the same command again"))
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(INTERRUPTED_EXIT_CODE)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    # Without standalone mode click returns the code given to ctx.exit() instead of exiting.
    if isinstance(status, int) and status != 0:
        sys.exit(status)


def numbers_text(numbers: tuple[int, ...] | list[int], most: int = 20) -> str:
    """`3, 5, 8` (the first `most`, then ` ...`): candidate numbers in a message."""
    return ", ".join(map(str, numbers[:most])) + (" ..." if len(numbers) > most else "")


def _fail(error: Exception) -> None:
    click.echo(f"error: {error}", err=True)
    sys.exit(exit_status(error))


def training_default_help(setting: str) -> str:
    """`[default: ...]` for a training setting whose default depends on the data set."""
    text = f"{getattr(TrainSettings(), setting)} on {DatasetSpec().name}"
    overrides = {name: values[setting] for name, values in DATASET_TRAINING.items()
                 if setting in values}
    for value in sorted(set(overrides.values())):
        text += f", {value} on {' and '.join(n for n, v in overrides.items() if v == value)}"
    return f"[default: {text}]"
