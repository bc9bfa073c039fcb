"""The search database's error type: each message names the problem and how to fix it.

`db` imports nothing else of this project, so it owns its error. `evonorm_search.errors`
re-exports it, and the CLI reports it like an `EvonormError`: `error: MESSAGE`, exit code 2
(`evonorm_search.errors.USER_ERRORS`).
"""


class StoreError(Exception):
    """The search database is missing, foreign, too new, or conflicts with the request."""


__all__ = ["StoreError"]
