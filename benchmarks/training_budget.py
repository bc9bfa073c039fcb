"""Training budget vs search signal: what shorter proxy training costs in fidelity.

Evaluates the known layers, a fixed sample of mutated known layers (what evolution
evaluates) and of random layers under several training
budgets (batch size x total steps; the paper's rejection protocols unchanged: 100 ascent
steps, quality check at 100 steps) and prints, per budget:
- CPU seconds per full evaluation (mean over the layers that trained in full);
- each known layer's mean validation accuracy over the proxies;
- Spearman's rank correlation of those means with the reference budget (the first) and,
  with two or more seeds, between the first two seeds at each budget (the noise floor);
- how many mutants and random layers each protocol rejects, and the decisions (done,
  or the rejecting stage) that differ from the reference budget.

    python benchmarks/training_budget.py                       # digits, 4 budgets
    python benchmarks/training_budget.py --budgets 64x300,32x200 --mutants 20 --seeds 0,1
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import torch

from evonorm_search.graph import LayerGraph
from evonorm_search.known import KNOWN_LAYERS
from evonorm_search.search.moves import mutate, random_graph
from evonorm_search.task import DatasetSpec, EvalResult, EvalTask, TrainSettings
from workers.datasets import load_dataset
from workers.evaluate import evaluate


def ranks(values: list[float]) -> list[float]:
    """Ranks 1..n, ties sharing their mean rank."""
    order = sorted(range(len(values)), key=values.__getitem__)
    result = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for k in range(start, end + 1):
            result[order[k]] = (start + end) / 2 + 1
        start = end + 1
    return result


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman's rho: the Pearson correlation of the ranks."""
    ra, rb = ranks(a), ranks(b)
    return statistics.correlation(ra, rb) if len(set(ra)) > 1 and len(set(rb)) > 1 else float("nan")


def bootstrap_spearman(a: list[float], b: list[float], reps: int = 2000) -> tuple[float, float]:
    """A 95% percentile bootstrap interval of Spearman's rho over the paired items of `a`
    and `b` (fixed generator, so a report is reproducible); NaN where fewer than half the
    resamples have a defined rho."""
    rng = random.Random(0)
    values = []
    for _ in range(reps):
        index = [rng.randrange(len(a)) for _ in a]
        rho = spearman([a[i] for i in index], [b[i] for i in index])
        if rho == rho:  # not NaN
            values.append(rho)
    if len(values) < reps / 2:
        return float("nan"), float("nan")
    values.sort()
    return values[int(0.025 * len(values))], values[int(0.975 * len(values)) - 1]


def parse_budget(text: str) -> tuple[int, int]:
    batch, steps = text.lower().split("x")
    return int(batch), int(steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--budgets", default="64x300,32x300,64x200,32x200",
                        help="comma-separated BATCHxSTEPS; the first is the reference")
    parser.add_argument("--mutants", type=int, default=12,
                        help="mutated known layers to include")
    parser.add_argument("--random", type=int, default=6, help="random layers to include")
    parser.add_argument("--seeds", default="0", help="comma-separated evaluation seeds")
    parser.add_argument("--quality-steps", type=int, default=TrainSettings.quality_steps)
    parser.add_argument("--stability-steps", type=int, default=TrainSettings.stability_steps)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = load_dataset(DatasetSpec(name=args.dataset, data_dir=args.data_dir,
                                    image_size=args.image_size))
    rng = random.Random(1)
    known_graphs = list(KNOWN_LAYERS.values())
    others = {f"mutant{k}": mutate(rng.choice(known_graphs), rng, "B") for k in range(args.mutants)}
    others |= {f"random{k}": random_graph(rng, "B") for k in range(args.random)}
    layers: dict[str, LayerGraph] = {**KNOWN_LAYERS, **others}
    seeds = [int(s) for s in args.seeds.split(",")]
    budgets = [parse_budget(b) for b in args.budgets.split(",")]
    outcomes: dict[tuple[int, int], dict[str, list[EvalResult]]] = {}
    cpu: dict[tuple[int, int], list[float]] = {}
    for budget in budgets:
        batch, steps = budget
        settings = TrainSettings(batch_size=batch, steps=steps, quality_steps=args.quality_steps,
                                 stability_steps=args.stability_steps)
        outcomes[budget], cpu[budget] = {}, []
        for name, graph in layers.items():
            for seed in seeds:
                start = time.process_time()
                result = evaluate(EvalTask(graph.to_json(), dataset=DatasetSpec(
                    name=args.dataset, data_dir=args.data_dir, image_size=args.image_size),
                    train=settings, seed=seed), data)
                spent = time.process_time() - start
                outcomes[budget].setdefault(name, []).append(result)
                if result.status == "done":
                    cpu[budget].append(spent)
                print(f"  {batch}x{steps} {name:11s} seed {seed}: {result.status:8s} "
                      f"{spent:5.1f} s {_mean_accuracy(result):.3f} {result.reason or ''}",
                      flush=True)

    reference = budgets[0]
    known = list(KNOWN_LAYERS)
    print(f"\ndata: {args.dataset}; seeds {seeds}; reference budget "
          f"{reference[0]}x{reference[1]} (batch x steps)")
    header = "| layer | " + " | ".join(f"{b}x{s}" for b, s in budgets) + " |"
    print(header)
    print("|---|" + "---:|" * len(budgets))
    for name in known:
        cells = [f"{_layer_mean(outcomes[b][name]):.3f}" for b in budgets]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("| CPU s per full evaluation | " + " | ".join(
        f"{statistics.mean(cpu[b]):.1f}" if cpu[b] else "-" for b in budgets) + " |")
    print("| Spearman rho vs reference (known layers) | " + " | ".join(
        f"{spearman(_means(outcomes[reference], known), _means(outcomes[b], known)):.2f}"
        for b in budgets) + " |")
    if len(seeds) > 1:  # the noise floor: the same budget, another evaluation seed
        print(f"| Spearman rho seed {seeds[0]} vs seed {seeds[1]} (known layers) | " + " | ".join(
            f"{spearman(*([_mean_accuracy(outcomes[b][n][k]) for n in known] for k in (0, 1))):.2f}"
            for b in budgets) + " |")
    print("| mutants and random layers: rejected stability / quality / done | " + " | ".join(
        _rejections(outcomes[b], list(others)) for b in budgets) + " |")
    print("| decisions differing from reference (all layers x seeds) | " + " | ".join(
        str(_differing(outcomes[reference], outcomes[b])) for b in budgets) + " |")


def _mean_accuracy(result: EvalResult) -> float:
    return statistics.mean(result.accuracies.values()) if result.status == "done" else 0.0


def _layer_mean(results: list[EvalResult]) -> float:
    return statistics.mean(_mean_accuracy(r) for r in results)


def _means(outcome: dict[str, list[EvalResult]], names: list[str]) -> list[float]:
    return [_layer_mean(outcome[name]) for name in names]


def _rejections(outcome: dict[str, list[EvalResult]], names: list[str]) -> str:
    results = [r for name in names for r in outcome[name]]
    count = {stage: sum(r.stage == stage and r.status != "done" for r in results)
             for stage in ("stability", "quality")}
    done = sum(r.status == "done" for r in results)
    return f"{count['stability']} / {count['quality']} / {done}"


def _differing(reference: dict[str, list[EvalResult]], other: dict[str, list[EvalResult]]) -> int:
    return sum((a.status, a.stage if a.status != "done" else None)
               != (b.status, b.stage if b.status != "done" else None)
               for name in reference for a, b in zip(reference[name], other[name]))


if __name__ == "__main__":
    main()
