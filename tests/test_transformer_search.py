"""`evonorm search --space T --proxies vit,charlm` end to end on tiny settings: inline,
killed with SIGKILL and resumed, on Ray, and visible in status, front, report and the
dashboard with charlm's metric named."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from db.store import SearchStore
from evonorm_search.dashboard.data import DashboardData
from evonorm_search.graph import LayerGraph
from evonorm_search.known import known_name
from evonorm_search.proxy_info import BITS_SAVED
from tests.cli_runner import run_evonorm
from tests.test_cli_search import _finished, evaluated, search_rows
from tests.test_transformer_proxies import corpus_text

NOTE = f"charlm {BITS_SAVED}"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("text") / "corpus.txt"
    path.write_text(corpus_text(), encoding="utf-8")
    return str(path)


def tiny(corpus: str) -> list[str]:
    return ["--space", "T", "--proxies", "vit,charlm", "--corpus", corpus, "--steps", "6",
            "--quality-steps", "0", "--stability-steps", "2", "--width", "8", "--depth", "1",
            "--batch-size", "8", "--max-train-examples", "64", "--population", "3",
            "--seed", "1", "--threads", "1", "--reevaluate", "1"]


def test_inline_search_then_inspected(tmp_path: Path, corpus: str) -> None:
    db = tmp_path / "t.db"
    code, out, err = run_evonorm("search", "--name", "t", "--db", str(db), "--executor", "inline",
                                 "--budget", "4", *tiny(corpus))
    assert code == 0, err
    rows = search_rows(db)
    assert len(evaluated(rows)) == 4
    done = [r for r in rows if r.status == "done"]
    assert done and all(set(r.accuracies) == {"vit", "charlm"} for r in done)
    # Only layers of space T were proposed, the known T layers first.
    graphs = [LayerGraph.from_json(r.graph_json) for r in rows]
    assert all("T" in g.spaces for g in graphs)
    assert [known_name(g.structural_hash()) for g in graphs[:3]] == ["layernorm", "rmsnorm", "dyt"]
    assert "Pareto front (vit, charlm)" in out and NOTE in out

    code, out, err = run_evonorm("status", "t", "--db", str(db))
    assert code == 0 and NOTE in out, err
    code, out, err = run_evonorm("front", "t", "--db", str(db))
    assert code == 0 and NOTE in out and "ID  FORMULA" in out, err
    code, out, err = run_evonorm("export", str(done[0].id), "--db", str(db))
    assert code == 0 and "class EvolvedNorm(" in out and "device=None, dtype=None" in out, err
    # Re-ranking on the test split against the Transformer references, text included.
    code, out, err = run_evonorm("rerank", "t", "--db", str(db), "--top", "1", "--seeds", "1",
                                 "--steps", "4", "--executor", "inline")
    assert code == 0, err
    assert all(name in out for name in ("layernorm", "rmsnorm", "dyt", "charlm")), out
    with SearchStore.open(db, readonly=True) as store:
        dashboard = DashboardData(store, str(db))
        _, view = dashboard.search(dashboard.searches()[0]["id"])
    assert view["metrics"] == {"vit": "validation accuracy", "charlm": BITS_SAVED}
    assert NOTE in view["score"]


@pytest.mark.slow
def test_search_killed_and_resumed_then_reported(tmp_path: Path, corpus: str) -> None:
    db = tmp_path / "t.db"
    budget = 7
    args = [str(Path(sys.executable).parent / "evonorm"), "search", "--name", "t", "--db", str(db),
            "--executor", "inline", "--budget", str(budget), *tiny(corpus), "--steps", "30"]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while _finished(db) < 2 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    before = {r.number: r for r in search_rows(db)}
    assert len(evaluated(list(before.values()))) < budget

    code, _, err = run_evonorm("search", "--name", "t", "--db", str(db), "--executor", "inline")
    assert code == 0, err
    rows = search_rows(db)
    assert len(evaluated(rows)) == budget
    assert [r.number for r in rows] == list(range(len(rows)))
    for row in rows:  # finished before the kill: untouched
        old = before.get(row.number)
        if old is not None and old.status not in ("pending", "running"):
            assert row == old
    code, _, err = run_evonorm("report", "t", "--db", str(db), "-o", str(tmp_path / "report"))
    assert code == 0, err
    assert "bits&#x2F;char" in (tmp_path / "report" / "index.html").read_text() or \
        "bits/char" in (tmp_path / "report" / "index.html").read_text()


@pytest.mark.slow
def test_ray_search(tmp_path: Path, corpus: str) -> None:
    db = tmp_path / "r.db"
    code, _, err = run_evonorm("search", "--name", "t", "--db", str(db), "--executor", "ray",
                               "--workers", "2", "--budget", "3", *tiny(corpus))
    assert code == 0, err
    rows = search_rows(db)
    assert len(evaluated(rows)) == 3
    assert all(r.status in ("done", "rejected", "duplicate", "failed") for r in rows)
    assert any(r.status == "done" and "charlm" in r.accuracies for r in rows), rows
