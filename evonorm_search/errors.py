"""User-facing errors: each message names the problem and how to fix it.

Library code raises these; the CLI prints the message and exits non-zero without a
traceback. Anything else escaping to the CLI is a bug in evonorm_search.

`StoreError` belongs to the database package (`db.errors`, which imports nothing of
evonorm_search) and is re-exported here; it is not an `EvonormError`, so code that turns
user errors into messages catches `USER_ERRORS`, which holds both.
"""

from db.errors import StoreError


class EvonormError(Exception):
    """Base for errors caused by the user's input, files, data or environment."""


class GraphError(EvonormError, ValueError):
    """A layer graph (or its JSON form) is invalid."""


class DataError(EvonormError):
    """A data set is missing, malformed or unsafe to load."""


# Every error the CLI reports as `error: MESSAGE` with exit code 2 (cli/common.py).
USER_ERRORS: tuple[type[Exception], ...] = (EvonormError, StoreError)

__all__ = ["USER_ERRORS", "DataError", "EvonormError", "GraphError", "StoreError"]
