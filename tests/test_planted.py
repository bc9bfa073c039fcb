"""The planted task: target scores, determinism, equivalents, and planted searches via the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from db.store import SearchStore
from evonorm_search.graph import LayerGraph, Node
from evonorm_search.known import KNOWN_LAYERS, get_known
from evonorm_search.planted import (
    REGIME_NAMES, REGIMES, recovered, recovery_kind,
)
from evonorm_search.task import EvalTask
from tests.cli_runner import run_evonorm
from workers.evaluate import evaluate

X, ZERO, V0, V1 = 0, 1, 2, 3
TARGETS = ("evonorm_s0", "evonorm_s1", "evonorm_b0", "gn_relu", "bn_relu")


def planted_scores(layer: LayerGraph, target: str) -> dict[str, float]:
    task = EvalTask(layer.to_json(), REGIME_NAMES, kind="planted",
                    target_json=get_known(target).to_json())
    result = evaluate(task)
    assert result.status == "done", result
    return result.accuracies


def s0_rewritten() -> LayerGraph:
    """EvoNorm-S0 with commuted arguments, other numbering and a dead node."""
    return LayerGraph([
        Node("std_group", (X,)),      # 4
        Node("tanh", (V0,)),          # 5 dead
        Node("mul", (X, V1)),         # 6 x * v1 (commuted)
        Node("sigmoid", (6,)),        # 7
        Node("mul", (7, X)),          # 8 (commuted)
        Node("div", (8, 4)),          # 9
    ])


def s0_reassociated() -> LayerGraph:
    """(x / std_group(x)) * sigmoid(v1 * x): EvoNorm-S0's function, another formula."""
    return LayerGraph([
        Node("std_group", (X,)),      # 4
        Node("div", (X, 4)),          # 5
        Node("mul", (V1, X)),         # 6
        Node("sigmoid", (6,)),        # 7
        Node("mul", (5, 7)),          # 8
    ])


def test_regimes_tell_every_statistic_apart() -> None:
    from evonorm_search.compile import effective_groups

    sizes = {(r.batch, r.size) for r in REGIMES}
    assert any(batch <= 2 for batch, _ in sizes) and any(size == 1 for _, size in sizes)
    for regime in REGIMES:
        assert regime.channels % 32 != 0
        groups = effective_groups(regime.channels, 32)
        assert 1 < groups < regime.channels  # group statistics differ from layer and instance


@pytest.mark.parametrize("layer, target", [("bn_relu", "evonorm_s0"), ("evonorm_s2", "evonorm_s0"),
                                           ("gn_relu", "bn_relu"), ("evonorm_s0", "evonorm_b0")])
def test_a_structurally_different_layer_scores_clearly_lower(layer: str, target: str) -> None:
    scores = planted_scores(get_known(layer), target)
    assert min(scores.values()) < 0.95, scores
    assert not recovered(scores, REGIME_NAMES)


def test_scores_are_deterministic() -> None:
    task = EvalTask(get_known("gn_relu").to_json(), REGIME_NAMES, seed=5, kind="planted",
                    target_json=get_known("evonorm_s0").to_json())
    first, second = evaluate(task), evaluate(task)
    assert first.accuracies == second.accuracies and first.steps == second.steps


def test_functional_equivalents_are_recovered_and_told_apart() -> None:
    target = get_known("evonorm_s0")
    for layer, kind in ((s0_rewritten(), "identical"), (s0_reassociated(), "equivalent")):
        scores = planted_scores(layer, "evonorm_s0")
        assert recovered(scores, REGIME_NAMES), (layer.formula(), scores)
        assert recovery_kind(layer, target) == kind


def test_nan_output_is_rejected() -> None:
    broken = LayerGraph([Node("log", (ZERO,)), Node("div", (X, 4)), Node("exp", (5,)),
                         Node("exp", (6,))])
    result = evaluate(EvalTask(broken.to_json(), REGIME_NAMES, kind="planted",
                               target_json=get_known("evonorm_s0").to_json()))
    assert result.status == "rejected" and result.stage == "planted", result


# ---- through the CLI --------------------------------------------------------------------

PLANTED = ["--task", "planted", "--executor", "inline", "--seed", "1"]


def rows(db: Path, name: str) -> list:
    with SearchStore.open(db) as store:
        return store.candidates(store.get_search(name).id)


def test_tiny_planted_search_end_to_end(tmp_path: Path) -> None:
    db = str(tmp_path / "p.db")
    code, out, err = run_evonorm("search", "--name", "p", "--db", db, *PLANTED, "--space", "S",
                                 "--target", "evonorm_s1", "--init", "gn_relu,evonorm_s1",
                                 "--population", "3", "--budget", "8")
    assert code == 0, err
    assert "Pareto front (small_batch, pixels_1x1, maps_2x2)" in out
    assert "planted target: x * sigmoid(x) / std_group(x)  (evonorm_s1)" in out
    recovered_line = next(line for line in out.splitlines() if line.startswith("recovered by"))
    assert "(identical)" in recovered_line and "after 2 evaluations" in recovered_line
    best = rows(Path(db), "p")[1]
    assert f"id {best.id:>5}" in out  # the front lists the target itself
    code, out, _ = run_evonorm("front", "p", "--db", db)
    assert code == 0 and "evonorm_s1" in out and "small_batch" in out
    code, out, _ = run_evonorm("show", str(best.id), "--db", db)
    assert code == 0 and "made by: known" in out  # how the search proposed it
    code, out, _ = run_evonorm("status", "p", "--db", db)
    assert code == 0 and "pixels_1x1" in out
    assert "proposals: evaluated 8, not evaluated: fingerprint cache hits 0" in out
    with SearchStore.open(db) as store:  # deterministic scores: never re-evaluated
        assert store.trial_outcomes(store.get_search("p").id) == {}  # no re-evaluation
    code, _, err = run_evonorm("export", str(best.id), "--db", db, "-o", str(tmp_path / "l.py"))
    assert code == 0, err
    code, _, err = run_evonorm("report", "p", "--db", db, "-o", str(tmp_path / "report"))
    page = (tmp_path / "report" / "index.html").read_text()
    assert code == 0 and "best R^2 against the planted target so far" in page, err
    from evonorm_search.dashboard.app import create_app

    app = create_app(db)
    try:
        view = app.test_client().get("/api/search/1").get_json()
        assert view["score"] == "R^2 against the planted target"
        assert view["proxies"] == list(REGIME_NAMES)
    finally:
        app.extensions["evonorm_dashboard"].store.close()
    with SearchStore.open(db) as store:
        config = store.get_search("p").config
    assert config["task"] == "planted" and config["target_name"] == "evonorm_s1"
    assert LayerGraph.from_json(config["target"]) == get_known("evonorm_s1")


def test_target_from_a_json_file_and_a_random_start(tmp_path: Path) -> None:
    target = tmp_path / "t.json"
    target.write_text(s0_reassociated().to_json())
    db = str(tmp_path / "p.db")
    code, out, err = run_evonorm("search", "--name", "p", "--db", db, *PLANTED, "--space", "S",
                                 "--target", str(target), "--init", "random",
                                 "--population", "4", "--budget", "12", "--num-nodes", "4")
    assert code == 0, err
    assert "Pareto front" in out and "planted target:" in out
    assert len([r for r in rows(Path(db), "p") if r.status == "done"]) >= 1


def test_planted_search_resumes_after_sigkill_as_if_uninterrupted(tmp_path: Path) -> None:
    """With the memetic engine (3 islands, elites, every move, adaptive weights) and a
    local scan and island restarts early enough to happen in 60 candidates."""
    common = [*PLANTED, "--space", "S", "--target", "evonorm_s0", "--init", "random",
              "--population", "6", "--budget", "60", "--engine", "memetic",
              "--scan-after", "12", "--island-restart", "10"]
    reference = tmp_path / "ref.db"
    code, _, err = run_evonorm("search", "--name", "p", "--db", str(reference), *common)
    assert code == 0, err
    killed = tmp_path / "kill.db"
    args = [str(Path(sys.executable).parent / "evonorm"), "search", "--name", "p",
            "--db", str(killed), *common]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        if killed.exists() and _done_count(killed) >= 10:
            break
        time.sleep(0.02)
    assert process.poll() is None, "the search ended before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    code, _, err = run_evonorm("search", "--name", "p", "--db", str(killed), "--executor", "inline")
    assert code == 0, err

    def essentials(db: Path) -> list[tuple]:
        return [(r.number, r.structural_hash, r.status, r.accuracies, r.move, r.island,
                 r.hash_skips, r.neutral_skips) for r in rows(db, "p")]

    assert essentials(killed) == essentials(reference)
    moves = {row[4] for row in essentials(reference)}
    assert "scan" in moves and {row[5] for row in essentials(reference)} == {0, 1, 2}


def _done_count(db: Path) -> int:
    import sqlite3

    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as connection:
            return connection.execute(
                "SELECT count(*) FROM candidates WHERE status = 'done'").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


@pytest.mark.parametrize("args, expected", [
    (["--task", "planted", "--target", "no_such_layer"], "unknown layer name 'no_such_layer'"),
    (["--task", "planted", "--target", "{malformed}.json"], "does not exist"),
    (["--target", "evonorm_s0"], "--target only applies to a planted search"),
    (["--task", "classification", "--target", "evonorm_s0"], "--target only applies"),
    (["--task", "planted"], "needs its target"),
    (["--task", "planted", "--target", "evonorm_b0", "--space", "S"], "use --space B"),
    (["--task", "planted", "--target", "evonorm_s0", "--steps", "5"], "--steps only apply"),
    (["--task", "planted", "--target", "evonorm_s0", "--proxies", "resnet"],
     "unknown planted regime(s) resnet"),
    (["--task", "planted", "--target", "evonorm_s0", "--reevaluate", "3"],
     "do not depend on the seed"),
])
def test_bad_planted_input_exits_2_and_writes_nothing(tmp_path: Path, args: list[str],
                                                      expected: str) -> None:
    db = tmp_path / "bad.db"
    code, _, err = run_evonorm("search", "--db", str(db), "--executor", "inline", *args)
    assert code == 2 and expected in err, err
    assert "Traceback" not in err and not db.exists()


def test_malformed_target_file_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    for text in ("{not json", json.dumps({"format": "evonorm-layer-graph", "version": 1,
                                          "nodes": [["nosuchop", [0]]]})):
        bad.write_text(text)
        db = tmp_path / "bad.db"
        code, _, err = run_evonorm("search", "--db", str(db), "--task", "planted",
                                   "--target", str(bad))
        assert code == 2 and "--target" in err and str(bad) in err, err
        assert not db.exists()


def test_a_planted_search_stored_with_reevaluation_resumes_without_it(tmp_path: Path) -> None:
    """Planted searches stored before issue 16 had --reevaluate 3 (the default then)."""
    from evonorm_search.config import new_search_config

    config = new_search_config({"task": "planted", "target": get_known("evonorm_s1").to_json(),
                                "space": "S", "init": "random", "population": 3,
                                "budget": 10, "num_nodes": 3})
    db = tmp_path / "old.db"
    with SearchStore.open(db, create=True) as store:
        store.create_search("p", {**config.to_dict(), "reevaluate": 3}, config.seed)
    code, _, err = run_evonorm("search", "--name", "p", "--db", str(db), "--executor", "inline")
    assert code == 0, err
    with SearchStore.open(db) as store:
        search = store.get_search("p")
        assert set(store.trial_counts(search.id).values()) == {1}
        assert sum(c.status != "duplicate" for c in store.candidates(search.id)) >= 10


def test_planted_settings_leave_other_searches_unchanged() -> None:
    from evonorm_search.config import SearchConfig, new_search_config

    assert SearchConfig().task == "classification" and SearchConfig().target is None
    config = new_search_config({"task": "planted", "target": get_known("gn_relu").to_json()})
    assert config.proxies == REGIME_NAMES
    assert set(KNOWN_LAYERS) >= set(TARGETS)
    # Planted searches start from the engine that recovers targets; classification
    # keeps the paper's, and a named engine wins.
    assert (config.engine, config.fitness, config.scan_sizes, config.scan_macros,
            config.scan_order) == ("memetic-blocks", "log_error", True,
                                   ("normalize", "skip", "guard", "gate", "rectify",
                                    "hoist"), "macros-first")
    assert "normalize" in config.mutations
    assert new_search_config({}).engine == "paper"
    assert new_search_config({"task": "planted", "target": get_known("gn_relu").to_json(),
                              "engine": "paper"}).fitness == "score"


def test_evaluate_command_scores_layers_against_a_target() -> None:
    code, out, err = run_evonorm("evaluate", "evonorm_s0", "gn_relu", "--task", "planted",
                                 "--target", "evonorm_s0")
    assert code == 0, err
    assert "small_batch" in out and "evonorm_s0: recovered: identical" in out
    assert "gn_relu: recovered: no" in out
    code, out, _ = run_evonorm("evaluate", "evonorm_s1", "--task", "planted", "--target",
                               "evonorm_s1", "--json")
    record = json.loads(out)
    assert code == 0 and record["recovered"] == "identical" and record["status"] == "done"


@pytest.mark.parametrize("args, expected", [
    (["--target", "evonorm_s0"], "--target only applies to --task planted"),
    (["--task", "planted"], "needs --target"),
    (["--task", "planted", "--target", "evonorm_s0", "--steps", "3"], "--steps only applies"),
    (["--task", "planted", "--target", "evonorm_s0", "--split", "test"],
     "--split only applies to proxy training"),
    (["--task", "planted", "--target", "nope"], "unknown layer name 'nope'"),
])
def test_evaluate_command_refuses_bad_planted_input(args: list[str], expected: str) -> None:
    code, _, err = run_evonorm("evaluate", "evonorm_s0", *args)
    assert code == 2 and expected in err, err


def test_a_recovery_is_reduced_to_the_nodes_its_fit_uses() -> None:
    from evonorm_search.planted import reduce_recovery
    from evonorm_search.simplify import simplify
    from workers.planted import strictly_recovers

    target = get_known("evonorm_s0")
    # S0 dividing by max(std_group(x), v0): the fit puts v0 below every std the regimes
    # reach, so the max is inactive there, but it is not the same function for every v0.
    guarded = LayerGraph([
        Node("std_group", (X,)), Node("max", (4, V0)), Node("mul", (V1, X)),
        Node("sigmoid", (6,)), Node("mul", (X, 7)), Node("div", (8, 5)),
    ])
    regimes = REGIME_NAMES
    assert strictly_recovers(guarded, target.to_json(), regimes)
    assert simplify(guarded, up_to_affine=True).structural_hash() != target.structural_hash()
    reduced = reduce_recovery(guarded, target,
                              lambda g: strictly_recovers(g, target.to_json(), regimes))
    assert reduced.identical and reduced.nodes == target.size
    assert reduced.formula.startswith(simplify(target, up_to_affine=True).formula())
    # A layer that only approaches the target is no recovery, and a predicate that keeps
    # a node the target lacks stops the reduction there: the greedy walk is the
    # predicate's, not the target's.
    assert not strictly_recovers(get_known("evonorm_s1"), target.to_json(), regimes)
    kept = reduce_recovery(guarded, target, lambda g: "max" in g.formula())
    assert not kept.identical and "max" in kept.formula


def test_a_reduced_recovery_that_learns_the_targets_constant_is_told_apart() -> None:
    from evonorm_search.planted import reduce_recovery

    b1 = get_known("evonorm_b1")  # x / max(std_batch(x), (x + 1) * rms_instance(x))
    learned = LayerGraph([
        Node("std_batch", (X,)), Node("add", (X, V1)), Node("rms_instance", (X,)),
        Node("mul", (5, 6)), Node("max", (4, 7)), Node("div", (X, 8)),
    ])
    reduction = reduce_recovery(learned, b1, lambda g: g.structural_hash() == learned.structural_hash())
    assert (reduction.identical, reduction.constant_learned) == (False, True)
    own = reduce_recovery(b1, b1, lambda g: False)
    assert (own.identical, own.constant_learned) == (True, False)
    b0 = get_known("evonorm_b0")  # x / max(std_batch(x), v1 * x + std_instance(x))
    renamed = LayerGraph([("std_batch", (X,)), ("mul", (V0, X)), ("std_instance", (X,)),
                          ("add", (5, 6)), ("max", (4, 7)), ("div", (X, 8))])
    assert reduce_recovery(renamed, b0, lambda g: False).identical
    other = LayerGraph([("std_batch", (X,)), ("div", (X, 4))])
    assert not reduce_recovery(other, b1, lambda g: False).constant_learned
