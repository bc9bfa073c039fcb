"""Scale test: one planted search of tens of thousands of candidates (issue 10, item 4).

Runs one real search (controller + SQLite store + fingerprint filter + executor) on the
planted task, which evaluates a candidate in milliseconds, so the search's own costs show.
Prints evaluations per second over the run, and the controller + store cost per candidate
in windows that start when 0, 5k, 10k, 20k, ... candidates are evaluated (more are stored:
duplicates and NaN rejections): CPU seconds of the
controller's process per evaluated candidate, minus the evaluations' own CPU when they run
in that process (inline executor). Goal: flat, under 10 ms.

    python benchmarks/planted_scale.py --budget 20000                 # inline
    python benchmarks/planted_scale.py --budget 20000 --workers 2     # Ray, 2 workers
    python benchmarks/planted_scale.py --budget 20000 --engine memetic  # islands, scan on
    python benchmarks/planted_scale.py --budget 20000 --engine memetic --fake-evaluation
        # the controller alone: scores from a hash (stalls often, so the scan runs often)
    python benchmarks/planted_scale.py --db big.db --resume --budget 500  # one more window
The window after a resume includes loading the search's state (once per run).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path
from tempfile import mkdtemp

from db.store import SearchStore
from evonorm_search.config import new_search_config
from evonorm_search.search.controller import Progress, SearchController
from evonorm_search.graph import LayerGraph
from evonorm_search.known import get_known
from evonorm_search.task import EvalResult, EvalTask
from workers.evaluate import evaluate
from workers.executors import InlineEvaluator, make_evaluator

WINDOW = 500


def fake_evaluate(task: EvalTask) -> EvalResult:
    """R^2 per regime from the layer's structural hash: no fit, no tensors."""
    digest = hashlib.sha256(LayerGraph.from_json(task.graph_json).structural_hash().encode()).digest()
    return EvalResult("done", accuracies={p: digest[i] / 256 for i, p in enumerate(task.proxies)})


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=int, default=20000)
    parser.add_argument("--target", default="evonorm_b0")
    parser.add_argument("--population", type=int, default=100)
    parser.add_argument("--engine", default="paper", help="engine preset (paper, memetic)")
    parser.add_argument("--mutations", default=None, help="default: the engine's")
    parser.add_argument("--workers", type=int, default=None, help="Ray workers (default: inline)")
    parser.add_argument("--marks", default="0,5000,10000,20000",
                        help="evaluated-candidate counts where a measuring window starts")
    parser.add_argument("--fake-evaluation", action="store_true",
                        help="score each layer from its structural hash instead of the planted "
                             "fit: the controller's cost without the evaluation's")
    parser.add_argument("--db", type=Path, default=None, help="default: a new temporary file")
    parser.add_argument("--resume", action="store_true",
                        help="continue the search 'scale' in --db for --budget more candidates "
                             "and measure one window from where it stands")
    return parser.parse_args(argv)


class Meter:
    """Controller CPU per candidate in windows of WINDOW evaluated candidates."""

    def __init__(self, marks: list[int], evaluation_cpu: list[float]) -> None:
        self.starts = sorted(marks)
        self.evaluation_cpu = evaluation_cpu  # filled by the inline evaluator, else stays 0
        self.open: dict[int, tuple[int, float, float, float]] = {}
        self.results: dict[int, tuple[float, float, int]] = {}

    def __call__(self, progress: Progress) -> None:
        done = progress.submitted - progress.in_flight
        now = (time.process_time(), self.evaluation_cpu[0], time.perf_counter())
        for mark in self.starts:
            if mark not in self.open and mark not in self.results and done >= mark:
                self.open[mark] = (done, *now)
            elif mark in self.open and done >= self.open[mark][0] + WINDOW:
                first, cpu, evaluation, wall = self.open.pop(mark)
                count = done - first
                self.results[mark] = ((now[0] - cpu - (now[1] - evaluation)) / count,
                                      count / (now[2] - wall), count)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    path = args.db or Path(mkdtemp(prefix="planted-scale-")) / "scale.db"
    target = get_known(args.target)
    config = new_search_config({
        "task": "planted", "target": target.to_json(), "target_name": args.target,
        "space": target.space, "budget": args.budget, "population": args.population,
        "init": "random", "engine": args.engine,
        **({"mutations": tuple(args.mutations.split(","))} if args.mutations else {}),
    })
    evaluation_cpu = [0.0]
    if args.resume:
        from evonorm_search.config import stored_config
        from evonorm_search.search.budget import counts_toward_budget

        with SearchStore.open(path) as store:
            search = store.get_search("scale")
            done = sum(map(counts_toward_budget, store.candidates(search.id)))
            config = stored_config(search.config).with_overrides({"budget": done + args.budget})
        args.marks = str(done)

    def timed(task: EvalTask, data: object = None) -> EvalResult:
        started = time.process_time()
        try:
            return fake_evaluate(task) if args.fake_evaluation else evaluate(task)
        finally:
            evaluation_cpu[0] += time.process_time() - started

    if args.workers is None:
        evaluator = InlineEvaluator(timed)
    else:
        evaluator = make_evaluator("ray", workers=args.workers)
    meter = Meter([int(m) for m in args.marks.split(",")], evaluation_cpu)
    started = time.perf_counter()
    with SearchStore.open(path, create=True) as store:
        search = store.find_search("scale") or store.create_search("scale", config.to_dict(), 0)
        try:
            final = SearchController(store, search, config, evaluator, progress=meter).run()
        finally:
            evaluator.shutdown()
        stored = len(store.candidates(search.id))
    wall = time.perf_counter() - started
    executor = "inline" if args.workers is None else f"ray, {args.workers} workers"
    print(f"planted search, target {args.target}, engine {config.engine}, {executor}: "
          f"{final.evaluated_this_run} "
          f"evaluated in this run ({final.submitted} in all, {stored} stored, "
          f"{final.hash_skips} hash skips, {final.neutral_skips} neutral skips in all) "
          f"in {wall:.1f} s: "
          f"{final.evaluated_this_run / wall:.1f} evaluations/s")
    print(f"{'evaluated at start':>18} {'controller+store ms/candidate':>30} {'evals/s':>8}")
    for mark, (cpu, rate, count) in sorted(meter.results.items()):
        print(f"{mark:>18} {1000 * cpu:>30.2f} {rate:>8.1f}  ({count} candidates)")
    missing = [m for m in meter.starts if m not in meter.results]
    if missing:
        print(f"no complete window at {missing} (budget too small)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
