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
