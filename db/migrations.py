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


MIGRATIONS: list[Callable[[Connection], None]] = [_v1_to_v2, _v2_to_v3]

assert len(MIGRATIONS) == SCHEMA_VERSION - 1, "every schema version needs a migration from the previous one"


def migrate(connection: Connection, from_version: int) -> None:
    """Apply the migrations from `from_version` up to `SCHEMA_VERSION` on `connection`."""
    for function in MIGRATIONS[from_version - 1 :]:
        function(connection)
