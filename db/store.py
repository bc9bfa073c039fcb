"""The search store: one SQLite database holding every search and candidate.

Owns opening (with the checks that refuse foreign, too-new or unreachable databases
without touching them), schema migration on open, and every read and write the
controller and the inspection commands make. It returns frozen records and hides the
ORM. The controller is the only writer; readers open the file read-only and can run
while a search writes (WAL journal).

Durability: each write method commits before it returns. `synchronous=NORMAL` in WAL
mode keeps every commit across a crash or SIGKILL of the process (only an OS crash or
power loss may drop the last commits), at a fraction of the cost of an fsync per call.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Self
from urllib.parse import quote

from sqlalchemy import Connection, Engine, Row, create_engine, event, func, insert, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.pool import QueuePool

from db.migrations import migrate
from db.models import (
    APPLICATION,
    SCHEMA_VERSION,
    STATUSES,
    Base,
    Candidate,
    Evaluation,
    Meta,
    Search,
)
from evonorm_search.errors import StoreError
from evonorm_search.task import EvalResult

DEFAULT_DB_PATH = "evonorm.db"
# Queries go through SQLAlchemy Core on the models' tables: building ORM instances only to
# copy them into frozen records cost several times more per call.
SEARCHES = Search.__table__
CANDIDATES = Candidate.__table__
EVALUATIONS = Evaluation.__table__
SQLITE_HEADER = b"SQLite format 3\x00"
MAX_SEED = 2**63 - 1  # SQLite INTEGER is signed 64-bit
FINISHED = ("done", "rejected", "duplicate", "failed")


@dataclass(frozen=True)
class SearchRecord:
    id: int
    name: str
    config: dict[str, Any]
    seed: int
    versions: dict[str, str]
    created_at: datetime


@dataclass(frozen=True)
class CandidateRecord:
    id: int  # global primary key: what `evonorm show ID` takes
    search_id: int
    number: int  # 0, 1, 2, ... within its search
    parent_id: int | None
    graph_json: str
    structural_hash: str
    fingerprint: str | None
    status: str
    stage: str | None
    reason: str | None
    seed: int
    attempts: int
    duplicate_of: int | None
    accuracies: dict[str, float]  # per proxy; a duplicate carries its original's
    seconds: dict[str, float]
    steps: dict[str, int]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True)
class SearchSummary:
    """Aggregates for `evonorm status`, computed in SQL."""

    search: SearchRecord
    counts: dict[str, int]  # every status, zeros included
    rejected_by_stage: dict[str, int]
    best: dict[str, tuple[int, float]]  # proxy -> (candidate id, accuracy) over done candidates
    last_activity: datetime | None  # latest candidate creation, start or finish


def _now() -> datetime:
    return datetime.now(UTC)


def _package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def runtime_versions() -> dict[str, str]:
    """Versions recorded with each search (read from package metadata: no torch import)."""
    return {
        "evonorm_search": _package_version("evonorm-search"),
        "torch": _package_version("torch"),
        "python": platform.python_version(),
    }


def _to_search_record(row: Row[Any]) -> SearchRecord:
    return SearchRecord(
        id=row.id,
        name=row.name,
        config=json.loads(row.config_json),
        seed=row.seed,
        versions=json.loads(row.versions_json),
        created_at=row.created_at,
    )


def _to_candidate_record(row: Row[Any], accuracies: dict[str, float]) -> CandidateRecord:
    return CandidateRecord(
        id=row.id,
        search_id=row.search_id,
        number=row.number,
        parent_id=row.parent_id,
        graph_json=row.graph_json,
        structural_hash=row.structural_hash,
        fingerprint=row.fingerprint,
        status=row.status,
        stage=row.stage,
        reason=row.reason,
        seed=row.seed,
        attempts=row.attempts,
        duplicate_of=row.duplicate_of,
        accuracies=accuracies,
        seconds={str(k): float(v) for k, v in json.loads(row.seconds_json).items()},
        steps={str(k): int(v) for k, v in json.loads(row.steps_json).items()},
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
    )


def _check_accuracies(accuracies: dict[str, float]) -> None:
    for proxy, accuracy in accuracies.items():
        if not isinstance(accuracy, (int, float)) or not math.isfinite(accuracy):
            raise ValueError(f"accuracy for proxy {proxy!r} must be a finite number, got {accuracy!r}")


def _readonly_uri(path: Path, *, probe: bool) -> str:
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


def _read_meta(path: Path) -> dict[str, str]:
    """The `meta` table of the SQLite file at `path`, read without writing anything to it.

    Raises StoreError when the file is not an evonorm database.
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
        connection = sqlite3.connect(_readonly_uri(path, probe=True), uri=True)
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
    except sqlite3.OperationalError as error:
        if "unable to open" in str(error):
            raise StoreError(
                f"cannot read {path} ({error}); check the file's and its directory's permissions"
            ) from error
        raise foreign from error
    except sqlite3.DatabaseError as error:  # a damaged file or one with an SQLite-like header
        raise foreign from error
    finally:
        connection.close()
    if meta.get("application") != APPLICATION:
        raise foreign
    return meta


def _schema_version(path: Path, meta: dict[str, str]) -> int:
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
            f"({_package_version('evonorm-search')}, schema v{SCHEMA_VERSION}) understands; "
            "upgrade evonorm-search (pip install -U evonorm-search) to open it"
        )
    if version < 1:
        raise StoreError(f"{path} reports an invalid schema version {version}; pass --db with another path")
    return version


def _backup(path: Path, version: int) -> Path:
    """Copy the database (consistently, WAL included) next to it before migrating."""
    target = path.with_name(f"{path.name}.v{version}.bak")
    if target.exists():
        target = path.with_name(f"{path.name}.v{version}.{_now():%Y%m%dT%H%M%S%f}.bak")
    source = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True)
    destination = sqlite3.connect(target)
    try:
        source.backup(destination)
    finally:
        destination.close()
        source.close()
    return target


def _check_writable_directory(directory: Path, path: Path) -> None:
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


def _make_engine(path: Path, *, readonly: bool) -> Engine:
    """An engine with explicit transactions (BEGIN IMMEDIATE for the writer) and foreign keys."""
    if readonly:
        target = _readonly_uri(path, probe=False)
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
        cursor.execute("PRAGMA busy_timeout = 30000")
        if not readonly:
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # The writer takes the write lock up front so that a transaction never has to
        # upgrade a read lock (which can fail with SQLITE_BUSY under a concurrent writer).
        connection.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")

    return engine


class SearchStore:
    """Searches and their candidates in one SQLite file. Use `SearchStore.open`."""

    def __init__(self, path: Path, engine: Engine, *, readonly: bool) -> None:
        self.path = path
        self.readonly = readonly
        self._engine = engine
        # Set by `open` when it upgraded an older schema: the old version and its backup.
        self.migrated_from: int | None = None
        self.backup: Path | None = None

    # ---- opening -------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | Path, *, create: bool = False, readonly: bool = False) -> SearchStore:
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
                _check_writable_directory(directory, path)
            if not create:
                raise StoreError(
                    f"no evonorm database at {path}; check the --db path, or start a search "
                    f"there with `evonorm search --db {path}`"
                )
            _check_writable_directory(directory, path)
            return cls._create(path)
        if path.stat().st_size == 0 and create and not readonly:
            _check_writable_directory(directory, path)
            return cls._create(path)
        version = _schema_version(path, _read_meta(path))
        if not readonly:
            _check_writable_directory(directory, path)
            if not os.access(path, os.W_OK):
                raise StoreError(
                    f"database {path} is read-only; make it writable (chmod u+w) or copy it elsewhere"
                )
        backup = None
        if version < SCHEMA_VERSION:
            if readonly:
                raise StoreError(
                    f"{path} uses the older database schema v{version} (current: v{SCHEMA_VERSION}); "
                    f"upgrade it with `evonorm migrate --db {path}` (a backup copy is kept)"
                )
            backup = cls._migrate(path, version)
        engine = _make_engine(path, readonly=readonly)
        store = cls(path, engine, readonly=readonly)
        store._probe()
        if backup is not None:
            store.migrated_from, store.backup = version, backup
        return store

    @classmethod
    def _create(cls, path: Path) -> SearchStore:
        existed = path.exists()
        engine = _make_engine(path, readonly=False)
        try:
            with engine.begin() as connection:
                Base.metadata.create_all(connection)
                connection.execute(
                    Meta.__table__.insert(),
                    [
                        {"key": "application", "value": APPLICATION},
                        {"key": "schema_version", "value": str(SCHEMA_VERSION)},
                        {"key": "created_at", "value": _now().isoformat()},
                    ],
                )
        except DBAPIError as error:
            engine.dispose()
            if not existed:
                for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
                    leftover.unlink(missing_ok=True)
            raise StoreError(
                f"cannot create database {path} ({error.orig}); pass --db with a path in a "
                "writable directory"
            ) from error
        return cls(path, engine, readonly=False)

    @classmethod
    def _migrate(cls, path: Path, version: int) -> Path:
        """Upgrade `path` from schema `version`; returns the backup copy's path."""
        backup = _backup(path, version)
        engine = _make_engine(path, readonly=False)
        try:
            with engine.begin() as connection:
                migrate(connection, version)
                connection.execute(
                    update(Meta).where(Meta.key == "schema_version").values(value=str(SCHEMA_VERSION))
                )
        except DBAPIError as error:
            raise StoreError(
                f"migrating {path} from schema v{version} failed ({error.orig}); the database was "
                f"left at v{version} and a backup is next to it"
            ) from error
        finally:
            engine.dispose()
        return backup

    def _probe(self) -> None:
        """Fail at open, not at first use, when SQLite cannot actually read the file."""
        try:
            with self._transaction() as connection:
                connection.execute(select(Meta.value).where(Meta.key == "schema_version")).one()
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

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        """One transaction: commits when the block succeeds, rolls back otherwise."""
        with self._engine.begin() as connection:
            yield connection

    def _write(self) -> None:
        if self.readonly:
            raise StoreError(f"database {self.path} was opened read-only; this command cannot modify it")

    # ---- searches ------------------------------------------------------------------

    def create_search(self, name: str, config: dict[str, Any], seed: int) -> SearchRecord:
        """Store a new search; StoreError if `name` is taken."""
        self._write()
        if not name or not name.strip():
            raise StoreError("a search name must not be empty; pass --name NAME")
        if not 0 <= seed <= MAX_SEED:
            raise StoreError(f"seed {seed} is out of range; use a seed between 0 and {MAX_SEED}")
        values = {
            "name": name,
            "config_json": json.dumps(config, sort_keys=True, allow_nan=False),
            "seed": seed,
            "versions_json": json.dumps(runtime_versions(), sort_keys=True),
            "created_at": _now(),
        }
        try:
            with self._transaction() as connection:
                row = connection.execute(insert(SEARCHES).values(values).returning(SEARCHES)).one()
                return _to_search_record(row)
        except IntegrityError as error:
            raise StoreError(
                f"a search named {name!r} already exists in {self.path}; resume it with "
                f"`evonorm search --name {name}` or choose another --name"
            ) from error

    def find_search(self, name: str) -> SearchRecord | None:
        with self._transaction() as connection:
            row = connection.execute(select(SEARCHES).where(SEARCHES.c.name == name)).one_or_none()
            return None if row is None else _to_search_record(row)

    def get_search(self, name: str) -> SearchRecord:
        """The search called `name`; StoreError listing the existing names otherwise."""
        record = self.find_search(name)
        if record is None:
            names = [search.name for search in self.list_searches()]
            known = ", ".join(repr(n) for n in names) if names else "none"
            raise StoreError(
                f"no search named {name!r} in {self.path} (searches there: {known}); "
                "check the name with `evonorm list`"
            )
        return record

    def list_searches(self) -> list[SearchRecord]:
        with self._transaction() as connection:
            rows = connection.execute(select(SEARCHES).order_by(SEARCHES.c.id)).all()
            return [_to_search_record(row) for row in rows]

    # ---- candidates: loading -----------------------------------------------------------

    @staticmethod
    def _load(
        connection: Connection,
        where: list[ColumnElement[bool]],
        order: ColumnElement[Any] | None = None,
        limit: int | None = None,
    ) -> list[CandidateRecord]:
        """Candidates matching `where` with their accuracies, in two queries."""
        query = select(CANDIDATES).where(*where)
        if order is not None:
            query = query.order_by(order)
        if limit is not None:
            query = query.limit(limit)
        rows = connection.execute(query).all()
        if not rows:
            return []
        if limit is not None:  # a few rows: fetch their evaluations by id
            scope = EVALUATIONS.c.candidate_id.in_([row.id for row in rows])
            evaluations = select(EVALUATIONS.c.candidate_id, EVALUATIONS.c.proxy, EVALUATIONS.c.accuracy).where(scope)
        else:  # possibly thousands: join on the same filter instead of a huge IN list
            evaluations = (
                select(EVALUATIONS.c.candidate_id, EVALUATIONS.c.proxy, EVALUATIONS.c.accuracy)
                .join(CANDIDATES, CANDIDATES.c.id == EVALUATIONS.c.candidate_id)
                .where(*where)
            )
        accuracies: dict[int, dict[str, float]] = {}
        for candidate_id, proxy, accuracy in connection.execute(evaluations.order_by(EVALUATIONS.c.proxy)):
            accuracies.setdefault(candidate_id, {})[proxy] = accuracy
        return [_to_candidate_record(row, accuracies.get(row.id, {})) for row in rows]

    def _one(self, connection: Connection, candidate_id: int) -> CandidateRecord:
        # An id beyond SQLite's INTEGER cannot be stored: no such candidate, not an OverflowError.
        records = (self._load(connection, [CANDIDATES.c.id == candidate_id], limit=1)
                   if -MAX_SEED - 1 <= candidate_id <= MAX_SEED else [])
        if not records:
            raise StoreError(
                f"no candidate with id {candidate_id} in {self.path}; check the id and --db "
                "(`evonorm front NAME` lists ids)"
            )
        return records[0]

    def _update(self, connection: Connection, candidate_id: int, **values: Any) -> None:
        changed = connection.execute(
            update(CANDIDATES).where(CANDIDATES.c.id == candidate_id).values(**values)
        ).rowcount
        if changed != 1:
            self._one(connection, candidate_id)  # raises the "no candidate" error

    # ---- candidates: writes ----------------------------------------------------------

    def next_number(self, search_id: int) -> int:
        with self._transaction() as connection:
            highest = connection.scalar(
                select(func.max(CANDIDATES.c.number)).where(CANDIDATES.c.search_id == search_id)
            )
            return 0 if highest is None else highest + 1

    def add_candidate(
        self,
        search_id: int,
        *,
        number: int,
        parent_id: int | None,
        graph_json: str,
        structural_hash: str,
        fingerprint: str | None,
        seed: int,
        status: str = "pending",
        duplicate_of: int | None = None,
        stage: str | None = None,
        reason: str | None = None,
    ) -> CandidateRecord:
        """Store a candidate. A "duplicate" copies the accuracies of `duplicate_of`."""
        self._write()
        if status not in STATUSES:
            raise ValueError(f"unknown candidate status {status!r}; expected one of {STATUSES}")
        if (status == "duplicate") != (duplicate_of is not None):
            raise ValueError("duplicate_of must be given exactly when status is 'duplicate'")
        if not 0 <= seed <= MAX_SEED:
            raise ValueError(f"candidate seed {seed} is outside [0, 2**63)")
        now = _now()
        values = {
            "search_id": search_id,
            "number": number,
            "parent_id": parent_id,
            "graph_json": graph_json,
            "structural_hash": structural_hash,
            "fingerprint": fingerprint,
            "status": status,
            "stage": stage,
            "reason": reason,
            "seed": seed,
            "attempts": 0,
            "duplicate_of": duplicate_of,
            "created_at": now,
            "finished_at": now if status in FINISHED else None,
            "seconds_json": "{}",
            "steps_json": "{}",
        }
        try:
            with self._transaction() as connection:
                accuracies: dict[str, float] = {}
                if duplicate_of is not None:
                    originals = self._load(connection, [CANDIDATES.c.id == duplicate_of], limit=1)
                    if not originals or originals[0].search_id != search_id:
                        raise ValueError(f"duplicate_of={duplicate_of} is not a candidate of search {search_id}")
                    accuracies = originals[0].accuracies
                row = connection.execute(insert(CANDIDATES).values(values).returning(CANDIDATES)).one()
                self._insert_accuracies(connection, row.id, accuracies)
                return _to_candidate_record(row, accuracies)
        except IntegrityError as error:
            raise StoreError(
                f"cannot add candidate number {number} to search {search_id}: {error.orig} "
                "(a number is used once per search; parent and search must exist)"
            ) from error

    @staticmethod
    def _insert_accuracies(connection: Connection, candidate_id: int, accuracies: dict[str, float]) -> None:
        if accuracies:
            connection.execute(
                insert(EVALUATIONS),
                [
                    {"candidate_id": candidate_id, "proxy": proxy, "accuracy": float(accuracy)}
                    for proxy, accuracy in sorted(accuracies.items())
                ],
            )

    def mark_running(self, candidate_id: int) -> None:
        """The candidate was submitted: status running, attempts + 1, started now."""
        self._write()
        with self._transaction() as connection:
            self._update(
                connection,
                candidate_id,
                status="running",
                attempts=CANDIDATES.c.attempts + 1,
                started_at=_now(),
            )

    def record_result(self, candidate_id: int, result: EvalResult) -> CandidateRecord:
        """Store a worker's result (done, rejected or failed) with its per-proxy accuracies."""
        self._write()
        if result.status not in ("done", "rejected", "failed"):
            raise ValueError(f"an EvalResult cannot have status {result.status!r}")
        _check_accuracies(result.accuracies)
        with self._transaction() as connection:
            status = connection.scalar(select(CANDIDATES.c.status).where(CANDIDATES.c.id == candidate_id))
            if status is None:
                self._one(connection, candidate_id)  # raises the "no candidate" error
            if status not in ("pending", "running"):
                raise StoreError(f"candidate {candidate_id} is already {status}; a result is recorded once")
            self._update(
                connection,
                candidate_id,
                status=result.status,
                stage=result.stage,
                reason=result.reason,
                seconds_json=json.dumps({k: float(v) for k, v in result.seconds.items()}),
                steps_json=json.dumps({k: int(v) for k, v in result.steps.items()}),
                finished_at=_now(),
            )
            self._insert_accuracies(connection, candidate_id, result.accuracies)
            return self._one(connection, candidate_id)

    def mark_failed(self, candidate_id: int, stage: str, reason: str) -> CandidateRecord:
        """An infrastructure failure the controller gave up retrying."""
        self._write()
        with self._transaction() as connection:
            self._update(
                connection, candidate_id, status="failed", stage=stage, reason=reason, finished_at=_now()
            )
            return self._one(connection, candidate_id)

    def requeue_inflight(self, search_id: int) -> list[CandidateRecord]:
        """Running candidates (lost by a killed controller) go back to pending.

        Returns every pending candidate of the search, by number.
        """
        self._write()
        with self._transaction() as connection:
            connection.execute(
                update(CANDIDATES)
                .where(CANDIDATES.c.search_id == search_id, CANDIDATES.c.status == "running")
                .values(status="pending", started_at=None)
            )
            return self._load(
                connection,
                [CANDIDATES.c.search_id == search_id, CANDIDATES.c.status == "pending"],
                CANDIDATES.c.number,
            )

    # ---- candidates: reads -----------------------------------------------------------

    def get_candidate(self, candidate_id: int) -> CandidateRecord:
        with self._transaction() as connection:
            return self._one(connection, candidate_id)

    def candidates(self, search_id: int, statuses: Iterable[str] | None = None) -> list[CandidateRecord]:
        """The search's candidates (optionally only those with one of `statuses`), by number."""
        where = [CANDIDATES.c.search_id == search_id]
        if statuses is not None:
            where.append(CANDIDATES.c.status.in_(list(statuses)))
        with self._transaction() as connection:
            return self._load(connection, where, CANDIDATES.c.number)

    def population(self, search_id: int, size: int) -> list[CandidateRecord]:
        """The aging population: the `size` most recent done candidates, by number."""
        with self._transaction() as connection:
            newest_first = self._load(
                connection,
                [CANDIDATES.c.search_id == search_id, CANDIDATES.c.status == "done"],
                CANDIDATES.c.number.desc(),
                limit=size,
            )
            return newest_first[::-1]

    def has_hash(self, search_id: int, structural_hash: str) -> bool:
        with self._transaction() as connection:
            found = connection.scalar(
                select(CANDIDATES.c.id)
                .where(CANDIDATES.c.search_id == search_id, CANDIDATES.c.structural_hash == structural_hash)
                .limit(1)
            )
            return found is not None

    def find_by_fingerprint(self, search_id: int, fingerprint: str) -> CandidateRecord | None:
        """The earliest done candidate of the search with this fingerprint, if any."""
        with self._transaction() as connection:
            found = self._load(
                connection,
                [
                    CANDIDATES.c.search_id == search_id,
                    CANDIDATES.c.fingerprint == fingerprint,
                    CANDIDATES.c.status == "done",
                ],
                CANDIDATES.c.number,
                limit=1,
            )
            return found[0] if found else None

    def counts(self, search_id: int) -> dict[str, int]:
        """status -> number of candidates (statuses with none are left out)."""
        with self._transaction() as connection:
            return self._counts(connection, search_id)

    @staticmethod
    def _counts(connection: Connection, search_id: int) -> dict[str, int]:
        rows = connection.execute(
            select(CANDIDATES.c.status, func.count())
            .where(CANDIDATES.c.search_id == search_id)
            .group_by(CANDIDATES.c.status)
        ).all()
        return {status: count for status, count in rows}

    def summary(self, search_id: int) -> SearchSummary:
        """Counts, rejections by stage, best done candidate per proxy, last activity."""
        with self._transaction() as connection:
            search = connection.execute(select(SEARCHES).where(SEARCHES.c.id == search_id)).one_or_none()
            if search is None:
                raise StoreError(f"no search with id {search_id} in {self.path}; see `evonorm list`")
            counts = dict.fromkeys(STATUSES, 0)
            counts.update(self._counts(connection, search_id))
            stage = func.coalesce(CANDIDATES.c.stage, "unknown")
            rejected = {
                name: count
                for name, count in connection.execute(
                    select(stage, func.count())
                    .where(CANDIDATES.c.search_id == search_id, CANDIDATES.c.status == "rejected")
                    .group_by(stage)
                    .order_by(stage)
                )
            }
            ranked = (
                select(
                    EVALUATIONS.c.proxy,
                    EVALUATIONS.c.candidate_id,
                    EVALUATIONS.c.accuracy,
                    func.row_number()
                    .over(
                        partition_by=EVALUATIONS.c.proxy,
                        order_by=(EVALUATIONS.c.accuracy.desc(), EVALUATIONS.c.candidate_id),
                    )
                    .label("rank"),
                )
                .join(CANDIDATES, CANDIDATES.c.id == EVALUATIONS.c.candidate_id)
                .where(CANDIDATES.c.search_id == search_id, CANDIDATES.c.status == "done")
                .subquery()
            )
            best = {
                proxy: (candidate_id, accuracy)
                for proxy, candidate_id, accuracy in connection.execute(
                    select(ranked.c.proxy, ranked.c.candidate_id, ranked.c.accuracy)
                    .where(ranked.c.rank == 1)
                    .order_by(ranked.c.proxy)
                )
            }
            last = connection.execute(
                select(
                    func.max(CANDIDATES.c.created_at),
                    func.max(CANDIDATES.c.started_at),
                    func.max(CANDIDATES.c.finished_at),
                ).where(CANDIDATES.c.search_id == search_id)
            ).one()
            times = [t for t in last if t is not None]
            return SearchSummary(
                search=_to_search_record(search),
                counts=counts,
                rejected_by_stage=rejected,
                best=best,
                last_activity=max(times) if times else None,
            )

    def integrity_check(self) -> str:
        """SQLite's `PRAGMA integrity_check`: "ok" when the file is sound."""
        with self._engine.connect() as connection:
            rows = connection.exec_driver_sql("PRAGMA integrity_check").all()
            return "\n".join(str(row[0]) for row in rows)


__all__ = [
    "DEFAULT_DB_PATH",
    "CandidateRecord",
    "SearchRecord",
    "SearchStore",
    "SearchSummary",
    "runtime_versions",
]
