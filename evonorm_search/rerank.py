"""Re-ranking, training side (PAPER.md section 5): retrain the best layers longer, on TEST.

Storage is `db.rerank.RerankStore` (runs and per-seed results in the search database);
this module decides what to train and ranks what comes back. It owns the paper's final
selection step: pick the top candidates of the search's Pareto front, add the known
baselines for reference, retrain each on every proxy with a longer schedule and several
seeds, score them on the held-out test split (never seen by the search, which selected
on validation accuracy), store every result, and rank them by mean and spread per proxy.
Rejection protocols are off: this measures, it does not filter.

Scoring on the test split needs no change to `workers.evaluate`: `evaluate_on_test`
hands it a prepared data set whose validation split *is* the test split, so the
"validation accuracy" it reports is test accuracy. It is a top-level function, so it runs
unchanged under the inline and the Ray executors.

A run is identified by its settings: running the same re-ranking again resumes it (the
(entry, seed) pairs already stored are not redone); other settings start a new run.
"""

from __future__ import annotations

import hashlib
import math
import statistics
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

from db.records import CandidateRecord, RerankEvaluationRecord, RerankRunRecord
from db.rerank import RerankStore
from db.store import SearchStore
from evonorm_search.config import SearchConfig, stored_config
from evonorm_search.errors import EvonormError, ExecutorLost
from evonorm_search.known import KNOWN_LAYERS, get_known, known_name
from evonorm_search.selection import pareto_front
from evonorm_search.task import DatasetSpec, EvalResult, EvalTask, TrainSettings

RERANK_BASELINES: tuple[str, ...] = ("bn_relu", "evonorm_s0", "evonorm_b0")
DEFAULT_STEPS_FACTOR = 3  # default re-ranking schedule: this many times the search's steps
# Each seed retrains every entry: more than this many is a typo, not a statistic.
MAX_SEEDS = 1000
INFRASTRUCTURE_RETRIES = 2


class RerankError(EvonormError):
    """A re-ranking request that cannot be served (bad settings, nothing to re-rank)."""


@dataclass(frozen=True)
class RerankEntry:
    """One layer to re-rank: a search candidate ("#<id>") or a known baseline (its name)."""

    label: str
    graph_json: str
    candidate_id: int | None


@dataclass(frozen=True)
class RankingRow:
    """One entry's re-ranking scores: per proxy mean and sample standard deviation."""

    label: str
    candidate_id: int | None
    formula: str
    mean: dict[str, float]
    std: dict[str, float]
    seeds_done: int
    seeds_failed: int

    @property
    def overall(self) -> float:
        """Mean over proxies of the per-proxy means (NaN when nothing finished)."""
        return statistics.fmean(self.mean.values()) if self.mean else math.nan


def complete_candidates(
    candidates: Sequence[CandidateRecord], proxies: Sequence[str]
) -> list[CandidateRecord]:
    """The finished ("done") candidates that have an accuracy on every proxy."""
    return [
        c for c in candidates if c.status == "done" and all(p in c.accuracies for p in proxies)
    ]


def front_candidates(
    candidates: Sequence[CandidateRecord], proxies: Sequence[str]
) -> list[CandidateRecord]:
    """The search's Pareto front over the proxies' accuracies, best mean accuracy first."""
    done = complete_candidates(candidates, proxies)
    points = [[c.accuracies[p] for p in proxies] for c in done]
    front = [done[i] for i in pareto_front(points)]
    return sorted(front, key=lambda c: (-statistics.fmean(c.accuracies[p] for p in proxies), c.id))


def select_entries(
    candidates: Sequence[CandidateRecord],
    proxies: Sequence[str],
    top: int,
    baselines: Sequence[str] = RERANK_BASELINES,
) -> list[RerankEntry]:
    """The `top` front candidates (one per structural hash) followed by the baselines.

    A candidate that is a known layer is labelled with its name too ("#5 (evonorm_b1)"),
    and a baseline already among the candidates is not trained twice.
    """
    if top < 1:
        raise RerankError(f"--top must be at least 1, got {top}")
    entries: list[RerankEntry] = []
    seen: set[str] = set()
    for candidate in front_candidates(candidates, proxies):
        if candidate.structural_hash in seen:
            continue
        seen.add(candidate.structural_hash)
        known = known_name(candidate.structural_hash)
        label = f"#{candidate.id}" + (f" ({known})" if known else "")
        entries.append(RerankEntry(label, candidate.graph_json, candidate.id))
        if len(entries) == top:
            break
    for name in baselines:
        graph = get_known(name)
        if graph.structural_hash() not in seen:
            entries.append(RerankEntry(name, graph.to_json(), None))
    return entries


def known_layer_of(label: str) -> str | None:
    """The known layer an entry's label names: a baseline ("bn_relu") or a candidate
    that is one ("#5 (evonorm_b1)"); None for other candidates."""
    name = label.rsplit(" (", 1)[-1][:-1] if label.endswith(")") else label
    return name if name in KNOWN_LAYERS else None


def rerank_seeds(search_seed: int, count: int) -> list[int]:
    """Seeds shared by every entry (a paired comparison), derived from the search seed."""
    if not 1 <= count <= MAX_SEEDS:
        raise RerankError(f"--seeds must be at least 1 (and at most {MAX_SEEDS}), got {count}")
    return [
        int.from_bytes(hashlib.sha256(f"rerank:{search_seed}:{i}".encode()).digest()[:7], "big")
        for i in range(count)
    ]


def rerank_train_settings(search_train: TrainSettings, steps: int | None) -> TrainSettings:
    """The search's training settings with the longer schedule and no rejection protocols."""
    total = steps if steps is not None else DEFAULT_STEPS_FACTOR * search_train.steps
    if total < 1:
        raise RerankError(f"--steps must be a positive number of training steps, got {total}")
    return replace(search_train, steps=total, stability_steps=0, quality_steps=0, eval_batches=None)


def rerank_settings(
    config: SearchConfig, top: int, seeds: int, train: TrainSettings, baselines: Sequence[str]
) -> dict[str, Any]:
    """Everything that defines a run; equal settings resume the same run."""
    return {
        "top": top,
        "seeds": seeds,
        "baselines": list(baselines),
        "split": "test",
        "proxies": list(config.proxies),
        "dataset": config.dataset.to_dict(),
        "train": train.to_dict(),
    }


@lru_cache(maxsize=2)
def _test_as_validation(spec: DatasetSpec) -> Any:
    from workers.datasets import load_dataset

    data = load_dataset(spec)
    return replace(data, val_x=data.test_x, val_y=data.test_y)


def evaluate_on_test(task: EvalTask, data: Any = None) -> EvalResult:
    """`workers.evaluate.evaluate` with the test split in place of the validation split.

    `data`, when given, is the prepared data set of `task.dataset` (its test split is used);
    otherwise it is loaded once per process.
    """
    from workers.evaluate import evaluate

    prepared = (
        replace(data, val_x=data.test_x, val_y=data.test_y)
        if data is not None
        else _test_as_validation(task.dataset)
    )
    return evaluate(task, prepared)


def run_rerank(
    store: SearchStore,
    name: str,
    evaluator: Any,
    *,
    top: int = 10,
    seeds: int = 3,
    steps: int | None = None,
    baselines: Sequence[str] = RERANK_BASELINES,
    progress: Callable[[str], None] | None = None,
) -> RerankRunRecord:
    """Re-rank search `name`, storing each result as it arrives; returns the run.

    `evaluator` follows `workers.executors.Evaluator` (submit/capacity); its evaluate
    function must score on the test split (`evaluate_on_test`). An evaluation whose future
    raises is resubmitted up to INFRASTRUCTURE_RETRIES times, then stored as failed.
    """
    search = store.get_search(name)
    config = stored_config(search.config)
    train = rerank_train_settings(config.train, steps)
    seed_values = rerank_seeds(search.seed, seeds)
    for baseline in baselines:
        get_known(baseline)
    entries = select_entries(store.candidates(search.id), config.proxies, top, baselines)
    if len(entries) == len(baselines):
        raise RerankError(
            f"search {name!r} has no finished candidate with scores on every proxy yet: "
            f"run `evonorm search --name {name}` until some finish, then re-rank"
        )
    rerank = RerankStore(store)
    settings = rerank_settings(config, top, seeds, train, baselines)
    run = rerank.find_run(search.id, settings) or rerank.create_run(search.id, settings)
    done = {(e.label, e.seed) for e in rerank.evaluations(run.id)}
    queue = [(e, seed) for e in entries for seed in seed_values if (e.label, seed) not in done]
    total = len(entries) * len(seed_values)
    finished = total - len(queue)
    if progress and finished:
        progress(f"resuming re-ranking run {run.id}: {finished}/{total} evaluations already stored")
    in_flight: dict[Future[EvalResult], tuple[RerankEntry, int, int]] = {}

    def submit(entry: RerankEntry, seed: int, attempt: int) -> None:
        task = EvalTask(
            graph_json=entry.graph_json,
            proxies=config.proxies,
            dataset=config.dataset,
            train=train,
            seed=seed,
            candidate_id=entry.candidate_id,
        )
        in_flight[evaluator.submit(task)] = (entry, seed, attempt)

    while queue or in_flight:
        while queue and len(in_flight) < max(1, evaluator.capacity):
            entry, seed = queue.pop(0)
            submit(entry, seed, 1)
        completed, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
        for future in completed:
            entry, seed, attempt = in_flight.pop(future)
            error = future.exception()
            if isinstance(error, ExecutorLost):
                raise error  # not the entry's failure: the command stops, a rerun resumes
            if error is not None and attempt <= INFRASTRUCTURE_RETRIES:
                submit(entry, seed, attempt + 1)
                continue
            result = (
                EvalResult("failed", stage="infrastructure", reason=f"{type(error).__name__}: {error}")
                if error is not None
                else future.result()
            )
            rerank.record(
                run.id,
                label=entry.label,
                candidate_id=entry.candidate_id,
                graph_json=entry.graph_json,
                seed=seed,
                status=result.status,
                accuracies=result.accuracies,
                stage=result.stage,
                reason=result.reason,
                seconds=result.seconds,
            )
            finished += 1
            if progress:
                scores = " ".join(f"{p}={a:.3f}" for p, a in result.accuracies.items())
                progress(f"[{finished}/{total}] {entry.label} seed {seed}: {result.status} {scores}".rstrip())
    return run


def ranking(evaluations: Sequence[RerankEvaluationRecord], proxies: Sequence[str]) -> list[RankingRow]:
    """Per entry, mean and spread of each proxy's test accuracy over the finished seeds.

    Ordered by the mean over proxies, best first; entries with no finished seed last.
    """
    by_label: dict[str, list[RerankEvaluationRecord]] = {}
    for evaluation in evaluations:
        by_label.setdefault(evaluation.label, []).append(evaluation)
    rows = []
    for label, group in by_label.items():
        done = [e for e in group if e.status == "done"]
        mean: dict[str, float] = {}
        std: dict[str, float] = {}
        for proxy in proxies:
            values = [e.accuracies[proxy] for e in done if proxy in e.accuracies]
            if values:
                mean[proxy] = statistics.fmean(values)
                std[proxy] = statistics.stdev(values) if len(values) > 1 else 0.0
        rows.append(
            RankingRow(
                label=label,
                candidate_id=group[0].candidate_id,
                formula=_formula(group[0].graph_json),
                mean=mean,
                std=std,
                seeds_done=len(done),
                seeds_failed=len(group) - len(done),
            )
        )
    return sorted(rows, key=lambda r: (math.isnan(r.overall), -r.overall if r.mean else 0.0, r.label))


def _formula(graph_json: str) -> str:
    from evonorm_search.graph import LayerGraph

    return LayerGraph.from_json(graph_json).formula()


def format_ranking(rows: Sequence[RankingRow], proxies: Sequence[str]) -> str:
    """A plain-text table: rank, entry, mean +- std per proxy, overall mean, formula."""
    header = ["rank", "entry", *proxies, "mean", "seeds", "formula"]
    lines = [header]
    for rank, row in enumerate(rows, start=1):
        cells = [
            f"{row.mean[p]:.4f} ± {row.std[p]:.4f}" if p in row.mean else "-" for p in proxies
        ]
        overall = f"{row.overall:.4f}" if row.mean else "-"
        seeds = f"{row.seeds_done}" + (f" ({row.seeds_failed} failed)" if row.seeds_failed else "")
        lines.append([str(rank), row.label, *cells, overall, seeds, row.formula])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths)) + "  " + line[-1]
        for line in lines
    )


__all__ = [
    "RERANK_BASELINES",
    "RankingRow",
    "RerankEntry",
    "RerankError",
    "complete_candidates",
    "evaluate_on_test",
    "format_ranking",
    "front_candidates",
    "ranking",
    "rerank_seeds",
    "rerank_settings",
    "rerank_train_settings",
    "run_rerank",
    "select_entries",
]
