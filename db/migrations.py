"""Schema migrations: an ordered list of functions, `MIGRATIONS[n - 1]` takes version n to n + 1.

`db.engine` runs the pending ones in one transaction after backing the file up, then writes
the new version into `meta`. Fresh databases are created directly at `SCHEMA_VERSION` from
the models; a test builds each older layout by hand and checks that migrating it yields
exactly the layout the models create.

History:
  v1: the first layout (searches, candidates, evaluations, meta).
  v2: per-candidate stage timings and step counts (`seconds_json`, `steps_json`) and the
      (search_id, fingerprint, status, number) index the duplicate filter needs.
  v3: the re-ranking tables `rerank_runs` and `rerank_evaluations` (db/models.py).
  v4: noise-aware fitness: the `trials` table (one row per training seed of a candidate),
      status "stopped" (missed the hurdle), and per candidate its quality-check accuracies
      (`early_json`), `hurdle`, `seed_count` and `standard_errors_json`. Each finished,
      trained candidate of an older database becomes trial 0 of itself (seed count 1).
  v5: the `leases` table (one row per running `evonorm search`: which process on which
      host, since when, its last heartbeat; db/leases.py).

`db.engine` runs migrations with foreign-key enforcement off (SQLite's procedure for
rebuilding a table: v4 rebuilds `candidates` to widen its status CHECK constraint) and
runs `PRAGMA foreign_key_check` before committing. Every step of one upgrade runs in
that one transaction (SQLite's DDL is transactional), so a process killed mid-migration
leaves the file at its old schema, untouched but for the backup copy next to it.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection

from db.models import SCHEMA_VERSION, RerankEvaluation, RerankRun


def _v1_to_v2(connection: Connection) -> None:
    connection.exec_driver_sql(
        "ALTER TABLE candidates ADD COLUMN seconds_json TEXT NOT NULL DEFAULT '{}'"
    )
    connection.exec_driver_sql("ALTER TABLE candidates ADD COLUMN steps_json TEXT NOT NULL DEFAULT '{}'")
    connection.exec_driver_sql(
        "CREATE INDEX ix_candidates_search_fingerprint "
        "ON candidates (search_id, fingerprint, status, number)"
    )


def _v2_to_v3(connection: Connection) -> None:
    """Create the re-ranking tables (they did not exist before v3).

    Built from the models as they are at v3; a later change to these models needs its own
    migration step, not an edit here.
    """
    for table in (RerankRun.__table__, RerankEvaluation.__table__):
        table.create(connection)  # type: ignore[attr-defined]


# The v4 layouts, frozen here as SQL: later model changes need their own step.
_V4_CANDIDATES = """
CREATE TABLE candidates_v4 (
    id INTEGER NOT NULL, search_id INTEGER NOT NULL, number INTEGER NOT NULL,
    parent_id INTEGER, graph_json TEXT NOT NULL, structural_hash VARCHAR NOT NULL,
    fingerprint VARCHAR, status VARCHAR NOT NULL, stage VARCHAR, reason TEXT,
    seed INTEGER NOT NULL, attempts INTEGER DEFAULT 0 NOT NULL, duplicate_of INTEGER,
    created_at DATETIME NOT NULL, started_at DATETIME, finished_at DATETIME,
    seconds_json TEXT DEFAULT '{}' NOT NULL, steps_json TEXT DEFAULT '{}' NOT NULL,
    early_json TEXT DEFAULT '{}' NOT NULL, hurdle FLOAT,
    seed_count INTEGER DEFAULT 0 NOT NULL, standard_errors_json TEXT DEFAULT '{}' NOT NULL,
    PRIMARY KEY (id),
    CONSTRAINT uq_candidates_search_number UNIQUE (search_id, number),
    CONSTRAINT ck_candidates_status CHECK (status IN
        ('pending', 'running', 'done', 'stopped', 'rejected', 'duplicate', 'failed')),
    FOREIGN KEY(search_id) REFERENCES searches (id) ON DELETE CASCADE,
    FOREIGN KEY(parent_id) REFERENCES candidates (id),
    FOREIGN KEY(duplicate_of) REFERENCES candidates (id))
"""
_V4_CANDIDATE_INDEXES = (
    "CREATE INDEX ix_candidates_search_hash ON candidates (search_id, structural_hash)",
    "CREATE INDEX ix_candidates_search_status_number ON candidates (search_id, status, number)",
    "CREATE INDEX ix_candidates_search_fingerprint "
    "ON candidates (search_id, fingerprint, status, number)",
)
_V3_CANDIDATE_COLUMNS = (
    "id, search_id, number, parent_id, graph_json, structural_hash, fingerprint, status, "
    "stage, reason, seed, attempts, duplicate_of, created_at, started_at, finished_at, "
    "seconds_json, steps_json"
)
_V4_TRIALS = """
CREATE TABLE trials (
    id INTEGER NOT NULL, search_id INTEGER NOT NULL, candidate_id INTEGER NOT NULL,
    trial INTEGER NOT NULL, seed INTEGER NOT NULL, status VARCHAR NOT NULL, stage VARCHAR,
    reason TEXT, attempts INTEGER DEFAULT 0 NOT NULL,
    accuracies_json TEXT DEFAULT '{}' NOT NULL, early_json TEXT DEFAULT '{}' NOT NULL,
    seconds_json TEXT DEFAULT '{}' NOT NULL, steps_json TEXT DEFAULT '{}' NOT NULL,
    created_at DATETIME NOT NULL, finished_at DATETIME,
    PRIMARY KEY (id),
    CONSTRAINT uq_trials_candidate_trial UNIQUE (candidate_id, trial),
    CONSTRAINT ck_trials_status CHECK (status IN
        ('pending', 'running', 'done', 'stopped', 'rejected', 'failed')),
    FOREIGN KEY(search_id) REFERENCES searches (id) ON DELETE CASCADE,
    FOREIGN KEY(candidate_id) REFERENCES candidates (id) ON DELETE CASCADE)
"""


def _v3_to_v4(connection: Connection) -> None:
    """Rebuild `candidates` (new columns, wider status CHECK), create `trials`, and record
    every finished trained candidate as its own trial 0."""
    sql = connection.exec_driver_sql
    sql(_V4_CANDIDATES)
    sql(f"INSERT INTO candidates_v4 ({_V3_CANDIDATE_COLUMNS}, seed_count) "
        f"SELECT {_V3_CANDIDATE_COLUMNS}, CASE status WHEN 'done' THEN 1 ELSE 0 END "
        "FROM candidates")
    sql("DROP TABLE candidates")  # foreign keys are off: nothing cascades
    sql("ALTER TABLE candidates_v4 RENAME TO candidates")
    for index in _V4_CANDIDATE_INDEXES:
        sql(index)
    sql(_V4_TRIALS)
    sql("CREATE INDEX ix_trials_search_status ON trials (search_id, status)")
    # Fingerprint rejections were never trained and duplicates copy another's result.
    sql("""
        INSERT INTO trials (search_id, candidate_id, trial, seed, status, stage, reason,
                            attempts, accuracies_json, seconds_json, steps_json,
                            created_at, finished_at)
        SELECT c.search_id, c.id, 0, c.seed, c.status, c.stage, c.reason, c.attempts,
               COALESCE((SELECT json_group_object(e.proxy, e.accuracy) FROM evaluations e
                         WHERE e.candidate_id = c.id), '{}'),
               c.seconds_json, c.steps_json, COALESCE(c.started_at, c.created_at),
               c.finished_at
        FROM candidates c
        WHERE c.status IN ('done', 'rejected', 'failed')
          AND COALESCE(c.stage, '') != 'fingerprint'
        ORDER BY c.id
    """)


# The v5 layout, frozen here as SQL: later model changes need their own step.
_V5_LEASES = """
CREATE TABLE leases (
    search_name VARCHAR NOT NULL, token VARCHAR NOT NULL, pid INTEGER NOT NULL,
    host VARCHAR NOT NULL, process VARCHAR, started_at DATETIME NOT NULL,
    heartbeat_at DATETIME NOT NULL,
    PRIMARY KEY (search_name))
"""


def _v4_to_v5(connection: Connection) -> None:
    """Create `leases` (no search of an older database is running: it starts empty)."""
    connection.exec_driver_sql(_V5_LEASES)


MIGRATIONS: list[Callable[[Connection], None]] = [_v1_to_v2, _v2_to_v3, _v3_to_v4, _v4_to_v5]

assert len(MIGRATIONS) == SCHEMA_VERSION - 1, "every schema version needs a migration from the previous one"


def migrate(connection: Connection, from_version: int) -> None:
    """Apply the migrations from `from_version` up to `SCHEMA_VERSION` on `connection`."""
    for function in MIGRATIONS[from_version - 1 :]:
        function(connection)
