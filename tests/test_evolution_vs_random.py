"""benchmarks/evolution_vs_random.py: the arms it compares on real data (issue 16, item 9)."""

from __future__ import annotations

from pathlib import Path

from evonorm_search.search.engines import ENGINES
from tests.benchmark_scripts import load_benchmark

BENCHMARK = load_benchmark("evolution_vs_random")


def test_the_memetic_arm_differs_from_evolution_only_in_its_engine(tmp_path: Path) -> None:
    args = BENCHMARK.parse_args(["--db", str(tmp_path / "b.db"), "--space", "S", "--init", "known",
                                 "--population", "3", "--arms", "memetic,evo",
                                 "--data-dir", str(tmp_path), "--rerank-top", "3"])
    assert BENCHMARK.arm_names(args) == ("evo", "memetic")
    configs = BENCHMARK.arm_configs(args, 0)
    assert set(configs) == {"evo-s0", "memetic-s0"}  # the re-ranking skips the known arm
    evo, memetic = configs["evo-s0"].to_dict(), configs["memetic-s0"].to_dict()
    assert evo["engine"] == "paper" and memetic["engine"] == "memetic"
    # The preset, shrunk to a population of 3: one island, no migration.
    assert memetic["islands"] == 1 and memetic["migration_rate"] == 0.0
    assert tuple(memetic["mutations"]) == ENGINES["memetic"]["mutations"]
    assert memetic["size_penalty"] == ENGINES["memetic"]["size_penalty"]
    differing = {key for key in evo if evo[key] != memetic[key]}
    assert differing <= {"engine", *ENGINES["memetic"]}, differing
    assert evo["seed"] == memetic["seed"] and evo["init"] == memetic["init"]


def test_memetic_set_picks_the_memetic_arms_engine_and_settings(tmp_path: Path) -> None:
    args = BENCHMARK.parse_args(["--db", str(tmp_path / "b.db"), "--space", "T", "--proxies", "vit,charlm",
                                 "--init", "known", "--arms", "memetic", "--rerank-top", "1",
                                 "--memetic-set", "engine=memetic-blocks",
                                 "--memetic-set", "fitness=score", "--memetic-set", "size_penalty=0",
                                 "--memetic-set", 'scan_macros=["normalize","gate"]'])
    memetic = BENCHMARK.arm_configs(args, 0)["memetic-s0"].to_dict()
    assert memetic["engine"] == "memetic-blocks" and memetic["fitness"] == "score"
    assert memetic["size_penalty"] == 0 and tuple(memetic["scan_macros"]) == ("normalize", "gate")
    # The rest of the preset it names is kept.
    assert memetic["scan_depth"] == ENGINES["memetic-blocks"]["scan_depth"]
    assert not tmp_path.joinpath("b.db").exists()


def test_memetic_set_rejects_bad_settings_before_anything_runs(tmp_path: Path, capsys) -> None:
    import pytest

    for bad, message in (("scan_after", "give KEY=VALUE"), ("bogus=1", "unknown search settings"),
                         ("engine=nope", "engine 'nope' is unknown")):
        with pytest.raises(SystemExit) as exit_info:
            BENCHMARK.parse_args(["--db", str(tmp_path / "b.db"), "--memetic-set", bad])
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err
    assert not tmp_path.joinpath("b.db").exists()


def test_rerank_new_takes_the_best_layers_that_are_not_known_ones() -> None:
    """In space T the known layers fill the front; `--rerank-new` re-ranks what the search
    itself found: its best trained layers that are not known layers, by mean accuracy."""
    from datetime import datetime

    from db.store import CandidateRecord
    from evonorm_search.config import new_search_config
    from evonorm_search.graph import LayerGraph
    from evonorm_search.known import get_known

    found = [LayerGraph([("abs", (0,)), ("log", (4,)), ("tanh", (5,))]),  # tanh(log(abs(x)))
             LayerGraph([("tanh", (0,))]), LayerGraph([("sigmoid", (0,))])]
    layers = [(get_known("layernorm"), 0.50), (get_known("rmsnorm"), 0.49),
              (found[0], 0.44), (found[1], 0.30), (found[2], 0.40)]
    now = datetime(2026, 1, 1)
    records = [CandidateRecord(
        id=i + 1, search_id=1, number=i, parent_id=None, graph_json=graph.to_json(),
        structural_hash=graph.structural_hash(), fingerprint=str(i), status="done", stage=None,
        reason=None, seed=i, attempts=1, duplicate_of=None,
        accuracies={"vit": score, "charlm": score}, seconds={}, steps={}, created_at=now,
        started_at=now, finished_at=now, seed_count=1) for i, (graph, score) in enumerate(layers)]
    config = new_search_config({"space": "T", "proxies": ("vit", "charlm"), "population": 2})
    summary = BENCHMARK.summarize(records, config)
    assert [m["id"] for m in summary["front"]] == [1]  # LayerNorm dominates everything
    assert [m["id"] for m in summary["best_new"]] == [3, 5, 4]
    results = {"evo-s0": summary}
    proxies = config.proxies
    assert [m["id"] for m in BENCHMARK.best_layers(results, "evo", [0], 2, proxies)] == [1]
    assert [m["id"] for m in BENCHMARK.best_layers(results, "evo", [0], 2, proxies,
                                                   "best_new")] == [3, 5]
