"""What a search report shows, gathered from the store into plain values (no plotting).

Owns the report's numbers: the budget-counting order of candidates, the progress series,
the Pareto front, the known layers' scores and where they come from, the rejection
funnel with compute per stage (candidates stopped at the multi-fidelity hurdle included),
the re-evaluations with further seeds, the latest re-ranking, and the best layer's lineage.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from db.rerank import RerankStore
from evonorm_search.config import SearchConfig, stored_config
from evonorm_search.search.budget import FINGERPRINT_STAGE, counts_toward_budget
from evonorm_search.known import known_name
from evonorm_search.rerank import (
    RankingRow,
    complete_candidates,
    front_candidates,
    known_layer_of,
    ranking,
)

if TYPE_CHECKING:
    from db.records import CandidateRecord, RerankRunRecord, SearchRecord
    from db.store import SearchStore

# Evaluation stages in pipeline order (workers.evaluate), for the funnel.
EVALUATION_STAGES = ("build", "stability", "quality", "training")
HURDLE_STAGE = "hurdle"  # the stage of a "stopped" candidate


@dataclass(frozen=True)
class FunnelRow:
    """One step of the rejection funnel: candidates it removed and the compute it cost."""

    stage: str
    removed: int
    seconds: float
    note: str


@dataclass(frozen=True)
class ProgressSeries:
    """Per proxy, after each candidate evaluated (x = 1..n): best so far and population median."""

    evaluated: list[int]
    best: dict[str, list[float]]
    median: dict[str, list[float]]


@dataclass(frozen=True)
class KnownScores:
    """Accuracies of known layers, and a sentence saying where they come from."""

    scores: dict[str, dict[str, float]]
    source: str


@dataclass(frozen=True)
class ReportData:
    search: SearchRecord
    config: SearchConfig
    candidates: list[CandidateRecord]
    progress: ProgressSeries
    front: list[CandidateRecord]
    known: KnownScores
    funnel: list[FunnelRow]
    rerank_run: RerankRunRecord | None
    rerank_rows: list[RankingRow]
    lineage: list[CandidateRecord]  # the best front layer first, then its parent, ...
    reevaluations: dict[str, int] = field(default_factory=dict)  # trials 1, 2, ... by status


def progress_series(
    candidates: list[CandidateRecord], proxies: tuple[str, ...], population: int
) -> ProgressSeries:
    """Best accuracy so far and median of the population (the `population` most recent
    done candidates, as the aging selection sees it) after each evaluated candidate."""
    evaluated: list[int] = []
    best: dict[str, list[float]] = {p: [] for p in proxies}
    median: dict[str, list[float]] = {p: [] for p in proxies}
    done: list[CandidateRecord] = []
    for candidate in sorted(candidates, key=lambda c: c.number):
        if not counts_toward_budget(candidate) or candidate.status in ("pending", "running"):
            continue
        if candidate.status == "done" and all(p in candidate.accuracies for p in proxies):
            done.append(candidate)
        evaluated.append(len(evaluated) + 1)
        window = done[-population:]
        for proxy in proxies:
            values = [c.accuracies[proxy] for c in done]
            best[proxy].append(max(values) if values else float("nan"))
            median[proxy].append(
                statistics.median(c.accuracies[proxy] for c in window) if window else float("nan")
            )
    return ProgressSeries(evaluated, best, median)


def funnel(candidates: list[CandidateRecord]) -> list[FunnelRow]:
    """Candidates removed by each filter, in pipeline order, and seconds spent per stage."""
    seconds = {stage: 0.0 for stage in EVALUATION_STAGES}
    for candidate in candidates:
        for stage, value in candidate.seconds.items():
            seconds[stage] = seconds.get(stage, 0.0) + value

    def count(status: str, stage: str | None = None) -> int:
        return sum(1 for c in candidates if c.status == status and (stage is None or c.stage == stage))

    rows = [
        FunnelRow("proposed", len(candidates), 0.0,
                  "stored candidates (structural-hash repeats are skipped before storing)"),
        FunnelRow("fingerprint duplicate", count("duplicate"), 0.0,
                  "same outputs as a finished layer on the probe input: scores copied"),
        FunnelRow("fingerprint NaN/inf", count("rejected", FINGERPRINT_STAGE), 0.0,
                  "non-finite outputs on the probe input"),
        FunnelRow("build", count("failed", "build"), seconds.pop("build", 0.0),
                  "failed: the layer could not be built into a proxy"),
        FunnelRow("stability", count("rejected", "stability"), seconds.pop("stability", 0.0),
                  "rejected: worst-case gradient norm above the threshold"),
        FunnelRow("quality", count("rejected", "quality"), seconds.pop("quality", 0.0),
                  "rejected: validation accuracy below the bar after the short training"),
        FunnelRow("stopped at the hurdle", count("stopped"), seconds.pop(HURDLE_STAGE, 0.0),
                  "stopped: early accuracy below the multi-fidelity hurdle, not trained in full"),
        FunnelRow("training", count("failed", "training") + count("rejected", "training"),
                  seconds.pop("training", 0.0), "NaN/inf or a crash during full training"),
        FunnelRow("infrastructure", count("failed", "infrastructure"), 0.0,
                  "worker lost after every retry"),
    ]
    for stage, value in sorted(seconds.items()):  # stages this report does not know by name
        rows.append(FunnelRow(stage, 0, value, "other stage"))
    rows.append(FunnelRow("trained in full", count("done"), 0.0, "joined the population"))
    unfinished = count("pending") + count("running")
    if unfinished:
        rows.append(FunnelRow("in flight", unfinished, 0.0, "pending or running"))
    return rows


def known_scores(
    candidates: list[CandidateRecord], proxies: tuple[str, ...], rows: list[RankingRow]
) -> KnownScores:
    """Known layers' scores: from the re-ranking if it has any, else from the search itself."""
    from_rerank = {
        name: dict(r.mean) for r in rows if r.mean and (name := known_layer_of(r.label))
    }
    if from_rerank:
        return KnownScores(from_rerank, "known layers: re-ranking means (TEST split, longer training)")
    found: dict[str, dict[str, float]] = {}
    for candidate in complete_candidates(candidates, proxies):
        name = known_name(candidate.structural_hash)
        if name is not None and name not in found:
            found[name] = {p: candidate.accuracies[p] for p in proxies}
    if found:
        return KnownScores(found, "known layers: evaluated as candidates of this search (validation split)")
    return KnownScores({}, "no known layer was evaluated (neither by this search nor by a re-ranking)")


def lineage(best: CandidateRecord | None, store: SearchStore) -> list[CandidateRecord]:
    chain: list[CandidateRecord] = []
    seen: set[int] = set()
    current = best
    while current is not None and current.id not in seen:
        chain.append(current)
        seen.add(current.id)
        current = store.get_candidate(current.parent_id) if current.parent_id is not None else None
    return chain


def gather(store: SearchStore, search_name: str) -> ReportData:
    """Everything the report shows about search `search_name` (StoreError if unknown)."""
    search = store.get_search(search_name)
    config = stored_config(search.config)
    candidates = store.candidates(search.id)
    front = front_candidates(candidates, config.proxies)
    rerank = RerankStore(store)
    run = rerank.latest_run(search.id)
    rows = ranking(rerank.evaluations(run.id), config.proxies) if run is not None else []
    return ReportData(
        search=search,
        config=config,
        candidates=candidates,
        progress=progress_series(candidates, config.proxies, config.population),
        front=front,
        known=known_scores(candidates, config.proxies, rows),
        funnel=funnel(candidates),
        rerank_run=run,
        rerank_rows=rows,
        lineage=lineage(front[0] if front else None, store),
        reevaluations=store.trial_outcomes(search.id),
    )
