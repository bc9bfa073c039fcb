"""Tests of `evonorm status/list/front/migrate` and `evonorm show/export ID` on a database."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from db.models import SCHEMA_VERSION
from db.store import SearchStore
from evonorm_search.known import KNOWN_LAYERS
from tests.cli_runner import run_evonorm
from tests.test_store import (
    make_v1_database,
    readonly_directory,
    set_schema_version,
    snapshot,
)

GRAPHS = list(KNOWN_LAYERS.values())
REPO = Path(__file__).resolve().parents[1]

# (resnet, mobilenetv2) accuracies of the done candidates of search "alpha", by number.
# The front is {0, 1, 2}: 3 is dominated by 2, 4 by everything, 5 equals 2 (kept: ties do
# not dominate).
ALPHA_SCORES = [(0.9, 0.1), (0.1, 0.9), (0.55, 0.55), (0.4, 0.45), (0.05, 0.05), (0.55, 0.55)]
ALPHA_FRONT_NUMBERS = {0, 1, 2, 5}


def populate(path: Path) -> dict[str, dict[int, int]]:
    """Two searches; returns search name -> {number: candidate id}."""
    ids: dict[str, dict[int, int]] = {"alpha": {}, "beta": {}}
    with SearchStore.open(path, create=True) as store:
        alpha = store.create_search("alpha", {"budget": 10}, seed=1)
        for number, (resnet, mobile) in enumerate(ALPHA_SCORES):
            graph = GRAPHS[number % len(GRAPHS)]
            record = store.add_candidate(
                alpha.id, number=number, parent_id=None, graph_json=graph.to_json(),
                structural_hash=f"a{number}", fingerprint=None, seed=number,
            )
            store.mark_running(record.id)
            store.record_result(record.id, status="done", accuracies={"resnet": resnet, "mobilenetv2": mobile})
            ids["alpha"][number] = record.id
        # Would dominate everything, but it was rejected: never on the front.
        rejected = store.add_candidate(
            alpha.id, number=6, parent_id=None, graph_json=GRAPHS[0].to_json(),
            structural_hash="a6", fingerprint=None, seed=6,
        )
        store.record_result(
            rejected.id, status="rejected", accuracies={"resnet": 0.99, "mobilenetv2": 0.99}, stage="quality"
        )
        store.add_candidate(
            alpha.id, number=7, parent_id=None, graph_json=GRAPHS[1].to_json(),
            structural_hash="a7", fingerprint=None, seed=7, status="rejected", stage="fingerprint",
        )
        ids["alpha"][6] = rejected.id
        beta = store.create_search("beta", {}, seed=2)
        pending = store.add_candidate(
            beta.id, number=0, parent_id=None, graph_json=GRAPHS[2].to_json(),
            structural_hash="b0", fingerprint=None, seed=0,
        )
        ids["beta"][0] = pending.id
    return ids


@pytest.fixture()
def db(tmp_path: Path) -> tuple[Path, dict[str, dict[int, int]]]:
    path = tmp_path / "evonorm.db"
    return path, populate(path)


def table_ids(out: str) -> list[int]:
    """The ID column of a printed table, in order."""
    return [int(m.group(1)) for m in re.finditer(r"^\s*(\d+)\s{2}", out, flags=re.MULTILINE)]


# ---- happy paths --------------------------------------------------------------------------


def test_list_shows_searches_with_counts(db) -> None:
    path, _ = db
    code, out, err = run_evonorm("list", "--db", str(path))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:5] == ["NAME", "ID", "CANDIDATES", "DONE", "IN"]
    assert lines[1].split()[:5] == ["alpha", "1", "8", "6", "0"]
    assert lines[2].split()[:5] == ["beta", "2", "1", "0", "1"]


def test_status_of_one_and_all_searches(db) -> None:
    path, ids = db
    code, out, err = run_evonorm("status", "alpha", "--db", str(path))
    assert code == 0, err
    assert "search 'alpha'" in out and "search 'beta'" not in out
    assert "done 6" in out and "rejected 2" in out
    assert "fingerprint 1 (12.5%)" in out and "quality 1 (12.5%)" in out
    # Best per proxy over done candidates only (the rejected 0.99 does not count).
    assert f"resnet 0.9000 (id {ids['alpha'][0]})" in out
    assert f"mobilenetv2 0.9000 (id {ids['alpha'][1]})" in out
    assert "elapsed:" in out
    code, out, _ = run_evonorm("status", "--db", str(path))
    assert code == 0 and "search 'alpha'" in out and "search 'beta'" in out
    assert "best per proxy: none yet" in out


def test_front_lists_exactly_the_non_dominated_done_candidates(db) -> None:
    path, ids = db
    code, out, err = run_evonorm("front", "alpha", "--db", str(path))
    assert code == 0, err
    assert set(table_ids(out)) == {ids["alpha"][n] for n in ALPHA_FRONT_NUMBERS}
    # Best mean accuracy first, ties by number.
    assert table_ids(out) == [ids["alpha"][n] for n in (2, 5, 0, 1)]
    assert "4 of 6 done candidates" in out
    header = next(line for line in out.splitlines() if line.startswith("ID"))
    assert header.split() == ["ID", "FORMULA", "mobilenetv2", "resnet"]
    assert out.splitlines()[2].split()[-2:] == ["0.5500", "0.5500"]
    assert GRAPHS[0].formula() in out and GRAPHS[2].formula() in out


def test_front_of_a_search_without_done_candidates(db) -> None:
    path, _ = db
    code, out, _ = run_evonorm("front", "beta", "--db", str(path))
    assert code == 0 and "no done candidates yet" in out


def test_show_and_export_a_candidate_id(db, tmp_path: Path) -> None:
    path, ids = db
    candidate = ids["alpha"][2]
    code, out, err = run_evonorm("show", str(candidate), "--db", str(path))
    assert code == 0, err
    assert f"candidate {candidate}: search 'alpha' number 2, done" in out
    assert f"formula: {GRAPHS[2].formula()}" in out
    code, out, _ = run_evonorm("show", str(candidate), "--db", str(path), "--graph")
    assert code == 0 and out.strip() == GRAPHS[2].to_json()
    target = tmp_path / "layer.py"
    code, _, err = run_evonorm("export", str(candidate), "--db", str(path), "-o", str(target))
    assert code == 0, err
    assert GRAPHS[2].formula() in target.read_text()


def test_inspection_does_not_modify_the_database(db) -> None:
    path, _ = db
    before = path.read_bytes(), path.stat().st_mtime_ns
    for args in (["list"], ["status"], ["status", "alpha"], ["front", "alpha"], ["show", "1"]):
        code, _, err = run_evonorm(*args, "--db", str(path))
        assert code == 0, (args, err)
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before


def test_status_runs_while_a_writer_holds_the_write_lock(db) -> None:
    path, _ = db
    with SearchStore.open(path) as writer:
        search = writer.get_search("beta")
        writer.add_candidate(
            search.id, number=1, parent_id=None, graph_json=GRAPHS[0].to_json(),
            structural_hash="b1", fingerprint=None, seed=1,
        )
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        blocker.execute("UPDATE candidates SET reason = 'uncommitted' WHERE number = 0")
        try:
            code, out, err = run_evonorm("status", "beta", "--db", str(path))
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
    assert code == 0, err
    assert "candidates: 2" in out and "pending 2" in out


def test_every_command_has_help() -> None:
    for command in ("status", "list", "front", "migrate", "show", "export"):
        code, out, _ = run_evonorm(command, "--help")
        assert code == 0 and "--db" in out and len(out.splitlines()) > 4


# ---- bad input ---------------------------------------------------------------------------


def test_unknown_search_name_and_candidate_id(db) -> None:
    path, _ = db
    before = snapshot(path.parent)
    code, out, err = run_evonorm("front", "gamma", "--db", str(path))
    assert code == 2 and out == ""
    assert err.startswith("error: no search named 'gamma'") and "'alpha', 'beta'" in err
    assert "Traceback" not in err
    code, _, err = run_evonorm("status", "gamma", "--db", str(path))
    assert code == 2 and "evonorm list" in err
    code, _, err = run_evonorm("show", "4242", "--db", str(path))
    assert code == 2 and "no candidate with id 4242" in err
    code, _, err = run_evonorm("export", "4242", "--db", str(path))
    assert code == 2 and "no candidate with id 4242" in err
    after = snapshot(path.parent)
    assert after[path.name] == before[path.name]


def test_missing_database_and_directory(tmp_path: Path) -> None:
    for args in (["list"], ["status"], ["front", "x"], ["show", "1"], ["migrate"]):
        code, _, err = run_evonorm(*args, "--db", str(tmp_path / "absent.db"))
        assert code == 2 and "no evonorm database at" in err, (args, err)
        code, _, err = run_evonorm(*args, "--db", str(tmp_path / "no-dir" / "absent.db"))
        assert code == 2 and "does not exist" in err, (args, err)
    assert list(tmp_path.iterdir()) == []


def test_inspection_works_in_a_read_only_directory(tmp_path: Path) -> None:
    directory = tmp_path / "ro"
    directory.mkdir()
    path = directory / "evonorm.db"
    populate(path)
    before = snapshot(directory)
    with readonly_directory(directory):
        code, out, err = run_evonorm("status", "alpha", "--db", str(path))
        assert code == 0 and "done 6" in out, err
        code, _, err = run_evonorm("migrate", "--db", str(path))
        assert code == 2 and "read-only" in err
    assert snapshot(directory) == before


@pytest.mark.parametrize("kind", ["text", "foreign-sqlite", "newer"])
def test_foreign_or_newer_databases_are_refused_untouched(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "evonorm.db"
    if kind == "text":
        path.write_text("just some notes\n")
    elif kind == "foreign-sqlite":
        connection = sqlite3.connect(path)
        connection.execute("CREATE TABLE meta (key TEXT, value TEXT)")
        connection.commit()
        connection.close()
    else:
        populate(path)
        set_schema_version(path, SCHEMA_VERSION + 5)
    before = snapshot(tmp_path)
    for args in (["list"], ["status"], ["front", "alpha"], ["show", "1"], ["migrate"]):
        code, out, err = run_evonorm(*args, "--db", str(path))
        assert code == 2 and out == "", (args, err)
        expected = "newer than this evonorm_search" if kind == "newer" else "not an evonorm database"
        assert err.startswith("error: ") and expected in err, (args, err)
    assert snapshot(tmp_path) == before


def test_older_schema_refused_by_inspection_then_migrated(tmp_path: Path) -> None:
    path = tmp_path / "evonorm.db"
    make_v1_database(path)
    before = snapshot(tmp_path)
    code, _, err = run_evonorm("status", "--db", str(path))
    assert code == 2 and f"evonorm migrate --db {path}" in err
    assert snapshot(tmp_path) == before
    code, out, err = run_evonorm("migrate", "--db", str(path))
    assert code == 0, err
    assert f"from schema v1 to v{SCHEMA_VERSION}" in out and (tmp_path / "evonorm.db.v1.bak").exists()
    code, out, err = run_evonorm("status", "old", "--db", str(path))
    assert code == 0 and "done 1" in out, err
    code, out, _ = run_evonorm("migrate", "--db", str(path))
    assert code == 0 and "already at the current database schema" in out


def test_status_and_front_while_another_process_writes(db) -> None:
    path, _ = db
    writer_script = textwrap.dedent(
        f"""
        from db.store import SearchStore
        with SearchStore.open({str(path)!r}) as store:
            search = store.get_search("alpha")
            for number in range(8, 48):
                record = store.add_candidate(search.id, number=number, parent_id=None,
                    graph_json={GRAPHS[0].to_json()!r}, structural_hash=f"w{{number}}",
                    fingerprint=None, seed=number)
                store.mark_running(record.id)
                store.record_result(record.id, status="done", accuracies={{"resnet": 0.01, "mobilenetv2": 0.01}})
        print("writer finished")
        """
    )
    writer = subprocess.Popen(
        [sys.executable, "-c", writer_script], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    seen = []
    try:
        while writer.poll() is None or not seen:
            code, out, err = run_evonorm("status", "alpha", "--db", str(path))
            assert code == 0, err
            seen.append(int(re.search(r"candidates: (\d+)", out).group(1)))  # type: ignore[union-attr]
            code, out, err = run_evonorm("front", "alpha", "--db", str(path))
            assert code == 0 and "4 of" in out, err  # the writer's 0.01 candidates are all dominated
    finally:
        stdout, stderr = writer.communicate(timeout=120)
    assert writer.returncode == 0 and "writer finished" in stdout, stderr
    assert seen == sorted(seen) and seen[0] >= 8
    code, out, _ = run_evonorm("status", "alpha", "--db", str(path))
    assert "candidates: 48" in out
    with SearchStore.open(path) as store:
        assert store.integrity_check() == "ok"
