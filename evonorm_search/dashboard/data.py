"""What the dashboard shows, read from the store into JSON-ready values (no HTTP here).

Owns the dashboard's JSON documents: the list of searches, one search's view (settings,
progress, Pareto points, candidate table, funnel, re-ranking) and one candidate's view
(scores with their standard errors over seeds, trials, lineage, re-ranking seeds, export
command). The numbers come from the same
functions as the static report (`evonorm_search.report.data.gather` and its helpers), so
both show the same progress series, front, funnel and ranking.

Only read methods of a read-only `SearchStore` are called. A search's view is rebuilt
only when its version changes: a key made of the status counts, the latest candidate
activity, the re-evaluations by status and the re-ranking rows, all read by cheap
aggregate queries, so polling an idle
or slow search costs a few small queries and no rebuild.
"""

from __future__ import annotations

import hashlib
import math
import shlex
import statistics
import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from db.rerank import RerankStore
from evonorm_search.config import stored_config
from evonorm_search.search.budget import counts_toward_budget
from evonorm_search.errors import (
    DatabaseDamaged,
    DatabaseWriteError,
    EvonormError,
    GraphError,
    StoreError,
)
from evonorm_search.proxy_info import metric_of, score_label
from evonorm_search.graph import LayerGraph
from evonorm_search.known import known_name
from evonorm_search.report.data import ReportData, gather, lineage
from evonorm_search.rerank import known_layer_of

if TYPE_CHECKING:
    from db.store import CandidateRecord, SearchRecord, SearchStore


class NotFound(EvonormError):
    """A search or candidate id that the database does not hold (HTTP 404)."""


def finite(value: float | None) -> float | None:
    """JSON has no NaN/inf (browsers' JSON.parse rejects them): those become null."""
    return value if value is not None and math.isfinite(value) else None


@lru_cache(maxsize=1024)
def simplified_of(graph_json: str) -> str | None:
    """The formula simplified up to the affine (evonorm_search.simplify); None when it is
    the stored one or the stored graph no longer validates."""
    from evonorm_search.simplify import simplified_label

    try:
        return simplified_label(LayerGraph.from_json(graph_json))
    except GraphError:
        return None


@lru_cache(maxsize=8192)
def formula_of(graph_json: str) -> str:
    """The layer's formula; a stored graph that no longer validates says so instead."""
    try:
        return LayerGraph.from_json(graph_json).formula()
    except GraphError as error:
        return f"(invalid graph: {error})"


def export_command(candidate_id: int, db_path: str) -> str:
    return f"evonorm export {candidate_id} --db {shlex.quote(db_path)} -o layer.py"


def _time(moment: Any) -> str | None:
    return moment.isoformat(timespec="seconds") if moment is not None else None


def _search_head(search: SearchRecord) -> dict[str, Any]:
    return {"id": search.id, "name": search.name, "seed": search.seed,
            "created_at": _time(search.created_at)}


def _mean(candidate: CandidateRecord, proxies: tuple[str, ...]) -> float | None:
    if candidate.status != "done" or not all(p in candidate.accuracies for p in proxies):
        return None
    return statistics.fmean(candidate.accuracies[p] for p in proxies)


def candidate_row(candidate: CandidateRecord, proxies: tuple[str, ...], front: bool) -> dict[str, Any]:
    """One line of the candidate table (also a point of the Pareto scatter when done)."""
    return {
        "id": candidate.id,
        "number": candidate.number,
        "parent_id": candidate.parent_id,
        "status": candidate.status,
        "stage": candidate.stage,
        "reason": candidate.reason,
        "duplicate_of": candidate.duplicate_of,
        "scores": {p: candidate.accuracies[p] for p in proxies if p in candidate.accuracies},
        # Over the candidate's seeds: `scores` are means, these their standard errors (2+ seeds).
        "standard_errors": {p: e for p, e in candidate.standard_errors.items() if p in proxies},
        "seeds": candidate.seed_count,
        "mean": _mean(candidate, proxies),
        "formula": formula_of(candidate.graph_json),
        "known": known_name(candidate.structural_hash),
        "front": front,
        "seconds": round(sum(candidate.seconds.values()), 3),
    }


def best_mean_series(candidates: list[CandidateRecord], proxies: tuple[str, ...]) -> list[float | None]:
    """Best mean accuracy over the proxies so far, after each evaluated candidate (the same
    x axis as `report.data.progress_series`)."""
    series: list[float | None] = []
    best: float | None = None
    for candidate in sorted(candidates, key=lambda c: c.number):
        if not counts_toward_budget(candidate) or candidate.status in ("pending", "running"):
            continue
        mean = _mean(candidate, proxies)
        if mean is not None and (best is None or mean > best):
            best = mean
        series.append(best)
    return series


def _rerank_part(data: ReportData) -> dict[str, Any]:
    if data.rerank_run is None:
        return {"run": None, "rows": []}
    run = data.rerank_run
    return {
        "run": {"id": run.id, "settings": run.settings, "created_at": _time(run.created_at)},
        "rows": [
            {"rank": rank, "label": row.label, "candidate_id": row.candidate_id,
             "known": known_layer_of(row.label), "formula": row.formula,
             "mean": {p: finite(v) for p, v in row.mean.items()},
             "std": {p: finite(v) for p, v in row.std.items()},
             "overall": finite(row.overall), "seeds_done": row.seeds_done,
             "seeds_failed": row.seeds_failed}
            for rank, row in enumerate(data.rerank_rows, start=1)
        ],
    }


def search_view(data: ReportData, summary_best: dict[str, tuple[int, float]],
                last_activity: str | None) -> dict[str, Any]:
    """The JSON document of one search's page, from the report's gathered data."""
    proxies = data.config.proxies
    front_ids = [c.id for c in data.front]
    on_front = set(front_ids)
    rows = [candidate_row(c, proxies, c.id in on_front) for c in data.candidates]
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    by_id = {row["id"]: row for row in rows}
    return {
        "search": {**_search_head(data.search), "versions": data.search.versions},
        "config": data.config.to_dict(),
        "proxies": list(proxies),
        "score": score_label(data.config.task, proxies),  # what the per-proxy numbers are
        # ... per proxy, for axis titles ("validation accuracy", "1 - bits/char / 8 ...")
        "metrics": {p: (metric_of(p) if data.config.task != "planted" else
                        score_label("planted", proxies)) for p in proxies},
        "budget": data.config.budget,
        "evaluated": len(data.progress.evaluated),
        "total": len(rows),
        "counts": counts,
        "last_activity": last_activity,
        "best": {
            proxy: {"id": cid, "accuracy": accuracy, "formula": by_id[cid]["formula"] if cid in by_id else None,
                    "known": by_id[cid]["known"] if cid in by_id else None}
            for proxy, (cid, accuracy) in summary_best.items()
        },
        "progress": {
            "evaluated": data.progress.evaluated,
            "best": {p: [finite(v) for v in data.progress.best[p]] for p in proxies},
            "median": {p: [finite(v) for v in data.progress.median[p]] for p in proxies},
            "best_mean": best_mean_series(data.candidates, proxies),
        },
        "front": front_ids,
        "candidates": rows,
        "funnel": [{"stage": r.stage, "removed": r.removed, "seconds": round(r.seconds, 3),
                    "note": r.note} for r in data.funnel],
        "known_scores": {"scores": data.known.scores, "source": data.known.source},
        "rerank": _rerank_part(data),
        "lineage": [c.id for c in data.lineage],
    }


@dataclass
class _Cached:
    version: str
    view: dict[str, Any]


class DashboardData:
    """The dashboard's read side over one open read-only store; safe to share between
    request threads (the store's connection pool is; the cache has a lock)."""

    def __init__(self, store: SearchStore, db_path: str) -> None:
        self.store = store
        self.db_path = db_path
        self._lock = threading.Lock()
        self._views: dict[int, _Cached] = {}

    # ---- searches ----------------------------------------------------------------------

    def get_search(self, search_id: int) -> SearchRecord:
        for search in self.store.list_searches():
            if search.id == search_id:
                return search
        raise NotFound(f"no search with id {search_id} in {self.store.path}")

    def version(self, search_id: int) -> str:
        """Changes whenever anything the search's view shows changes (cheap queries only)."""
        self.get_search(search_id)
        return self._version(search_id)

    def _version(self, search_id: int) -> str:
        summary = self.store.summary(search_id)
        rerank = RerankStore(self.store)
        run = rerank.latest_run(search_id)
        rerank_key = (run.id, len(rerank.evaluations(run.id))) if run is not None else None
        # Re-evaluations change a candidate's mean, not its status nor the activity times.
        trials = sorted(self.store.trial_outcomes(search_id).items())
        key = (sorted(summary.counts.items()), _time_exact(summary.last_activity), trials, rerank_key)
        return hashlib.sha256(repr((search_id, key)).encode()).hexdigest()[:20]

    def search(self, search_id: int) -> tuple[str, dict[str, Any]]:
        """(version, view) of one search; rebuilt only when its version changed."""
        search = self.get_search(search_id)
        version = self._version(search_id)
        with self._lock:
            cached = self._views.get(search_id)
        if cached is not None and cached.version == version:
            return version, cached.view
        # Summary first, then the full read: the view is never older than its version.
        summary = self.store.summary(search_id)
        view = search_view(gather(self.store, search.name), summary.best, _time(summary.last_activity))
        view["db"] = self.db_path
        with self._lock:
            self._views[search_id] = _Cached(version, view)
        return version, view

    def searches(self) -> list[dict[str, Any]]:
        """Every search with its counts, budget, best scores and best-mean progress."""
        listed = []
        for search in self.store.list_searches():
            _, view = self.search(search.id)
            listed.append({
                **_search_head(search),
                "strategy": view["config"].get("strategy"),
                "dataset": view["config"].get("dataset", {}).get("name"),
                "proxies": view["proxies"],
                "budget": view["budget"],
                "evaluated": view["evaluated"],
                "total": view["total"],
                "counts": view["counts"],
                "best": view["best"],
                "last_activity": view["last_activity"],
                "best_mean": view["progress"]["best_mean"],
            })
        return listed

    # ---- one candidate -----------------------------------------------------------------

    def get_candidate(self, candidate_id: int) -> CandidateRecord:
        try:
            return self.store.get_candidate(candidate_id)
        except (DatabaseDamaged, DatabaseWriteError):
            raise  # the file is at fault, not the id: a 500 with the message
        except StoreError as error:
            raise NotFound(str(error)) from None

    def candidate(self, candidate_id: int) -> dict[str, Any]:
        """The JSON document of one candidate's page."""
        record = self.get_candidate(candidate_id)
        search = self.get_search(record.search_id)
        proxies = stored_config(search.config).proxies
        _, view = self.search(search.id)
        front = set(view["front"])
        chain = lineage(record, self.store)
        rerank = RerankStore(self.store)
        seeds = [
            {"run_id": e.run_id, "label": e.label, "seed": str(e.seed), "status": e.status,
             "stage": e.stage, "reason": e.reason, "scores": e.accuracies}
            for run in rerank.runs(search.id)
            for e in rerank.evaluations(run.id)
            if e.candidate_id == record.id
        ]
        return {
            **candidate_row(record, proxies, record.id in front),
            "search": _search_head(search),
            "proxies": list(proxies),
            "structural_hash": record.structural_hash,
            "simplified": simplified_of(record.graph_json),
            "fingerprint": record.fingerprint,
            "seed": str(record.seed),  # 64-bit: a JavaScript number would round it
            "attempts": record.attempts,
            "stage_seconds": record.seconds,
            "steps": record.steps,
            "early_scores": record.early_accuracies,
            "hurdle": record.hurdle,
            "trials": [
                {"trial": t.trial, "seed": str(t.seed), "status": t.status, "stage": t.stage,
                 "reason": t.reason, "scores": t.accuracies, "seconds": round(sum(t.seconds.values()), 3)}
                for t in self.store.trials(record.id)
            ],
            "created_at": _time(record.created_at),
            "started_at": _time(record.started_at),
            "finished_at": _time(record.finished_at),
            "lineage": [candidate_row(c, proxies, c.id in front) for c in chain],
            "rerank": seeds,
            "export": export_command(record.id, self.db_path),
        }

    def graph_png(self, candidate_id: int) -> bytes:
        """The picture of the candidate's live graph (the static report's drawing)."""
        return _graph_png(self.get_candidate(candidate_id).graph_json)


def _time_exact(moment: Any) -> str | None:
    return moment.isoformat() if moment is not None else None


_DRAWING = threading.Lock()  # matplotlib does not promise thread safety


@lru_cache(maxsize=256)
def _graph_png(graph_json: str) -> bytes:
    from evonorm_search.report.plots import graph_png

    try:
        graph = LayerGraph.from_json(graph_json)
    except GraphError as error:
        raise NotFound(f"the candidate's stored graph is invalid ({error})") from None
    with _DRAWING:
        return graph_png(graph)
