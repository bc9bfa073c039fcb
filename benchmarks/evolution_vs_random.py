"""Evolution vs random search at equal budget and seeds, on real CIFAR-10 (issue 6, item 4).

For each seed, three searches run in one database (resumable: rerun the same command to
continue after an interruption):
- `evo-s<seed>`: the evolutionary search (Pareto tournaments, aging, mutation);
- `random-s<seed>`: a random search (`strategy="random"`): the same controller, every
  child a fresh `random_graph`, with the same duplicate/NaN filters, rejection protocols
  and training;
- `memetic-s<seed>` (only with `--arms ...,memetic`): the memetic engine (`--engine
  memetic`: all moves with adaptive weights, elites, neutral drift, islands and the local
  scan where the population and budget reach them; issue 16, item 9);
- `known-s<seed>`: the known layers bn_relu, evonorm_s0, evonorm_b0 under the same
  protocol, for reference.
The searches use the same seed and `--init`, so their first `--population` members are
the same layers (a paired comparison); they differ only in how later children are made.

Prints, per arm: the best validation accuracy per proxy after 25/50/75/100% of the budget
(mean over seeds), the hypervolume of the final Pareto front (K proxies, maximized,
reference point 0), and the known layers' scores. `--json FILE` also writes every figure.

At equal CPU time (issue 11, item 5): `--cpu-seconds T` gives every search T evaluation
seconds instead of a candidate budget (a search stops at the first done candidate after
its evaluations' stage times, re-evaluations included, reach T; the seconds actually used
are printed). `--hurdle` and `--reevaluate` set the noise-aware fitness of both arms.
`--rerank-top K --rerank-seeds N` then retrains each arm's best K layers (pooled over its
search seeds, by mean validation accuracy over the proxies) and the `--baselines` with N
fresh seeds on the TEST split under the search's training protocol (no rejection
protocols), and prints per layer the mean and 95% interval per proxy and the paired
difference from the first baseline. The known-layer reference arm is skipped then.

    python benchmarks/evolution_vs_random.py --db bench_s.db --space S --init known \
        --batch-size 8 --cpu-seconds 1200 --hurdle 0.5 --reevaluate 3 --seeds 0,1,2 \
        --rerank-top 3 --rerank-seeds 5 --baselines evonorm_s0,gn_relu --json out.json

Transformer norms (space T, proxies vit and charlm with their own training defaults,
AdamW at width 64, depth 4, 600 steps; charlm on the pinned stdlib corpus or --corpus):
    python benchmarks/evolution_vs_random.py --db bench_t.db --space T --proxies vit,charlm \
        --init known --cpu-seconds 900 --reevaluate 2 --eval-batches 0 --seeds 0 \
        --rerank-top 2 --rerank-new 1 --rerank-seeds 3 --baselines layernorm,rmsnorm,dyt \
        --executor inline
(the known layers fill the front there, so `--rerank-new 1` adds each arm's best layer
that is not a known one)

Run it (tens of minutes on a 2-core machine with the defaults; measured times in docs/RESULTS.md):
    python benchmarks/evolution_vs_random.py --db bench_evo_vs_random.db
A smoke run in a few minutes:
    python benchmarks/evolution_vs_random.py --db /tmp/smoke.db --budget 3 --population 2 \\
        --seeds 0 --steps 20 --quality-steps 10 --stability-steps 2 --max-train-examples 2000
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import replace
from pathlib import Path
from typing import Any

from db.store import CandidateRecord, SearchStore
from evonorm_search.config import SearchConfig, engine_preset, stored_config
from evonorm_search.errors import EvonormError
from evonorm_search.search.controller import Progress, SearchController
from evonorm_search.hypervolume import hypervolume
from evonorm_search.known import get_known, known_name
from evonorm_search.task import TrainSettings
from primitives import SPACES
from evonorm_search.rerank import (complete_candidates, evaluate_on_test, front_candidates,
                                   rerank_seeds)
from evonorm_search.task import EvalResult, EvalTask
from evonorm_search.report.data import progress_series
from workers.datasets import load_proxy_data
from workers.executors import InlineEvaluator, make_evaluator

# The searches compared: the paper's engine ("evo", the default), random search, and the
# memetic engine (issue 16, item 9), all on the same seeds and initial layers.
ARMS = ("evo", "random", "memetic")
KNOWN = ("bn_relu", "evonorm_s0", "evonorm_b0")
KNOWN_TRANSFORMER = ("layernorm", "rmsnorm", "dyt")
# This benchmark's training defaults for the CNN proxies (the Transformer proxies use
# `TrainSettings.for_dataset(..., slot="norm")`); a flag given overrides either.
CNN_DEFAULTS = {"steps": 300, "batch_size": 64, "width": 8, "quality_steps": 100,
                "stability_steps": 20}
UNBOUNDED_BUDGET = 100_000  # with --cpu-seconds the CPU limit ends each search
# Two-sided 95% Student t quantiles by degrees of freedom (for intervals over a few seeds).
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
       9: 2.262, 10: 2.228, 14: 2.145, 19: 2.093}
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
    parser.add_argument("--space", default="B", choices=list(SPACES))
    parser.add_argument("--corpus", default=None,
                        help="charlm's text file (default: the pinned stdlib corpus)")
    parser.add_argument("--init", default="random",
                        help="both arms' first members: random (the paper's protocol) or "
                             "known (the known layers of the space, then random ones)")
    parser.add_argument("--proxies", default="resnet,mobilenetv2,efficientnet")
    parser.add_argument("--image-size", type=int, default=16, help="downsampled image side")
    parser.add_argument("--max-train-examples", type=int, default=10000)
    parser.add_argument("--steps", type=int, default=None,
                        help="training steps per proxy (default: 300; Transformers: theirs)")
    parser.add_argument("--batch-size", type=int, default=None, help="default: 64")
    parser.add_argument("--width", type=int, default=None, help="default: 8; Transformers: 64")
    parser.add_argument("--quality-steps", type=int, default=None,
                        help="default: 100; Transformers: theirs")
    parser.add_argument("--stability-steps", type=int, default=None,
                        help="default: 20; Transformers: theirs")
    parser.add_argument("--quality-threshold", type=float, default=None,
                        help="quality-check bar (default: the search default, 0.2)")
    parser.add_argument("--eval-batches", type=int, default=4, help="validation batches of 256")
    parser.add_argument("--executor", default="ray", choices=("ray", "inline"))
    parser.add_argument("--workers", type=int, default=None, help="evaluations in flight (ray)")
    parser.add_argument("--learning-rate", type=float, default=None,
                        help="SGD learning rate (default: the search default)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--arms", default="evo,random",
                        help="which searches this invocation runs, of evo (the paper's "
                             "engine), random and memetic (the memetic engine); e.g. one arm "
                             "per process, then all of them together for the report")
    parser.add_argument("--memetic-set", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting of the memetic arm over its engine preset (repeatable; "
                             "VALUE is JSON, else a string), e.g. engine=memetic-blocks, "
                             "scan_after=1, size_penalty=0")
    parser.add_argument("--cpu-seconds", type=float, default=None,
                        help="evaluation seconds per search instead of a candidate budget")
    parser.add_argument("--hurdle", type=float, default=None, help="see `evonorm search --hurdle`")
    parser.add_argument("--reevaluate", type=int, default=1, help="see `evonorm search --reevaluate`")
    parser.add_argument("--rerank-top", type=int, default=0,
                        help="retrain each arm's best K layers on the test split (0: skip)")
    parser.add_argument("--rerank-new", type=int, default=0,
                        help="with --rerank-top: also retrain each arm's best K trained layers "
                             "that are not known layers (where the known layers fill the front)")
    parser.add_argument("--rerank-seeds", type=int, default=5)
    parser.add_argument("--rerank-seed-base", type=int, default=10_000,
                        help="another base draws another set of fresh seeds (a confirmation)")
    parser.add_argument("--baselines", default="evonorm_s0,gn_relu",
                        help="known layers re-ranked with the arms' best; the first is the "
                             "reference of the paired differences")
    args = parser.parse_args(argv)
    try:
        memetic_config(SearchConfig(), args)
    except EvonormError as error:
        parser.error(str(error))
    return args


def base_config(args: argparse.Namespace, seed: int) -> SearchConfig:
    slot = SPACES[args.space].slot
    defaults = {} if slot == "norm" else CNN_DEFAULTS
    given = {key: value for key in CNN_DEFAULTS
             if (value := getattr(args, key, None) if getattr(args, key, None) is not None
                 else defaults.get(key)) is not None}
    base = SearchConfig(train=TrainSettings.for_dataset("cifar10", slot=slot),
                        proxies=tuple(p.strip() for p in args.proxies.split(",") if p.strip()),
                        space=args.space)
    return base.with_overrides({
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
        "dataset.corpus": args.corpus,
        **{f"train.{key}": value for key, value in given.items()},
        "train.eval_batches": args.eval_batches or None,  # 0: the whole validation split
        "train.threads": 1,  # one thread per evaluation: the workers share the cores
        "hurdle": args.hurdle,
        "reevaluate": args.reevaluate,
        **({} if args.cpu_seconds is None else {"budget": UNBOUNDED_BUDGET}),
        **({} if args.learning_rate is None else {"train.learning_rate": args.learning_rate}),
        **({} if args.quality_threshold is None
           else {"train.quality_threshold": args.quality_threshold}),
    })


def arm_names(args: argparse.Namespace) -> tuple[str, ...]:
    """The arms `--arms` names, in ARMS order."""
    given = {arm.strip() for arm in args.arms.split(",") if arm.strip()}
    return tuple(arm for arm in ARMS if arm in given)


def arm_configs(args: argparse.Namespace, seed: int) -> dict[str, SearchConfig]:
    base = base_config(args, seed)
    arms = {f"evo-s{seed}": base, f"random-s{seed}": base.with_overrides({"strategy": "random"}),
            f"memetic-s{seed}": memetic_config(base, args)}
    arms = {name: config for name, config in arms.items()
            if name.split("-")[0] in arm_names(args)}
    if args.rerank_top:  # the re-ranking measures the known layers, on fresh seeds
        return arms
    return {
        **arms,
        f"known-s{seed}": base.with_overrides({
            "space": "B" if SPACES[args.space].slot == "norm_act" else args.space,
            "init": ",".join(known_layers(args.space)), "budget": len(known_layers(args.space)),
            "strategy": "random",
        }),
    }


def memetic_settings(pairs: list[str]) -> dict[str, Any]:
    """`--memetic-set` KEY=VALUE pairs as settings (VALUE parsed as JSON, else a string)."""
    settings: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise EvonormError(f"--memetic-set {pair!r}: give KEY=VALUE, e.g. scan_after=1")
        try:
            settings[key.strip()] = json.loads(text)
        except json.JSONDecodeError:
            settings[key.strip()] = text
    return settings


def memetic_config(base: SearchConfig, args: argparse.Namespace) -> SearchConfig:
    """The memetic arm: the `engine` preset it names (default `memetic`) over `base`, then
    the other `--memetic-set` settings."""
    settings = memetic_settings(args.memetic_set)
    preset = engine_preset({"engine": settings.get("engine", "memetic"),
                            "population": args.population})
    return base.with_overrides({**preset, **settings})


class MeteredEvaluator:
    """An evaluator that adds up what its evaluations cost, kept in `ledger` (a JSON file)
    so that a resumed search continues the count: the process CPU seconds of an inline
    evaluation (exact, whatever else loads the machine), else the result's stage seconds."""

    def __init__(self, inner: Any, ledger: Path, fallback: float) -> None:
        self.inner = inner
        self.ledger = ledger
        self.spent = json.loads(ledger.read_text())["cpu_seconds"] if ledger.exists() else fallback
        self.capacity = inner.capacity
        self.retries_lost_work = inner.retries_lost_work

    def _count(self, future: Future[EvalResult]) -> None:
        if future.exception() is None:
            self.spent += math.fsum(future.result().seconds.values())
        self._save()

    def _save(self) -> None:
        self.ledger.write_text(json.dumps({"cpu_seconds": self.spent}))

    def submit(self, task: EvalTask) -> Future[EvalResult]:
        before = time.process_time()
        future = self.inner.submit(task)
        if isinstance(self.inner, InlineEvaluator):  # evaluated inside submit, in this process
            self.spent += time.process_time() - before
            self._save()
        else:
            future.add_done_callback(self._count)
        return future

    def shutdown(self) -> None:
        """The inner evaluator is shut down by its owner."""


def search_seconds(store: SearchStore, search_id: int) -> float:
    """Evaluation seconds a search has spent: the stage times of all its trials."""
    return math.fsum(sum(trial.seconds.values()) for candidate in store.candidates(search_id)
                     for trial in store.trials(candidate.id))


def ledger_path(store: SearchStore, name: str) -> Path:
    return Path(f"{store.path}.{name}.cpu.json")


def run_search(store: SearchStore, name: str, config: SearchConfig, evaluator: Any,
               cpu_seconds: float | None = None) -> None:
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

    if cpu_seconds is None:
        SearchController(store, record, config, evaluator, progress=progress).run()
        return
    metered = MeteredEvaluator(evaluator, ledger_path(store, name),
                               search_seconds(store, record.id))
    if metered.spent >= cpu_seconds:
        return
    SearchController(store, record, config, metered, progress=progress,
                     stop_when=lambda _done: metered.spent >= cpu_seconds).run()


NEW_KEPT = 10  # best non-known layers kept per search for `--rerank-new`


def member_summary(candidate: CandidateRecord) -> dict[str, Any]:
    return {"id": candidate.id, "accuracies": candidate.accuracies,
            "standard_errors": candidate.standard_errors, "seeds": candidate.seed_count,
            "graph_json": candidate.graph_json, "hash": candidate.structural_hash}


def summarize(candidates: list[CandidateRecord], config: SearchConfig) -> dict[str, Any]:
    proxies = config.proxies
    series = progress_series(candidates, proxies, config.population)
    evaluated = len(series.evaluated)
    at = {}
    for fraction in CHECKPOINTS:
        index = min(evaluated, max(1, round(fraction * min(config.budget, evaluated)))) - 1
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
        "front": [member_summary(c) for c in front],
        # The best trained layers that are not known ones: where the known layers fill the
        # front (space T), these are what the search itself found (`--rerank-new`).
        "best_new": [member_summary(c) for c in sorted(
            (c for c in done if known_name(c.structural_hash) is None),
            key=lambda c: -statistics.fmean(c.accuracies[p] for p in proxies))[:NEW_KEPT]],
        "stopped": sum(c.status == "stopped" for c in candidates),
        "rejected": sum(c.status == "rejected" for c in candidates),
    }


def known_layers(space: str) -> tuple[str, ...]:
    """The reference arm's known layers: the paper's for B/S, LN/RMSNorm/DyT for T/TB."""
    return KNOWN_TRANSFORMER if SPACES[space].slot == "norm" else KNOWN


def known_scores(candidates: list[CandidateRecord], proxies: tuple[str, ...]) -> dict[str, Any]:
    scores: dict[str, Any] = {}
    for candidate in candidates:
        name = known_name(candidate.structural_hash)
        if name is not None:
            scores[name] = (
                {p: candidate.accuracies.get(p) for p in proxies}
                if candidate.status == "done" else f"{candidate.status} ({candidate.stage})"
            )
    return scores


def _mean(values: list[float]) -> float:
    finite = [v for v in values if v == v]
    return statistics.fmean(finite) if finite else float("nan")


def print_tables(results: dict[str, dict[str, Any]], seeds: list[int], proxies: tuple[str, ...],
                 arms: tuple[str, ...]) -> None:
    print(f"\nbest validation accuracy per proxy vs budget used (mean over seeds {seeds}):")
    header = ["arm", "budget"] + list(proxies)
    print("  ".join(f"{h:>12}" for h in header))
    for arm in arms:
        for fraction in CHECKPOINTS:
            cells = [
                _mean([results[f"{arm}-s{s}"]["best_at"][str(fraction)][p] for s in seeds]) for p in proxies
            ]
            print("  ".join([f"{arm:>12}", f"{fraction:>12.0%}"] + [f"{c:>12.4f}" for c in cells]))
    print("\nfinal Pareto front (reference point 0):")
    print(f"{'arm':>8} {'seed':>5} {'evaluated':>9} {'done':>5} {'front':>6} {'hypervolume':>12} "
          f"{'best mean':>10} {'1st child':>9}")
    for arm in arms:
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


def interval(values: list[float]) -> tuple[float, float]:
    """Mean and half-width of the 95% t interval (NaN half-width below two values)."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.nan
    t = T95.get(len(values) - 1, 1.96)
    return mean, t * statistics.stdev(values) / math.sqrt(len(values))


def best_layers(results: dict[str, dict[str, Any]], arm: str, seeds: list[int], top: int,
                proxies: tuple[str, ...], pool: str = "front") -> list[dict[str, Any]]:
    """The arm's best `top` distinct layers over its searches' fronts (`pool` "front") or
    over their best layers that are not known ones ("best_new"), by mean validation
    accuracy over the proxies (each a mean over its seeds)."""
    pooled = [dict(member, search=f"{arm}-s{s}") for s in seeds
              for member in results[f"{arm}-s{s}"][pool]]
    pooled.sort(key=lambda m: -statistics.fmean(m["accuracies"][p] for p in proxies))
    chosen: list[dict[str, Any]] = []
    for member in pooled:
        if all(member["hash"] != c["hash"] for c in chosen):
            chosen.append(member)
        if len(chosen) == top:
            break
    return chosen


def rerank_arms(args: argparse.Namespace, results: dict[str, dict[str, Any]], seeds: list[int],
                config: SearchConfig, data: Any) -> dict[str, Any]:
    """Retrain the arms' best layers and the baselines with fresh seeds on the test split;
    results are cached in `<db>.rerank.json` so that an interrupted run resumes."""
    proxies = config.proxies
    entries: dict[str, dict[str, Any]] = {}
    for name in [b.strip() for b in args.baselines.split(",") if b.strip()]:
        graph = get_known(name)
        entries[graph.structural_hash()] = {"label": name, "arm": "known",
                                            "graph_json": graph.to_json(), "validation": None}
    for arm in arm_names(args):
        chosen = best_layers(results, arm, seeds, args.rerank_top, proxies)
        if args.rerank_new:
            chosen += best_layers(results, arm, seeds, args.rerank_new, proxies, "best_new")
        for member in chosen:
            entry = entries.setdefault(member["hash"], {
                "label": f"{member['search']} #{member['id']}", "arm": arm,
                "graph_json": member["graph_json"], "validation": member["accuracies"]})
            if entry["arm"] not in (arm, "known"):
                entry["arm"] = "both"
    cache_path = Path(str(args.db) + ".rerank.json")
    cache: dict[str, Any] = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    # Fresh seeds: the search used seeds derived from the search seeds, never these.
    test_seeds = rerank_seeds(args.rerank_seed_base + seeds[0], args.rerank_seeds)
    train = replace(config.train, stability_steps=0, quality_steps=0, eval_batches=None)
    todo = [(h, s) for h in entries for s in test_seeds if f"{h}:{s}" not in cache]
    print(f"re-ranking {len(entries)} layers x {len(test_seeds)} seeds on the test split "
          f"({len(todo)} evaluations to run)", file=sys.stderr, flush=True)
    evaluator = make_evaluator(args.executor, evaluate_fn=evaluate_on_test, data=data,
                               workers=args.workers)
    in_flight: dict[Future[EvalResult], tuple[str, int]] = {}
    try:
        while todo or in_flight:
            while todo and len(in_flight) < max(1, evaluator.capacity):
                structural_hash, seed = todo.pop(0)
                task = EvalTask(entries[structural_hash]["graph_json"], proxies, config.dataset,
                                train, seed)
                in_flight[evaluator.submit(task)] = (structural_hash, seed)
            finished, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
            for future in finished:
                structural_hash, seed = in_flight.pop(future)
                result = future.result()
                cache[f"{structural_hash}:{seed}"] = result.to_dict()
                cache_path.write_text(json.dumps(cache))
                print(f"  {entries[structural_hash]['label']} seed {seed}: {result.status} "
                      + " ".join(f"{p}={a:.3f}" for p, a in result.accuracies.items()),
                      file=sys.stderr, flush=True)
    finally:
        evaluator.shutdown()
    for structural_hash, entry in entries.items():
        entry["test"] = [cache[f"{structural_hash}:{s}"] for s in test_seeds]
        entry["known"] = known_name(structural_hash)
    return {"seeds": test_seeds, "entries": entries, "train": train.to_dict()}


def print_rerank(reranked: dict[str, Any], proxies: tuple[str, ...], reference: str) -> None:
    """Per layer and proxy: test mean +- 95% interval, and the paired difference from the
    reference baseline (same seeds) with its 95% interval."""
    entries = reranked["entries"]
    base = next(e for e in entries.values() if e["label"] == reference)

    def accuracies(entry: dict[str, Any], proxy: str) -> list[float]:
        # A run that did not finish counts as 0 (the layer failed on that seed).
        return [r["accuracies"].get(proxy, 0.0) if r["status"] == "done" else 0.0
                for r in entry["test"]]

    n = len(reranked["seeds"])
    print(f"\nre-ranking on the TEST split, {n} fresh seeds, the search's training protocol; "
          f"mean and 95% t interval; difference from {reference} paired by seed:")
    print("| layer | arm | " + " | ".join(proxies) + " | " +
          " | ".join(f"diff {p}" for p in proxies) + " | beats " + reference +
          " on every proxy | formula |")
    print("|---|---|" + "---:|" * (2 * len(proxies)) + "---|---|")
    rows = []
    for entry in entries.values():
        cells, diffs, beats = [], [], True
        for proxy in proxies:
            mean, half = interval(accuracies(entry, proxy))
            cells.append(f"{mean:.4f} ± {half:.4f}")
            diff = [a - b for a, b in zip(accuracies(entry, proxy), accuracies(base, proxy),
                                          strict=True)]
            dmean, dhalf = interval(diff)
            diffs.append(f"{dmean:+.4f} ± {dhalf:.4f}")
            beats = beats and dmean - dhalf > 0
        overall = statistics.fmean(statistics.fmean(accuracies(entry, p)) for p in proxies)
        from evonorm_search.graph import LayerGraph

        formula = LayerGraph.from_json(entry["graph_json"]).formula()
        label = entry["label"] + (f" ({entry['known']})" if entry["known"] and
                                  entry["known"] != entry["label"] else "")
        rows.append((overall, f"| {label} | {entry['arm']} | " + " | ".join(cells) + " | "
                     + " | ".join(diffs) + f" | {'yes' if beats and entry is not base else 'no'}"
                     f" | `{formula}` |"))
    for _, row in sorted(rows, key=lambda r: -r[0]):
        print(row)


def print_equal_cost(results: dict[str, dict[str, Any]], seeds: list[int],
                     arms: tuple[str, ...]) -> None:
    """Seconds used, candidates, and hypervolume per search; each pair of arms' difference
    in hypervolume, paired by seed (the first arm of the pair minus the second)."""
    print("\nat equal evaluation seconds per search:")
    print("| seed | arm | seconds | evaluated | stopped at hurdle | re-evaluations | front | "
          "hypervolume |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for s in seeds:
        for arm in arms:
            r = results[f"{arm}-s{s}"]
            print(f"| {s} | {arm} | {r['seconds']:.0f} | {r['evaluated']} | {r['stopped']} | "
                  f"{r['reevaluations']} | {r['front_size']} | {r['hypervolume']:.5f} |")
    # memetic against evo (the engine against the current default), either against random.
    pairs = [(a, b) for a, b in (("memetic", "evo"), ("evo", "random"), ("memetic", "random"))
             if a in arms and b in arms]
    for first, second in pairs:
        diffs = [results[f"{first}-s{s}"]["hypervolume"] - results[f"{second}-s{s}"]["hypervolume"]
                 for s in seeds]
        mean, half = interval(diffs)
        wins = sum(d > 0 for d in diffs)
        print(f"hypervolume {first} - {second} per seed: {', '.join(f'{d:+.5f}' for d in diffs)}; "
              f"mean {mean:+.5f} ± {half:.5f} (95% t, {len(seeds)} seeds); {first} ahead in "
              f"{wins} of {len(seeds)}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    configs = {name: config for seed in seeds for name, config in arm_configs(args, seed).items()}
    first = next(iter(configs.values()))
    started = time.monotonic()
    print(f"loading CIFAR-10 ({args.image_size}x{args.image_size}, "
          f"{args.max_train_examples} training images)...", file=sys.stderr)
    data = load_proxy_data(first.dataset, first.proxies)
    evaluator = make_evaluator(args.executor, data=data, workers=args.workers)
    results: dict[str, dict[str, Any]] = {}
    try:
        with SearchStore.open(Path(args.db), create=True) as store:
            for name, config in configs.items():
                print(f"--- {name}", file=sys.stderr, flush=True)
                run_search(store, name, config, evaluator, args.cpu_seconds)
                search_id = store.get_search(name).id
                candidates = store.candidates(search_id)
                results[name] = summarize(candidates, config)
                ledger = ledger_path(store, name)
                results[name]["seconds"] = (json.loads(ledger.read_text())["cpu_seconds"]
                                            if ledger.exists() else search_seconds(store, search_id))
                results[name]["reevaluations"] = sum(
                    n for status, n in store.trial_outcomes(search_id).items()
                    if status not in ("pending", "running"))
                if name.startswith("known-"):
                    results[name]["known"] = known_scores(candidates, config.proxies)
    finally:
        evaluator.shutdown()
    arms = arm_names(args)
    if len(arms) < 2:
        print(f"searches of arm(s) {args.arms} done in {(time.monotonic() - started) / 60:.1f} "
              "min; rerun with two or more arms for the comparison", file=sys.stderr)
        return
    reranked = None
    if args.rerank_top:
        reranked = rerank_arms(args, results, seeds, first, data)
    elapsed = time.monotonic() - started
    if args.cpu_seconds is not None:
        print_equal_cost(results, seeds, arms)
    if reranked is not None:
        print_rerank(reranked, first.proxies, args.baselines.split(",")[0].strip())
    else:
        print_tables(results, seeds, first.proxies, arms)
    command = "python benchmarks/evolution_vs_random.py " + " ".join(sys.argv[1:] if argv is None else argv)
    print(f"\nwall time this invocation: {elapsed / 60:.1f} min; command: {command}")
    if args.json is not None:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)},
                                         "results": results, "rerank": reranked,
                                         "minutes": elapsed / 60}, indent=1))


if __name__ == "__main__":
    main()
