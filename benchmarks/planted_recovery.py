"""Planted-layer recovery: does the search find a layer whose answer is known? (issue 10)

For every target, strategy and seed, one real search runs through the controller and a
SQLite store (one database file per run, in --db-dir) on the planted task: candidates are
scored by R^2 against the planted target on the K regimes (evonorm_search.planted), and
the search stops at its first recovery (R^2 >= 0.999 on every regime) or at --budget
evaluated candidates. Evolution and random search with the same seed start from the same
initial members (a paired comparison).

Per target and strategy it prints: recovery rate with a 95% Wilson interval, median
evaluations to recovery (over all seeds, an unrecovered run counting as more than the
budget), how many recoveries were the target's own formula (identical) or another one
computing the same function (equivalent), the median of each run's best min-over-regimes
R^2, wall time, evaluations per second, and the mean proposals per search that cost no
evaluation (fingerprint cache hits / hash skips / neutral skips). The last line is
`recovery: evolution X/N, random Y/N` over all targets.

Example (the issue's protocol; hours on 2 cores, use --jobs 2):
    python benchmarks/planted_recovery.py --seeds 10 --budget 10000 --jobs 2
A smoke run in under a minute:
    python benchmarks/planted_recovery.py --targets evonorm_s1 --seeds 2 --budget 100
Engine settings under test go through --set (SearchConfig keys), e.g. --set num_nodes=5.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from tempfile import mkdtemp
from typing import Any

from db.store import SearchStore
from evonorm_search.config import SearchConfig, new_search_config
from evonorm_search.search.budget import counts_toward_budget
from evonorm_search.search.controller import SearchController
from evonorm_search.graph import LayerGraph
from evonorm_search.planted import first_recovery, recovered, resolve_target
from workers.executors import make_evaluator

DEFAULT_TARGETS = "evonorm_s0,evonorm_s1,evonorm_b0,gn_relu,bn_relu"


@dataclass(frozen=True)
class Run:
    target: str
    strategy: str
    seed: int
    recovered: bool
    evaluations: int  # to recovery when recovered, else all evaluated
    kind: str | None  # identical / equivalent
    formula: str | None
    best_min_r2: float
    seconds: float
    # Proposals that cost no evaluation (up to the recovery or the budget).
    cache_hits: int = 0  # fingerprint duplicates
    hash_skips: int = 0
    neutral_skips: int = 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", default=DEFAULT_TARGETS,
                        help="comma-separated known layer names ('' for none)")
    parser.add_argument("--target-json", nargs="*", default=[], metavar="FILE",
                        help="further targets: layer graph JSON files")
    parser.add_argument("--strategies", default="evolution,random")
    parser.add_argument("--seeds", type=int, default=10, help="search seeds 0..N-1 per arm")
    parser.add_argument("--first-seed", type=int, default=0,
                        help="seeds first-seed..first-seed+N-1 (fresh seeds for a confirmation)")
    parser.add_argument("--budget", type=int, default=10000, help="evaluations per search")
    parser.add_argument("--init", default="random", help="random | known | layer names")
    parser.add_argument("--population", type=int, default=100)
    parser.add_argument("--space", choices=("B", "S"), default=None,
                        help="default: S unless the target reads batch statistics")
    parser.add_argument("--set", dest="settings", action="append", default=[],
                        metavar="KEY=VALUE", help="any other SearchConfig setting (JSON value)")
    parser.add_argument("--workers", type=int, default=None,
                        help="Ray workers per search (default: the inline executor)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="searches run at once in separate processes (inline executor)")
    parser.add_argument("--db-dir", type=Path, default=None,
                        help="where the run databases go (default: a new temporary folder); "
                             "a finished run found there is not run again")
    parser.add_argument("--json", type=Path, default=None, help="also write every run here")
    return parser.parse_args(argv)


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for item in args.settings:
        key, _, text = item.partition("=")
        try:
            values[key] = json.loads(text)
        except json.JSONDecodeError:
            values[key] = text
    return values


def run_config(args: argparse.Namespace, target: str, strategy: str, seed: int) -> SearchConfig:
    graph, label = resolve_target(target)
    space = args.space or ("B" if graph.uses_batch_stats else "S")
    return new_search_config({
        "task": "planted", "target": graph.to_json(), "target_name": label,
        "space": space, "strategy": strategy, "seed": seed, "budget": args.budget,
        "population": args.population, "init": args.init, **_settings(args),
    })


def run_one(args: argparse.Namespace, target: str, strategy: str, seed: int) -> Run:
    """One search (resumed when its database exists), stopped at the first recovery."""
    config = run_config(args, target, strategy, seed)
    name = f"{Path(target).stem}-{strategy}-s{seed}"
    target_graph = LayerGraph.from_json(config.target or "")
    started = time.perf_counter()
    with SearchStore.open(args.db_dir / f"{name}.db", create=True) as store:
        search = store.find_search(name) or store.create_search(name, config.to_dict(), seed)
        done = first_recovery(store.candidates(search.id), config.proxies, target_graph,
                              counts_toward_budget)
        if done is None:
            evaluator = make_evaluator("inline" if args.workers is None else "ray",
                                       workers=args.workers)
            try:
                SearchController(store, search, config, evaluator,
                                 stop_when=lambda r: recovered(r.accuracies, config.proxies)
                                 ).run()
            finally:
                evaluator.shutdown()
        candidates = store.candidates(search.id)
    seconds = time.perf_counter() - started
    found = first_recovery(candidates, config.proxies, target_graph, counts_toward_budget)
    scores = [min(c.accuracies.get(p, 0.0) for p in config.proxies)
              for c in candidates if c.status == "done"]
    return Run(
        cache_hits=sum(c.status == "duplicate" for c in candidates),
        hash_skips=sum(c.hash_skips for c in candidates),
        neutral_skips=sum(c.neutral_skips for c in candidates),
        target=Path(target).stem, strategy=strategy, seed=seed, recovered=found is not None,
        evaluations=found.evaluations if found else sum(map(counts_toward_budget, candidates)),
        kind=found.kind if found else None, formula=found.formula if found else None,
        best_min_r2=max(scores, default=0.0), seconds=seconds,
    )


def _run_star(job: tuple[argparse.Namespace, str, str, int]) -> Run:
    return run_one(*job)


def wilson(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion."""
    if trials == 0:
        return (0.0, 1.0)
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return (max(0.0, centre - half), min(1.0, centre + half))


def median_evaluations(runs: list[Run], budget: int) -> str:
    """Median over all runs, an unrecovered run counting as more than the budget."""
    values = sorted(r.evaluations if r.recovered else math.inf for r in runs)
    middle = statistics.median_low(values) if values else math.inf
    return f">{budget}" if math.isinf(middle) else str(int(middle))


def table(runs: list[Run], budget: int) -> list[str]:
    header = (f"{'target':<12} {'strategy':<10} {'recovered':>9} {'95% CI':>13} "
              f"{'median evals':>12} {'ident/equiv':>11} {'best min R2':>11} "
              f"{'wall s':>8} {'evals/s':>8} {'free: dup/hash/neutral':>22}")
    lines = [header]
    keys = sorted({(r.target, r.strategy) for r in runs}, key=lambda k: (k[0], k[1]))
    for target, strategy in keys:
        group = [r for r in runs if (r.target, r.strategy) == (target, strategy)]
        hits = sum(r.recovered for r in group)
        low, high = wilson(hits, len(group))
        identical = sum(r.kind == "identical" for r in group)
        seconds = sum(r.seconds for r in group)
        evaluations = sum(r.evaluations for r in group)
        lines.append(
            f"{target:<12} {strategy:<10} {f'{hits}/{len(group)}':>9} "
            f"{f'[{low:.2f}, {high:.2f}]':>13} {median_evaluations(group, budget):>12} "
            f"{f'{identical}/{hits - identical}':>11} "
            f"{statistics.median(r.best_min_r2 for r in group):>11.4f} {seconds:>8.1f} "
            f"{evaluations / seconds if seconds else 0.0:>8.1f} "
            f"{_free(group):>22}")
    return lines


def _free(runs: list[Run]) -> str:
    """Mean proposals per search that cost no evaluation: fingerprint cache hits, hash
    skips, neutral skips."""
    means = [statistics.mean(getattr(r, key) for r in runs)
             for key in ("cache_hits", "hash_skips", "neutral_skips")]
    return "/".join(f"{value:.0f}" for value in means)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.db_dir = args.db_dir or Path(mkdtemp(prefix="planted-"))
    args.db_dir.mkdir(parents=True, exist_ok=True)
    targets = [t for t in args.targets.split(",") if t] + list(args.target_json)
    strategies = [s for s in args.strategies.split(",") if s]
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    jobs = [(args, t, s, seed) for t in targets for seed in seeds for s in strategies]
    for job in jobs[:1]:
        run_config(*job)  # bad settings fail here, before any run starts
    print(f"{len(jobs)} searches, databases in {args.db_dir}", file=sys.stderr)
    runs: list[Run] = []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for run in pool.map(_run_star, jobs):
            runs.append(run)
            print(f"{run.target} {run.strategy} seed {run.seed}: "
                  f"{'recovered' if run.recovered else 'not recovered'} after "
                  f"{run.evaluations} evaluations (not evaluated: {run.cache_hits} cache hits, "
                  f"{run.hash_skips} hash skips, {run.neutral_skips} neutral skips), "
                  f"best min R2 {run.best_min_r2:.4f}, "
                  f"{run.seconds:.1f} s{f' ({run.kind}: {run.formula})' if run.recovered else ''}",
                  file=sys.stderr, flush=True)
    print(f"budget {args.budget}, population {args.population}, init {args.init}, "
          f"settings {_settings(args) or 'defaults'}, seeds {seeds.start}..{seeds.stop - 1}")
    print("\n".join(table(runs, args.budget)))
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(r) for r in runs], indent=1))
    totals = ", ".join(
        f"{s} {sum(r.recovered for r in runs if r.strategy == s)}/"
        f"{sum(r.strategy == s for r in runs)}" for s in strategies)
    print(f"recovery: {totals}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
