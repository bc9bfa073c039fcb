"""The search controller: asynchronous steady-state evolution, the only database writer.

Owns the candidate's life up to and after its evaluation (DESIGN.md "One candidate's
life"): choose a parent by Pareto tournament over the aging population (the P most
recent done members), mutate it, skip children whose structural hash the search has
already seen, record fingerprint duplicates and probe NaN/inf rejections without
training, store the rest as pending *before* submitting them, and record each result as
soon as its future completes, which immediately frees a slot for the next child.
With the noise-aware settings (`evonorm_search.fidelity`) a new child carries the hurdle
of the population at its creation (stored with it), and each result is followed by
scheduling re-evaluations of the population's Pareto front (stored as pending trials
before they are submitted; they go before new children).

The controller is the only writer, so it mirrors in memory the three things proposals
read from the database (the aging population, the structural hashes seen, the earliest
done candidate per fingerprint): loaded from the store when a run starts, updated with
each write, equal to what the store's queries would return, at no query cost.

Determinism and resume: the database is the only state. Candidate k's training seed and
the generator that proposes it are derived from (search seed, k), and the proposal
reads only the database (population, seen hashes, fingerprints) as it is at that moment.
Completed futures are always recorded before the next child is proposed, so with the
inline executor (whose futures complete inside `submit`) every proposal sees exactly the
same database in an uninterrupted run and in an interrupted-then-resumed one. On start,
candidates left pending or running by a killed controller are resubmitted first, in
number order, then pending re-evaluation trials in the order they were added; the
re-evaluation schedule is checked again on start (it is idempotent), so a kill between a
result and its scheduling changes nothing. With several workers the order in which results arrive is not
deterministic, so neither is the search (as in the paper's asynchronous setting).
"""

from __future__ import annotations

import bisect
import hashlib
import random
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, CancelledError, Future, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from evonorm_search.config import SearchConfig
from evonorm_search.errors import EvonormError, ExecutorLost
from evonorm_search.fidelity import hurdle_for, to_reevaluate
from evonorm_search.fingerprint import Fingerprint, fingerprint
from evonorm_search.graph import LayerGraph
from evonorm_search.mutation import mutate, random_graph
from evonorm_search.selection import tournament
from evonorm_search.task import EvalResult, EvalTask

if TYPE_CHECKING:
    from db.store import CandidateRecord, SearchRecord, SearchStore, TrialRecord
    from workers.executors import Evaluator

# Proposals per candidate before concluding that the reachable space is exhausted.
MAX_PROPOSALS = 1000
# Consecutive untrained candidates (duplicates, probe rejections) before giving up.
MAX_UNTRAINED_IN_A_ROW = 1000
REFRESH_SECONDS = 5.0
FINGERPRINT_STAGE = "fingerprint"
INFRASTRUCTURE_STAGE = "infrastructure"


class SearchExhausted(EvonormError):
    """No new layer can be proposed: the reachable part of the space has been searched."""


def derive_seed(search_seed: int, number: int, purpose: str = "candidate") -> int:
    """A seed in [0, 2**63) for candidate `number`, independent across numbers and purposes."""
    digest = hashlib.sha256(f"evonorm:{purpose}:{search_seed}:{number}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def counts_toward_budget(record: CandidateRecord) -> bool:
    """Whether the candidate was submitted for evaluation (see `SearchConfig.budget`)."""
    if record.status == "duplicate":
        return False
    return not (record.status == "rejected" and record.stage == FINGERPRINT_STAGE)


@dataclass(frozen=True)
class Progress:
    """A snapshot of a search for the progress display and the run's summary.

    `submitted` counts toward the budget; `hash_skips` and `evaluated_this_run` are for
    this run only (hash skips leave no row in the database).
    """

    name: str
    budget: int
    submitted: int
    in_flight: int
    counts: dict[str, int]
    rejected_by_stage: dict[str, int]
    hash_skips: int
    best: dict[str, float]
    evaluated_this_run: int
    elapsed: float
    interrupted: bool = False
    reevaluations: int = 0  # re-evaluation trials finished (all runs)
    reevaluations_pending: int = 0  # queued or in flight

    @property
    def complete(self) -> bool:
        return self.submitted >= self.budget and self.in_flight == 0 and not self.interrupted

    @property
    def throughput_per_minute(self) -> float:
        return 60.0 * self.evaluated_this_run / self.elapsed if self.elapsed > 0 else 0.0

    def line(self) -> str:
        """One human-readable status line."""
        counts = self.counts
        finished = sum(counts.get(s, 0) for s in ("done", "stopped", "rejected", "failed"))
        finished -= self.rejected_by_stage.get(FINGERPRINT_STAGE, 0)
        rejected = counts.get("rejected", 0) - self.rejected_by_stage.get(FINGERPRINT_STAGE, 0)
        rate = f"{100.0 * rejected / finished:.0f}%" if finished else "-"
        stages = ", ".join(f"{k} {v}" for k, v in sorted(self.rejected_by_stage.items()))
        best = " ".join(f"{proxy} {acc:.3f}" for proxy, acc in self.best.items()) or "-"
        stopped = f", stopped at the hurdle {counts['stopped']}" if counts.get("stopped") else ""
        trials = (f" | re-evaluations {self.reevaluations} done, {self.reevaluations_pending} to go"
                  if self.reevaluations or self.reevaluations_pending else "")
        return (
            f"[{self.name}] {self.submitted}/{self.budget} evaluated, {self.in_flight} in flight"
            f" | done {counts.get('done', 0)}{stopped}, rejected {counts.get('rejected', 0)}"
            f"{f' ({stages})' if stages else ''}, duplicate {counts.get('duplicate', 0)},"
            f" failed {counts.get('failed', 0)}, hash skips {self.hash_skips}"
            f" | rejection rate {rate}{trials} | best {best}"
            f" | {self.throughput_per_minute:.1f} candidates/min"
        )


@dataclass
class _State:
    """Running tallies, loaded from the database once and then kept in step with writes."""

    submitted: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    rejected_by_stage: Counter[str] = field(default_factory=Counter)
    best: dict[str, float] = field(default_factory=dict)
    hash_skips: int = 0
    evaluated_this_run: int = 0
    # Mirrors of the store (see the module docstring).
    hashes: set[str] = field(default_factory=set)
    population: list[CandidateRecord] = field(default_factory=list)
    first_done: dict[str, tuple[int, int]] = field(default_factory=dict)  # fp -> (number, id)
    # Re-evaluation: candidate id -> trials created; ids with an unfinished trial.
    trials: dict[int, int] = field(default_factory=dict)
    busy: set[int] = field(default_factory=set)
    reevaluations: int = 0
    done_scores: dict[int, dict[str, float]] = field(default_factory=dict)  # id -> mean accuracies


@dataclass(frozen=True)
class _Job:
    """What a future in flight evaluates: a candidate's first trial or a re-evaluation."""

    candidate: CandidateRecord
    trial: TrialRecord | None = None

    @property
    def key(self) -> tuple[str, int]:
        return ("trial", self.trial.id) if self.trial is not None else ("candidate", self.candidate.id)


class SearchController:
    """Runs one search against a store and an evaluator (both owned by the caller)."""

    def __init__(
        self,
        store: SearchStore,
        search: SearchRecord,
        config: SearchConfig,
        evaluator: Evaluator,
        *,
        progress: Callable[[Progress], None] | None = None,
        fingerprint_fn: Callable[[LayerGraph], Fingerprint] = fingerprint,
        stop_when: Callable[[CandidateRecord], bool] | None = None,
    ) -> None:
        """`stop_when(record)`, called with the candidate after each recorded evaluation
        (any status; after a re-evaluation, with its new mean), ends the run early
        when it returns True: nothing new is submitted, evaluations in flight finish (a
        planted-recovery benchmark stops at the first recovery this way)."""
        self.store = store
        self.search = search
        self.config = config
        self.evaluator = evaluator
        self._progress = progress
        self._fingerprint = fingerprint_fn
        self._state = _State()
        self._graphs: dict[int, LayerGraph] = {}
        self._attempts: dict[tuple[str, int], int] = {}
        self._next_number = 0
        self._started = time.monotonic()
        self._in_flight: dict[Future[EvalResult], _Job] = {}
        self._queue: deque[_Job] = deque()  # resubmissions and re-evaluations, in order
        self._init_graphs = self._known_init_graphs()
        self._stop_when = stop_when
        self.stopped_early = False

    # ---- the loop --------------------------------------------------------------------

    def run(self) -> Progress:
        """Run until the budget is evaluated, or Ctrl-C (then in-flight work stays pending
        in the database and is resubmitted by the next run). Returns the final snapshot.
        ExecutorLost (the evaluator can evaluate nothing more) stops the run at once."""
        self._started = time.monotonic()
        self._load_state()
        self._queue = deque(self._requeue())
        self._schedule_reevaluations()
        try:
            while True:
                self._collect([f for f in self._in_flight if f.done()])
                if len(self._in_flight) < max(1, self.evaluator.capacity) and not self.stopped_early:
                    if self._queue:
                        self._submit(self._queue.popleft())
                        continue
                    if self._state.submitted < self.config.budget:
                        self._submit(_Job(self._new_candidate()))
                        continue
                if not self._in_flight:
                    break
                # The timeout only refreshes the progress display during long evaluations.
                wait(list(self._in_flight), timeout=REFRESH_SECONDS, return_when=FIRST_COMPLETED)
                self._report()
        except KeyboardInterrupt:
            for future in self._in_flight:
                future.cancel()
            final = self.snapshot(interrupted=True)
            self._report(final)
            return final
        final = self.snapshot()
        self._report(final)
        return final

    @property
    def population(self) -> list[CandidateRecord]:
        """The aging population proposals draw parents from (mirrors the store's query)."""
        return list(self._state.population)

    def snapshot(self, *, interrupted: bool = False) -> Progress:
        state = self._state
        counts = {status: count for status, count in state.counts.items() if count}
        pending = sum(job.trial is None for job in self._queue)
        running = sum(job.trial is None for job in self._in_flight.values())
        if pending:
            counts["pending"] = pending
        if running:
            counts["running"] = running
        return Progress(
            name=self.search.name,
            budget=self.config.budget,
            submitted=state.submitted,
            in_flight=len(self._in_flight),
            counts=counts,
            rejected_by_stage=dict(state.rejected_by_stage),
            hash_skips=state.hash_skips,
            best={p: state.best[p] for p in self.config.proxies if p in state.best},
            evaluated_this_run=state.evaluated_this_run,
            elapsed=time.monotonic() - self._started,
            interrupted=interrupted,
            reevaluations=state.reevaluations,
            reevaluations_pending=len(state.busy),
        )

    def _report(self, progress: Progress | None = None) -> None:
        if self._progress is not None:
            self._progress(progress if progress is not None else self.snapshot())

    # ---- state from the database -----------------------------------------------------

    def _load_state(self) -> None:
        state = _State()
        for record in self.store.candidates(self.search.id):
            self._tally(state, record)
            if counts_toward_budget(record):
                state.submitted += 1
        state.population = self.store.population(self.search.id, self.config.population)
        state.trials = self.store.trial_counts(self.search.id)
        state.reevaluations = sum(
            count for status, count in self.store.trial_outcomes(self.search.id).items()
            if status not in ("pending", "running"))
        self._state = state
        self._next_number = self.store.next_number(self.search.id)

    def _tally(self, state: _State, record: CandidateRecord) -> None:
        """Count a finished candidate (pending/running ones are counted live in snapshot)."""
        state.hashes.add(record.structural_hash)
        if record.status in ("pending", "running"):
            return
        state.counts[record.status] += 1
        if record.status == "rejected":
            state.rejected_by_stage[record.stage or "unknown"] += 1
        if record.status == "done":
            self._score(state, record)
            if record.fingerprint is not None:
                known = state.first_done.get(record.fingerprint)
                if known is None or record.number < known[0]:
                    state.first_done[record.fingerprint] = (record.number, record.id)

    @staticmethod
    def _score(state: _State, record: CandidateRecord) -> None:
        """Keep the best mean accuracy per proxy in step with a done candidate's mean, which
        re-evaluation can lower (then the best is recomputed over every done candidate)."""
        previous = state.done_scores.get(record.id, {})
        state.done_scores[record.id] = dict(record.accuracies)
        if any(record.accuracies.get(p, 0.0) < a and state.best.get(p) == a
               for p, a in previous.items()):
            state.best = {}
            for scores in state.done_scores.values():
                for proxy, accuracy in scores.items():
                    state.best[proxy] = max(accuracy, state.best.get(proxy, accuracy))
            return
        for proxy, accuracy in record.accuracies.items():
            state.best[proxy] = max(accuracy, state.best.get(proxy, accuracy))

    def _join_population(self, record: CandidateRecord) -> None:
        """Aging: a newly done member enters by number; beyond P the oldest leaves."""
        population = self._state.population
        bisect.insort(population, record, key=lambda member: member.number)
        del population[: max(0, len(population) - self.config.population)]

    def _requeue(self) -> list[_Job]:
        """Pending candidates to resubmit, then pending re-evaluations; ones that already used
        every attempt fail."""
        pending: list[_Job] = []
        for record in self.store.requeue_inflight(self.search.id):
            if record.attempts >= self.config.max_attempts:
                failed = self.store.mark_failed(
                    record.id,
                    INFRASTRUCTURE_STAGE,
                    f"submitted {record.attempts} times without a result (the evaluation may "
                    "crash its process)",
                )
                self._tally(self._state, failed)
            else:
                pending.append(_Job(record))
        for trial in self.store.requeue_trials(self.search.id):
            if trial.attempts >= self.config.max_attempts:
                updated = self.store.mark_trial_failed(
                    trial.id, INFRASTRUCTURE_STAGE,
                    f"submitted {trial.attempts} times without a result")
                self._trial_finished(updated)
            else:
                self._state.busy.add(trial.candidate_id)
                pending.append(_Job(self.store.get_candidate(trial.candidate_id), trial))
        return pending

    def _schedule_reevaluations(self) -> None:
        """Store and queue one more trial for each front member short of its seeds."""
        state, config = self._state, self.config
        for member in to_reevaluate(state.population, config.proxies, config.reevaluate,
                                    state.trials, state.busy):
            number = state.trials.get(member.id, 1)
            trial = self.store.add_trial(
                member.id, trial=number,
                seed=derive_seed(config.seed, member.number, f"trial:{number}"))
            state.trials[member.id] = number + 1
            state.busy.add(member.id)
            self._queue.append(_Job(member, trial))

    def _trial_finished(self, candidate: CandidateRecord) -> None:
        """A re-evaluation ended: the candidate's mean changed in every mirror."""
        state = self._state
        state.busy.discard(candidate.id)
        state.reevaluations += 1
        if candidate.status == "done":
            self._score(state, candidate)
        for index, member in enumerate(state.population):
            if member.id == candidate.id:
                state.population[index] = candidate

    # ---- proposing children ----------------------------------------------------------

    def _known_init_graphs(self) -> list[LayerGraph]:
        from evonorm_search.known import get_known

        return [get_known(name) for name in self.config.init_names()]

    def _graph(self, record: CandidateRecord) -> LayerGraph:
        graph = self._graphs.get(record.id)
        if graph is None:
            if len(self._graphs) > 4 * self.config.population:
                self._graphs.clear()
            graph = LayerGraph.from_json(record.graph_json)
            self._graphs[record.id] = graph
        return graph

    def _scores(self, record: CandidateRecord) -> list[float]:
        return [record.accuracies.get(proxy, 0.0) for proxy in self.config.proxies]

    def _initial_graph(self, rng: random.Random) -> LayerGraph:
        """The next known layer the search has not seen yet, else a random layer."""
        for graph in self._init_graphs:
            if graph.structural_hash() not in self._state.hashes:
                return graph
        return random_graph(rng, self.config.space, self.config.num_nodes)  # type: ignore[arg-type]

    def _propose(self, rng: random.Random) -> tuple[LayerGraph, CandidateRecord | None, str]:
        """A child whose structural hash the search has not seen, with its parent."""
        config = self.config
        population = self._state.population
        for _ in range(MAX_PROPOSALS):
            parent: CandidateRecord | None = None
            if config.strategy == "random" or len(population) < config.population:
                graph = self._initial_graph(rng)
            else:
                parent = tournament(
                    population,
                    rng,
                    config.tournament_fraction,
                    config.tournament_min_size,
                    objectives=self._scores,
                )
                graph = mutate(self._graph(parent), rng, config.space,  # type: ignore[arg-type]
                               config.mutations)
            structural_hash = graph.structural_hash()
            if structural_hash not in self._state.hashes:
                return graph, parent, structural_hash
            self._state.hash_skips += 1
        raise SearchExhausted(
            f"search {self.search.name!r}: {MAX_PROPOSALS} proposals in a row were layers "
            "already seen, so this space looks exhausted; raise --num-nodes or --population, "
            "or lower --budget"
        )

    def _new_candidate(self) -> CandidateRecord:
        """Propose children until one needs training; store it as pending and return it.

        Children caught by the fingerprint are stored (duplicate / rejected) on the way.
        """
        for _ in range(MAX_UNTRAINED_IN_A_ROW):
            number = self._next_number
            rng = random.Random(derive_seed(self.config.seed, number, "propose"))
            graph, parent, structural_hash = self._propose(rng)
            probe = self._fingerprint(graph)
            fields = {
                "number": number,
                "parent_id": None if parent is None else parent.id,
                "graph_json": graph.to_json(),
                "structural_hash": structural_hash,
                "fingerprint": probe.digest,
                "seed": derive_seed(self.config.seed, number),
                "hurdle": hurdle_for(self._state.population, self.config.hurdle,
                                     self.config.proxies, self.config.population),
            }
            self._next_number += 1
            if not probe.finite:
                record = self.store.add_candidate(
                    self.search.id,
                    status="rejected",
                    stage=FINGERPRINT_STAGE,
                    reason=probe.reason,
                    **fields,
                )
            else:
                original = self._state.first_done.get(probe.digest)
                if original is None:
                    record = self.store.add_candidate(self.search.id, **fields)
                    self._state.submitted += 1
                    self._state.hashes.add(structural_hash)
                    return record
                record = self.store.add_candidate(
                    self.search.id, status="duplicate", duplicate_of=original[1], **fields
                )
            self._tally(self._state, record)
            self._report()
        raise SearchExhausted(
            f"search {self.search.name!r}: {MAX_UNTRAINED_IN_A_ROW} children in a row were "
            "duplicates or numerically broken, so this space looks exhausted; raise --num-nodes "
            "or --population, or lower --budget"
        )

    # ---- evaluation ------------------------------------------------------------------

    def _submit(self, job: _Job) -> None:
        config, record, trial = self.config, job.candidate, job.trial
        task = EvalTask(
            graph_json=record.graph_json,
            proxies=config.proxies,
            dataset=config.dataset,
            train=config.train,
            seed=record.seed if trial is None else trial.seed,
            candidate_id=record.id,
            kind=config.task,
            target_json=config.target,
            # Re-evaluations measure a member's accuracy with another seed: no hurdle.
            hurdle=record.hurdle if trial is None else None,
        )
        if trial is None:
            self.store.mark_running(record.id)
            attempts = record.attempts
        else:
            self.store.mark_trial_running(trial.id)
            attempts = trial.attempts
        self._attempts[job.key] = self._attempts.get(job.key, attempts) + 1
        self._in_flight[self.evaluator.submit(task)] = job
        self._report()

    def _collect(self, futures: list[Future[EvalResult]]) -> None:
        """Record finished futures; an infrastructure failure is retried, then failed."""
        for future in futures:
            job = self._in_flight.pop(future)
            try:
                result = future.result()
                if not isinstance(result, EvalResult):
                    raise TypeError(f"the evaluator returned {type(result).__name__}, not EvalResult")
            except ExecutorLost:
                # Nothing can be evaluated any more, through no fault of the candidate: stop
                # without recording anything; what is in flight stays running in the store
                # for the caller to hand back (SearchStore.release_inflight) or a resume.
                raise
            except (Exception, CancelledError) as error:
                attempts = self._attempts[job.key]
                if attempts < self.config.max_attempts and not self.evaluator.retries_lost_work:
                    self._queue.appendleft(job)
                    continue
                reason = f"no result after {attempts} attempts: {type(error).__name__}: {error}"
                if job.trial is not None:
                    candidate = self.store.mark_trial_failed(job.trial.id, INFRASTRUCTURE_STAGE, reason)
                    self._trial_finished(candidate)
                    self._after_result(candidate)
                    continue
                finished = self.store.mark_failed(job.candidate.id, INFRASTRUCTURE_STAGE, reason)
            else:
                self._state.evaluated_this_run += 1
                if job.trial is not None:
                    candidate = self._record_trial(job.trial, result)
                    self._trial_finished(candidate)
                    self._after_result(candidate)
                    continue
                try:
                    # EvalResult's fields are the store's keyword arguments, one for one.
                    finished = self.store.record_result(job.candidate.id, **result.to_dict())
                except ValueError as error:  # e.g. a NaN accuracy: the result is unusable
                    finished = self.store.mark_failed(job.candidate.id, "result", str(error))
            self._tally(self._state, finished)
            if finished.status == "done":
                self._join_population(finished)
            self._after_result(finished)

    def _record_trial(self, trial: TrialRecord, result: EvalResult) -> CandidateRecord:
        try:
            return self.store.record_trial(trial.id, **result.to_dict())
        except ValueError as error:  # e.g. a NaN accuracy: the result is unusable
            return self.store.mark_trial_failed(trial.id, "result", str(error))

    def _after_result(self, candidate: CandidateRecord) -> None:
        if self._stop_when is not None and self._stop_when(candidate):
            self.stopped_early = True
        if not self.stopped_early:
            self._schedule_reevaluations()
        self._report()
