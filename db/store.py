"""The search store: the searches and candidates of one SQLite database.

`SearchStore` is the facade the controller and the inspection commands use: every read
and write of searches, candidates, their trials (one per training seed) and per-proxy
accuracies, returning the frozen records of `db.records` (the ORM stays inside db/).
A candidate's accuracies are the mean over its counted trials, kept in step with every
trial written (`TRIAL_SCORING` says which trials count and how). Opening, migration and transactions
come from `db.engine.Database`, which it extends; re-ranking results live in `db.rerank`.
The controller is the only writer; readers open the file read-only and can run while a
search writes (WAL journal). Each write method commits before it returns.
"""

from __future__ import annotations

import json
import math
import platform
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import ColumnElement

from db.engine import Database, package_version, utc_now
from db.errors import StoreError
from db.models import STATUSES, Candidate, Evaluation, Search, Trial
from db.records import (
    CandidateRecord,
    SearchRecord,
    SearchSummary,
    TrialRecord,
    candidate_record,
    search_record,
    trial_record,
)

DEFAULT_DB_PATH = "evonorm.db"
# Queries go through SQLAlchemy Core on the models' tables: building ORM instances only to
# copy them into frozen records cost several times more per call.
SEARCHES = Search.__table__
CANDIDATES = Candidate.__table__
EVALUATIONS = Evaluation.__table__
TRIALS = Trial.__table__
MAX_SEED = 2**63 - 1  # SQLite INTEGER is signed 64-bit
FINISHED = ("done", "stopped", "rejected", "duplicate", "failed")
RESULT_STATUSES = ("done", "stopped", "rejected", "failed")  # what an evaluation can report
# How a done candidate's trials enter its mean accuracy: a re-evaluation that a protocol
# rejects on another seed scores 0 on every proxy (the layer is not reliable; rejected
# layers get the worst fitness, as in the paper); one that failed for infrastructure
# reasons is left out (it says nothing about the layer). Unfinished trials do not count yet.
TRIAL_SCORING = "done: its accuracies; rejected or stopped: 0 per proxy; failed, pending: left out"


def runtime_versions() -> dict[str, str]:
    """Versions recorded with each search (read from package metadata: no torch import)."""
    return {
        "evonorm_search": package_version("evonorm-search"),
        "torch": package_version("torch"),
        "python": platform.python_version(),
    }


def _check_accuracies(accuracies: Mapping[str, float]) -> None:
    for proxy, accuracy in accuracies.items():
        if not isinstance(accuracy, (int, float)) or not math.isfinite(accuracy):
            raise ValueError(f"accuracy for proxy {proxy!r} must be a finite number, got {accuracy!r}")


def _result_columns(
    status: str,
    accuracies: Mapping[str, float] | None,
    stage: str | None,
    reason: str | None,
    steps: Mapping[str, int] | None,
    seconds: Mapping[str, float] | None,
    early_accuracies: Mapping[str, float] | None,
) -> tuple[dict[str, float], dict[str, Any]]:
    """An evaluation's outcome checked (ValueError) and as the columns that candidates and
    trials share, with its accuracies apart (candidates keep those in `evaluations`)."""
    if status not in RESULT_STATUSES:
        raise ValueError(f"a result cannot have status {status!r}; expected one of {RESULT_STATUSES}")
    accuracies, early = dict(accuracies or {}), dict(early_accuracies or {})
    _check_accuracies(accuracies)
    _check_accuracies(early)
    return accuracies, {
        "status": status,
        "stage": stage,
        "reason": reason,
        "seconds_json": json.dumps({k: float(v) for k, v in (seconds or {}).items()}),
        "steps_json": json.dumps({k: int(v) for k, v in (steps or {}).items()}),
        "early_json": json.dumps(early),
        "finished_at": utc_now(),
    }


class SearchStore(Database):
    """Searches and their candidates in one SQLite file. Use `SearchStore.open`."""

    # ---- searches ------------------------------------------------------------------

    def create_search(self, name: str, config: dict[str, Any], seed: int) -> SearchRecord:
        """Store a new search; StoreError if `name` is taken."""
        self.require_writable()
        if not name or not name.strip():
            raise StoreError("a search name must not be empty; pass --name NAME")
        if not 0 <= seed <= MAX_SEED:
            raise StoreError(f"seed {seed} is out of range; use a seed between 0 and {MAX_SEED}")
        values = {
            "name": name,
            "config_json": json.dumps(config, sort_keys=True, allow_nan=False),
            "seed": seed,
            "versions_json": json.dumps(runtime_versions(), sort_keys=True),
            "created_at": utc_now(),
        }
        try:
            with self.transaction() as connection:
                row = connection.execute(insert(SEARCHES).values(values).returning(SEARCHES)).one()
                return search_record(row)
        except IntegrityError as error:
            raise StoreError(
                f"a search named {name!r} already exists in {self.path}; resume it with "
                f"`evonorm search --name {name}` or choose another --name"
            ) from error

    def find_search(self, name: str) -> SearchRecord | None:
        with self.reading() as connection:
            row = connection.execute(select(SEARCHES).where(SEARCHES.c.name == name)).one_or_none()
            return None if row is None else search_record(row)

    def get_search(self, name: str) -> SearchRecord:
        """The search called `name`; StoreError listing the existing names otherwise."""
        record = self.find_search(name)
        if record is None:
            names = [search.name for search in self.list_searches()]
            known = ", ".join(repr(n) for n in names) if names else "none"
            raise StoreError(
                f"no search named {name!r} in {self.path} (searches there: {known}); "
                "check the name with `evonorm list`"
            )
        return record

    def list_searches(self) -> list[SearchRecord]:
        with self.reading() as connection:
            rows = connection.execute(select(SEARCHES).order_by(SEARCHES.c.id)).all()
            return [search_record(row) for row in rows]

    # ---- candidates: loading -----------------------------------------------------------

    @staticmethod
    def _load(
        connection: Connection,
        where: list[ColumnElement[bool]],
        order: ColumnElement[Any] | None = None,
        limit: int | None = None,
    ) -> list[CandidateRecord]:
        """Candidates matching `where` with their accuracies, in two queries."""
        query = select(CANDIDATES).where(*where)
        if order is not None:
            query = query.order_by(order)
        if limit is not None:
            query = query.limit(limit)
        rows = connection.execute(query).all()
        if not rows:
            return []
        if limit is not None:  # a few rows: fetch their evaluations by id
            scope = EVALUATIONS.c.candidate_id.in_([row.id for row in rows])
            evaluations = select(EVALUATIONS.c.candidate_id, EVALUATIONS.c.proxy, EVALUATIONS.c.accuracy).where(scope)
        else:  # possibly thousands: join on the same filter instead of a huge IN list
            evaluations = (
                select(EVALUATIONS.c.candidate_id, EVALUATIONS.c.proxy, EVALUATIONS.c.accuracy)
                .join(CANDIDATES, CANDIDATES.c.id == EVALUATIONS.c.candidate_id)
                .where(*where)
            )
        accuracies: dict[int, dict[str, float]] = {}
        for candidate_id, proxy, accuracy in connection.execute(evaluations.order_by(EVALUATIONS.c.proxy)):
            accuracies.setdefault(candidate_id, {})[proxy] = accuracy
        return [candidate_record(row, accuracies.get(row.id, {})) for row in rows]

    def _one(self, connection: Connection, candidate_id: int) -> CandidateRecord:
        # An id beyond SQLite's INTEGER cannot be stored: no such candidate, not an OverflowError.
        records = (self._load(connection, [CANDIDATES.c.id == candidate_id], limit=1)
                   if -MAX_SEED - 1 <= candidate_id <= MAX_SEED else [])
        if not records:
            raise StoreError(
                f"no candidate with id {candidate_id} in {self.path}; check the id and --db "
                "(`evonorm front NAME` lists ids)"
            )
        return records[0]

    def _update(self, connection: Connection, candidate_id: int, **values: Any) -> None:
        changed = connection.execute(
            update(CANDIDATES).where(CANDIDATES.c.id == candidate_id).values(**values)
        ).rowcount
        if changed != 1:
            self._one(connection, candidate_id)  # raises the "no candidate" error

    # ---- candidates: writes ----------------------------------------------------------

    def next_number(self, search_id: int) -> int:
        with self.reading() as connection:
            highest = connection.scalar(
                select(func.max(CANDIDATES.c.number)).where(CANDIDATES.c.search_id == search_id)
            )
            return 0 if highest is None else highest + 1

    def add_candidate(
        self,
        search_id: int,
        *,
        number: int,
        parent_id: int | None,
        graph_json: str,
        structural_hash: str,
        fingerprint: str | None,
        seed: int,
        status: str = "pending",
        duplicate_of: int | None = None,
        stage: str | None = None,
        reason: str | None = None,
        hurdle: float | None = None,
    ) -> CandidateRecord:
        """Store a candidate. A "duplicate" copies the accuracies of `duplicate_of`."""
        self.require_writable()
        if status not in STATUSES:
            raise ValueError(f"unknown candidate status {status!r}; expected one of {STATUSES}")
        if (status == "duplicate") != (duplicate_of is not None):
            raise ValueError("duplicate_of must be given exactly when status is 'duplicate'")
        if not 0 <= seed <= MAX_SEED:
            raise ValueError(f"candidate seed {seed} is outside [0, 2**63)")
        now = utc_now()
        values = {
            "search_id": search_id,
            "number": number,
            "parent_id": parent_id,
            "graph_json": graph_json,
            "structural_hash": structural_hash,
            "fingerprint": fingerprint,
            "status": status,
            "stage": stage,
            "reason": reason,
            "seed": seed,
            "attempts": 0,
            "duplicate_of": duplicate_of,
            "created_at": now,
            "finished_at": now if status in FINISHED else None,
            "seconds_json": "{}",
            "steps_json": "{}",
            "hurdle": hurdle,
        }
        try:
            with self.transaction() as connection:
                accuracies: dict[str, float] = {}
                if duplicate_of is not None:
                    originals = self._load(connection, [CANDIDATES.c.id == duplicate_of], limit=1)
                    if not originals or originals[0].search_id != search_id:
                        raise ValueError(f"duplicate_of={duplicate_of} is not a candidate of search {search_id}")
                    accuracies = originals[0].accuracies
                    values["seed_count"] = originals[0].seed_count
                    values["standard_errors_json"] = json.dumps(originals[0].standard_errors)
                row = connection.execute(insert(CANDIDATES).values(values).returning(CANDIDATES)).one()
                self._insert_accuracies(connection, row.id, accuracies)
                return candidate_record(row, accuracies)
        except IntegrityError as error:
            raise StoreError(
                f"cannot add candidate number {number} to search {search_id}: {error.orig} "
                "(a number is used once per search; parent and search must exist)"
            ) from error

    @staticmethod
    def _insert_accuracies(connection: Connection, candidate_id: int, accuracies: Mapping[str, float]) -> None:
        if accuracies:
            connection.execute(
                insert(EVALUATIONS),
                [
                    {"candidate_id": candidate_id, "proxy": proxy, "accuracy": float(accuracy)}
                    for proxy, accuracy in sorted(accuracies.items())
                ],
            )

    def mark_running(self, candidate_id: int) -> None:
        """The candidate was submitted: status running, attempts + 1, started now."""
        self.require_writable()
        with self.transaction() as connection:
            self._update(
                connection,
                candidate_id,
                status="running",
                attempts=CANDIDATES.c.attempts + 1,
                started_at=utc_now(),
            )

    def record_result(
        self,
        candidate_id: int,
        *,
        status: str,
        accuracies: Mapping[str, float] | None = None,
        stage: str | None = None,
        reason: str | None = None,
        steps: Mapping[str, int] | None = None,
        seconds: Mapping[str, float] | None = None,
        early_accuracies: Mapping[str, float] | None = None,
    ) -> CandidateRecord:
        """Store a candidate's first evaluation (done, stopped, rejected or failed): its
        status, per-proxy accuracies and trial 0. Only from pending/running.

        The values of one `evonorm_search.task.EvalResult`, field by field (the controller
        passes them; db knows nothing of that class).
        """
        self.require_writable()
        accuracies, result = _result_columns(status, accuracies, stage, reason, steps, seconds,
                                             early_accuracies)
        with self.transaction() as connection:
            current = connection.execute(
                select(CANDIDATES.c.status, CANDIDATES.c.search_id, CANDIDATES.c.seed,
                       CANDIDATES.c.attempts, CANDIDATES.c.started_at, CANDIDATES.c.created_at)
                .where(CANDIDATES.c.id == candidate_id)
            ).one_or_none()
            if current is None:
                self._one(connection, candidate_id)  # raises the "no candidate" error
                raise AssertionError("unreachable")
            if current.status not in ("pending", "running"):
                raise StoreError(f"candidate {candidate_id} is already {current.status}; a result is recorded once")
            self._update(connection, candidate_id, **result)
            connection.execute(insert(TRIALS).values(
                search_id=current.search_id, candidate_id=candidate_id, trial=0,
                seed=current.seed, attempts=current.attempts,
                accuracies_json=json.dumps(accuracies),
                created_at=current.started_at or current.created_at, **result,
            ))
            if status == "done":
                self._refresh_mean(connection, candidate_id)
            else:
                self._insert_accuracies(connection, candidate_id, accuracies)
            return self._one(connection, candidate_id)

    def _refresh_mean(self, connection: Connection, candidate_id: int) -> None:
        """Recompute a done candidate's accuracies, seed count and standard errors from
        its trials (see `TRIAL_SCORING`)."""
        rows = connection.execute(
            select(TRIALS.c.trial, TRIALS.c.status, TRIALS.c.accuracies_json)
            .where(TRIALS.c.candidate_id == candidate_id).order_by(TRIALS.c.trial)
        ).all()
        first = next((json.loads(row.accuracies_json) for row in rows if row.trial == 0), {})
        samples: list[dict[str, float]] = []
        for row in rows:
            if row.status == "done":
                samples.append(json.loads(row.accuracies_json))
            elif row.status in ("rejected", "stopped"):
                samples.append(dict.fromkeys(first, 0.0))
        means, errors = {}, {}
        for proxy in first:
            values = [sample.get(proxy, 0.0) for sample in samples]
            means[proxy] = math.fsum(values) / len(values)
            if len(values) > 1:
                variance = math.fsum((v - means[proxy]) ** 2 for v in values) / (len(values) - 1)
                errors[proxy] = math.sqrt(variance / len(values))
        connection.execute(delete(EVALUATIONS).where(EVALUATIONS.c.candidate_id == candidate_id))
        self._insert_accuracies(connection, candidate_id, means)
        self._update(connection, candidate_id, seed_count=len(samples),
                     standard_errors_json=json.dumps(errors))

    # ---- trials: re-evaluations with further seeds -------------------------------------

    def add_trial(self, candidate_id: int, *, trial: int, seed: int) -> TrialRecord:
        """A pending re-evaluation of a done candidate with another seed."""
        self.require_writable()
        if trial < 1:
            raise ValueError(f"re-evaluation trials are numbered from 1, got {trial}")
        if not 0 <= seed <= MAX_SEED:
            raise ValueError(f"trial seed {seed} is outside [0, 2**63)")
        with self.transaction() as connection:
            candidate = self._one(connection, candidate_id)
            if candidate.status != "done":
                raise StoreError(f"candidate {candidate_id} is {candidate.status}; only done "
                                 "candidates are re-evaluated")
            try:
                row = connection.execute(insert(TRIALS).values(
                    search_id=candidate.search_id, candidate_id=candidate_id, trial=trial,
                    seed=seed, status="pending", created_at=utc_now(),
                ).returning(TRIALS)).one()
            except IntegrityError as error:
                raise StoreError(f"candidate {candidate_id} already has trial {trial}") from error
            return trial_record(row)

    def mark_trial_running(self, trial_id: int) -> None:
        self.require_writable()
        with self.transaction() as connection:
            connection.execute(update(TRIALS).where(TRIALS.c.id == trial_id)
                               .values(status="running", attempts=TRIALS.c.attempts + 1))

    def record_trial(
        self,
        trial_id: int,
        *,
        status: str,
        accuracies: Mapping[str, float] | None = None,
        stage: str | None = None,
        reason: str | None = None,
        steps: Mapping[str, int] | None = None,
        seconds: Mapping[str, float] | None = None,
        early_accuracies: Mapping[str, float] | None = None,
    ) -> CandidateRecord:
        """Store a re-evaluation's outcome; returns its candidate with the new mean."""
        self.require_writable()
        accuracies, result = _result_columns(status, accuracies, stage, reason, steps, seconds,
                                             early_accuracies)
        with self.transaction() as connection:
            current = connection.execute(
                select(TRIALS.c.status, TRIALS.c.candidate_id).where(TRIALS.c.id == trial_id)
            ).one_or_none()
            if current is None:
                raise StoreError(f"no trial with id {trial_id} in {self.path}")
            if current.status not in ("pending", "running"):
                raise StoreError(f"trial {trial_id} is already {current.status}; a result is recorded once")
            connection.execute(update(TRIALS).where(TRIALS.c.id == trial_id).values(
                accuracies_json=json.dumps(accuracies), **result))
            self._refresh_mean(connection, current.candidate_id)
            return self._one(connection, current.candidate_id)

    def mark_trial_failed(self, trial_id: int, stage: str, reason: str) -> CandidateRecord:
        """An infrastructure failure of a re-evaluation the controller gave up retrying."""
        return self.record_trial(trial_id, status="failed", stage=stage, reason=reason)

    def requeue_trials(self, search_id: int) -> list[TrialRecord]:
        """Running trials (lost by a killed controller) go back to pending; returns every
        pending trial of the search in the order they were added."""
        self.require_writable()
        with self.transaction() as connection:
            connection.execute(
                update(TRIALS)
                .where(TRIALS.c.search_id == search_id, TRIALS.c.status == "running")
                .values(status="pending")
            )
            rows = connection.execute(
                select(TRIALS).where(TRIALS.c.search_id == search_id, TRIALS.c.status == "pending")
                .order_by(TRIALS.c.id)
            ).all()
            return [trial_record(row) for row in rows]

    def trials(self, candidate_id: int) -> list[TrialRecord]:
        """The candidate's trials, by trial number."""
        with self.reading() as connection:
            rows = connection.execute(
                select(TRIALS).where(TRIALS.c.candidate_id == candidate_id).order_by(TRIALS.c.trial)
            ).all()
            return [trial_record(row) for row in rows]

    def trial_counts(self, search_id: int) -> dict[int, int]:
        """candidate id -> number of its trials in any status (first evaluation included)."""
        with self.reading() as connection:
            rows = connection.execute(
                select(TRIALS.c.candidate_id, func.count()).where(TRIALS.c.search_id == search_id)
                .group_by(TRIALS.c.candidate_id)
            ).all()
            return {candidate_id: count for candidate_id, count in rows}

    def trial_outcomes(self, search_id: int) -> dict[str, int]:
        """Re-evaluations (trials 1, 2, ...) of the search by status, for the funnel."""
        with self.reading() as connection:
            rows = connection.execute(
                select(TRIALS.c.status, func.count())
                .where(TRIALS.c.search_id == search_id, TRIALS.c.trial > 0)
                .group_by(TRIALS.c.status)
            ).all()
            return {status: count for status, count in rows}

    def mark_failed(self, candidate_id: int, stage: str, reason: str) -> CandidateRecord:
        """An infrastructure failure the controller gave up retrying."""
        self.require_writable()
        with self.transaction() as connection:
            self._update(
                connection, candidate_id, status="failed", stage=stage, reason=reason, finished_at=utc_now()
            )
            return self._one(connection, candidate_id)

    def requeue_inflight(self, search_id: int) -> list[CandidateRecord]:
        """Running candidates (lost by a killed controller) go back to pending.

        Returns every pending candidate of the search, by number.
        """
        self.require_writable()
        with self.transaction() as connection:
            connection.execute(
                update(CANDIDATES)
                .where(CANDIDATES.c.search_id == search_id, CANDIDATES.c.status == "running")
                .values(status="pending", started_at=None)
            )
            return self._load(
                connection,
                [CANDIDATES.c.search_id == search_id, CANDIDATES.c.status == "pending"],
                CANDIDATES.c.number,
            )

    def release_inflight(self, search_id: int) -> list[int]:
        """Running candidates and re-evaluations back to pending, their last attempt not
        counted: the run stopped or lost its executor, which is not the candidate's doing
        (a resume submits them again). Returns the numbers of the candidates concerned.

        Only the holder of the search's lease may call this (`db.leases`): another process
        would take work away from a running controller.
        """
        self.require_writable()
        with self.transaction() as connection:
            running = [CANDIDATES.c.search_id == search_id, CANDIDATES.c.status == "running"]
            numbers = set(connection.scalars(select(CANDIDATES.c.number).where(*running)))
            connection.execute(
                update(CANDIDATES).where(*running)
                .values(status="pending", started_at=None,
                        attempts=func.max(CANDIDATES.c.attempts - 1, 0))
            )
            trials = [TRIALS.c.search_id == search_id, TRIALS.c.status == "running"]
            numbers.update(connection.scalars(
                select(CANDIDATES.c.number)
                .join(TRIALS, TRIALS.c.candidate_id == CANDIDATES.c.id).where(*trials)))
            connection.execute(
                update(TRIALS).where(*trials)
                .values(status="pending", attempts=func.max(TRIALS.c.attempts - 1, 0))
            )
            return sorted(numbers)

    # ---- candidates: reads -----------------------------------------------------------

    def get_candidate(self, candidate_id: int) -> CandidateRecord:
        with self.reading() as connection:
            return self._one(connection, candidate_id)

    def candidates(self, search_id: int, statuses: Iterable[str] | None = None) -> list[CandidateRecord]:
        """The search's candidates (optionally only those with one of `statuses`), by number."""
        where = [CANDIDATES.c.search_id == search_id]
        if statuses is not None:
            where.append(CANDIDATES.c.status.in_(list(statuses)))
        with self.reading() as connection:
            return self._load(connection, where, CANDIDATES.c.number)

    def population(self, search_id: int, size: int) -> list[CandidateRecord]:
        """The aging population: the `size` most recent done candidates, by number."""
        with self.reading() as connection:
            newest_first = self._load(
                connection,
                [CANDIDATES.c.search_id == search_id, CANDIDATES.c.status == "done"],
                CANDIDATES.c.number.desc(),
                limit=size,
            )
            return newest_first[::-1]

    def has_hash(self, search_id: int, structural_hash: str) -> bool:
        with self.reading() as connection:
            found = connection.scalar(
                select(CANDIDATES.c.id)
                .where(CANDIDATES.c.search_id == search_id, CANDIDATES.c.structural_hash == structural_hash)
                .limit(1)
            )
            return found is not None

    def find_by_fingerprint(self, search_id: int, fingerprint: str) -> CandidateRecord | None:
        """The earliest done candidate of the search with this fingerprint, if any."""
        with self.reading() as connection:
            found = self._load(
                connection,
                [
                    CANDIDATES.c.search_id == search_id,
                    CANDIDATES.c.fingerprint == fingerprint,
                    CANDIDATES.c.status == "done",
                ],
                CANDIDATES.c.number,
                limit=1,
            )
            return found[0] if found else None

    def counts(self, search_id: int) -> dict[str, int]:
        """status -> number of candidates (statuses with none are left out)."""
        with self.reading() as connection:
            return self._counts(connection, search_id)

    @staticmethod
    def _counts(connection: Connection, search_id: int) -> dict[str, int]:
        rows = connection.execute(
            select(CANDIDATES.c.status, func.count())
            .where(CANDIDATES.c.search_id == search_id)
            .group_by(CANDIDATES.c.status)
        ).all()
        return {status: count for status, count in rows}

    def summary(self, search_id: int) -> SearchSummary:
        """Counts, rejections by stage, best done candidate per proxy, last activity."""
        with self.reading() as connection:
            search = connection.execute(select(SEARCHES).where(SEARCHES.c.id == search_id)).one_or_none()
            if search is None:
                raise StoreError(f"no search with id {search_id} in {self.path}; see `evonorm list`")
            counts = dict.fromkeys(STATUSES, 0)
            counts.update(self._counts(connection, search_id))
            stage = func.coalesce(CANDIDATES.c.stage, "unknown")
            rejected = {
                name: count
                for name, count in connection.execute(
                    select(stage, func.count())
                    .where(CANDIDATES.c.search_id == search_id, CANDIDATES.c.status == "rejected")
                    .group_by(stage)
                    .order_by(stage)
                )
            }
            ranked = (
                select(
                    EVALUATIONS.c.proxy,
                    EVALUATIONS.c.candidate_id,
                    EVALUATIONS.c.accuracy,
                    func.row_number()
                    .over(
                        partition_by=EVALUATIONS.c.proxy,
                        order_by=(EVALUATIONS.c.accuracy.desc(), EVALUATIONS.c.candidate_id),
                    )
                    .label("rank"),
                )
                .join(CANDIDATES, CANDIDATES.c.id == EVALUATIONS.c.candidate_id)
                .where(CANDIDATES.c.search_id == search_id, CANDIDATES.c.status == "done")
                .subquery()
            )
            best = {
                proxy: (candidate_id, accuracy)
                for proxy, candidate_id, accuracy in connection.execute(
                    select(ranked.c.proxy, ranked.c.candidate_id, ranked.c.accuracy)
                    .where(ranked.c.rank == 1)
                    .order_by(ranked.c.proxy)
                )
            }
            last = connection.execute(
                select(
                    func.max(CANDIDATES.c.created_at),
                    func.max(CANDIDATES.c.started_at),
                    func.max(CANDIDATES.c.finished_at),
                ).where(CANDIDATES.c.search_id == search_id)
            ).one()
            times = [t for t in last if t is not None]
            retried_trials = (
                select(TRIALS.c.candidate_id)
                .where(TRIALS.c.search_id == search_id, TRIALS.c.trial > 0, TRIALS.c.attempts > 1)
            )
            retried = connection.scalars(
                select(CANDIDATES.c.number)
                .where(CANDIDATES.c.search_id == search_id,
                       (CANDIDATES.c.attempts > 1) | CANDIDATES.c.id.in_(retried_trials))
                .order_by(CANDIDATES.c.number)
            ).all()
            return SearchSummary(
                search=search_record(search),
                counts=counts,
                rejected_by_stage=rejected,
                best=best,
                last_activity=max(times) if times else None,
                retried=tuple(retried),
            )


__all__ = [
    "DEFAULT_DB_PATH",
    "CandidateRecord",
    "SearchRecord",
    "SearchStore",
    "SearchSummary",
    "StoreError",
    "TrialRecord",
    "runtime_versions",
]
