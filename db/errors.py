"""The search database's error types: each message names the problem and how to fix it.

`db` imports nothing else of this project, so it owns its errors. `evonorm_search.errors`
re-exports them, and the CLI reports them like an `EvonormError`: `error: MESSAGE`, with
the exit status `evonorm_search.cli.common.exit_status` gives each type (docs/faults.md).

`driver_error` is the one place that turns an error of the SQLite driver into one of
these: the engine calls it for every statement (`db.engine.make_engine`), and the few
places that use the `sqlite3` module directly call it too.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

# SQLite's primary result codes (https://sqlite.org/rescode.html); Python 3.11+ reports the
# extended code on `sqlite3.Error.sqlite_errorcode`, whose low byte is the primary one.
SQLITE_BUSY = 5
SQLITE_READONLY = 8
SQLITE_IOERR = 10
SQLITE_CORRUPT = 11
SQLITE_FULL = 13
SQLITE_NOTADB = 26
SQLITE_READONLY_DBMOVED = 1032
DAMAGE_CODES = (SQLITE_CORRUPT, SQLITE_NOTADB)


class StoreError(Exception):
    """The search database is missing, foreign, too new, or conflicts with the request."""


class DatabaseDamaged(StoreError):
    """The file is an evonorm database whose content SQLite finds malformed; it is never
    written to (every command refuses it)."""


class DatabaseWriteError(StoreError):
    """Writing the database failed for a reason outside the program (a full disk, an I/O
    error, a file system turned read-only, the file deleted while open). The transaction
    that failed was rolled back: the database holds what was committed before it."""


class SearchRunning(StoreError):
    """Another live process runs this search (it holds the search's lease)."""


def damaged_message(path: Path | str, detail: str) -> str:
    return (
        f"{path} is damaged ({detail}); nothing was written to it. Keep the file and try a "
        f"recovery into a new one: sqlite3 {path} \".recover\" | sqlite3 {path}.recovered "
        f"(with \".dump\" instead where .recover fails), then check the copy with "
        f"`evonorm status --db {path}.recovered`, or restore a backup"
    )


def moved_message(path: Path | None, detail: str) -> str:
    where = "the database" if path is None else str(path)
    return (
        f"cannot write {where}: the file was moved or deleted while this command had it open "
        f"({detail}); nothing more was written to it. Put the database back where it was "
        f"(or pass --db with its new path), {_resume(path)}"
    )


def _resume(path: Path | None) -> str:
    name = "the database file" if path is None else path.name
    wal = "its -wal file" if path is None else f"{path.name}-wal"
    return (
        f"then run the same command again to resume (the database holds everything committed "
        f"before this error). To move it, move {name} together with {wal} if that file exists"
    )


def driver_error(error: sqlite3.Error, path: Path | None) -> StoreError | None:
    """The StoreError for a fault of the file or the disk behind `error` (at `path`, None
    when unknown), or None when `error` is anything else (a constraint violation, a bug:
    the caller's to handle)."""
    code = getattr(error, "sqlite_errorcode", None)
    if code is None:
        return None
    primary = code & 0xFF
    where = "the database" if path is None else str(path)
    if primary in DAMAGE_CODES:
        return DatabaseDamaged(damaged_message(where, str(error)))
    if primary == SQLITE_FULL:
        return DatabaseWriteError(
            f"cannot write {where}: the disk is full ({error}); nothing was written "
            f"half-way. Free space on that disk, or move the database to a disk with room, "
            f"{_resume(path)}"
        )
    if code == SQLITE_READONLY_DBMOVED:
        return DatabaseWriteError(moved_message(path, str(error)))
    if primary == SQLITE_READONLY:
        return DatabaseWriteError(
            f"cannot write {where}: it became read-only ({error}), e.g. its file "
            f"system was remounted read-only after a disk error; nothing was written half-way. "
            f"Check the disk (dmesg), or copy the database to a writable disk, {_resume(path)}"
        )
    if primary == SQLITE_BUSY:
        return DatabaseWriteError(
            f"cannot write {where}: another connection kept it locked for the whole wait "
            f"({error}); nothing was written half-way. Another program holds a write "
            f"transaction open on it (a sqlite3 shell, a backup tool): end that, "
            f"{_resume(path)}"
        )
    if primary == SQLITE_IOERR:
        return DatabaseWriteError(
            f"cannot use {where}: the operating system reported an I/O error "
            f"({error}, {getattr(error, 'sqlite_errorname', 'SQLITE_IOERR')}); nothing was "
            f"written half-way. Check the disk (free space, dmesg), or move the database to "
            f"another disk, {_resume(path)}"
        )
    return None


__all__ = [
    "DatabaseDamaged",
    "DatabaseWriteError",
    "SearchRunning",
    "StoreError",
    "damaged_message",
    "moved_message",
    "driver_error",
]
