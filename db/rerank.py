"""Re-ranking results in the search database: models, their migration, and store methods.

Owns two tables on the shared `db.models.Base` (added in schema v3):
- `rerank_runs`: one re-ranking of one search with fixed settings (JSON);
- `rerank_evaluations`: one (entry, seed) evaluation of a run: the entry's label
  ("#<candidate id>" for a search candidate, the known-layer name for a baseline), its
  graph, status, per-proxy TEST accuracies, stage timings.
`RerankStore` wraps an open `SearchStore` (same engine, same one-transaction session
helper, same writer rule) and returns frozen records. Nothing here knows about torch.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Connection,
    ForeignKey,
    Index,
    Integer,
    Row,
    String,
    Text,
    UniqueConstraint,
    insert,
    select,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from db.models import Base, Search, UTCDateTime
from evonorm_search.errors import StoreError
from evonorm_search.task import EvalResult

if TYPE_CHECKING:
    from db.store import SearchStore


class RerankRun(Base):
    __tablename__ = "rerank_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    search_id: Mapped[int] = mapped_column(ForeignKey("searches.id", ondelete="CASCADE"), index=True)
    settings_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class RerankEvaluation(Base):
    __tablename__ = "rerank_evaluations"
    __table_args__ = (
        UniqueConstraint("run_id", "label", "seed", name="uq_rerank_evaluations_run_label_seed"),
        Index("ix_rerank_evaluations_run", "run_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("rerank_runs.id", ondelete="CASCADE"))
    label: Mapped[str] = mapped_column(String)
    candidate_id: Mapped[int | None] = mapped_column(ForeignKey("candidates.id"))
    graph_json: Mapped[str] = mapped_column(Text)
    seed: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String)
    stage: Mapped[str | None] = mapped_column(String)
    reason: Mapped[str | None] = mapped_column(Text)
    accuracies_json: Mapped[str] = mapped_column(Text)
    seconds_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


def migrate_v2_to_v3(connection: Connection) -> None:
    """Schema v2 -> v3: create the re-ranking tables (they did not exist before v3).

    Built from the models as they are at v3; a later change to these models needs its own
    migration step, not an edit here.
    """
    for table in (RerankRun.__table__, RerankEvaluation.__table__):
        table.create(connection)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class RerankRunRecord:
    id: int
    search_id: int
    settings: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class RerankEvaluationRecord:
    id: int
    run_id: int
    label: str
    candidate_id: int | None
    graph_json: str
    seed: int
    status: str
    stage: str | None
    reason: str | None
    accuracies: dict[str, float]
    seconds: dict[str, float]
    created_at: datetime


RUNS = RerankRun.__table__
EVALUATIONS = RerankEvaluation.__table__


def _run_record(row: Row[Any]) -> RerankRunRecord:
    return RerankRunRecord(row.id, row.search_id, json.loads(row.settings_json), row.created_at)


def _evaluation_record(row: Row[Any]) -> RerankEvaluationRecord:
    return RerankEvaluationRecord(
        id=row.id,
        run_id=row.run_id,
        label=row.label,
        candidate_id=row.candidate_id,
        graph_json=row.graph_json,
        seed=row.seed,
        status=row.status,
        stage=row.stage,
        reason=row.reason,
        accuracies={k: float(v) for k, v in json.loads(row.accuracies_json).items()},
        seconds={k: float(v) for k, v in json.loads(row.seconds_json).items()},
        created_at=row.created_at,
    )


class RerankStore:
    """Re-ranking reads and writes on an open `SearchStore`: its engine, its one-transaction
    helper (commit on success, rollback otherwise) and its read-only guard."""

    def __init__(self, store: SearchStore) -> None:
        self._store = store

    def find_run(self, search_id: int, settings: dict[str, Any]) -> RerankRunRecord | None:
        """The latest run of the search with exactly these settings (to resume it)."""
        wanted = json.dumps(settings, sort_keys=True)
        with self._store._transaction() as connection:
            row = connection.execute(
                select(RUNS)
                .where(RUNS.c.search_id == search_id, RUNS.c.settings_json == wanted)
                .order_by(RUNS.c.id.desc())
                .limit(1)
            ).first()
            return _run_record(row) if row is not None else None

    def create_run(self, search_id: int, settings: dict[str, Any]) -> RerankRunRecord:
        self._store._write()
        with self._store._transaction() as connection:
            searches = Search.__table__
            if connection.execute(select(searches.c.id).where(searches.c.id == search_id)).first() is None:
                raise StoreError(f"no search with id {search_id}; list them with `evonorm list`")
            row = connection.execute(
                insert(RUNS)
                .values(
                    search_id=search_id,
                    settings_json=json.dumps(settings, sort_keys=True),
                    created_at=datetime.now(UTC),
                )
                .returning(RUNS)
            ).one()
            return _run_record(row)

    def runs(self, search_id: int) -> list[RerankRunRecord]:
        """Every re-ranking of the search, oldest first."""
        with self._store._transaction() as connection:
            rows = connection.execute(
                select(RUNS).where(RUNS.c.search_id == search_id).order_by(RUNS.c.id)
            ).all()
            return [_run_record(row) for row in rows]

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
        result: EvalResult,
    ) -> RerankEvaluationRecord:
        """Store one (entry, seed) result; StoreError if that pair is already recorded."""
        self._store._write()
        accuracies = dict(result.accuracies)
        if any(not math.isfinite(v) or not 0.0 <= v <= 1.0 for v in accuracies.values()):
            raise ValueError(f"accuracies must be finite and in [0, 1], got {accuracies}")
        values = {
            "run_id": run_id,
            "label": label,
            "candidate_id": candidate_id,
            "graph_json": graph_json,
            "seed": seed,
            "status": result.status,
            "stage": result.stage,
            "reason": result.reason,
            "accuracies_json": json.dumps(accuracies, sort_keys=True),
            "seconds_json": json.dumps(dict(result.seconds), sort_keys=True),
            "created_at": datetime.now(UTC),
        }
        try:
            with self._store._transaction() as connection:
                row = connection.execute(insert(EVALUATIONS).values(values).returning(EVALUATIONS)).one()
                return _evaluation_record(row)
        except IntegrityError as error:
            raise StoreError(
                f"re-ranking run {run_id} already has {label} with seed {seed}"
            ) from error

    def evaluations(self, run_id: int) -> list[RerankEvaluationRecord]:
        with self._store._transaction() as connection:
            rows = connection.execute(
                select(EVALUATIONS).where(EVALUATIONS.c.run_id == run_id).order_by(EVALUATIONS.c.id)
            ).all()
            return [_evaluation_record(row) for row in rows]


__all__ = [
    "RerankEvaluation",
    "RerankEvaluationRecord",
    "RerankRun",
    "RerankRunRecord",
    "RerankStore",
    "migrate_v2_to_v3",
]
