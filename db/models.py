"""SQLAlchemy models of the search database (schema version `SCHEMA_VERSION`): every table.

Owns the table layout only: `meta` (application marker + schema version), `searches`,
`candidates`, per-proxy `evaluations` (a candidate's validation accuracies: the mean over
its trials, since v4), `trials` (one row per training seed of a candidate: the first
evaluation and its re-evaluations, since v4), and the re-ranking tables `rerank_runs` /
`rerank_evaluations` (test accuracies per seed, since v3), and `leases` (which process runs
a search, since v5). Nothing here opens a database or knows about torch; `db.engine` creates the tables,
`db.store` and `db.rerank` query them. A change to these models needs a new entry in
`db.migrations.MIGRATIONS` and a bump of `SCHEMA_VERSION`.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SCHEMA_VERSION = 5
APPLICATION = "evonorm_search"  # the `meta` marker that tells our databases from foreign ones
# "stopped" (v4): passed the protocols but missed the multi-fidelity hurdle, not trained on.
STATUSES = ("pending", "running", "done", "stopped", "rejected", "duplicate", "failed")
TRIAL_STATUSES = ("pending", "running", "done", "stopped", "rejected", "failed")


def _status_check(statuses: tuple[str, ...]) -> str:
    return "status IN (" + ", ".join(f"'{status}'" for status in statuses) + ")"


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes; SQLite has no time zones, so store naive UTC."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use datetime.now(UTC)")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    pass


class Meta(Base):
    __tablename__ = "meta"

    key: Mapped[str] = mapped_column(String, primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Search(Base):
    __tablename__ = "searches"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String, unique=True)
    config_json: Mapped[str] = mapped_column(Text)
    seed: Mapped[int] = mapped_column(Integer)
    versions_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Candidate(Base):
    __tablename__ = "candidates"
    __table_args__ = (
        UniqueConstraint("search_id", "number", name="uq_candidates_search_number"),
        CheckConstraint(_status_check(STATUSES), name="ck_candidates_status"),
        # (search_id, status, number) also serves (search_id, status) lookups and lets the
        # aging population be read newest-first without sorting.
        Index("ix_candidates_search_status_number", "search_id", "status", "number"),
        Index("ix_candidates_search_hash", "search_id", "structural_hash"),
        # status and number too: otherwise SQLite answers "earliest done candidate with this
        # fingerprint" by walking the status index over every done candidate.
        Index("ix_candidates_search_fingerprint", "search_id", "fingerprint", "status", "number"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    search_id: Mapped[int] = mapped_column(ForeignKey("searches.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("candidates.id"))
    graph_json: Mapped[str] = mapped_column(Text)
    structural_hash: Mapped[str] = mapped_column(String)
    fingerprint: Mapped[str | None] = mapped_column(String)
    status: Mapped[str] = mapped_column(String)
    stage: Mapped[str | None] = mapped_column(String)
    reason: Mapped[str | None] = mapped_column(Text)
    seed: Mapped[int] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    duplicate_of: Mapped[int | None] = mapped_column(ForeignKey("candidates.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Added in schema v2 (kept last so that the v1 -> v2 migration yields the same layout).
    seconds_json: Mapped[str] = mapped_column(Text, server_default=text("'{}'"))
    steps_json: Mapped[str] = mapped_column(Text, server_default=text("'{}'"))
    # Added in schema v4: the first trial's quality-check accuracies (what a hurdle compares),
    # the hurdle the candidate was submitted with, and the trials behind its mean accuracy.
    early_json: Mapped[str] = mapped_column(Text, server_default=text("'{}'"))
    hurdle: Mapped[float | None] = mapped_column(Float)
    seed_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    standard_errors_json: Mapped[str] = mapped_column(Text, server_default=text("'{}'"))


class Evaluation(Base):
    """One proxy's validation accuracy for one candidate: the mean over its counted trials."""

    __tablename__ = "evaluations"
    __table_args__ = (UniqueConstraint("candidate_id", "proxy", name="uq_evaluations_candidate_proxy"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    candidate_id: Mapped[int] = mapped_column(ForeignKey("candidates.id", ondelete="CASCADE"))
    proxy: Mapped[str] = mapped_column(String)
    accuracy: Mapped[float] = mapped_column(Float)


class Trial(Base):
    """One training of a candidate with one seed (schema v4). Trial 0 is the candidate's
    own evaluation (seed `candidates.seed`); trials 1, 2, ... are re-evaluations of front
    members with further seeds. Written by `db.store.SearchStore`."""

    __tablename__ = "trials"
    __table_args__ = (
        UniqueConstraint("candidate_id", "trial", name="uq_trials_candidate_trial"),
        CheckConstraint(_status_check(TRIAL_STATUSES), name="ck_trials_status"),
        Index("ix_trials_search_status", "search_id", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    search_id: Mapped[int] = mapped_column(ForeignKey("searches.id", ondelete="CASCADE"))
    candidate_id: Mapped[int] = mapped_column(ForeignKey("candidates.id", ondelete="CASCADE"))
    trial: Mapped[int] = mapped_column(Integer)
    seed: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String)
    stage: Mapped[str | None] = mapped_column(String)
    reason: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    accuracies_json: Mapped[str] = mapped_column(Text, server_default=text("'{}'"))
    early_json: Mapped[str] = mapped_column(Text, server_default=text("'{}'"))
    seconds_json: Mapped[str] = mapped_column(Text, server_default=text("'{}'"))
    steps_json: Mapped[str] = mapped_column(Text, server_default=text("'{}'"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


# ---- re-ranking (schema v3; written by `db.rerank.RerankStore`) ------------------------


class RerankRun(Base):
    """One re-ranking of one search with fixed settings (JSON): `evonorm rerank`."""

    __tablename__ = "rerank_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    search_id: Mapped[int] = mapped_column(ForeignKey("searches.id", ondelete="CASCADE"), index=True)
    settings_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class RerankEvaluation(Base):
    """One (entry, seed) evaluation of a re-ranking run: the entry's label ("#<candidate
    id>" for a search candidate, the known-layer name for a baseline), its graph, status,
    per-proxy TEST accuracies and stage timings."""

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


# ---- leases (schema v5; written by `db.leases.LeaseStore`) -----------------------------


class Lease(Base):
    """The process that runs a search: one row while `evonorm search NAME` runs, keyed by
    the search's name (a new search is leased before its row exists). `process` tells a
    live process from a later one that reuses its pid (Linux: boot id and start time);
    `heartbeat_at` is renewed every few seconds while the process runs."""

    __tablename__ = "leases"

    search_name: Mapped[str] = mapped_column(String, primary_key=True)
    token: Mapped[str] = mapped_column(String)
    pid: Mapped[int] = mapped_column(Integer)
    host: Mapped[str] = mapped_column(String)
    process: Mapped[str | None] = mapped_column(String)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime)
