"""Tests of db/: opening and refusing databases, migrations, and every store operation."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from db.models import APPLICATION, SCHEMA_VERSION
from db.store import SearchStore
from evonorm_search.errors import DatabaseWriteError, StoreError

REPO = Path(__file__).resolve().parents[1]

# The schema v1 layout, written by hand as it was before v2 added per-candidate timings
# and the fingerprint index (see db/migrations.py).
V1_SCHEMA = """
CREATE TABLE meta ("key" VARCHAR NOT NULL, value TEXT NOT NULL, PRIMARY KEY ("key"));
CREATE TABLE searches (
    id INTEGER NOT NULL, name VARCHAR NOT NULL, config_json TEXT NOT NULL, seed INTEGER NOT NULL,
    versions_json TEXT NOT NULL, created_at DATETIME NOT NULL, PRIMARY KEY (id), UNIQUE (name));
CREATE TABLE candidates (
    id INTEGER NOT NULL, search_id INTEGER NOT NULL, number INTEGER NOT NULL, parent_id INTEGER,
    graph_json TEXT NOT NULL, structural_hash VARCHAR NOT NULL, fingerprint VARCHAR,
    status VARCHAR NOT NULL, stage VARCHAR, reason TEXT, seed INTEGER NOT NULL,
    attempts INTEGER DEFAULT 0 NOT NULL, duplicate_of INTEGER, created_at DATETIME NOT NULL,
    started_at DATETIME, finished_at DATETIME, PRIMARY KEY (id),
    CONSTRAINT uq_candidates_search_number UNIQUE (search_id, number),
    CONSTRAINT ck_candidates_status CHECK (status IN
        ('pending', 'running', 'done', 'rejected', 'duplicate', 'failed')),
    FOREIGN KEY(search_id) REFERENCES searches (id) ON DELETE CASCADE,
    FOREIGN KEY(parent_id) REFERENCES candidates (id),
    FOREIGN KEY(duplicate_of) REFERENCES candidates (id));
CREATE INDEX ix_candidates_search_status_number ON candidates (search_id, status, number);
CREATE INDEX ix_candidates_search_hash ON candidates (search_id, structural_hash);
CREATE TABLE evaluations (
    id INTEGER NOT NULL, candidate_id INTEGER NOT NULL, proxy VARCHAR NOT NULL,
    accuracy FLOAT NOT NULL, PRIMARY KEY (id),
    CONSTRAINT uq_evaluations_candidate_proxy UNIQUE (candidate_id, proxy),
    FOREIGN KEY(candidate_id) REFERENCES candidates (id) ON DELETE CASCADE);
"""


# ---- helpers shared with test_cli_inspect.py -----------------------------------------


def make_v1_database(path: Path) -> None:
    """A schema-v1 evonorm database with one search and one evaluated candidate."""
    connection = sqlite3.connect(path)
    connection.executescript(V1_SCHEMA)
    connection.executescript(
        f"""
        INSERT INTO meta VALUES ('application', '{APPLICATION}'), ('schema_version', '1');
        INSERT INTO searches VALUES (1, 'old', '{{"budget": 3}}', 7, '{{"python": "3.11"}}',
                                     '2025-01-02 03:04:05.000000');
        INSERT INTO candidates (id, search_id, number, graph_json, structural_hash, status, seed,
                                attempts, created_at, finished_at)
            VALUES (1, 1, 0, '{{}}', 'h0', 'done', 11, 1, '2025-01-02 03:04:06.000000',
                    '2025-01-02 03:05:06.000000');
        INSERT INTO evaluations (candidate_id, proxy, accuracy) VALUES (1, 'resnet', 0.75);
        """
    )
    connection.commit()
    connection.close()


def set_schema_version(path: Path, version: int) -> None:
    connection = sqlite3.connect(path)
    connection.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(version),))
    connection.commit()
    connection.close()


def snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    """Every file of `directory` with its bytes and mtime: to show nothing was touched."""
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(directory.iterdir())}


@contextmanager
def read_only(path: Path) -> Iterator[None]:
    """Make the directory or file `path` read-only for this process, also as root.

    Root ignores permission bits, so as root it is made immutable (chattr +i), which the
    kernel enforces for root too; without chattr support the test is skipped.
    """
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(0o555 if path.is_dir() else 0o444)
        try:
            yield
        finally:
            path.chmod(mode)
        return
    done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"running as root and chattr +i is unavailable here: {done.stderr!r}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def schema_of(path: Path) -> dict[str, object]:
    """Columns (name, type, not null, default, pk) and indexes of every table."""
    connection = sqlite3.connect(path)
    try:
        tables = [
            row[0]
            for row in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
            )
        ]
        layout: dict[str, object] = {}
        for table in tables:
            columns = [tuple(row[1:]) for row in connection.execute(f"PRAGMA table_info({table})")]
            indexes = sorted(
                (
                    row[1],
                    row[2],
                    tuple(info[2] for info in connection.execute(f"PRAGMA index_info('{row[1]}')")),
                )
                for row in connection.execute(f"PRAGMA index_list({table})")
            )
            layout[table] = (columns, indexes)
        return layout
    finally:
        connection.close()


def add(store: SearchStore, search_id: int, number: int, **fields: object):
    defaults: dict[str, object] = {
        "parent_id": None,
        "graph_json": "{}",
        "structural_hash": f"hash{number}",
        "fingerprint": f"fp{number}",
        "seed": number + 100,
    }
    defaults.update(fields)
    return store.add_candidate(search_id, number=number, **defaults)  # type: ignore[arg-type]


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[SearchStore]:
    with SearchStore.open(tmp_path / "s.db", create=True) as opened:
        yield opened


# ---- searches ---------------------------------------------------------------------------


def test_create_search_records_config_versions_and_utc_time(store: SearchStore) -> None:
    record = store.create_search("alpha", {"budget": 10, "space": "B"}, seed=3)
    assert record.config == {"budget": 10, "space": "B"}
    assert record.seed == 3
    assert set(record.versions) == {"evonorm_search", "torch", "python"}
    assert record.created_at.tzinfo is UTC
    assert store.find_search("alpha") == record
    assert store.get_search("alpha") == record
    assert store.find_search("beta") is None
    assert store.list_searches() == [record]


def test_duplicate_search_name_and_unknown_name_are_clear_errors(store: SearchStore) -> None:
    store.create_search("alpha", {}, seed=0)
    with pytest.raises(StoreError, match="already exists"):
        store.create_search("alpha", {}, seed=1)
    with pytest.raises(StoreError, match=r"no search named 'nope'.*'alpha'"):
        store.get_search("nope")


def test_records_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with SearchStore.open(path, create=True) as store:
        search = store.create_search("alpha", {"k": [1, 2]}, seed=5)
        candidate = add(store, search.id, 0)
    with SearchStore.open(path) as store:
        assert store.get_search("alpha") == search
        assert store.get_candidate(candidate.id) == candidate
    connection = sqlite3.connect(path)
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    connection.close()


# ---- candidates -------------------------------------------------------------------------


def test_candidate_life_cycle(store: SearchStore) -> None:
    search = store.create_search("alpha", {}, seed=0)
    assert store.next_number(search.id) == 0
    pending = add(store, search.id, 0)
    assert (pending.status, pending.attempts, pending.started_at, pending.finished_at) == (
        "pending",
        0,
        None,
        None,
    )
    assert store.next_number(search.id) == 1
    store.mark_running(pending.id)
    running = store.get_candidate(pending.id)
    assert running.status == "running" and running.attempts == 1 and running.started_at is not None
    result = dict(
        status="done", accuracies={"resnet": 0.5, "mobilenetv2": 0.625}, steps={"resnet": 30},
        seconds={"training": 1.5},
    )
    done = store.record_result(pending.id, **result)  # type: ignore[arg-type]
    assert done.status == "done"
    assert done.accuracies == {"resnet": 0.5, "mobilenetv2": 0.625}
    assert done.steps == {"resnet": 30} and done.seconds == {"training": 1.5}
    assert done.finished_at is not None and done.finished_at >= done.started_at
    assert store.get_candidate(pending.id) == done
    with pytest.raises(StoreError, match="already done"):
        store.record_result(pending.id, **result)  # type: ignore[arg-type]


def test_rejection_failure_and_unknown_candidate(store: SearchStore) -> None:
    search = store.create_search("alpha", {}, seed=0)
    first = add(store, search.id, 0)
    rejected = store.record_result(first.id, status="rejected", stage="stability", reason="loss 1e9")
    assert (rejected.status, rejected.stage, rejected.reason) == ("rejected", "stability", "loss 1e9")
    second = add(store, search.id, 1)
    failed = store.mark_failed(second.id, "infrastructure", "worker died 3 times")
    assert (failed.status, failed.stage) == ("failed", "infrastructure")
    with pytest.raises(StoreError, match="no candidate with id 999"):
        store.get_candidate(999)
    with pytest.raises(ValueError, match="finite"):
        store.record_result(add(store, search.id, 2).id, status="done", accuracies={"resnet": float("nan")})


def test_duplicate_copies_its_originals_accuracies(store: SearchStore) -> None:
    search = store.create_search("alpha", {}, seed=0)
    original = add(store, search.id, 0, fingerprint="same")
    store.record_result(original.id, status="done", accuracies={"resnet": 0.9})
    copy = add(store, search.id, 1, fingerprint="same", status="duplicate", duplicate_of=original.id)
    assert copy.accuracies == {"resnet": 0.9}
    assert copy.duplicate_of == original.id and copy.finished_at is not None
    assert store.find_by_fingerprint(search.id, "same").id == original.id  # type: ignore[union-attr]
    assert store.find_by_fingerprint(search.id, "other") is None
    with pytest.raises(ValueError):
        add(store, search.id, 2, status="duplicate")
    other = store.create_search("beta", {}, seed=0)
    with pytest.raises(ValueError, match="not a candidate of search"):
        add(store, other.id, 0, status="duplicate", duplicate_of=original.id)


def test_number_is_unique_per_search_and_parent_must_exist(store: SearchStore) -> None:
    search = store.create_search("alpha", {}, seed=0)
    add(store, search.id, 0)
    with pytest.raises(StoreError, match="number 0"):
        add(store, search.id, 0)
    with pytest.raises(StoreError):
        add(store, search.id, 1, parent_id=12345)
    other = store.create_search("beta", {}, seed=0)
    assert add(store, other.id, 0).number == 0  # numbers restart per search


def test_requeue_inflight_returns_pending_by_number(store: SearchStore) -> None:
    search = store.create_search("alpha", {}, seed=0)
    ids = [add(store, search.id, n).id for n in range(4)]
    store.mark_running(ids[2])
    store.mark_running(ids[0])
    store.record_result(ids[0], status="done", accuracies={"resnet": 0.1})
    queued = store.requeue_inflight(search.id)
    assert [c.number for c in queued] == [1, 2, 3]
    assert all(c.status == "pending" and c.started_at is None for c in queued)
    assert queued[1].attempts == 1  # attempts survive the requeue: retries stay capped
    assert store.counts(search.id) == {"done": 1, "pending": 3}


def test_has_hash_is_per_search(store: SearchStore) -> None:
    alpha = store.create_search("alpha", {}, seed=0)
    beta = store.create_search("beta", {}, seed=0)
    add(store, alpha.id, 0, structural_hash="abc")
    assert store.has_hash(alpha.id, "abc")
    assert not store.has_hash(beta.id, "abc")
    assert not store.has_hash(alpha.id, "abd")


@settings(max_examples=15, deadline=None)
@given(
    st.lists(st.sampled_from(["pending", "running", "done", "rejected", "failed"]), max_size=25),
    st.integers(min_value=1, max_value=8),
)
def test_population_counts_and_filters_match_a_model(statuses: list[str], size: int) -> None:
    with tempfile.TemporaryDirectory() as directory, SearchStore.open(
        Path(directory) / "p.db", create=True
    ) as store:
        search = store.create_search("p", {}, seed=0)
        decoy = store.create_search("decoy", {}, seed=0)
        add(store, decoy.id, 0)
        for number, status in enumerate(statuses):
            candidate = add(store, search.id, number)
            if status == "running":
                store.mark_running(candidate.id)
            elif status in ("done", "rejected", "failed"):
                store.record_result(candidate.id, status=status, accuracies={"resnet": number / 100})
        done_numbers = [n for n, s in enumerate(statuses) if s == "done"]
        assert [c.number for c in store.population(search.id, size)] == done_numbers[-size:]
        assert store.counts(search.id) == dict(Counter(statuses))
        finished = [c.number for c in store.candidates(search.id, ["done", "failed"])]
        assert finished == [n for n, s in enumerate(statuses) if s in ("done", "failed")]
        assert [c.number for c in store.candidates(search.id)] == list(range(len(statuses)))
        summary = store.summary(search.id)
        assert sum(summary.counts.values()) == len(statuses)
        if done_numbers:
            assert summary.best["resnet"][1] == pytest.approx(max(done_numbers) / 100)
        else:
            assert summary.best == {}


def test_summary_counts_rejections_by_stage(store: SearchStore) -> None:
    search = store.create_search("alpha", {}, seed=0)
    for number, stage in enumerate(["stability", "quality", "stability"]):
        store.record_result(add(store, search.id, number).id, status="rejected", stage=stage)
    add(store, search.id, 3, status="rejected", stage="fingerprint", reason="nan on probe")
    best = add(store, search.id, 4)
    store.record_result(best.id, status="done", accuracies={"resnet": 0.8, "mobilenetv2": 0.6})
    summary = store.summary(search.id)
    assert summary.rejected_by_stage == {"fingerprint": 1, "quality": 1, "stability": 2}
    assert summary.counts["rejected"] == 4 and summary.counts["pending"] == 0
    assert summary.best == {"mobilenetv2": (best.id, 0.6), "resnet": (best.id, 0.8)}
    assert summary.last_activity is not None and summary.last_activity.tzinfo is UTC


def test_readonly_store_reads_while_writer_writes_and_refuses_writes(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with SearchStore.open(path, create=True) as writer:
        search = writer.create_search("alpha", {}, seed=0)
        add(writer, search.id, 0)
        with SearchStore.open(path, readonly=True) as reader:
            assert reader.counts(search.id) == {"pending": 1}
            add(writer, search.id, 1)  # not blocked by the open reader
            assert reader.counts(search.id) == {"pending": 2}
            with pytest.raises(StoreError, match="read-only"):
                reader.create_search("beta", {}, seed=0)
            assert reader.integrity_check() == "ok"
        assert writer.integrity_check() == "ok"


def test_a_write_that_returned_survives_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    script = textwrap.dedent(
        f"""
        import os, signal
        from db.store import SearchStore
        store = SearchStore.open({str(path)!r}, create=True)
        search = store.create_search("killed", {{}}, seed=1)
        first = store.add_candidate(search.id, number=0, parent_id=None, graph_json="{{}}",
                                    structural_hash="h", fingerprint=None, seed=1)
        store.mark_running(first.id)
        store.record_result(first.id, status="done", accuracies={{"resnet": 0.5}})
        store.add_candidate(search.id, number=1, parent_id=first.id, graph_json="{{}}",
                            structural_hash="h1", fingerprint=None, seed=2)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, check=False)
    assert done.returncode == -9, done.stderr
    with SearchStore.open(path) as store:
        search = store.get_search("killed")
        assert [(c.number, c.status, c.accuracies) for c in store.candidates(search.id)] == [
            (0, "done", {"resnet": 0.5}),
            (1, "pending", {}),
        ]
        assert store.integrity_check() == "ok"


def test_ctrl_c_inside_a_transaction_is_raised_after_it_commits(tmp_path: Path) -> None:
    # A KeyboardInterrupt inside SQLAlchemy could leave the transaction open and the write
    # lock held (db/engine.py): Ctrl-C waits for the end of the transaction.
    path = tmp_path / "s.db"
    script = textwrap.dedent(
        f"""
        import os, signal
        from sqlalchemy import text
        from db.store import SearchStore
        store = SearchStore.open({str(path)!r}, create=True)
        try:
            with store.transaction() as connection:
                connection.execute(text("INSERT INTO meta VALUES ('first', '1')"))
                os.kill(os.getpid(), signal.SIGINT)
                for _ in range(1000):  # the handler has run by now; the block goes on
                    pass
                connection.execute(text("INSERT INTO meta VALUES ('second', '2')"))
        except KeyboardInterrupt:
            print("interrupted after the block")
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        try:
            with store.reading() as connection:
                os.kill(os.getpid(), signal.SIGINT)
                for _ in range(1000):
                    pass
                print("read", connection.execute(text("SELECT count(*) FROM meta")).scalar())
        except KeyboardInterrupt:
            print("interrupted after the read")
        """
    )
    # pytest-xdist's workers ignore SIGINT, and a child would inherit that (then Python
    # installs no Ctrl-C handler): give it the default.
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True,
                          check=False,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:3] == ["interrupted after the block", "read 5",
                                           "interrupted after the read"]
    with sqlite3.connect(path, timeout=0) as connection:
        connection.execute("BEGIN IMMEDIATE")  # the write lock is free
        keys = {row[0] for row in connection.execute("SELECT key FROM meta")}
        connection.execute("ROLLBACK")
    connection.close()
    assert {"first", "second"} <= keys


def test_a_database_locked_by_another_program_is_a_write_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("db.engine.BUSY_TIMEOUT_MS", 50)
    path = tmp_path / "s.db"
    with SearchStore.open(path, create=True) as store:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # e.g. a sqlite3 shell with a transaction open
        with pytest.raises(DatabaseWriteError, match="kept it locked .* end that, then run the "
                                                     "same command again"):
            store.create_search("alpha", {}, seed=0)
        other.execute("ROLLBACK")
        other.close()
        assert store.list_searches() == []
        store.create_search("alpha", {}, seed=0)
        assert [s.name for s in store.list_searches()] == ["alpha"]


# ---- refusing databases -------------------------------------------------------------------


def test_missing_file_without_create(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no evonorm database at .*evonorm search --db"):
        SearchStore.open(tmp_path / "absent.db")
    with pytest.raises(StoreError, match="no evonorm database"):
        SearchStore.open(tmp_path / "absent.db", readonly=True)
    assert list(tmp_path.iterdir()) == []


def test_missing_directory_and_directory_that_is_a_file(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="does not exist.*mkdir"):
        SearchStore.open(tmp_path / "no" / "such" / "s.db", create=True)
    a_file = tmp_path / "plain.txt"
    a_file.write_text("x")
    with pytest.raises(StoreError, match="not a directory"):
        SearchStore.open(a_file / "s.db", create=True)
    with pytest.raises(StoreError, match="is a directory"):
        SearchStore.open(tmp_path, create=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.txt"]


def test_read_only_directory(tmp_path: Path) -> None:
    directory = tmp_path / "ro"
    directory.mkdir()
    with SearchStore.open(directory / "existing.db", create=True) as store:
        store.create_search("alpha", {}, seed=0)
    before = snapshot(directory)
    with read_only(directory):
        with pytest.raises(StoreError, match="read-only"):
            SearchStore.open(directory / "new.db", create=True)
        with pytest.raises(StoreError, match="read-only"):
            SearchStore.open(directory / "existing.db")
        with SearchStore.open(directory / "existing.db", readonly=True) as reader:
            assert [s.name for s in reader.list_searches()] == ["alpha"]
    assert snapshot(directory)["existing.db"] == before["existing.db"]
    assert not (directory / "new.db").exists()


@pytest.mark.parametrize("content", [b"", b"hello, not a database\n" * 10, b"SQLite format 3\x00" + b"\x07" * 200])
def test_non_database_files_are_refused_untouched(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(content)
    before = snapshot(tmp_path)
    for kwargs in ({}, {"readonly": True}):
        with pytest.raises(StoreError, match="not an evonorm database"):
            SearchStore.open(path, **kwargs)  # type: ignore[arg-type]
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    "script",
    [
        "CREATE TABLE people (name TEXT);",
        "CREATE TABLE meta (key TEXT, value TEXT); INSERT INTO meta VALUES ('application', 'other');",
        "CREATE TABLE meta (id INTEGER, blob BLOB);",
    ],
)
def test_foreign_sqlite_databases_are_refused_untouched(tmp_path: Path, script: str) -> None:
    path = tmp_path / "foreign.db"
    connection = sqlite3.connect(path)
    connection.executescript(script)
    connection.close()
    before = snapshot(tmp_path)
    for kwargs in ({}, {"create": True}, {"readonly": True}):
        with pytest.raises(StoreError, match="not an evonorm database"):
            SearchStore.open(path, **kwargs)  # type: ignore[arg-type]
    assert snapshot(tmp_path) == before


def test_newer_schema_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    with SearchStore.open(path, create=True) as store:
        store.create_search("alpha", {}, seed=0)
    set_schema_version(path, SCHEMA_VERSION + 1)
    before = snapshot(tmp_path)
    for kwargs in ({}, {"readonly": True}):
        with pytest.raises(StoreError, match=rf"schema v{SCHEMA_VERSION + 1}.*upgrade evonorm-search"):
            SearchStore.open(path, **kwargs)  # type: ignore[arg-type]
    assert snapshot(tmp_path) == before


# ---- migrations ----------------------------------------------------------------------------


def test_v1_database_is_migrated_in_place_with_a_backup(tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    make_v1_database(old)
    fresh = tmp_path / "fresh.db"
    SearchStore.open(fresh, create=True).close()

    with SearchStore.open(old) as store:
        search = store.get_search("old")
        assert search.config == {"budget": 3} and search.seed == 7
        assert search.created_at.tzinfo is UTC
        (candidate,) = store.candidates(search.id)
        assert candidate.accuracies == {"resnet": 0.75}
        assert candidate.seconds == {} and candidate.steps == {}
        assert store.integrity_check() == "ok"
        new = add(store, search.id, 1, fingerprint="fp")
        assert store.find_by_fingerprint(search.id, "fp") is None
        assert store.next_number(search.id) == 2 and new.number == 1

    assert schema_of(old) == schema_of(fresh)
    backup = tmp_path / "old.db.v1.bak"
    assert backup.exists()
    connection = sqlite3.connect(backup)
    assert connection.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("1",)
    assert connection.execute("SELECT count(*) FROM candidates").fetchone() == (1,)
    connection.close()
    with SearchStore.open(old, readonly=True) as reader:  # now current: no second migration
        assert reader.get_search("old").id == 1


def test_readonly_open_of_an_older_schema_names_the_migrate_command(tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    make_v1_database(old)
    before = snapshot(tmp_path)
    with pytest.raises(StoreError, match="evonorm migrate --db"):
        SearchStore.open(old, readonly=True)
    assert snapshot(tmp_path) == before


def test_failed_migration_leaves_the_database_at_its_version(tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    make_v1_database(old)
    connection = sqlite3.connect(old)
    # A column v2 adds already exists: the migration fails halfway and must roll back.
    connection.execute("ALTER TABLE candidates ADD COLUMN steps_json TEXT")
    connection.commit()
    connection.close()
    with pytest.raises(StoreError, match="left at v1"):
        SearchStore.open(old)
    assert "seconds_json" not in [c[0] for c in schema_of(old)["candidates"][0]]  # type: ignore[index]
    connection = sqlite3.connect(old)
    assert connection.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("1",)
    connection.close()


def test_engine_columns_migration_adds_how_each_candidate_was_proposed(tmp_path: Path) -> None:
    """`add_engine_columns` on the layout just before it (today's minus its columns):
    the result is today's layout, older candidates get NULL move/island and 0 skips."""
    from db.migrations import ENGINE_COLUMNS, MIGRATIONS, add_engine_columns

    fresh, old = tmp_path / "fresh.db", tmp_path / "old.db"
    SearchStore.open(fresh, create=True).close()
    with SearchStore.open(old, create=True) as store:
        search = store.create_search("old", {}, seed=0)
        add(store, search.id, 0)
    step = MIGRATIONS.index(add_engine_columns) + 1  # the version it starts from
    connection = sqlite3.connect(old)
    for column in ENGINE_COLUMNS:
        connection.execute(f"ALTER TABLE candidates DROP COLUMN {column.split()[0]}")
    connection.commit()
    connection.close()
    set_schema_version(old, step)
    with SearchStore.open(old) as store:
        assert store.migrated_from == step
        (candidate,) = store.candidates(store.get_search("old").id)
        assert (candidate.move, candidate.island, candidate.hash_skips,
                candidate.neutral_skips) == (None, None, 0, 0)
    assert schema_of(old) == schema_of(fresh)
