"""`evonorm search`: real tiny searches, resume, SIGKILL, Ray, and refused input."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from db.store import SearchStore
from tests.cli_runner import run_evonorm

# Tiny real evaluation: one small proxy, a few steps, rejection protocols shortened.
TINY = ["--proxies", "resnet", "--steps", "4", "--quality-steps", "2", "--quality-threshold", "0.0",
        "--stability-steps", "1", "--width", "4", "--batch-size", "16", "--max-train-examples", "64",
        "--population", "2", "--seed", "3", "--threads", "1"]


def search_rows(path: Path, name: str = "t") -> list:
    with SearchStore.open(path) as store:
        return store.candidates(store.get_search(name).id)


def evaluated(rows: list) -> list:
    return [r for r in rows if r.status != "duplicate" and r.stage != "fingerprint"]


def test_help() -> None:
    code, out, _ = run_evonorm("search", "--help")
    assert code == 0 and "--budget" in out and "--executor" in out and "resume" in out


def test_inline_search_then_resume_with_a_larger_budget(tmp_path: Path) -> None:
    db = str(tmp_path / "s.db")
    code, out, err = run_evonorm("search", "--name", "t", "--db", db, "--executor", "inline",
                             "--budget", "3", *TINY)
    assert code == 0, err
    assert "starting search 't'" in err and "3/3 evaluated" in err
    rows = search_rows(Path(db))
    assert len(evaluated(rows)) == 3
    assert all(r.status in ("done", "rejected", "duplicate", "failed") for r in rows)
    assert "Pareto front" in out or "no candidate passed" in out
    # Resume with only --name/--db/--budget: stored settings are reused.
    code, _, err = run_evonorm("search", "--name", "t", "--db", db, "--executor", "inline",
                           "--budget", "5")
    assert code == 0, err
    assert "resuming search 't'" in err
    more = search_rows(Path(db))
    assert len(evaluated(more)) == 5
    assert more[: len(rows)] == rows  # nothing finished was redone
    assert [r.number for r in more] == list(range(len(more)))


def test_hurdle_and_reevaluation_from_the_command_line(tmp_path: Path) -> None:
    db = str(tmp_path / "s.db")
    args = ["search", "--name", "t", "--db", db, "--executor", "inline", "--budget", "5",
            *TINY, "--hurdle", "0.5", "--reevaluate", "2"]
    code, out, err = run_evonorm(*args)
    assert code == 0, err
    rows = search_rows(Path(db))
    assert all(r.hurdle is None for r in rows[:2])  # the first population trains in full
    assert all(r.hurdle is not None for r in evaluated(rows)[2:])
    with SearchStore.open(Path(db), readonly=True) as store:
        assert any(len(store.trials(r.id)) == 2 for r in rows)
        assert store.get_search("t").config["reevaluate"] == 2
    assert "mean +- standard error over seeds" in out and "2 seeds" in out
    # Complete: re-evaluations included, so a rerun reports without evaluating.
    code, _, err = run_evonorm(*args)
    assert code == 0 and "is complete" in err


def test_a_complete_search_reports_without_starting_an_executor(tmp_path: Path) -> None:
    db = str(tmp_path / "s.db")
    assert run_evonorm("search", "--name", "t", "--db", db, "--executor", "inline",
                   "--budget", "2", *TINY)[0] == 0
    # An unreachable cluster would fail the run (exit 2) if an executor were built.
    code, out, err = run_evonorm("search", "--name", "t", "--db", db, "--address", "127.0.0.1:9")
    assert code == 0, err
    assert "is complete: 2 of its budget of 2 evaluated" in err
    assert "Pareto front" in out or "no candidate passed" in out


def test_resume_with_conflicting_settings_is_refused_untouched(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    assert run_evonorm("search", "--name", "t", "--db", str(db), "--executor", "inline",
                   "--budget", "1", *TINY)[0] == 0
    before = db.read_bytes()
    code, _, err = run_evonorm("search", "--name", "t", "--db", str(db), "--executor", "inline",
                           "--space", "S", "--steps", "7")
    assert code == 2
    assert err.startswith("error: ") and "Traceback" not in err
    assert "space: stored 'B', requested 'S'" in err and "train.steps" in err and "--name" in err
    assert db.read_bytes() == before


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--budget", "0"], "budget must be a positive"),
        (["--budget", "-3"], "budget must be a positive"),
        (["--population", "1"], "population must be at least 2"),
        (["--init", "bn_relu,nope"], "--init: unknown layer name 'nope'"),
        (["--space", "S", "--init", "bn_relu"], "S space excludes (no batch statistics): drop them or use --space B"),
        (["--proxies", "vgg"], "unknown or no proxies"),
        (["--dataset", "imagenet"], "unknown data set"),
        (["--dataset", "cifar10", "--data-dir", "/nonexistent/cifar"], "cifar"),
        (["--workers", "0"], "--workers must be at least 1"),
        (["--executor", "inline", "--address", "10.0.0.1:6379"], "--address only applies"),
        (["--hurdle", "1.5"], "hurdle must be a quantile"),
        (["--hurdle", "0.5", "--quality-steps", "0"], "--quality-steps is 0"),
        (["--reevaluate", "0"], "reevaluate must be"),
    ],
)
def test_bad_input_is_refused_before_any_write(tmp_path: Path, args: list[str], expected: str) -> None:
    db = tmp_path / "s.db"
    code, _, err = run_evonorm("search", "--db", str(db), "--executor", "inline", *args)
    assert code == 2, err
    assert err.startswith("error: ") and expected.lower() in err.lower()
    # --address is only checked with the executor, after the search is created.
    if "--address" not in args:
        assert not db.exists()


def test_bad_database_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nowhere" / "s.db"
    code, _, err = run_evonorm("search", "--db", str(missing), "--executor", "inline", *TINY)
    assert code == 2 and "does not exist" in err and not missing.parent.exists()

    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as connection:
        connection.execute("CREATE TABLE stuff (x INTEGER)")
    before = foreign.read_bytes()
    code, _, err = run_evonorm("search", "--db", str(foreign), "--executor", "inline", *TINY)
    assert code == 2 and err.startswith("error: ") and foreign.read_bytes() == before

    text = tmp_path / "notes.db"
    text.write_text("not a database")
    code, _, err = run_evonorm("search", "--db", str(text), "--executor", "inline", *TINY)
    assert code == 2 and text.read_text() == "not a database"

    # Root ignores permission bits, so a read-only directory is emulated at the check.
    readonly = tmp_path / "ro"
    readonly.mkdir()
    monkeypatch.setattr("db.engine.os.access", lambda *_: False)
    code, _, err = run_evonorm("search", "--db", str(readonly / "s.db"), "--executor", "inline", *TINY)
    assert code == 2 and "read-only" in err and not any(readonly.iterdir())


def _finished(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as connection:
            return connection.execute(
                "SELECT count(*) FROM candidates WHERE status IN ('done', 'rejected', 'failed')"
            ).fetchone()[0]
    except sqlite3.OperationalError:  # tables not created yet
        return 0


def test_sigkill_mid_run_then_resume_completes_the_budget(tmp_path: Path) -> None:
    db = tmp_path / "k.db"
    budget = 8
    args = [str(Path(sys.executable).parent / "evonorm"), "search", "--name", "t", "--db", str(db),
            "--executor", "inline", "--budget", str(budget), *TINY, "--steps", "40"]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 90
    while _finished(db) < 2 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, "the search ended before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    before = {r.number: r for r in search_rows(db)}
    assert len(evaluated(list(before.values()))) < budget

    code, _, err = run_evonorm("search", "--name", "t", "--db", str(db), "--executor", "inline")
    assert code == 0, err
    rows = search_rows(db)
    assert len(evaluated(rows)) == budget
    assert [r.number for r in rows] == list(range(len(rows)))
    assert len({r.structural_hash for r in rows}) == len(rows)
    assert all(r.status in ("done", "rejected", "duplicate", "failed") for r in rows)
    for row in rows:  # finished before the kill: untouched; in flight: redone once more
        old = before.get(row.number)
        if old is not None and old.status not in ("pending", "running"):
            assert row == old
    with SearchStore.open(db) as store:
        assert store.integrity_check() == "ok"


def test_ray_executor_search(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    code, _, err = run_evonorm("search", "--name", "t", "--db", str(db), "--executor", "ray",
                           "--workers", "2", "--budget", "3", *TINY)
    assert code == 0, err
    rows = search_rows(db)
    assert len(evaluated(rows)) == 3
    assert all(r.status in ("done", "rejected", "duplicate", "failed") for r in rows)
    assert all(r.attempts == 1 for r in evaluated(rows))


def test_ctrl_c_stops_cleanly_and_resumes(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    args = [str(Path(sys.executable).parent / "evonorm"), "search", "--name", "t", "--db", str(db),
            "--executor", "inline", "--budget", "8", *TINY, "--steps", "40"]
    # A shell without job control starts background commands with SIGINT ignored, and the
    # child would inherit that (then Python installs no Ctrl-C handler): give it the default.
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 90
    while _finished(db) < 1 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, "the search ended before it could be interrupted"
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "Traceback" not in err and "resume with: evonorm search --name t" in err
    with SearchStore.open(db) as store:
        assert store.integrity_check() == "ok"
    code, _, err = run_evonorm("search", "--name", "t", "--db", str(db), "--executor", "inline")
    assert code == 0, err
    assert len(evaluated(search_rows(db))) == 8


def test_database_from_a_newer_schema_is_refused_untouched(tmp_path: Path) -> None:
    db = tmp_path / "new.db"
    with SearchStore.open(db, create=True):
        pass
    with sqlite3.connect(db) as connection:
        connection.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    connection.close()
    before = db.read_bytes()
    code, _, err = run_evonorm("search", "--db", str(db), "--executor", "inline", *TINY)
    assert code == 2 and "newer" in err and "upgrade" in err
    assert db.read_bytes() == before
