"""Re-ranking, storage side: the runs and per-seed test results of `evonorm rerank`.

`RerankStore` reads and writes the tables `rerank_runs` (one re-ranking of one search,
with fixed settings) and `rerank_evaluations` (one (entry, seed) result of a run), both
defined in `db.models` since schema v3, and returns the frozen records of `db.records`.
It wraps an open `db.engine.Database` (in practice the `SearchStore` of the search being
re-ranked): same engine, same one-transaction helper, same read-only guard.

The training side (choosing the entries, the longer schedule, scoring on the test split,
ranking by mean and spread) is `evonorm_search.rerank`; nothing here knows about torch
or about evonorm_search.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from db.engine import Database, utc_now
from db.errors import StoreError
from db.models import RerankEvaluation, RerankRun, Search
from db.records import (
    RerankEvaluationRecord,
    RerankRunRecord,
    rerank_evaluation_record,
    rerank_run_record,
)

RUNS = RerankRun.__table__
EVALUATIONS = RerankEvaluation.__table__


class RerankStore:
    """Re-ranking reads and writes on an open database (`RerankStore(search_store)`)."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def find_run(self, search_id: int, settings: dict[str, Any]) -> RerankRunRecord | None:
        """The latest run of the search with exactly these settings (to resume it)."""
        wanted = json.dumps(settings, sort_keys=True)
        with self._database.reading() as connection:
            row = connection.execute(
                select(RUNS)
                .where(RUNS.c.search_id == search_id, RUNS.c.settings_json == wanted)
                .order_by(RUNS.c.id.desc())
                .limit(1)
            ).first()
            return rerank_run_record(row) if row is not None else None

    def create_run(self, search_id: int, settings: dict[str, Any]) -> RerankRunRecord:
        self._database.require_writable()
        with self._database.transaction() as connection:
            searches = Search.__table__
            if connection.execute(select(searches.c.id).where(searches.c.id == search_id)).first() is None:
                raise StoreError(f"no search with id {search_id}; list them with `evonorm list`")
            row = connection.execute(
                insert(RUNS)
                .values(
                    search_id=search_id,
                    settings_json=json.dumps(settings, sort_keys=True),
                    created_at=utc_now(),
                )
                .returning(RUNS)
            ).one()
            return rerank_run_record(row)

    def runs(self, search_id: int) -> list[RerankRunRecord]:
        """Every re-ranking of the search, oldest first."""
        with self._database.reading() as connection:
            rows = connection.execute(
                select(RUNS).where(RUNS.c.search_id == search_id).order_by(RUNS.c.id)
            ).all()
            return [rerank_run_record(row) for row in rows]

    def latest_run(self, search_id: int) -> RerankRunRecord | None:
        runs = self.runs(search_id)
        return runs[-1] if runs else None

    def record(
        self,
        run_id: int,
        *,
        label: str,
        candidate_id: int | None,
        graph_json: str,
        seed: int,
        status: str,
        accuracies: Mapping[str, float] | None = None,
        stage: str | None = None,
        reason: str | None = None,
        seconds: Mapping[str, float] | None = None,
    ) -> RerankEvaluationRecord:
        """Store one (entry, seed) result; StoreError if that pair is already recorded.

        `status`, `accuracies` (per-proxy test accuracies), `stage`, `reason` and `seconds`
        are the evaluation's outcome (an `EvalResult`'s fields, passed by the caller).
        """
        self._database.require_writable()
        accuracies = dict(accuracies or {})
        if any(not math.isfinite(v) or not 0.0 <= v <= 1.0 for v in accuracies.values()):
            raise ValueError(f"accuracies must be finite and in [0, 1], got {accuracies}")
        values = {
            "run_id": run_id,
            "label": label,
            "candidate_id": candidate_id,
            "graph_json": graph_json,
            "seed": seed,
            "status": status,
            "stage": stage,
            "reason": reason,
            "accuracies_json": json.dumps(accuracies, sort_keys=True),
            "seconds_json": json.dumps(dict(seconds or {}), sort_keys=True),
            "created_at": utc_now(),
        }
        try:
            with self._database.transaction() as connection:
                row = connection.execute(insert(EVALUATIONS).values(values).returning(EVALUATIONS)).one()
                return rerank_evaluation_record(row)
        except IntegrityError as error:
            raise StoreError(
                f"re-ranking run {run_id} already has {label} with seed {seed}"
            ) from error

    def evaluations(self, run_id: int) -> list[RerankEvaluationRecord]:
        with self._database.reading() as connection:
            rows = connection.execute(
                select(EVALUATIONS).where(EVALUATIONS.c.run_id == run_id).order_by(EVALUATIONS.c.id)
            ).all()
            return [rerank_evaluation_record(row) for row in rows]


__all__ = ["RerankEvaluationRecord", "RerankRunRecord", "RerankStore"]
