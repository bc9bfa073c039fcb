"""Evolution vs random search at equal budget and seeds, on real CIFAR-10 (issue 6, item 4).

For each seed, three searches run in one database (resumable: rerun the same command to
continue after an interruption):
- `evo-s<seed>`: the evolutionary search (Pareto tournaments, aging, mutation);
- `random-s<seed>`: a random search (`strategy="random"`): the same controller, every
  child a fresh `random_graph`, with the same duplicate/NaN filters, rejection protocols
  and training;
- `known-s<seed>`: the known layers bn_relu, evonorm_s0, evonorm_b0 under the same
  protocol, for reference.
Both searches use the same seed and `--init`, so their first `--population` members are
the same layers (a paired comparison); they differ only in how later children are made.

Prints, per arm: the best validation accuracy per proxy after 25/50/75/100% of the budget
(mean over seeds), the hypervolume of the final Pareto front (K proxies, maximized,
reference point 0), and the known layers' scores. `--json FILE` also writes every figure.

Run it (tens of minutes on a 2-core machine with the defaults; measured times in docs/RESULTS.md):
    python benchmarks/evolution_vs_random.py --db bench_evo_vs_random.db
A smoke run in a few minutes:
    python benchmarks/evolution_vs_random.py --db /tmp/smoke.db --budget 3 --population 2 \\
        --seeds 0 --steps 20 --quality-steps 10 --stability-steps 2 --max-train-examples 2000
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from db.store import CandidateRecord, SearchStore
from evonorm_search.config import SearchConfig, stored_config
from evonorm_search.controller import Progress, SearchController
from evonorm_search.hypervolume import hypervolume
from evonorm_search.rerank import complete_candidates, front_candidates
from evonorm_search.report.data import progress_series
from workers.datasets import load_dataset
from workers.executors import make_evaluator

KNOWN = ("bn_relu", "evonorm_s0", "evonorm_b0")
CHECKPOINTS = (0.25, 0.5, 0.75, 1.0)
DEFAULT_DATA = "/work/shared/data/cifar-10-batches-py"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="bench_evo_vs_random.db", help="database (resumable)")
    parser.add_argument("--data-dir", default=DEFAULT_DATA, help="CIFAR-10 python folder")
    parser.add_argument("--budget", type=int, default=60, help="evaluated candidates per search")
    parser.add_argument("--population", type=int, default=6,
                        help="evolution's population P (selection starts once P members are done)")
    parser.add_argument("--seeds", default="0,1", help="comma-separated search seeds")
    parser.add_argument("--space", default="B", choices=("B", "S"))
    parser.add_argument("--init", default="random",
                        help="both arms' first members: random (the paper's protocol) or "
                             "known (the known layers of the space, then random ones)")
    parser.add_argument("--proxies", default="resnet,mobilenetv2,efficientnet")
    parser.add_argument("--image-size", type=int, default=16, help="downsampled image side")
    parser.add_argument("--max-train-examples", type=int, default=10000)
    parser.add_argument("--steps", type=int, default=300, help="training steps per proxy")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--quality-steps", type=int, default=100)
    parser.add_argument("--stability-steps", type=int, default=20)
    parser.add_argument("--eval-batches", type=int, default=4, help="validation batches of 256")
    parser.add_argument("--executor", default="ray", choices=("ray", "inline"))
    parser.add_argument("--workers", type=int, default=None, help="evaluations in flight (ray)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    return parser.parse_args(argv)


def base_config(args: argparse.Namespace, seed: int) -> SearchConfig:
    return SearchConfig().with_overrides({
        "space": args.space,
        "budget": args.budget,
        "population": args.population,
        "seed": seed,
        "init": args.init,
        "proxies": tuple(p.strip() for p in args.proxies.split(",") if p.strip()),
        "dataset.name": "cifar10",
        "dataset.data_dir": str(Path(args.data_dir).expanduser().resolve()),
        "dataset.image_size": args.image_size,
        "dataset.max_train_examples": args.max_train_examples,
        "train.steps": args.steps,
        "train.batch_size": args.batch_size,
        "train.width": args.width,
        "train.quality_steps": args.quality_steps,
        "train.stability_steps": args.stability_steps,
        "train.eval_batches": args.eval_batches,
        "train.threads": 1,  # one thread per evaluation: the workers share the cores
    })


def arm_configs(args: argparse.Namespace, seed: int) -> dict[str, SearchConfig]:
    base = base_config(args, seed)
    return {
        f"evo-s{seed}": base,
        f"random-s{seed}": base.with_overrides({"strategy": "random"}),
        f"known-s{seed}": base.with_overrides({
            "space": "B", "init": ",".join(KNOWN), "budget": len(KNOWN), "strategy": "random",
        }),
    }


def run_search(store: SearchStore, name: str, config: SearchConfig, evaluator: Any) -> None:
    record = store.find_search(name)
    if record is None:
        record = store.create_search(name, config.to_dict(), config.seed)
    else:
        stored_config(record.config).check_resume(config, name)
    last = [0.0]

    def progress(snapshot: Progress) -> None:
        if time.monotonic() - last[0] > 30 or snapshot.complete:
            last[0] = time.monotonic()
            print(snapshot.line(), file=sys.stderr, flush=True)

    SearchController(store, record, config, evaluator, progress=progress).run()


def summarize(candidates: list[CandidateRecord], config: SearchConfig) -> dict[str, Any]:
    proxies = config.proxies
    series = progress_series(candidates, proxies, config.population)
    evaluated = len(series.evaluated)
    at = {}
    for fraction in CHECKPOINTS:
        index = min(evaluated, max(1, round(fraction * config.budget))) - 1
        at[str(fraction)] = {p: series.best[p][index] if index >= 0 else float("nan") for p in proxies}
    front = front_candidates(candidates, proxies)
    done = complete_candidates(candidates, proxies)
    children = [c.number for c in candidates if c.parent_id is not None]
    return {
        "evaluated": evaluated,
        # Evolution only starts once `population` members are done; before, it is random too.
        "first_child_number": min(children) if children else None,
        "done": len(done),
        "best_at": at,
        "front_size": len(front),
        "hypervolume": hypervolume([[c.accuracies[p] for p in proxies] for c in front]),
        "best_mean": max(
            (statistics.fmean(c.accuracies[p] for p in proxies) for c in done), default=float("nan")
        ),
        "front": [{"id": c.id, "accuracies": c.accuracies} for c in front],
    }


def known_scores(candidates: list[CandidateRecord], proxies: tuple[str, ...]) -> dict[str, Any]:
    from evonorm_search.known import get_known

    by_hash = {get_known(name).structural_hash(): name for name in KNOWN}
    scores: dict[str, Any] = {}
    for candidate in candidates:
        name = by_hash.get(candidate.structural_hash)
        if name is not None:
            scores[name] = (
                {p: candidate.accuracies.get(p) for p in proxies}
                if candidate.status == "done" else f"{candidate.status} ({candidate.stage})"
            )
    return scores


def _mean(values: list[float]) -> float:
    finite = [v for v in values if v == v]
    return statistics.fmean(finite) if finite else float("nan")


def print_tables(results: dict[str, dict[str, Any]], seeds: list[int], proxies: tuple[str, ...]) -> None:
    print(f"\nbest validation accuracy per proxy vs budget used (mean over seeds {seeds}):")
    header = ["arm", "budget"] + list(proxies)
    print("  ".join(f"{h:>12}" for h in header))
    for arm in ("evo", "random"):
        for fraction in CHECKPOINTS:
            cells = [
                _mean([results[f"{arm}-s{s}"]["best_at"][str(fraction)][p] for s in seeds]) for p in proxies
            ]
            print("  ".join([f"{arm:>12}", f"{fraction:>12.0%}"] + [f"{c:>12.4f}" for c in cells]))
    print("\nfinal Pareto front (reference point 0):")
    print(f"{'arm':>8} {'seed':>5} {'evaluated':>9} {'done':>5} {'front':>6} {'hypervolume':>12} "
          f"{'best mean':>10} {'1st child':>9}")
    for arm in ("evo", "random"):
        for s in seeds:
            r = results[f"{arm}-s{s}"]
            print(f"{arm:>8} {s:>5} {r['evaluated']:>9} {r['done']:>5} {r['front_size']:>6} "
                  f"{r['hypervolume']:>12.4f} {r['best_mean']:>10.4f} "
                  f"{'-' if r['first_child_number'] is None else '#' + str(r['first_child_number']):>9}")
        hv = [results[f"{arm}-s{s}"]["hypervolume"] for s in seeds]
        spread = statistics.stdev(hv) if len(hv) > 1 else 0.0
        print(f"{arm:>8} {'mean':>5} {'':>9} {'':>5} {'':>6} {_mean(hv):>12.4f} ± {spread:.4f}")
    print("\nknown layers (same protocol and data):")
    for s in seeds:
        for name, scores in results[f"known-s{s}"]["known"].items():
            text = (" ".join(f"{p}={v:.4f}" for p, v in scores.items() if v is not None)
                    if isinstance(scores, dict) else scores)
            print(f"  seed {s}  {name:<12} {text}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    configs = {name: config for seed in seeds for name, config in arm_configs(args, seed).items()}
    first = next(iter(configs.values()))
    started = time.monotonic()
    print(f"loading CIFAR-10 ({args.image_size}x{args.image_size}, "
          f"{args.max_train_examples} training images)...", file=sys.stderr)
    data = load_dataset(first.dataset)
    evaluator = make_evaluator(args.executor, data=data, workers=args.workers)
    results: dict[str, dict[str, Any]] = {}
    try:
        with SearchStore.open(Path(args.db), create=True) as store:
            for name, config in configs.items():
                print(f"--- {name}", file=sys.stderr, flush=True)
                run_search(store, name, config, evaluator)
                candidates = store.candidates(store.get_search(name).id)
                results[name] = summarize(candidates, config)
                if name.startswith("known-"):
                    results[name]["known"] = known_scores(candidates, config.proxies)
    finally:
        evaluator.shutdown()
    elapsed = time.monotonic() - started
    print_tables(results, seeds, first.proxies)
    command = "python benchmarks/evolution_vs_random.py " + " ".join(sys.argv[1:] if argv is None else argv)
    print(f"\nwall time this invocation: {elapsed / 60:.1f} min; command: {command}")
    if args.json is not None:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)},
                                         "results": results, "minutes": elapsed / 60}, indent=1))


if __name__ == "__main__":
    main()
