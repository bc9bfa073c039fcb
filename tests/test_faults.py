"""Faults a long search meets (issue 18), one table row each: a full disk, an I/O error,
the database moved away mid-run, a damaged file, a read-only file, a missing folder, two
controllers, SIGKILL during a schema migration. (A lost Ray node: tests/test_lost_node.py.)

Every row is a real fault: the disk is a small tmpfs filled up mid-run (as root; else
SQLite's own SQLITE_FULL, from `PRAGMA max_page_count`), the I/O error an RLIMIT_FSIZE
the kernel enforces (EFBIG, which SQLite reports as SQLITE_IOERR_WRITE), the damage a
page of the file overwritten, the controllers and the migration real processes, the
latter SIGKILLed inside its transaction. Mid-run faults strike after the N-th result of
a resumed planted search (deterministic with the inline executor).

For each row the test checks: the exit status, the message (`error: ...`, the last line),
no traceback, the database intact (integrity "ok", every candidate finished before the
fault unchanged) or refused untouched (same bytes, no file created), and that running
the same search again after the fix the message names completes with exactly the
candidates of an uninterrupted run: no gap, no duplicate, the same results.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import event

import db.engine
import evonorm_search.output as output
import workers.executors as executors
from db.migrations import ENGINE_COLUMNS, MIGRATIONS
from db.models import SCHEMA_VERSION
from db.store import SearchStore
from evonorm_search.errors import ExecutorLost
from tests.cli_runner import run_evonorm
from tests.test_store import make_v1_database, read_only, schema_of

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# A planted search: no training, deterministic with the inline executor. The paper's
# engine: the migration fault rewrites the file as a schema-v4 one, from before the
# columns that record how each candidate was proposed (move, island), which searches
# of that age (all on the paper's engine) did not need.
PLANTED = ["--task", "planted", "--executor", "inline", "--seed", "1", "--target", "evonorm_s0",
           "--space", "S", "--init", "random", "--population", "4", "--engine", "paper"]
BUDGET = 12
PARTIAL_BUDGET = 5  # where the stored search stopped before each fault
STRIKE_AFTER = 3  # mid-run faults strike after this many results of the resumed run
FULL = "the disk is full"


def search(db: Path, *extra: str, name: str = "p", budget: int = BUDGET) -> tuple[int, str, str]:
    return run_evonorm("search", "--name", name, "--db", str(db), *PLANTED,
                       "--budget", str(budget), *extra)


def essentials(db: Path, name: str = "p") -> list[tuple]:
    """What an uninterrupted run determines: each candidate's number, layer, outcome,
    accuracies and seed count, in number order (a gap or a duplicate changes it)."""
    with SearchStore.open(db, readonly=True) as store:
        return [(r.number, r.structural_hash, r.status, r.stage, r.accuracies, r.seed_count)
                for r in store.candidates(store.get_search(name).id)]


def finished_rows(db: Path) -> dict[int, object]:
    with SearchStore.open(db, readonly=True) as store:
        return {r.number: r for r in store.candidates(store.get_search("p").id)
                if r.status not in ("pending", "running")}


def files_of(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> list[tuple]:
    db = tmp_path_factory.mktemp("reference") / "ref.db"
    assert search(db)[0] == 0
    return essentials(db)


@pytest.fixture(scope="module")
def partial(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A search stopped at PARTIAL_BUDGET of its BUDGET (closed cleanly: no -wal file)."""
    db = tmp_path_factory.mktemp("partial") / "s.db"
    assert search(db, budget=PARTIAL_BUDGET)[0] == 0
    return db


@dataclass
class Case:
    tmp: Path
    partial: Path
    monkeypatch: pytest.MonkeyPatch

    def copy(self, directory: Path | None = None) -> Path:
        directory = directory or self.tmp / "db"
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / "s.db"
        shutil.copyfile(self.partial, target)
        return target

    def after_results(self, count: int, action: Callable[[], None]) -> None:
        """Run `action` once, right after the `count`-th result the search records."""
        original = SearchStore.record_result
        seen = [0]

        def record_result(store: SearchStore, *args: object, **kwargs: object) -> object:
            record = original(store, *args, **kwargs)
            seen[0] += 1
            if seen[0] == count:
                action()
            return record

        self.monkeypatch.setattr(SearchStore, "record_result", record_result)


@dataclass
class Observed:
    code: int
    out: str
    err: str
    db: Path  # the database to resume, once the fault is fixed
    untouched: dict[str, bytes] | None = None  # files before, when it must be refused unread
    directory: Path | None = None  # where those files live


# ---- the faults ----------------------------------------------------------------------------


def _fill(directory: Path) -> None:
    """Write a filler file until the file system reports ENOSPC."""
    descriptor = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    chunk = b"\0" * 65536
    try:
        while True:
            try:
                os.write(descriptor, chunk)
            except OSError:
                if len(chunk) == 1:
                    break
                chunk = chunk[: len(chunk) // 16 or 1]
    finally:
        os.close(descriptor)


@contextmanager
def small_filesystem(directory: Path) -> Iterator[bool]:
    """A 4 MB tmpfs at `directory` when this process may mount one (root); else yields
    False and the caller injects SQLITE_FULL instead."""
    directory.mkdir(parents=True)
    if os.geteuid() != 0:
        yield False
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(directory)],
                             capture_output=True, check=False)
    if mounted.returncode != 0:
        yield False
        return
    try:
        yield True
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)


def _inject_full(case: Case) -> Callable[[], None]:
    """SQLite's own SQLITE_FULL: from the trigger on, every transaction of the store runs
    under PRAGMA max_page_count = its current size, so the next page it needs fails."""
    limit: list[bool] = [False]
    make_engine = db.engine.make_engine

    def limited(path: Path, *, readonly: bool) -> object:
        engine = make_engine(path, readonly=readonly)

        @event.listens_for(engine, "begin")
        def _cap(connection: object) -> None:
            if limit[0]:
                connection.exec_driver_sql(  # type: ignore[attr-defined]
                    "PRAGMA max_page_count = " + str(connection.exec_driver_sql(  # type: ignore[attr-defined]
                        "PRAGMA page_count").scalar()))

        return engine

    case.monkeypatch.setattr(db.engine, "make_engine", limited)
    return lambda: limit.__setitem__(0, True)


def disk_full(case: Case) -> Observed:
    disk = case.tmp / "small"
    with small_filesystem(disk) as real:
        db = case.copy(disk)
        case.after_results(STRIKE_AFTER, (lambda: _fill(disk)) if real else _inject_full(case))
        code, out, err = search(db)
        case.monkeypatch.undo()
        # The fix the message names: move the database (with its -wal) to a disk with room.
        moved = case.tmp / "moved"
        moved.mkdir()
        for name in ("s.db", "s.db-wal"):
            if (disk / name).exists():
                shutil.copyfile(disk / name, moved / name)
    return Observed(code, out, err, moved / "s.db")


@contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """RLIMIT_FSIZE for this process: a write past `limit` bytes fails with EFBIG (SIGXFSZ
    ignored, as a process that handles I/O errors does)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)


def io_error(case: Case) -> Observed:
    db = case.copy()
    with ExitStack() as limits:
        # The -wal may not grow any further: its next frame fails with EFBIG.
        case.after_results(STRIKE_AFTER, lambda: limits.enter_context(
            file_size_limit(Path(f"{db}-wal").stat().st_size)))
        code, out, err = search(db)
    case.monkeypatch.undo()
    return Observed(code, out, err, db)


def moved_mid_run(case: Case) -> Observed:
    db = case.copy()
    away = db.with_name("elsewhere.db")
    case.after_results(STRIKE_AFTER, lambda: db.rename(away))
    code, out, err = search(db)
    case.monkeypatch.undo()
    away.rename(db)  # the fix: put it back (its -wal was folded into it on close)
    return Observed(code, out, err, db)


def damaged(case: Case) -> Observed:
    db = case.copy()
    connection = sqlite3.connect(db)
    page = connection.execute(
        "SELECT rootpage FROM sqlite_master WHERE name = 'ix_candidates_search_hash'").fetchone()[0]
    page_size = connection.execute("PRAGMA page_size").fetchone()[0]
    connection.close()
    with db.open("r+b") as handle:  # a region overwritten: one b-tree page of an index
        handle.seek((page - 1) * page_size)
        handle.write(b"\xde\xad\xbe\xef" * (page_size // 4))
    before = files_of(db.parent)
    report = case.tmp / "report"
    commands = [
        ["status", "--db", str(db)], ["status", "p", "--db", str(db)], ["list", "--db", str(db)],
        ["list", "--db", str(db), "--json"], ["front", "p", "--db", str(db)],
        ["show", "1", "--db", str(db)], ["export", "1", "--db", str(db)],
        ["rerank", "p", "--db", str(db), "--executor", "inline"],
        ["report", "p", "--db", str(db), "-o", str(report)], ["dashboard", "--db", str(db)],
        ["migrate", "--db", str(db)],
    ]
    for command in commands:  # every command that opens a database refuses it the same way
        code, out, err = run_evonorm(*command)
        assert (code, "Traceback" in out + err) == (2, False), (command, err)
        assert f"error: {db} is damaged" in err and f'sqlite3 {db} ".recover"' in err, (command, err)
        assert files_of(db.parent) == before and not report.exists(), command
    code, out, err = search(db)
    observed = Observed(code, out, err, db, before, db.parent)
    if shutil.which("sqlite3") is None:
        pytest.skip("no sqlite3 command here to try the recovery the message names")
    # The recovery the message names (.recover, else .dump), then the search resumed from
    # the recovered copy (the damage hit an index, which both rebuild from the tables).
    recovered = case.tmp / "recovered" / "s.db"
    recovered.parent.mkdir()
    dump = subprocess.run(["sqlite3", str(db), ".recover"], capture_output=True, check=False)
    if dump.returncode != 0 or b"INSERT" not in dump.stdout:  # e.g. Debian's sqlite3 3.40.1
        dump = subprocess.run(["sqlite3", str(db), ".dump"], capture_output=True, check=True)
    subprocess.run(["sqlite3", str(recovered)], input=dump.stdout, check=True)
    observed.db = recovered
    return observed


def read_only_file(case: Case) -> Observed:
    db = case.copy()
    with read_only(db):
        # Reading needs no write access: the inspection commands still work (a reader may
        # leave SQLite's -shm index next to the file; the file itself is not written).
        status = run_evonorm("status", "p", "--db", str(db))
        assert status[0] == 0 and "search 'p'" in status[1], status
        before = files_of(db.parent)
        code, out, err = search(db)
        assert files_of(db.parent) == before
    return Observed(code, out, err, db, before, db.parent)


def missing_folder(case: Case) -> Observed:
    folder = case.tmp / "runs" / "today"
    code, out, err = search(folder / "s.db")
    assert not (case.tmp / "runs").exists()
    folder.mkdir(parents=True)  # the fix the message names
    return Observed(code, out, err, folder / "s.db", {}, folder)


def _rows(db: Path, name: str) -> list[tuple[int, str]]:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as connection:
            return connection.execute(
                "SELECT c.number, c.status FROM candidates c JOIN searches s ON s.id = c.search_id "
                "WHERE s.name = ?", (name,)).fetchall()
    except sqlite3.OperationalError:
        return []


def two_controllers(case: Case) -> Observed:
    """A real second `evonorm search` on the same search while the first runs; a third on
    another search of the same file runs beside it. The first is then SIGKILLed: the next
    run takes its lease over at once and resumes."""
    db = case.copy()
    first = subprocess.Popen(
        [str(BIN / "evonorm"), "search", "--name", "p", "--db", str(db), *PLANTED,
         "--budget", "100000"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while len(_rows(db, "p")) < PARTIAL_BUDGET + 4 and first.poll() is None:
            assert time.monotonic() < deadline, "the first search made no progress"
            time.sleep(0.05)
        assert first.poll() is None, first.stderr.read().decode() if first.stderr else ""
        started = time.monotonic()
        code, out, err = search(db)
        refused_in = time.monotonic() - started
        # Another search of the same file runs to its end beside the first.
        other = search(db, name="other")
        assert other[0] == 0, other[2]
        assert first.poll() is None, "the first search was not running all along"
        before_kill = len(_rows(db, "p"))
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert refused_in < 10, refused_in  # at once: before any data set or executor
    assert before_kill > PARTIAL_BUDGET + 4
    observed = Observed(code, out, err, db)
    case.other = essentials(db, "other")  # type: ignore[attr-defined]
    return observed


@contextmanager
def no_room(case: Case, directory: Path, writer: str,
            keep: dict[str, bytes] | None = None) -> Iterator[None]:
    """`directory` (holding the files `keep`) on a full disk: a filled tmpfs as root; else
    the file writes of module `writer` run under a file-size limit of 0 bytes (EFBIG
    instead of ENOSPC, handled alike; a limit for the whole command would stop SQLite
    from creating its -shm file first)."""
    with small_filesystem(directory) as real:
        for name, content in (keep or {}).items():
            (directory / name).write_bytes(content)
        if real:
            _fill(directory)
        else:
            write = output.write_text_file

            def limited(*args: object, **kwargs: object) -> None:
                with file_size_limit(0):
                    write(*args, **kwargs)  # type: ignore[arg-type]

            case.monkeypatch.setattr(f"{writer}.write_text_file", limited)
        yield


def export_disk_full(case: Case) -> Observed:
    db = case.copy()
    out_dir = case.tmp / "out"
    old = b"# an older export, kept whole\n"
    with no_room(case, out_dir, "evonorm_search.cli.layers", {"layer.py": old}):
        code, out, err = run_evonorm("export", "1", "--db", str(db), "-o", str(out_dir / "layer.py"))
        assert (out_dir / "layer.py").read_bytes() == old
        assert not [p for p in out_dir.iterdir() if p.name.startswith(".")]  # no temporary left
    case.monkeypatch.undo()
    # Room again: the same command writes the module.
    again = run_evonorm("export", "1", "--db", str(db), "-o", str(case.tmp / "layer.py"))
    assert again[0] == 0 and "class EvolvedNormAct" in (case.tmp / "layer.py").read_text()
    return Observed(code, out, err, db, files_of(db.parent), db.parent)


def report_disk_full(case: Case) -> Observed:
    db = case.copy()
    out_dir = case.tmp / "report"
    # The page's content is not the point here: a cheap stand-in for the plots.
    case.monkeypatch.setattr("evonorm_search.report.html.render", lambda data: "<p>x</p>" * 20000)
    with no_room(case, out_dir, "evonorm_search.report"):
        code, out, err = run_evonorm("report", "p", "--db", str(db), "-o", str(out_dir))
        assert not (out_dir / "index.html").exists()
        assert not [p for p in out_dir.iterdir() if p.name.startswith(".")]  # no temporary left
    case.monkeypatch.undo()  # room again
    case.monkeypatch.setattr("evonorm_search.report.html.render", lambda data: "<p>x</p>" * 20000)
    again = run_evonorm("report", "p", "--db", str(db), "-o", str(case.tmp / "room"))
    assert again[0] == 0 and (case.tmp / "room" / "index.html").stat().st_size == 160000
    case.monkeypatch.undo()
    return Observed(code, out, err, db, files_of(db.parent), db.parent)


class _LosesItsCluster:
    """The inline evaluator until STRIKE_AFTER evaluations, then an executor whose cluster
    is gone: the next evaluation in flight fails with ExecutorLost, as the Ray evaluator's
    do once its head dies (tests/test_lost_node.py kills a real head)."""

    capacity = 1
    retries_lost_work = False

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.submitted = 0

    def submit(self, task: object) -> Future:
        self.submitted += 1
        if self.submitted <= STRIKE_AFTER:
            return self.inner.submit(task)  # type: ignore[attr-defined]
        lost: Future = Future()
        lost.set_exception(ExecutorLost("lost the Ray cluster at 10.0.0.5:6379: its GCS at "
                                        "10.0.0.5:6379 refuses connections"))
        return lost

    def shutdown(self) -> None:
        self.inner.shutdown()  # type: ignore[attr-defined]


def executor_lost(case: Case) -> Observed:
    db = case.copy()
    make = executors.make_evaluator
    case.monkeypatch.setattr(executors, "make_evaluator",
                             lambda *args, **options: _LosesItsCluster(make(*args, **options)))
    code, out, err = search(db)
    case.monkeypatch.undo()
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as connection:
        # The evaluation in flight (a candidate's, or a re-evaluation) was handed back with
        # its attempt uncounted; nothing failed.
        unsettled = connection.execute(
            "SELECT status, attempts FROM candidates WHERE status IN ('pending', 'running', "
            "'failed') UNION ALL SELECT status, attempts FROM trials WHERE status IN "
            "('pending', 'running', 'failed')").fetchall()
    assert unsettled == [("pending", 0)]
    return Observed(code, out, err, db)


MIGRATION_KILL = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import db.engine, db.migrations
    from db.store import SearchStore

    marker, path, step = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]

    def stall():
        marker.touch()
        time.sleep(600)

    if step == "committed":  # the migration committed, the open not finished
        db.engine.Database._probe = lambda self: stall()
    else:  # MIGRATIONS[step] has run, its transaction (all steps') is still open
        index = int(step)
        done = db.migrations.MIGRATIONS[index]
        db.migrations.MIGRATIONS[index] = lambda connection: (done(connection), stall())
    SearchStore.open(path).close()
""")


def _kill_in_migration(db: Path, step: str, marker: Path) -> str:
    """Open `db` in a process stalled at `step` of its migration, SIGKILL it; its stderr."""
    process = subprocess.Popen([sys.executable, "-c", MIGRATION_KILL, str(marker), str(db), step],
                               cwd=REPO, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
            assert time.monotonic() < deadline, "the migration did not start"
            time.sleep(0.02)
        os.kill(process.pid, signal.SIGKILL)
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL
    return err.decode()


def sigkill_in_migration(case: Case) -> Observed:
    """`evonorm search` on a schema-v4 file is SIGKILLed inside the migration's transaction,
    after its last step ran: the file must be the old schema, untouched."""
    db = case.copy()
    connection = sqlite3.connect(db)  # the partial search as an older evonorm wrote it
    engine_columns = "".join(f"ALTER TABLE candidates DROP COLUMN {column.split()[0]}; "
                             for column in ENGINE_COLUMNS)  # added after v4 (v6)
    connection.executescript(f"DROP TABLE leases; {engine_columns}UPDATE meta SET value = '4' "
                             "WHERE key = 'schema_version';")
    connection.close()
    layout = schema_of(db)
    before = files_of(db.parent)
    err = _kill_in_migration(db, str(len(MIGRATIONS) - 1), case.tmp / "in-migration")
    assert schema_of(db) == layout  # v4's tables only: the leases table was rolled back
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as check:
        assert check.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("4",)
        assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert files_of(db.parent)["s.db"] == before["s.db"]  # the main file was never written
    assert (db.parent / "s.db.v4.bak").exists()
    return Observed(-signal.SIGKILL, "", err, db)


@dataclass(frozen=True)
class Row:
    fault: Callable[[Case], Observed]
    status: int
    message: str
    # "intact": integrity ok, earlier work unchanged; "untouched": the same bytes, no file
    # added; "old schema": all of the former and still at the old schema (checked there).
    db_after: str


TABLE = [
    pytest.param(Row(disk_full, 74, FULL, "intact"), id="disk-full"),
    pytest.param(Row(io_error, 74, "the operating system reported an I/O error", "intact"),
                 id="io-error"),
    pytest.param(Row(moved_mid_run, 74, "the file was moved or deleted while this command had it "
                     "open", "intact"), id="moved-mid-run"),
    pytest.param(Row(export_disk_full, 74, "cannot write the layer module to ", "untouched"),
                 id="export-disk-full"),
    pytest.param(Row(report_disk_full, 74, "cannot write the report to ", "untouched"),
                 id="report-disk-full"),
    pytest.param(Row(damaged, 2, "is damaged", "untouched"), id="damaged-file"),
    pytest.param(Row(read_only_file, 2, "is read-only; make it writable", "untouched"),
                 id="read-only-file"),
    pytest.param(Row(missing_folder, 2, "does not exist; create it (mkdir -p)", "untouched"),
                 id="missing-parent-folder"),
    pytest.param(Row(two_controllers, 3, "error: search p is running (pid ", "intact"),
                 id="two-controllers"),
    pytest.param(Row(executor_lost, 75, "nothing was recorded as a candidate's failure: the "
                     "evaluations in flight (candidate number ", "intact"), id="cluster-lost"),
    pytest.param(Row(sigkill_in_migration, -signal.SIGKILL, "", "old schema"),
                 id="sigkill-during-migration"),
]


@pytest.mark.parametrize("row", TABLE)
def test_fault(row: Row, reference: list[tuple], partial: Path, tmp_path: Path,
               monkeypatch: pytest.MonkeyPatch) -> None:
    case = Case(tmp_path, partial, monkeypatch)
    before = finished_rows(partial)
    seen = row.fault(case)
    print(f"\n| {row.fault.__name__} | {seen.code} | {(seen.err.strip().splitlines() or [''])[-1]} |")

    assert seen.code == row.status, (seen.out, seen.err)
    assert "Traceback" not in seen.err + seen.out
    if row.message:  # (a SIGKILLed process says nothing)
        assert seen.err.strip().splitlines()[-1].startswith("error: "), seen.err
        assert row.message in seen.err, seen.err
    if row.db_after == "untouched":
        assert seen.directory is not None and files_of(seen.directory) == seen.untouched
    elif row.db_after == "intact":
        with SearchStore.open(seen.db, readonly=True) as store:
            assert store.integrity_check() == "ok"
        after = finished_rows(seen.db)
        assert {n: after[n] for n in before} == before  # committed work kept as it was

    # The fix applied, the same command resumes and ends exactly as an uninterrupted run.
    code, _, err = search(seen.db)
    assert code == 0, err
    if row.fault is two_controllers:
        # The other search, run beside the first, is exactly an uninterrupted run; the first
        # ran past the budget: the same candidates up to it, then more, none twice or lost.
        assert case.other == reference  # type: ignore[attr-defined]
        resumed = essentials(seen.db)
        assert [r[:2] for r in resumed[: len(reference)]] == [r[:2] for r in reference]
        assert [r[0] for r in resumed] == list(range(len(resumed)))
        assert len({r[1] for r in resumed}) == len(resumed)
        assert {r[2] for r in resumed} <= {"done", "rejected", "duplicate", "stopped"}
    else:
        assert essentials(seen.db) == reference


@pytest.mark.parametrize("step", ["2", "committed"], ids=["between-steps", "after-commit"])
def test_a_migration_killed_anywhere_leaves_the_old_schema_or_the_new(
    tmp_path: Path, step: str
) -> None:
    """From schema v1, killed right after the v3 -> v4 step (it rebuilt `candidates` with
    DROP and RENAME, in the same transaction as the other steps): the file is v1 as it was.
    Killed once the migration committed: it is v5, whole. Either way it opens and migrates."""
    db = tmp_path / "old.db"
    make_v1_database(db)
    fresh = tmp_path / "fresh.db"
    SearchStore.open(fresh, create=True).close()
    layout = schema_of(db)
    _kill_in_migration(db, step, tmp_path / "marker")
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as connection:
        version = connection.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    if step == "committed":
        assert version == (str(SCHEMA_VERSION),) and schema_of(db) == schema_of(fresh)
    else:
        assert version == ("1",) and schema_of(db) == layout
    with SearchStore.open(db) as store:
        (candidate,) = store.candidates(store.get_search("old").id)
        assert candidate.accuracies == {"resnet": 0.75} and store.integrity_check() == "ok"
    assert schema_of(db) == schema_of(fresh)
