"""benchmarks/reduce_recoveries.py: a stored recovery cut down to the nodes its fit uses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evonorm_search.graph import LayerGraph
from tests.benchmark_scripts import load_benchmark
from tests.cli_runner import run_evonorm

REDUCE = load_benchmark("reduce_recoveries")
X, V0, V1 = 0, 2, 3


def test_a_stored_recovery_with_an_inactive_max_reduces_to_the_target(
        tmp_path: Path, capsys) -> None:
    # EvoNorm-S0 dividing by max(std_group(x), v0): a recovery (the fit puts v0 below
    # every std), but not S0's formula, and `simplify` keeps the max.
    guarded = LayerGraph([("std_group", (X,)), ("max", (4, V0)), ("mul", (V1, X)),
                          ("sigmoid", (6,)), ("mul", (X, 7)), ("div", (8, 5))])
    layer = tmp_path / "guarded.json"
    layer.write_text(guarded.to_json())
    db = tmp_path / "p.db"
    code, _, err = run_evonorm(
        "search", "--name", "p", "--db", str(db), "--task", "planted", "--executor", "inline",
        "--seed", "1", "--space", "S", "--target", "evonorm_s0", "--init", str(layer),
        "--population", "2", "--budget", "3", "--engine", "memetic")
    assert code == 0, err
    before = db.read_bytes()
    results = tmp_path / "reduced.jsonl"
    assert REDUCE.main([str(db), "--results", str(results)]) == 0
    row = json.loads(results.read_text())
    assert row["recovered"] and row["kind"] == "equivalent"
    assert not row["simplified_identical"] and "max(std_group(x), v0)" in row["simplified"]
    assert row["reduced_identical"] and row["reduced"].startswith("x * sigmoid(v1 * x) / std_group(x)")
    assert "1 recoveries of 1 searches: the target's formula 0 simplified, 1 reduced" in \
        capsys.readouterr().out
    assert db.read_bytes() == before  # nothing written


def test_bad_input_exits_2_with_a_message(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        REDUCE.main([str(tmp_path / "none.db")])
    assert stop.value.code == 2
    assert "no such database" in capsys.readouterr().err
