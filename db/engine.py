"""Opening the search database: file checks, migration on open, the SQLite engine.

Owns everything between a path and an open connection: the checks that refuse a missing,
foreign, damaged, too-new or unreachable database without touching it (`read_meta` reads
the `meta` table and runs `PRAGMA quick_check` through an immutable URI), creation at the
current schema, migration of an older schema after a backup copy, and the engine (WAL
journal, foreign keys, BEGIN IMMEDIATE for the writer, read-only URIs for readers, and
every driver error about the file or the disk turned into a `db.errors` error naming the
fix). `Database` is an open file; the stores build on it: `db.store.SearchStore` is one,
`db.rerank.RerankStore` and `db.leases.LeaseStore` wrap one.

Durability: each write method of the stores commits before it returns (one
`Database.transaction()` each). `synchronous=NORMAL` in WAL mode keeps every commit across
a crash or SIGKILL of the process (only an OS crash or power loss may drop the last
commits), at a fraction of the cost of an fsync per call. A write that fails (a full disk,
an I/O error) rolls its transaction back, so the file holds exactly the commits before it.
In WAL mode SQLite goes on writing to a file that was deleted or moved while open (the
writes would be lost), so a writer checks before each transaction that its path still
names the file it opened.

Ctrl-C: a KeyboardInterrupt raised inside SQLAlchemy while it executes a statement (as it
builds the result) or returns a connection to the pool can leave that connection's
transaction open after the exception has passed, holding the write lock; the stop that
follows then waits out the busy timeout on its own lock, once per write (9 of 319 planted
searches stopped at a random moment on a loaded 2-core machine hung so, 0 of 470 since:
benchmarks/interrupt_stress.py). So every transaction of the main thread holds SIGINT
back until the transaction has ended and raises it then (`_interrupts_held`).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Self
from urllib.parse import quote

from sqlalchemy import Connection, Engine, create_engine, event, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import QueuePool

from db.errors import (
    DAMAGE_CODES,
    DatabaseDamaged,
    DatabaseWriteError,
    StoreError,
    damaged_message,
    driver_error,
    moved_message,
)
from db.migrations import migrate
from db.models import APPLICATION, SCHEMA_VERSION, Base, Meta

SQLITE_HEADER = b"SQLite format 3\x00"
# Where a damaged file that SQLite cannot read at all is still recognised as one of ours:
# the `meta` row naming the application sits in the first pages.
MARKER_SCAN_BYTES = 1 << 20
# Execution option marking a connection whose transactions only read.
READ_OPTION = "evonorm_read_only"
# How long a statement waits for another connection's lock before failing (SQLITE_BUSY,
# reported as a DatabaseWriteError).
BUSY_TIMEOUT_MS = 30_000


def utc_now() -> datetime:
    return datetime.now(UTC)


def package_version(name: str) -> str:
    """The installed version of distribution `name` (package metadata: no import of it)."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def readonly_uri(path: Path, *, probe: bool) -> str:
    """A URI that reads `path` without writing to it or next to it when that is safe.

    Without a -wal file every committed page is in the main file, so SQLite's immutable
    mode (no locks, no -shm/-wal created) reads it exactly. Probing uses it whenever there
    is no -wal, so refusing a database leaves its directory as it was; a long-lived reader
    uses it only when the directory is read-only (then no writer can be running, since a
    WAL writer must create the -wal file there). Otherwise plain read-only mode.
    """
    if not Path(f"{path}-wal").exists() and (probe or not os.access(path.parent, os.W_OK)):
        return f"file:{quote(str(path))}?mode=ro&immutable=1"
    return f"file:{quote(str(path))}?mode=ro"


def read_meta(path: Path) -> dict[str, str]:
    """The `meta` table of the SQLite file at `path`, read without writing anything to it.

    Raises StoreError when the file is not an evonorm database, DatabaseDamaged when it is
    one that SQLite cannot read or whose `PRAGMA quick_check` fails (its b-trees and
    records are checked, not the values in them: about 2 ms per MB of database).
    """
    foreign = StoreError(
        f"{path} is not an evonorm database (it was not created by evonorm_search); "
        "pass --db with another path, or move that file away"
    )
    with path.open("rb") as handle:
        header = handle.read(len(SQLITE_HEADER))
    if header != SQLITE_HEADER:
        raise foreign
    try:
        connection = sqlite3.connect(readonly_uri(path, probe=True), uri=True)
    except sqlite3.Error as error:
        raise StoreError(
            f"cannot read {path} ({error}); check the file's and its directory's permissions"
        ) from error
    try:
        has_meta = connection.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
        ).fetchone()
        if not has_meta:
            raise foreign
        meta = {str(key): str(value) for key, value in connection.execute("SELECT key, value FROM meta")}
        if meta.get("application") != APPLICATION:
            raise foreign
        problems = damage_found(connection)
    except sqlite3.OperationalError as error:
        if "unable to open" in str(error):
            raise StoreError(
                f"cannot read {path} ({error}); check the file's and its directory's permissions"
            ) from error
        raise _unreadable(path, error, foreign) from error
    except sqlite3.DatabaseError as error:  # a damaged file or one with an SQLite-like header
        raise _unreadable(path, error, foreign) from error
    finally:
        connection.close()
    if problems != ["ok"]:
        raise DatabaseDamaged(damaged_message(path, "quick_check: " + "; ".join(problems)))
    return meta


def damage_found(connection: sqlite3.Connection) -> list[str]:
    """SQLite's `PRAGMA quick_check` (at most 3 problems): ["ok"] for a sound file."""
    return [line for row in connection.execute("PRAGMA quick_check(3)")
            for line in str(row[0]).splitlines() if not line.startswith("***")]


def _unreadable(path: Path, error: sqlite3.Error, foreign: StoreError) -> StoreError:
    """Damaged when SQLite calls the file malformed and it carries our marker; else foreign."""
    damaged = (getattr(error, "sqlite_errorcode", 0) & 0xFF) in DAMAGE_CODES
    with path.open("rb") as handle:
        ours = APPLICATION.encode() in handle.read(MARKER_SCAN_BYTES)
    return DatabaseDamaged(damaged_message(path, str(error))) if damaged and ours else foreign


def schema_version(path: Path, meta: dict[str, str]) -> int:
    """The schema version in `meta`; StoreError when it is missing, invalid or too new."""
    try:
        version = int(meta["schema_version"])
    except (KeyError, ValueError) as error:
        raise StoreError(
            f"{path} has no valid schema version in its meta table; it is damaged or not an "
            "evonorm database: pass --db with another path"
        ) from error
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path} uses database schema v{version}, newer than this evonorm_search "
            f"({package_version('evonorm-search')}, schema v{SCHEMA_VERSION}) understands; "
            "upgrade evonorm-search (pip install -U evonorm-search) to open it"
        )
    if version < 1:
        raise StoreError(f"{path} reports an invalid schema version {version}; pass --db with another path")
    return version


def backup(path: Path, version: int) -> Path:
    """Copy the database (consistently, WAL included) next to it before migrating."""
    target = path.with_name(f"{path.name}.v{version}.bak")
    if target.exists():
        target = path.with_name(f"{path.name}.v{version}.{utc_now():%Y%m%dT%H%M%S%f}.bak")
    source = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True)
    destination = sqlite3.connect(target)
    try:
        source.backup(destination)
    except sqlite3.Error as error:
        destination.close()
        target.unlink(missing_ok=True)
        translated = driver_error(error, target)
        if translated is None:
            raise
        raise DatabaseWriteError(
            f"cannot back up {path} before migrating it: {translated}"
        ) from error
    finally:
        destination.close()
        source.close()
    return target


def _identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the file at `path`; None when there is none."""
    try:
        status = path.stat()
    except OSError:
        return None
    return status.st_dev, status.st_ino


def check_writable_directory(directory: Path, path: Path) -> None:
    if not directory.exists():
        raise StoreError(
            f"cannot use database {path}: directory {directory} does not exist; create it "
            "(mkdir -p) or pass --db with a path in an existing directory"
        )
    if not directory.is_dir():
        raise StoreError(
            f"cannot use database {path}: {directory} is not a directory; "
            "pass --db with a path in a directory"
        )
    if not os.access(directory, os.W_OK | os.X_OK):
        raise StoreError(
            f"cannot write database {path}: directory {directory} is read-only; pass --db "
            "with a path in a writable directory (SQLite also writes -wal/-shm files there)"
        )


def make_engine(path: Path, *, readonly: bool) -> Engine:
    """An engine with explicit transactions (BEGIN IMMEDIATE for the writer) and foreign keys."""
    if readonly:
        target = readonly_uri(path, probe=False)
    else:
        target = f"file:{quote(str(path))}?mode=rwc"

    def connect() -> sqlite3.Connection:
        # isolation_level=None: pysqlite's implicit transactions would not cover DDL in a
        # migration; SQLAlchemy's "begin" event below issues BEGIN itself.
        return sqlite3.connect(target, uri=True, isolation_level=None, check_same_thread=False)

    # The URL is only a dialect marker (the creator opens the file); without an explicit pool
    # SQLAlchemy would pick its in-memory-database pool for it.
    engine = create_engine("sqlite://", creator=connect, poolclass=QueuePool)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if not readonly:
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # The writer takes the write lock up front so that a transaction never has to
        # upgrade a read lock (which can fail with SQLITE_BUSY under a concurrent writer).
        # Reads (`Database.reading`) do not: in WAL mode they never wait for a writer.
        deferred = readonly or connection.get_execution_options().get(READ_OPTION, False)
        connection.exec_driver_sql("BEGIN" if deferred else "BEGIN IMMEDIATE")

    @event.listens_for(engine, "handle_error")
    def _on_error(context: Any) -> None:
        # The one place where the driver's errors about the file or the disk (damaged,
        # full, I/O error) become errors that name the fix; others pass unchanged.
        original = context.original_exception
        if isinstance(original, sqlite3.Error):
            translated = driver_error(original, path)
            if translated is not None:
                raise translated from original

    return engine


@contextmanager
def _interrupts_held() -> Iterator[None]:
    """Hold Ctrl-C back for the block and raise its KeyboardInterrupt when the block has
    ended (see the module docstring: one raised inside SQLAlchemy can keep the write lock).

    Only the main thread receives signals and may set their handlers; elsewhere, or when
    SIGINT is not handled by Python (ignored, default action), the block runs as it is.
    Nested blocks pass a held interrupt outwards.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if not callable(previous):
        yield
        return
    held: list[tuple[int, Any]] = []
    signal.signal(signal.SIGINT, lambda signum, frame: held.append((signum, frame)))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if held:
            previous(*held[0])


class Database:
    """One open search database file. Use `open` (on this class or a store built on it)."""

    def __init__(self, path: Path, engine: Engine, *, readonly: bool) -> None:
        self.path = path
        self.readonly = readonly
        self._engine = engine
        # Set by `open` when it upgraded an older schema: the old version and its backup.
        self.migrated_from: int | None = None
        self.backup: Path | None = None
        # The file a writer opened (device, inode): checked before each transaction.
        self._identity = None if readonly else _identity(path)
        # Run inside each write transaction when set (db.leases: this process still holds
        # its search's lease); raising aborts the transaction before it writes anything.
        self._fence: Callable[[Connection], None] | None = None

    @classmethod
    def open(cls, path: str | Path, *, create: bool = False, readonly: bool = False) -> Self:
        """Open (or with `create`, create) the database at `path`.

        Refuses, with a StoreError saying what to do and without modifying anything: a
        missing file (unless `create`), a missing or read-only directory, a file that is
        not an evonorm database, a newer schema. An older schema is migrated in place after
        a backup copy `<name>.v<old>.bak`; a read-only open refuses it and names
        `evonorm migrate`.
        """
        path = Path(path).expanduser().absolute()
        if readonly and create:
            raise ValueError("a read-only store cannot create a database")
        directory = path.parent
        if path.is_dir():
            raise StoreError(f"{path} is a directory; pass --db with a database file path")
        if not path.exists():
            if not directory.is_dir():
                check_writable_directory(directory, path)
            if not create:
                raise StoreError(
                    f"no evonorm database at {path}; check the --db path, or start a search "
                    f"there with `evonorm search --db {path}`"
                )
            check_writable_directory(directory, path)
            return cls._create(path)
        if path.stat().st_size == 0 and create and not readonly:
            check_writable_directory(directory, path)
            return cls._create(path)
        version = schema_version(path, read_meta(path))
        if not readonly:
            check_writable_directory(directory, path)
            if not os.access(path, os.W_OK):
                raise StoreError(
                    f"database {path} is read-only; make it writable (chmod u+w) or copy it elsewhere"
                )
        copy = None
        if version < SCHEMA_VERSION:
            if readonly:
                raise StoreError(
                    f"{path} uses the older database schema v{version} (current: v{SCHEMA_VERSION}); "
                    f"upgrade it with `evonorm migrate --db {path}` (a backup copy is kept)"
                )
            copy = cls._migrate(path, version)
        engine = make_engine(path, readonly=readonly)
        database = cls(path, engine, readonly=readonly)
        database._probe()
        if copy is not None:
            database.migrated_from, database.backup = version, copy
        return database

    @classmethod
    def _create(cls, path: Path) -> Self:
        existed = path.exists()
        engine = make_engine(path, readonly=False)
        try:
            with engine.begin() as connection:
                Base.metadata.create_all(connection)
                connection.execute(
                    Meta.__table__.insert(),
                    [
                        {"key": "application", "value": APPLICATION},
                        {"key": "schema_version", "value": str(SCHEMA_VERSION)},
                        {"key": "created_at", "value": utc_now().isoformat()},
                    ],
                )
        except (DBAPIError, DatabaseWriteError) as error:
            engine.dispose()
            if not existed:
                for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
                    leftover.unlink(missing_ok=True)
            if isinstance(error, DatabaseWriteError):
                raise
            raise StoreError(
                f"cannot create database {path} ({error.orig}); pass --db with a path in a "
                "writable directory"
            ) from error
        return cls(path, engine, readonly=False)

    @staticmethod
    def _migrate(path: Path, version: int) -> Path:
        """Upgrade `path` from schema `version`; returns the backup copy's path."""
        copy = backup(path, version)
        engine = make_engine(path, readonly=False)
        try:
            with engine.connect() as connection:
                # SQLite ignores this pragma inside a transaction, so it is set before BEGIN:
                # rebuilding a table (DROP + RENAME) must not cascade into its children.
                connection.connection.driver_connection.execute("PRAGMA foreign_keys = OFF")  # type: ignore[union-attr]
                try:
                    with connection.begin():
                        migrate(connection, version)
                        broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
                        if broken:
                            raise StoreError(
                                f"migrating {path} from schema v{version} would leave "
                                f"{len(broken)} broken references; the database was left at "
                                f"v{version} and a backup is next to it"
                            )
                        connection.execute(
                            update(Meta).where(Meta.key == "schema_version")
                            .values(value=str(SCHEMA_VERSION))
                        )
                finally:
                    connection.connection.driver_connection.execute("PRAGMA foreign_keys = ON")  # type: ignore[union-attr]
        except DBAPIError as error:
            raise StoreError(
                f"migrating {path} from schema v{version} failed ({error.orig}); the database was "
                f"left at v{version} and a backup is next to it"
            ) from error
        except DatabaseWriteError as error:
            raise DatabaseWriteError(
                f"{error} (the migration from schema v{version} was rolled back: the database "
                f"is still at v{version}, and a backup is next to it)"
            ) from error
        finally:
            engine.dispose()
        return copy

    def _probe(self) -> None:
        """Fail at open, not at first use, when SQLite cannot actually read the file."""
        try:
            with self.reading() as connection:
                connection.execute(select(Meta.value).where(Meta.key == "schema_version")).one()
        except StoreError:
            self.close()
            raise
        except DBAPIError as error:
            self.close()
            raise StoreError(
                f"cannot open database {self.path} ({error.orig}); check the file's and its "
                "directory's permissions"
            ) from error

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # ---- for the stores in db/ -------------------------------------------------------

    @contextmanager
    def transaction(self, *, fenced: bool = True) -> Iterator[Connection]:
        """One transaction: commits when the block succeeds, rolls back otherwise. With a
        fence set (`set_fence`) it runs first, unless `fenced` is False."""
        if self._identity is not None and _identity(self.path) != self._identity:
            raise DatabaseWriteError(moved_message(self.path, "its path no longer names it"))
        with _interrupts_held(), self._engine.begin() as connection:
            if fenced and self._fence is not None:
                self._fence(connection)
            yield connection

    def set_fence(self, fence: Callable[[Connection], None] | None) -> None:
        """A check each later write transaction runs first (None: none)."""
        self._fence = fence

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """One transaction that only reads: a deferred BEGIN, which in WAL mode neither waits
        for nor blocks another process's writes (several searches can share a file)."""
        with _interrupts_held(), self._engine.connect() as connection:
            connection.execution_options(**{READ_OPTION: True})
            with connection.begin():
                yield connection

    def require_writable(self) -> None:
        """StoreError when the database was opened read-only (every write calls this first)."""
        if self.readonly:
            raise StoreError(f"database {self.path} was opened read-only; this command cannot modify it")

    def integrity_check(self) -> str:
        """SQLite's `PRAGMA integrity_check`: "ok" when the file is sound."""
        with self._engine.connect() as connection:
            rows = connection.exec_driver_sql("PRAGMA integrity_check").all()
            return "\n".join(str(row[0]) for row in rows)


__all__ = ["Database", "package_version", "read_meta", "readonly_uri", "schema_version", "utc_now"]
