"""Cost and ranking fidelity of the planted fit, measured in one run (issues 10, 16).

1. The fit's settings (`workers.planted.FitSettings`): CPU per candidate of the default
   fit and of variants (fewer restarts, fewer iterations, the full fit from R^2 0.5, no
   gate, the issue's 3 x 3 starts) over mutants of known layers, against an expensive
   reference fit (a dense grid of starts, 6 restarts, 40 iterations, no gate): the
   Spearman correlation of their min-over-regimes R^2 with the reference's (does the
   cheaper fit rank layers the same?), how many layers each puts above R^2 0.95 and
   0.999, and the largest shortfall of a layer's R^2 below the reference's.
   With --baseline FILE, also another version's whole planted evaluation (its
   `evaluate_planted`), e.g. the issue-10 fit that started at the target's values:
       git show d3f0101:workers/planted.py > /tmp/planted_issue10.py
       python benchmarks/planted_cost.py --baseline /tmp/planted_issue10.py
   `--speed-only` times just that comparison, e.g. on mutants of the B-space layers:
       python benchmarks/planted_cost.py --speed-only --baseline /tmp/planted_before.py \\
           --targets bn_relu,evonorm_b0 --parents bn_relu,evonorm_b0,evonorm_b1,bn_swish
2. The fingerprint probe on 1 vs 2 torch threads (what the controller pays per child).

    python benchmarks/planted_cost.py [--mutants 200] [--targets evonorm_s0,gn_relu]
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import sys
import time

import torch

from evonorm_search.fingerprint import _fingerprint
from evonorm_search.known import get_known
from evonorm_search.layer_spec import load_graph_spec
from evonorm_search.search.moves import MUTATIONS, mutate
from evonorm_search.planted import REGIME_NAMES
from evonorm_search.task import EvalTask
from workers import planted
from workers.planted import DEFAULT_FIT, FitSettings

REFERENCE = FitSettings(starts=(("v0", (-1.5, -1.0, -0.75, -0.5, -0.25, 0.0, 0.25, 0.5, 0.75,
                                        1.0, 1.5)),
                                ("v1", (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0))),
                        restarts=6, iterations=40, gate=0.0, full_gate=0.0)
VARIANTS: dict[str, FitSettings] = {
    "default": DEFAULT_FIT,
    "1 restart": FitSettings(restarts=1),
    "4 iterations": FitSettings(iterations=4),
    "full from 0.5": FitSettings(full_gate=0.5),
    "no gate": FitSettings(gate=0.0),
    "3 x 3 starts": FitSettings(starts=(("v0", (-1.0, 0.0, 1.0)), ("v1", (0.5, 1.0, 2.0)))),
}


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


S_PARENTS = ("evonorm_s0", "evonorm_s1", "gn_relu", "evonorm_s2")


def mutants(count: int, seed: int = 0, parent_names: tuple[str, ...] = S_PARENTS) -> list:
    """`count` finite layers 1-3 mutations away from known layers of one space."""
    from evonorm_search.fingerprint import fingerprint

    rng = random.Random(seed)
    parents = [get_known(n) for n in parent_names]
    found = []
    while len(found) < count:
        graph = parent = rng.choice(parents)
        for _ in range(rng.randint(1, 3)):
            graph = mutate(graph, rng, parent.space, tuple(MUTATIONS))
        if fingerprint(graph).finite:
            found.append(graph)
    return found


def scores(graphs: list, target_json: str, fit: FitSettings) -> tuple[list[float], float]:
    """Min-over-regimes R^2 of every graph with `fit`, and the CPU ms per graph."""
    for regime in REGIME_NAMES:  # warm the caches
        planted.score_regime(graphs[0], target_json, regime, fit)
    started = time.process_time()
    values = []
    for graph in graphs:
        results = [planted.score_regime(graph, target_json, regime, fit) for regime in REGIME_NAMES]
        values.append(min(r.r2 if r.finite else 0.0 for r in results))
    return values, 1000 * (time.process_time() - started) / len(graphs)


def load_version(path: str) -> object:
    """The module in file `path`: another version's workers/planted.py."""
    spec = importlib.util.spec_from_file_location("planted_baseline", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def evaluation_scores(module: object, graphs: list, target_json: str) -> tuple[list[float], float]:
    """`scores` for a whole planted evaluation: `module.evaluate_planted` of some version."""

    def task(graph: object) -> EvalTask:
        return EvalTask(graph.to_json(), REGIME_NAMES, kind="planted",  # type: ignore[attr-defined]
                        target_json=target_json)

    module.evaluate_planted(task(graphs[0]))  # warm the caches
    started = time.process_time()
    values = []
    for graph in graphs:
        result = module.evaluate_planted(task(graph))
        values.append(min(result.accuracies.values()) if result.status == "done" else 0.0)
    return values, 1000 * (time.process_time() - started) / len(graphs)


def compare_speed(baseline: str, graphs: list, target: str, target_json: str) -> None:
    """This version's whole evaluation against the baseline's, timed alternately
    (baseline, ours, baseline, ours) on the same candidates, and their score agreement."""
    versions = {"baseline": load_version(baseline), "ours": planted}
    timings: dict[str, list[float]] = {"baseline": [], "ours": []}
    values: dict[str, list[float]] = {}
    for _ in range(2):
        for name, module in versions.items():
            values[name], ms = evaluation_scores(module, graphs, target_json)
            timings[name].append(ms)
    base, mine = min(timings["baseline"]), min(timings["ours"])
    gaps = sorted(abs(a - b) for a, b in zip(values["baseline"], values["ours"]))
    print(f"target {target}, {len(graphs)} mutants: baseline {base:.1f} ms, ours {mine:.1f} ms "
          f"CPU per candidate (best of 2 each); ratio baseline/ours {base / mine:.2f}; "
          f"min-over-regimes R^2 differs by > 1e-6 for {sum(g > 1e-6 for g in gaps)}, by > 1e-4 "
          f"for {sum(g > 1e-4 for g in gaps)} of {len(gaps)} (largest {gaps[-1]:.2g}); ours "
          f"higher for {sum(b - a > 1e-6 for a, b in zip(values['baseline'], values['ours']))}, "
          f"lower for {sum(a - b > 1e-6 for a, b in zip(values['baseline'], values['ours']))}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mutants", type=int, default=200)
    parser.add_argument("--targets", default="evonorm_s0,gn_relu",
                        help="known layer names or layer graph JSON files, comma-separated")
    parser.add_argument("--baseline", metavar="FILE", default=None,
                        help="a workers/planted.py of another version to time and rank too")
    parser.add_argument("--parents", default=",".join(S_PARENTS),
                        help="known layers the mutants come from (one space), comma-separated")
    parser.add_argument("--speed-only", action="store_true",
                        help="with --baseline: time this version's evaluation against the "
                             "baseline's only (no reference fit, no variants), and say how "
                             "far their scores differ")
    args = parser.parse_args(argv)
    if args.speed_only and not args.baseline:
        parser.error("--speed-only compares with --baseline FILE: name the other version")
    torch.set_num_threads(1)
    graphs = mutants(args.mutants, parent_names=tuple(args.parents.split(",")))
    for target in args.targets.split(","):
        target_json = load_graph_spec(target).to_json()
        if args.speed_only:
            compare_speed(args.baseline, graphs, target, target_json)
            continue
        reference, reference_ms = scores(graphs, target_json, REFERENCE)
        print(f"target {target}, {len(graphs)} mutants; reference fit: {reference_ms:.1f} ms CPU "
              f"per candidate, >= 0.95: {sum(v >= 0.95 for v in reference)}, >= 0.999: "
              f"{sum(v >= 0.999 for v in reference)}")
        runs = [(name, lambda fit=fit: scores(graphs, target_json, fit))
                for name, fit in VARIANTS.items()]
        if args.baseline:
            runs.append(("baseline", lambda: evaluation_scores(load_version(args.baseline), graphs, target_json)))
        for name, run in runs:
            values, ms = run()
            print(f"  {name:<13} {ms:6.1f} ms per candidate ({ms / reference_ms:.2f} of the "
                  f"reference), Spearman {spearman(values, reference):.3f}, >= 0.95: "
                  f"{sum(v >= 0.95 for v in values)}, >= 0.999: {sum(v >= 0.999 for v in values)}, "
                  f"largest shortfall {max(r - v for r, v in zip(reference, values)):+.4f}")
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
