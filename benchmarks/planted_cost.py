"""Cost of the planted evaluation's choices, measured in one run (issue 10).

1. The fit gate (`workers.planted.FIT_GATE`): CPU per candidate with the gate and with
   v0/v1 always fitted, over mutants of known layers, and the Spearman correlation of
   their min-over-regimes R^2 (does the cheaper fit rank layers the same?).
2. L-BFGS iterations: the same for 3, 5 (default) and 30 iterations.
3. The fingerprint probe on 1 vs 2 torch threads (what the controller pays per child).

    python benchmarks/planted_cost.py [--mutants 200] [--targets evonorm_s0,gn_relu]
"""

from __future__ import annotations

import argparse
import random
import sys
import time

import torch

from evonorm_search.fingerprint import _fingerprint
from evonorm_search.known import get_known
from evonorm_search.search.moves import MUTATIONS, mutate
from evonorm_search.planted import REGIME_NAMES
from evonorm_search.task import EvalTask
from workers import planted


def spearman(a: list[float], b: list[float]) -> float:
    def ranks(values: list[float]) -> list[float]:
        order = sorted(range(len(values)), key=values.__getitem__)
        result = [0.0] * len(values)
        i = 0
        while i < len(order):  # ties share their mean rank
            j = i
            while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
                j += 1
            for k in range(i, j + 1):
                result[order[k]] = (i + j) / 2
            i = j + 1
        return result

    ra, rb = ranks(a), ranks(b)
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    var = (sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb)) ** 0.5
    return cov / var if var else 1.0


def mutants(count: int, seed: int = 0) -> list:
    from evonorm_search.fingerprint import fingerprint

    rng = random.Random(seed)
    parents = [get_known(n) for n in ("evonorm_s0", "evonorm_s1", "gn_relu", "evonorm_s2")]
    found = []
    while len(found) < count:
        graph = rng.choice(parents)
        for _ in range(rng.randint(1, 3)):
            graph = mutate(graph, rng, "S", tuple(MUTATIONS))
        if fingerprint(graph).finite:
            found.append(graph)
    return found


def scores(graphs: list, target: str, gate: float, iterations: int) -> tuple[list[float], float]:
    planted.FIT_GATE, planted.FIT_ITERATIONS = gate, iterations
    target_json = get_known(target).to_json()
    planted.evaluate_planted(EvalTask(target_json, REGIME_NAMES, kind="planted",
                                      target_json=target_json))  # warm the caches
    started = time.process_time()
    values = []
    for graph in graphs:
        result = planted.evaluate_planted(EvalTask(graph.to_json(), REGIME_NAMES,
                                                   kind="planted", target_json=target_json))
        values.append(min(result.accuracies.values()) if result.accuracies else 0.0)
    return values, 1000 * (time.process_time() - started) / len(graphs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mutants", type=int, default=200)
    parser.add_argument("--targets", default="evonorm_s0,gn_relu")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    graphs = mutants(args.mutants)
    default_gate, default_iterations = planted.FIT_GATE, planted.FIT_ITERATIONS
    for target in args.targets.split(","):
        reference, full_ms = scores(graphs, target, -1.0, 30)
        print(f"target {target}, {len(graphs)} mutants; reference: always fit, 30 iterations "
              f"({full_ms:.1f} ms CPU per candidate)")
        for gate, iterations in ((-1.0, 5), (default_gate, 3), (default_gate, default_iterations)):
            values, ms = scores(graphs, target, gate, iterations)
            print(f"  gate {'off' if gate < 0 else gate}, {iterations} iterations: {ms:.1f} ms "
                  f"per candidate ({ms / full_ms:.2f} of the reference), Spearman "
                  f"{spearman(values, reference):.3f}, >= 0.95: "
                  f"{sum(v >= 0.95 for v in values)} (reference {sum(v >= 0.95 for v in reference)})")
    planted.FIT_GATE, planted.FIT_ITERATIONS = default_gate, default_iterations
    times = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        started = time.perf_counter()
        for graph in graphs:
            _fingerprint(graph)
        times[threads] = 1000 * (time.perf_counter() - started) / len(graphs)
    print(f"fingerprint probe: {times[1]:.2f} ms on 1 thread, {times[2]:.2f} ms on 2 threads "
          f"(ratio {times[2] / times[1]:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
