"""The frozen values the store returns, and their construction from table rows.

Callers never see the ORM: `db.store.SearchStore` returns `SearchRecord`,
`CandidateRecord` and `SearchSummary`; `db.rerank.RerankStore` returns `RerankRunRecord`
and `RerankEvaluationRecord`. JSON columns are decoded here, once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Row


@dataclass(frozen=True)
class SearchRecord:
    id: int
    name: str
    config: dict[str, Any]
    seed: int
    versions: dict[str, str]
    created_at: datetime


@dataclass(frozen=True)
class CandidateRecord:
    id: int  # global primary key: what `evonorm show ID` takes
    search_id: int
    number: int  # 0, 1, 2, ... within its search
    parent_id: int | None
    graph_json: str
    structural_hash: str
    fingerprint: str | None
    status: str
    stage: str | None
    reason: str | None
    seed: int
    attempts: int
    duplicate_of: int | None
    accuracies: dict[str, float]  # per proxy, mean over trials; a duplicate carries its original's
    seconds: dict[str, float]
    steps: dict[str, int]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    early_accuracies: dict[str, float] = field(default_factory=dict)  # trial 0's quality check
    hurdle: float | None = None  # the hurdle it was submitted with (None: no hurdle)
    seed_count: int = 0  # trials behind `accuracies` (0 until done)
    standard_errors: dict[str, float] = field(default_factory=dict)  # per proxy, 2+ trials


@dataclass(frozen=True)
class TrialRecord:
    """One training of a candidate with one seed: trial 0 is its first evaluation."""

    id: int
    search_id: int
    candidate_id: int
    trial: int
    seed: int
    status: str
    stage: str | None
    reason: str | None
    attempts: int
    accuracies: dict[str, float]
    early_accuracies: dict[str, float]
    seconds: dict[str, float]
    steps: dict[str, int]
    created_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True)
class SearchSummary:
    """Aggregates for `evonorm status`, computed in SQL."""

    search: SearchRecord
    counts: dict[str, int]  # every status, zeros included
    rejected_by_stage: dict[str, int]
    best: dict[str, tuple[int, float]]  # proxy -> (candidate id, accuracy) over done candidates
    last_activity: datetime | None  # latest candidate creation, start or finish
    # Numbers of the candidates submitted more than once (their own evaluation or one of
    # their re-evaluations): an evaluation lost to a dead worker, node or controller.
    retried: tuple[int, ...] = ()


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


def search_record(row: Row[Any]) -> SearchRecord:
    return SearchRecord(
        id=row.id,
        name=row.name,
        config=json.loads(row.config_json),
        seed=row.seed,
        versions=json.loads(row.versions_json),
        created_at=row.created_at,
    )


def candidate_record(row: Row[Any], accuracies: dict[str, float]) -> CandidateRecord:
    """A `candidates` row with its accuracies (read from `evaluations` by the caller)."""
    return CandidateRecord(
        id=row.id,
        search_id=row.search_id,
        number=row.number,
        parent_id=row.parent_id,
        graph_json=row.graph_json,
        structural_hash=row.structural_hash,
        fingerprint=row.fingerprint,
        status=row.status,
        stage=row.stage,
        reason=row.reason,
        seed=row.seed,
        attempts=row.attempts,
        duplicate_of=row.duplicate_of,
        accuracies=accuracies,
        seconds={str(k): float(v) for k, v in json.loads(row.seconds_json).items()},
        steps={str(k): int(v) for k, v in json.loads(row.steps_json).items()},
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        early_accuracies=_floats(row.early_json),
        hurdle=row.hurdle,
        seed_count=row.seed_count,
        standard_errors=_floats(row.standard_errors_json),
    )


def _floats(text: str) -> dict[str, float]:
    return {str(k): float(v) for k, v in json.loads(text).items()}


def trial_record(row: Row[Any]) -> TrialRecord:
    return TrialRecord(
        id=row.id,
        search_id=row.search_id,
        candidate_id=row.candidate_id,
        trial=row.trial,
        seed=row.seed,
        status=row.status,
        stage=row.stage,
        reason=row.reason,
        attempts=row.attempts,
        accuracies=_floats(row.accuracies_json),
        early_accuracies=_floats(row.early_json),
        seconds=_floats(row.seconds_json),
        steps={str(k): int(v) for k, v in json.loads(row.steps_json).items()},
        created_at=row.created_at,
        finished_at=row.finished_at,
    )


def rerank_run_record(row: Row[Any]) -> RerankRunRecord:
    return RerankRunRecord(row.id, row.search_id, json.loads(row.settings_json), row.created_at)


def rerank_evaluation_record(row: Row[Any]) -> RerankEvaluationRecord:
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


__all__ = [
    "CandidateRecord",
    "RerankEvaluationRecord",
    "RerankRunRecord",
    "SearchRecord",
    "SearchSummary",
    "TrialRecord",
    "candidate_record",
    "rerank_evaluation_record",
    "rerank_run_record",
    "search_record",
    "trial_record",
]
