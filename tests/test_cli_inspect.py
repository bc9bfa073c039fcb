"""Tests of `evonorm status/list/front/migrate` and `evonorm show/export ID` on a database."""

from __future__ import annotations

import math
import re
import sqlite3
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from db.models import SCHEMA_VERSION
from db.store import SearchStore
from evonorm_search.config import SearchConfig
from evonorm_search.known import KNOWN_LAYERS
from tests.cli_runner import run_evonorm
from tests.test_store import (
    make_v1_database,
    read_only,
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


# Search "gamma" (re-evaluation, schema v4): (seed, resnet, mobilenetv2) of each trial of
# candidate "reevaluated": trial 0 is its first evaluation, trials 1 and 2 re-evaluations.
GAMMA_PROXIES = ("resnet", "mobilenetv2")
GAMMA_TRIALS = [(0, 0.61, 0.52), (5, 0.63, 0.50), (6, 0.60, 0.55)]
GAMMA_EARLY = {"resnet": 0.41, "mobilenetv2": 0.36}
GAMMA_HURDLE = 0.3
GAMMA_SECONDS = {"stability": 0.5, "quality": 2.0, "training": 30.0}


def populate_gamma(path: Path) -> dict[str, int]:
    """Search "gamma": "reevaluated" (done, three counted trials), "single" (done once; its
    re-evaluation failed, which leaves it out of the mean), "stopped" (missed the hurdle) and
    "rejected" (quality). Returns label -> candidate id."""
    ids: dict[str, int] = {}
    config = SearchConfig(proxies=GAMMA_PROXIES, budget=10)
    with SearchStore.open(path, create=True) as store:
        search = store.create_search("gamma", config.to_dict(), seed=3)
        for number, label in enumerate(("reevaluated", "single", "stopped", "rejected")):
            record = store.add_candidate(
                search.id, number=number, parent_id=None, graph_json=GRAPHS[number].to_json(),
                structural_hash=f"g{number}", fingerprint=None, seed=number, hurdle=GAMMA_HURDLE,
            )
            store.mark_running(record.id)
            ids[label] = record.id
        _, resnet, mobile = GAMMA_TRIALS[0]
        store.record_result(ids["reevaluated"], status="done", early_accuracies=GAMMA_EARLY,
                            accuracies={"resnet": resnet, "mobilenetv2": mobile}, seconds=GAMMA_SECONDS)
        for trial, (seed, resnet, mobile) in enumerate(GAMMA_TRIALS[1:], start=1):
            added = store.add_trial(ids["reevaluated"], trial=trial, seed=seed)
            store.record_trial(added.id, status="done", accuracies={"resnet": resnet, "mobilenetv2": mobile},
                               seconds=GAMMA_SECONDS)
        store.record_result(ids["single"], status="done", accuracies={"resnet": 0.70, "mobilenetv2": 0.40},
                            seconds=GAMMA_SECONDS)
        store.mark_trial_failed(store.add_trial(ids["single"], trial=1, seed=9).id, "infrastructure", "lost")
        store.record_result(ids["stopped"], status="stopped", stage="hurdle", reason="early accuracy below",
                            early_accuracies={"resnet": 0.2, "mobilenetv2": 0.1}, seconds={"quality": 2.0})
        store.record_result(ids["rejected"], status="rejected", stage="quality", reason="too low")
    return ids


def mean_and_error(values: list[float]) -> tuple[float, float]:
    """Mean and standard error (sample standard deviation / sqrt(n)) of a candidate's trials."""
    return statistics.mean(values), statistics.stdev(values) / math.sqrt(len(values))


def gamma_cell(proxy: str) -> str:
    """The text `front`, `status` and `show` print for the re-evaluated candidate's `proxy`."""
    column = 1 + GAMMA_PROXIES.index(proxy)
    mean, error = mean_and_error([trial[column] for trial in GAMMA_TRIALS])
    return f"{mean:.4f} ± {error:.4f}"


@pytest.fixture()
def gamma(tmp_path: Path) -> tuple[Path, dict[str, int]]:
    path = tmp_path / "gamma.db"
    return path, populate_gamma(path)


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
    assert header.split() == ["ID", "FORMULA", "mobilenetv2", "resnet", "seeds", "SIMPLIFIED"]
    assert out.splitlines()[2].split()[-4:] == ["0.5500", "0.5500", "1", "="]  # one seed: no ±
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


def test_front_shows_mean_and_standard_error_over_seeds(gamma) -> None:
    path, ids = gamma
    code, out, err = run_evonorm("front", "gamma", "--db", str(path))
    assert code == 0, err
    lines = out.splitlines()
    assert "2 of 2 done candidates" in lines[0]
    assert lines[1].split() == ["ID", "FORMULA", *GAMMA_PROXIES, "seeds", "SIMPLIFIED"]
    assert lines[-1].startswith("accuracy: mean over the candidate's seeds ± its standard error")
    rows = {int(cells[0]): cells for cells in (re.split(r"\s{2,}", line.strip()) for line in lines[2:-1])}
    assert set(rows) == {ids["reevaluated"], ids["single"]}  # stopped and rejected are not done
    assert rows[ids["reevaluated"]][-4:] == [*(gamma_cell(p) for p in GAMMA_PROXIES), "3", "="]
    # The failed re-evaluation is left out: one seed, no standard error.
    assert rows[ids["single"]][-4:] == ["0.7000", "0.4000", "1", "="]


def test_status_counts_stopped_and_shows_standard_errors(gamma) -> None:
    path, ids = gamma
    code, out, err = run_evonorm("status", "gamma", "--db", str(path))
    assert code == 0, err
    counts = re.search(r"candidates: 4 (.+)", out).group(1)  # type: ignore[union-attr]
    assert "done 2" in counts and "stopped 1" in counts and "rejected 1" in counts
    # Stopped at the hurdle is an outcome, not a rejection.
    assert "rejected by stage (share of 4 finished): quality 1 (25.0%)" in out and "hurdle" not in out
    assert f"mobilenetv2 {gamma_cell('mobilenetv2')} (id {ids['reevaluated']}, 3 seeds)" in out
    assert f"resnet 0.7000 (id {ids['single']})" in out
    assert re.search(r"re-evaluations \(further seeds\): 3 .*done 2 .*failed 1", out)
    _, out, _ = run_evonorm("status", "beta", "--db", str(make_alpha_beta(path.parent)))
    assert "re-evaluations" not in out  # none: no line


def make_alpha_beta(directory: Path) -> Path:
    path = directory / "alpha_beta.db"
    populate(path)
    return path


def test_show_prints_mean_error_early_accuracies_hurdle_and_trials(gamma) -> None:
    path, ids = gamma
    code, out, err = run_evonorm("show", str(ids["reevaluated"]), "--db", str(path))
    assert code == 0, err
    lines = out.splitlines()
    scores = ", ".join(f"{p} {gamma_cell(p)}" for p in sorted(GAMMA_PROXIES))
    assert lines[0] == (f"candidate {ids['reevaluated']}: search 'gamma' number 0, done; {scores} "
                        "(mean over 3 seeds)")
    assert lines[1] == f"formula: {GRAPHS[0].formula()}  ({list(KNOWN_LAYERS)[0]})"
    assert "seeds:   3 counted in the mean accuracy" in lines
    early = ", ".join(f"{p} {a:.4f}" for p, a in sorted(GAMMA_EARLY.items()))
    assert f"early:   {early} (quality check of trial 0)" in lines
    assert f"hurdle:  {GAMMA_HURDLE:.4f}" in lines
    trials = lines[lines.index("trials:") + 1:]
    assert trials[0].split() == ["TRIAL", "SEED", "STATUS", *sorted(GAMMA_PROXIES), "SECONDS"]
    for trial, (row, (seed, resnet, mobile)) in enumerate(zip(trials[1:], GAMMA_TRIALS, strict=True)):
        total = sum(GAMMA_SECONDS.values())
        assert row.split() == [str(trial), str(seed), "done", f"{mobile:.4f}", f"{resnet:.4f}", f"{total:.1f}"]
    code, out, err = run_evonorm("show", str(ids["stopped"]), "--db", str(path))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"candidate {ids['stopped']}: search 'gamma' number 2, stopped"
    assert "stage:   hurdle: early accuracy below" in lines and "seeds:   0 counted in the mean accuracy" in lines
    assert lines[lines.index("trials:") + 2].split() == ["0", "2", "stopped", "(hurdle)", "2.0"]
    _, out, _ = run_evonorm("show", str(ids["single"]), "--db", str(path))
    rows = [line.split() for line in out.splitlines()[out.splitlines().index("trials:") + 2:]]
    assert [row[:3] for row in rows] == [["0", "1", "done"], ["1", "9", "failed"]]
    assert "(mean over" not in out.splitlines()[0]


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
    with read_only(directory):
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
