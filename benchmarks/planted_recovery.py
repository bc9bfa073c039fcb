"""Planted-layer recovery: does the search find a layer whose answer is known? (issues 10, 16)

For every target, engine arm and seed, one real search runs through the controller and a
SQLite store (one database per run, in --db-dir) on the planted task: candidates are
scored by R^2 against the planted target on the K scored regimes (evonorm_search.planted),
and the search stops at its first recovery by the strict criterion (R^2 >= 0.999 on every
scored regime and >= 0.99999 on the regime no search scores, or the target's own
formula) or at --budget evaluated candidates. Arms with the same seed start from the same
initial members (a paired comparison).

The "planted-12" protocol (`--protocol planted-12`, issue 16): the 9 known layers and
the 3 layers of benchmarks/planted_targets/ (shapes none of the known ones has),
reporting seeds from 100, 10 per arm (20 on EvoNorm-S0 and -B0), random start,
population 100, 10,000 evaluated candidates. Seeds 0-99 are for tuning and kept apart.

Arms (--arms) are named engine settings: `paper` (the paper's mutation and random
layers), `tuned` (the planted settings recommended in docs/method.md before the
memetic engines), `memetic-log`, `memetic-norm` and `memetic-blocks` (the presets) and `random`
(random search over distinct layers: the controller evaluates no structural-hash or
fingerprint duplicate, so every evaluation is a new function; the table checks this).
`NAME:KEY=VALUE;KEY=VALUE` defines an arm from SearchConfig settings (JSON values), e.g.
`wide:num_nodes=6;tournament_fraction=0.3`; a settings key such as an engine preset
works the same way. Results are appended to --results (JSON lines, one per finished
run); a run already there with the same settings and evaluation is skipped, so an
interrupted protocol resumes with the same command, and --jobs runs searches in
parallel processes.

Per target and arm it prints: strict recovery rate with its 95% Wilson interval, how many
recoveries were the target's formula (identical), another formula (equivalent), and
the target's formula once simplified (evonorm_search.simplify); median evaluations to
recovery (an unrecovered run counting as more than the budget); the recovery rate by
the search's own criterion alone (R^2 >= 0.999 on the scored regimes: the issue-10
criterion); the median best min-over-regimes R^2; evaluations per CPU second; the mean
proposals per search that cost no evaluation (fingerprint cache hits / structural-hash
skips / neutral skips). --ecdf
writes the ECDF of evaluations to recovery per arm (a PNG).

    python benchmarks/planted_recovery.py --protocol planted-12 --arms memetic-blocks,memetic-norm,random \\
        --jobs 2 --results planted12.jsonl --db-dir planted12-dbs --ecdf planted12.png
A smoke run in under a minute:
    python benchmarks/planted_recovery.py --targets evonorm_s1 --seeds 1 --budget 30 \\
        --population 4 --seed-set tuning --results /tmp/smoke.jsonl
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import statistics
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from tempfile import mkdtemp
from typing import Any

from db.store import SearchStore
from evonorm_search.config import ConfigError, SearchConfig, new_search_config
from evonorm_search.search.budget import counts_toward_budget
from evonorm_search.search.controller import SearchController
from evonorm_search.errors import EvonormError
from evonorm_search.graph import LayerGraph
from evonorm_search.known import KNOWN_HOMES, KNOWN_LAYERS
from evonorm_search.layer_spec import load_graph_spec
from evonorm_search.planted import (
    CHECK_R2, RECOVERY_R2, Recovery, first_recovery, recovered, strictly_recovered,
)
from primitives import SPACES
from workers import planted as planted_evaluation
from workers.executors import make_evaluator

TARGETS_DIR = Path(__file__).resolve().parent / "planted_targets"
# The three targets designed for planted-12 (benchmarks/planted_targets/*.json), with
# what sets them apart from the known layers.
DESIGNED_TARGETS: dict[str, str] = {
    "tanh_skip": "tanh(z) + v0 * z, z = x / std_group(x): a saturating activation with a "
                 "learned linear skip (a diamond: z feeds two branches)",
    "layer_leaky": "max(z, v0 * z), z = (x - mean_layer(x)) / std_layer(x): layer "
                   "statistics, then a leaky ReLU whose slope is learned",
    "nested_max": "max(max(x, v1 * x), v0) / rms_group(x): a nested max with a learned "
                  "slope and a learned floor",
}
# The 9 known layers made for (N, C, H, W) maps (the paper's; not the Transformer norms,
# which have their own planted regimes) and the 3 designed ones.
MAP_LAYERS: tuple[str, ...] = tuple(name for name in KNOWN_LAYERS if KNOWN_HOMES[name] == "norm_act")
PLANTED_12: tuple[str, ...] = (*MAP_LAYERS, *DESIGNED_TARGETS)
DOUBLE_SEEDS = ("evonorm_s0", "evonorm_b0")  # 20 seeds each in the protocol
# Tuning seeds are 0..REPORTING_SEEDS-1; figures are reported on seeds from REPORTING_SEEDS.
REPORTING_SEEDS = 100
# Built-in arms (engine settings over the preset named; an arm defined on the command line
# without `engine` starts from the planted task's default engine, memetic-blocks).
ARMS: dict[str, dict[str, Any]] = {
    "paper": {"engine": "paper", "mutations": ["node"], "num_nodes": 10,
              "tournament_fraction": 0.05},
    "tuned": {"engine": "paper", "mutations": ["node", "op", "input", "insert", "delete"],
              "num_nodes": 4, "tournament_fraction": 0.25},
    "memetic-log": {"engine": "memetic-log"},
    "memetic-norm": {"engine": "memetic-norm"},
    "memetic-blocks": {"engine": "memetic-blocks"},
    "random": {"engine": "paper", "strategy": "random", "num_nodes": 4},
}
PROTOCOLS: dict[str, dict[str, Any]] = {
    "planted-12": {"targets": ",".join(PLANTED_12), "seeds": 10,
                   "seeds_per_target": ",".join(f"{t}=20" for t in DOUBLE_SEEDS),
                   "budget": 10000, "population": 100, "init": "random",
                   "seed_set": "reporting"},
}


@dataclass(frozen=True)
class Arm:
    name: str
    settings: dict[str, Any]


@dataclass(frozen=True)
class Job:
    target: str  # a name of PLANTED_12 / KNOWN_LAYERS, or a layer graph JSON file
    arm: Arm
    seed: int
    budget: int
    population: int
    init: str
    space: str | None
    db_dir: str
    key: str


@dataclass(frozen=True)
class Run:
    """One finished search: its strict recovery and, for comparison, the first candidate
    the search's own scores alone (R^2 >= 0.999 on the scored regimes) count as one."""

    key: str
    target: str
    arm: str
    seed: int
    budget: int
    population: int
    settings: dict[str, Any]
    recovered: bool
    evaluations: int  # to the strict recovery, else all evaluated
    kind: str | None  # identical / equivalent (strict recovery)
    formula: str | None
    simplified: str | None
    simplified_identical: bool | None
    loose_recovered: bool
    loose_evaluations: int | None
    loose_kind: str | None
    best_min_r2: float
    evaluated: int
    duplicates_evaluated: int  # evaluated candidates whose fingerprint an earlier one had
    seconds: float
    cpu_seconds: float
    # Proposals that cost no evaluation, up to the recovery or the budget.
    cache_hits: int = 0  # fingerprint duplicates
    hash_skips: int = 0  # structural duplicates
    neutral_skips: int = 0  # children changed only in nodes the output does not use


def target_spec(name: str) -> str:
    """What `load_graph_spec` reads for a target: a known name, a designed target's JSON
    file, or the path given."""
    return str(TARGETS_DIR / f"{name}.json") if name in DESIGNED_TARGETS else name


def target_label(name: str) -> str:
    return Path(name).stem if name.endswith(".json") else name


def planted12_targets() -> dict[str, LayerGraph]:
    """The 12 targets of the protocol by name."""
    return {name: load_graph_spec(target_spec(name)) for name in PLANTED_12}


def split_arms(text: str) -> list[str]:
    """--arms split at its commas, except those inside a JSON list or string (a list
    setting: `nohoist:scan_macros=["guard","gate"]`)."""
    parts, current, depth, quoted = [], [], 0, False
    for char in text:
        if char == '"':
            quoted = not quoted
        elif not quoted and char in "[{":
            depth += 1
        elif not quoted and char in "]}":
            depth -= 1
        if char == "," and not depth and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def parse_arm(text: str) -> Arm:
    """`NAME` (a built-in arm) or `NAME:KEY=VALUE;KEY=VALUE` (SearchConfig settings, JSON
    values; a bare word is a string)."""
    name, _, definition = text.partition(":")
    name = name.strip()
    if not definition:
        if name not in ARMS:
            raise EvonormError(f"unknown arm {name!r}: use one of {', '.join(ARMS)}, or define "
                               f"one as NAME:KEY=VALUE;KEY=VALUE (SearchConfig settings)")
        return Arm(name, dict(ARMS[name]))
    settings: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in definition.split(";"))):
        key, equals, value = item.partition("=")
        if not equals:
            raise EvonormError(f"arm {name!r}: {item!r} is not KEY=VALUE")
        try:
            settings[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            settings[key.strip()] = value.strip()
    return Arm(name, settings)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS), default=None,
                        help="preset targets, seeds, budget, population and start; options "
                             "given explicitly override it")
    parser.add_argument("--targets", default=None,
                        help="comma-separated: known layer names, designed targets "
                             f"({', '.join(DESIGNED_TARGETS)}) or layer graph JSON files "
                             "(default: evonorm_s0,gn_relu)")
    parser.add_argument("--arms", default="memetic-blocks,random",
                        help=f"comma-separated arms: {', '.join(ARMS)} or NAME:KEY=VALUE;...")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per target and arm (10)")
    parser.add_argument("--seeds-per-target", default=None, metavar="TARGET=N,...",
                        help="other seed counts for some targets")
    parser.add_argument("--seed-set", choices=("reporting", "tuning"), default=None,
                        help=f"reporting: seeds from {REPORTING_SEEDS} (default); tuning: "
                             f"seeds 0-{REPORTING_SEEDS - 1}")
    parser.add_argument("--first-seed", type=int, default=0,
                        help="offset within the seed set (fresh seeds for a confirmation)")
    parser.add_argument("--budget", type=int, default=None, help="evaluations per search (10000)")
    parser.add_argument("--population", type=int, default=None, help="(100)")
    parser.add_argument("--init", default=None, help="random (default) | known | layer names")
    parser.add_argument("--space", choices=tuple(SPACES), default=None,
                        help="default: the most specific space holding the target")
    parser.add_argument("--jobs", type=int, default=1,
                        help="searches run at once in separate processes (inline executor)")
    parser.add_argument("--results", type=Path, default=None,
                        help="JSON lines file the runs are appended to; runs found there are "
                             "not run again (default: a file in --db-dir)")
    parser.add_argument("--db-dir", type=Path, default=None,
                        help="where the run databases go (default: a new temporary folder); "
                             "an interrupted run there resumes")
    parser.add_argument("--ecdf", type=Path, default=None,
                        help="write the ECDF of evaluations to recovery per arm to this PNG")
    args = parser.parse_args(argv)
    preset = PROTOCOLS.get(args.protocol or "", {})
    defaults = {"targets": "evonorm_s0,gn_relu", "seeds": 10, "seeds_per_target": "",
                "budget": 10000, "population": 100, "init": "random", "seed_set": "reporting"}
    for key, value in {**defaults, **preset}.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def seeds_of(args: argparse.Namespace, target: str) -> range:
    counts = dict(item.split("=") for item in args.seeds_per_target.split(",") if item)
    count = int(counts.get(target_label(target), args.seeds))
    start = (REPORTING_SEEDS if args.seed_set == "reporting" else 0) + args.first_seed
    seeds = range(start, start + count)
    if args.seed_set == "tuning" and seeds.stop > REPORTING_SEEDS:
        raise EvonormError(f"tuning seeds are 0-{REPORTING_SEEDS - 1}; --first-seed "
                           f"{args.first_seed} with {count} seeds runs past them")
    return seeds


def run_config(job: Job) -> SearchConfig:
    graph = load_graph_spec(target_spec(job.target))
    return new_search_config({
        "task": "planted", "target": graph.to_json(), "target_name": target_label(job.target),
        "space": job.space or graph.space, "seed": job.seed, "budget": job.budget,
        "population": job.population, "init": job.init,
        # The planted task is deterministic: a second evaluation could only repeat the first.
        "reevaluate": 1, **job.arm.settings,
    })


def evaluation_version() -> str:
    """What a result depends on besides the search settings: the planted fit and the
    recovery thresholds (a change makes earlier results stale)."""
    return repr((planted_evaluation.DEFAULT_FIT, planted_evaluation.CHECK_FIT, RECOVERY_R2,
                 CHECK_R2))


def make_jobs(args: argparse.Namespace) -> list[Job]:
    arms = [parse_arm(text) for text in split_arms(args.arms) if text.strip()]
    if not arms:
        raise EvonormError("--arms is empty: name at least one arm")
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    jobs = []
    for target in targets:
        for seed in seeds_of(args, target):
            for arm in arms:
                job = Job(target, arm, seed, args.budget, args.population, args.init, args.space,
                          str(args.db_dir), "")
                settings = json.dumps([run_config(job).to_dict(), evaluation_version()],
                                      sort_keys=True)
                key = hashlib.sha256(settings.encode()).hexdigest()[:20]
                jobs.append(Job(**{**asdict(job), "arm": arm, "key": key}))
    # Seed by seed, so an interrupted protocol has every target and arm partly done.
    order = {seed: k for k, seed in enumerate(sorted({j.seed for j in jobs}))}
    return sorted(jobs, key=lambda j: (order[j.seed], targets.index(j.target)))


def _describe(found: Recovery | None) -> dict[str, Any]:
    if found is None:
        return {"kind": None, "formula": None, "simplified": None, "simplified_identical": None}
    return {"kind": found.kind, "formula": found.formula, "simplified": found.simplified,
            "simplified_identical": found.simplified_identical}


def run_one(job: Job) -> Run:
    """One search (resumed when its database exists), stopped at the first strict recovery."""
    config = run_config(job)
    target = LayerGraph.from_json(config.target or "")
    target_hash = target.structural_hash()
    checked: dict[str, dict[str, float]] = {}

    def check(graph: LayerGraph) -> dict[str, float]:
        text = graph.to_json()
        if text not in checked:
            checked[text] = planted_evaluation.check_scores(graph, config.target or "")
        return checked[text]

    def strict(record: Any) -> bool:
        if record.status != "done":
            return False
        if record.structural_hash == target_hash:
            return True
        return recovered(record.accuracies, config.proxies) and strictly_recovered(
            record.accuracies, config.proxies, check(LayerGraph.from_json(record.graph_json)))

    name = f"{target_label(job.target)}-{job.arm.name}-s{job.seed}-{job.key}"
    started, cpu_started = time.perf_counter(), time.process_time()
    with SearchStore.open(Path(job.db_dir) / f"{name}.db", create=True) as store:
        search = store.find_search(name) or store.create_search(name, config.to_dict(), job.seed)
        if first_recovery(store.candidates(search.id), config.proxies, target,
                          counts_toward_budget, check) is None:
            evaluator = make_evaluator("inline")
            try:
                SearchController(store, search, config, evaluator, stop_when=strict).run()
            finally:
                evaluator.shutdown()
        candidates = store.candidates(search.id)
    found = first_recovery(candidates, config.proxies, target, counts_toward_budget, check)
    loose = first_recovery(candidates, config.proxies, target, counts_toward_budget)
    evaluated = [c for c in candidates if counts_toward_budget(c)]
    prints = [c.fingerprint for c in evaluated if c.fingerprint is not None]
    scores = [min(c.accuracies.get(p, 0.0) for p in config.proxies)
              for c in candidates if c.status == "done"]
    return Run(
        key=job.key, target=target_label(job.target), arm=job.arm.name, seed=job.seed,
        budget=job.budget, population=job.population, settings=job.arm.settings,
        recovered=found is not None,
        evaluations=found.evaluations if found else len(evaluated), **_describe(found),
        loose_recovered=loose is not None,
        loose_evaluations=loose.evaluations if loose else None,
        loose_kind=loose.kind if loose else None,
        best_min_r2=max(scores, default=0.0), evaluated=len(evaluated),
        duplicates_evaluated=len(prints) - len(set(prints)),
        seconds=time.perf_counter() - started, cpu_seconds=time.process_time() - cpu_started,
        cache_hits=sum(c.status == "duplicate" for c in candidates),
        hash_skips=sum(c.hash_skips for c in candidates),
        neutral_skips=sum(c.neutral_skips for c in candidates),
    )


def load_results(path: Path) -> dict[str, dict[str, Any]]:
    """Finished runs in a JSON lines file, by key (a damaged last line is ignored)."""
    if not path.exists():
        return {}
    runs = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and "key" in record:
            runs[record["key"]] = record
    return runs


def execute(jobs: list[Job], workers: int) -> Iterator[Run]:
    """Run the jobs, yielding each run as it finishes (inline with one worker)."""
    if workers <= 1:
        for job in jobs:
            yield run_one(job)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(run_one, job) for job in jobs]
        for future in as_completed(futures):
            yield future.result()


def wilson(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion."""
    if trials == 0:
        return (0.0, 1.0)
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return (max(0.0, centre - half), min(1.0, centre + half))


def median_evaluations(runs: list[dict[str, Any]], budget: int) -> str:
    """Median over all runs, an unrecovered run counting as more than the budget."""
    values = sorted(r["evaluations"] if r["recovered"] else math.inf for r in runs)
    middle = statistics.median_low(values) if values else math.inf
    return f">{budget}" if math.isinf(middle) else str(int(middle))


def table(runs: list[dict[str, Any]]) -> list[str]:
    header = (f"{'target':<12} {'arm':<8} {'recovered':>9} {'95% CI':>13} {'ident/equiv':>11} "
              f"{'simpl=target':>12} {'median evals':>12} {'own scores':>10} "
              f"{'best min R2':>11} {'evals/CPU s':>11} {'free dup/hash/neutral':>21}")
    lines = [header]
    targets = list(dict.fromkeys(r["target"] for r in runs))
    arms = list(dict.fromkeys(r["arm"] for r in runs))
    for target in targets:
        for arm in arms:
            group = [r for r in runs if (r["target"], r["arm"]) == (target, arm)]
            if group:
                lines.append(_row(target, arm, group))
    for arm in arms:
        group = [r for r in runs if r["arm"] == arm]
        lines.append(_row("all", arm, group))
    return lines


def _row(target: str, arm: str, group: list[dict[str, Any]]) -> str:
    hits = sum(r["recovered"] for r in group)
    low, high = wilson(hits, len(group))
    identical = sum(r["kind"] == "identical" for r in group)
    simplified = sum(bool(r["simplified_identical"]) for r in group if r["recovered"])
    cpu = sum(r["cpu_seconds"] for r in group)
    budgets = {r["budget"] for r in group}
    loose = sum(r["loose_recovered"] for r in group)
    return (f"{target:<12} {arm:<8} {f'{hits}/{len(group)}':>9} "
            f"{f'[{low:.2f}, {high:.2f}]':>13} {f'{identical}/{hits - identical}':>11} "
            f"{f'{simplified}/{hits}':>12} {median_evaluations(group, max(budgets)):>12} "
            f"{f'{loose}/{len(group)}':>10} "
            f"{statistics.median(r['best_min_r2'] for r in group):>11.4f} "
            f"{sum(r['evaluated'] for r in group) / cpu if cpu else 0.0:>11.1f} "
            f"{_free(group):>21}")


def _free(group: list[dict[str, Any]]) -> str:
    """Mean proposals per search that cost no evaluation: fingerprint cache hits,
    structural-hash skips, neutral skips (0 in results written before they were counted)."""
    means = [statistics.mean(r.get(key, 0) for r in group)
             for key in ("cache_hits", "hash_skips", "neutral_skips")]
    return "/".join(f"{value:.0f}" for value in means)


def write_ecdf(runs: list[dict[str, Any]], path: Path) -> None:
    """ECDF of evaluations to (strict) recovery, an unrecovered run never reaching 1: one
    panel per target and one over all, a line per arm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    targets = list(dict.fromkeys(r["target"] for r in runs))
    panels = [*targets, "all targets"] if len(targets) > 1 else targets
    columns = min(4, len(panels))
    rows = math.ceil(len(panels) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.6 * rows),
                                squeeze=False, sharex=True, sharey=True)
    budget = max(r["budget"] for r in runs)
    for panel, axis in zip(panels, axes.flat):
        for arm in dict.fromkeys(r["arm"] for r in runs):
            group = [r for r in runs if r["arm"] == arm and panel in (r["target"], "all targets")]
            if not group:
                continue
            hits = sorted(r["evaluations"] for r in group if r["recovered"])
            xs = [0, *[x for x in hits for _ in (0, 1)], budget]
            ys = [0.0, *[v for k in range(len(hits)) for v in (k / len(group), (k + 1) / len(group))],
                  len(hits) / len(group)]
            axis.plot(xs, ys, label=f"{arm} (n={len(group)})")
        axis.set_title(panel, fontsize=9)
        axis.set_ylim(0, 1)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7, loc="upper left")
    for axis in axes.flat[len(panels):]:
        axis.axis("off")
    figure.supxlabel("evaluated candidates")
    figure.supylabel("share of runs recovered (strict)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.db_dir = args.db_dir or Path(mkdtemp(prefix="planted-"))
    args.db_dir.mkdir(parents=True, exist_ok=True)
    results_path = args.results or args.db_dir / "results.jsonl"
    try:
        jobs = make_jobs(args)  # bad targets, arms or settings fail here, before any run
    except (EvonormError, ConfigError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    done = load_results(results_path)
    todo = [job for job in jobs if job.key not in done]
    print(f"{len(jobs)} searches ({len(jobs) - len(todo)} already in {results_path}), "
          f"databases in {args.db_dir}", file=sys.stderr)
    with results_path.open("a", encoding="utf-8") as out:
        for run in execute(todo, args.jobs):
            record = asdict(run)
            out.write(json.dumps(record) + "\n")
            out.flush()
            done[run.key] = record
            how = (f"recovered after {run.evaluations} evaluations ({run.kind}: {run.formula}"
                   f"{'; simplified: ' + str(run.simplified) if run.kind != 'identical' else ''})"
                   if run.recovered else f"not recovered in {run.evaluations} evaluations")
            print(f"{run.target} {run.arm} seed {run.seed}: {how}, best min R2 "
                  f"{run.best_min_r2:.4f}, {run.cpu_seconds:.0f} CPU s", file=sys.stderr, flush=True)
    runs = [done[job.key] for job in jobs]
    seeds = sorted({job.seed for job in jobs})
    print(f"budget {args.budget}, population {args.population}, init {args.init}; seeds "
          f"{seeds[0]}..{seeds[-1]} ({args.seed_set} seeds: tuning uses 0-{REPORTING_SEEDS - 1}, "
          f"reporting {REPORTING_SEEDS} and up, never both); recovered: R^2 >= {RECOVERY_R2} on "
          f"the scored regimes and >= {CHECK_R2} on the unscored one, or the target's formula; "
          f"'own scores': recovered by R^2 >= {RECOVERY_R2} on the scored regimes alone")
    for arm in dict.fromkeys(job.arm.name for job in jobs):
        settings = next(job.arm.settings for job in jobs if job.arm.name == arm)
        print(f"arm {arm}: {json.dumps(settings)}")
    print("\n".join(table(runs)))
    duplicates = sum(r["duplicates_evaluated"] for r in runs)
    print(f"evaluated candidates repeating an earlier one's fingerprint: {duplicates}")
    if args.ecdf is not None:
        write_ecdf(runs, args.ecdf)
        print(f"ECDF: {args.ecdf}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
