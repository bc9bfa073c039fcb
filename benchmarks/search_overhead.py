"""Search overhead: what the controller and the store cost per candidate, and how many
children the cheap filters (structural hash, fingerprint) catch before training.

Part 1 (`overhead`): a search with a trivial evaluation (no training) is run until the
store holds `--max-stored` candidates; the controller + store time per candidate
(wall time minus the trivial evaluation) is printed for windows of candidates starting
at 0, 1000, 2500, 5000 and 10,000 stored ones. Goal: under 10 ms and flat.
Part 2 (`filters`): a real search on the embedded digits data (real evaluation with the
settings given) and the share of proposed layers skipped by the structural hash,
recorded as fingerprint duplicates, or rejected by the probe (NaN/inf).

    python benchmarks/search_overhead.py overhead [--max-stored 10000] [--engine memetic]
    python benchmarks/search_overhead.py filters [--budget 60 --executor ray]
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path

from db.store import SearchStore
from evonorm_search.config import SearchConfig, new_search_config
from evonorm_search.search.controller import SearchController
from evonorm_search.fingerprint import Fingerprint, fingerprint
from evonorm_search.graph import LayerGraph
from evonorm_search.task import DatasetSpec, EvalResult, EvalTask, TrainSettings
from workers.executors import InlineEvaluator, make_evaluator

PROXIES = ("resnet", "mobilenetv2", "efficientnet")


def trivial_evaluate(task: EvalTask) -> EvalResult:
    """No training: scores from a hash, a third of the candidates rejected."""
    digest = hashlib.sha256(task.graph_json.encode()).digest()
    if digest[0] % 3 == 0:
        return EvalResult("rejected", stage="quality", reason="trivial")
    return EvalResult("done", accuracies={p: digest[1 + i] / 255 for i, p in enumerate(task.proxies)})


class TimedInline(InlineEvaluator):
    """Inline evaluator that also sums the time spent inside the evaluation."""

    def __init__(self, evaluate_fn: Callable[[EvalTask], EvalResult]) -> None:
        super().__init__(evaluate_fn)
        self.seconds = 0.0

    def submit(self, task: EvalTask) -> Future[EvalResult]:
        start = time.perf_counter()
        try:
            return super().submit(task)
        finally:
            self.seconds += time.perf_counter() - start


def overhead(max_stored: int, window: int, population: int, engine: str) -> None:
    marks = [m for m in (0, 1000, 2500, 5000, 10_000, 20_000) if m <= max_stored]
    fp_seconds = 0.0

    def timed_fingerprint(graph: LayerGraph) -> Fingerprint:
        nonlocal fp_seconds
        start = time.perf_counter()
        try:
            return fingerprint(graph)
        finally:
            fp_seconds += time.perf_counter() - start

    with tempfile.TemporaryDirectory() as tmp, SearchStore.open(Path(tmp) / "b.db", create=True) as store:
        config = new_search_config({"proxies": PROXIES, "population": population, "budget": 1,
                                    "seed": 1, "engine": engine})
        search = store.create_search("bench", config.to_dict(), config.seed)
        print(f"overhead per candidate (engine {engine}, population {population}, trivial "
              f"evaluation, window {window} candidates; each window starts a controller, "
              "which loads the search)")
        print(f"{'stored':>8} {'ms/candidate':>13} {'of which fingerprint':>21} {'rows/window':>12}")
        for mark in marks:
            # Grow the store to `mark` rows (timed only in the window that follows).
            while (stored := sum(store.counts(search.id).values())) < mark:
                grow = replace(config, budget=_budget_for(store, search.id) + (mark - stored))
                SearchController(store, search, grow, InlineEvaluator(trivial_evaluate)).run()
            evaluator = TimedInline(trivial_evaluate)
            rows_before = sum(store.counts(search.id).values())
            run = replace(config, budget=_budget_for(store, search.id) + window)
            fp_seconds = 0.0
            start = time.perf_counter()
            SearchController(store, search, run, evaluator, fingerprint_fn=timed_fingerprint).run()
            wall = time.perf_counter() - start
            rows = sum(store.counts(search.id).values()) - rows_before
            per = 1000 * (wall - evaluator.seconds) / rows
            print(f"{rows_before:>8} {per:>13.2f} {1000 * fp_seconds / rows:>21.2f} {rows:>12}",
                  flush=True)
        print(f"integrity_check: {store.integrity_check()}")


def _budget_for(store: SearchStore, search_id: int) -> int:
    """Candidates of the search that count toward the budget so far."""
    from evonorm_search.search.budget import counts_toward_budget

    return sum(counts_toward_budget(c) for c in store.candidates(search_id))


def filters(args: argparse.Namespace) -> None:
    from workers.datasets import load_dataset

    config = SearchConfig(
        proxies=tuple(args.proxies.split(",")),
        budget=args.budget,
        population=args.population,
        seed=args.seed,
        init=args.init,
        dataset=DatasetSpec(),
        train=TrainSettings(steps=args.steps, quality_steps=min(args.steps, 100),
                            threads=1 if args.executor == "inline" else None),
    )
    data = load_dataset(config.dataset)
    evaluator = make_evaluator(args.executor, data=data, workers=args.workers)
    with tempfile.TemporaryDirectory() as tmp, SearchStore.open(Path(tmp) / "f.db", create=True) as store:
        search = store.create_search("filters", config.to_dict(), config.seed)
        start = time.perf_counter()
        try:
            final = SearchController(store, search, config, evaluator,
                                     progress=_every(30.0)).run()
        finally:
            evaluator.shutdown()
        wall = time.perf_counter() - start
        rows = store.candidates(search.id)
    children = [r for r in rows if r.parent_id is not None]
    proposals = final.hash_skips + final.neutral_skips + len(rows)
    duplicates = sum(r.status == "duplicate" for r in rows)
    probe_rejects = sum(r.status == "rejected" and r.stage == "fingerprint" for r in rows)
    evaluated = len(rows) - duplicates - probe_rejects
    print(f"real digits search: budget {config.budget}, population {config.population}, "
          f"init {config.init}, "
          f"steps {args.steps}, proxies {args.proxies}, {args.executor} executor, {wall:.0f} s")
    print(f"  proposals {proposals} = hash skips {final.hash_skips} + neutral skips "
          f"{final.neutral_skips} + stored rows {len(rows)} "
          f"({len(children)} of them mutated children)")
    for label, count in (("structural hash (skipped)", final.hash_skips),
                         ("neutral: only dead nodes (skipped)", final.neutral_skips),
                         ("fingerprint duplicate", duplicates),
                         ("probe NaN/inf rejected", probe_rejects),
                         ("evaluated (trained)", evaluated)):
        print(f"  {label:<28} {count:>5}  {100 * count / proposals:5.1f}% of proposals")
    child_dups = sum(r.status == "duplicate" for r in children)
    print(f"  among stored mutated children: {child_dups} of {len(children)} fingerprint duplicates")
    print(f"  final: {final.line()}")
    accs = [statistics.mean(r.accuracies.values()) for r in rows if r.status == "done"]
    if accs:
        print(f"  done: {len(accs)}, best mean accuracy {max(accs):.3f}")


def _every(seconds: float) -> Callable[..., None]:
    last = 0.0

    def show(progress: object) -> None:
        nonlocal last
        if time.monotonic() - last >= seconds:
            last = time.monotonic()
            print(progress.line(), file=sys.stderr, flush=True)  # type: ignore[attr-defined]

    return show


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="part", required=True)
    one = sub.add_parser("overhead")
    one.add_argument("--max-stored", type=int, default=10_000)
    one.add_argument("--window", type=int, default=300)
    one.add_argument("--population", type=int, default=100)
    one.add_argument("--engine", default="paper", help="engine preset (paper, memetic)")
    two = sub.add_parser("filters")
    two.add_argument("--budget", type=int, default=60)
    two.add_argument("--population", type=int, default=10)
    two.add_argument("--steps", type=int, default=150)
    two.add_argument("--proxies", default=",".join(PROXIES))
    two.add_argument("--executor", default="ray", choices=("ray", "inline"))
    two.add_argument("--workers", type=int, default=None)
    two.add_argument("--seed", type=int, default=0)
    two.add_argument("--init", default="known", help="random rarely passes rejection on digits")
    args = parser.parse_args()
    if args.part == "overhead":
        overhead(args.max_stored, args.window, args.population, args.engine)
    else:
        filters(args)


if __name__ == "__main__":
    main()
