"""User-facing errors: each message names the problem and how to fix it.

Library code raises these; the CLI prints the message and exits non-zero without a
traceback. Anything else escaping to the CLI is a bug in evonorm_search.
"""


class EvonormError(Exception):
    """Base for errors caused by the user's input, files, data or environment."""


class GraphError(EvonormError, ValueError):
    """A layer graph (or its JSON form) is invalid."""


class DataError(EvonormError):
    """A data set is missing, malformed or unsafe to load."""


class StoreError(EvonormError):
    """The search database is missing, foreign, too new, or conflicts with the request."""
