"""User-facing errors: each message names the problem and how to fix it.

Library code raises these; the CLI prints the message and exits non-zero without a
traceback. Anything else escaping to the CLI is a bug in evonorm_search.

`StoreError` and its kinds belong to the database package (`db.errors`, which imports
nothing of evonorm_search) and are re-exported here; they are not `EvonormError`s, so code
that turns user errors into messages catches `USER_ERRORS`, which holds both.
"""

from db.errors import DatabaseDamaged, DatabaseWriteError, SearchRunning, StoreError


class EvonormError(Exception):
    """Base for errors caused by the user's input, files, data or environment."""


class GraphError(EvonormError, ValueError):
    """A layer graph (or its JSON form) is invalid."""


class DataError(EvonormError):
    """A data set is missing, malformed or unsafe to load."""


class ExecutorLost(EvonormError):
    """The executor can evaluate nothing more (e.g. the Ray cluster's head is gone).

    Not a candidate's failure: the controller stops and leaves the evaluations in flight
    pending for the next run (`SearchController.run` lets this error through)."""


class OutputWriteError(EvonormError):
    """A file the user asked for (a report, an exported layer) could not be written for a
    reason outside the program (a full disk, an I/O error); nothing was left half-written."""


# Every error the CLI reports as `error: MESSAGE` with exit code 2 (cli/common.py).
USER_ERRORS: tuple[type[Exception], ...] = (EvonormError, StoreError)

__all__ = [
    "USER_ERRORS",
    "DataError",
    "DatabaseDamaged",
    "DatabaseWriteError",
    "EvonormError",
    "ExecutorLost",
    "GraphError",
    "OutputWriteError",
    "SearchRunning",
    "StoreError",
]
