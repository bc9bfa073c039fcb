"""Strategies: what a search tries next, kept apart from the loop that runs it.

A strategy is told the search's candidates (`tell`: every record the controller stores
or changes) and proposes the next child (`ask`), as an Optuna sampler proposes while the
study runs the trials. It never reads the store nor runs an evaluation, so a test drives
it with plain records; the controller (`evonorm_search.search.controller`) filters,
stores and evaluates what it proposes, and asks again when a proposal's structure has
been seen.

Determinism contract (what keeps resume exact): a strategy's state is a function of the
*set* of records it was told, in their latest version, not of the order they came in
(any order that tells a parent before its children, as every search does: a child is
proposed from a finished parent, and a resumed search tells its records by number);
`ask` draws randomness only from the `rng` it is given (the controller derives it from
the search seed and the candidate number). A resumed controller tells a fresh strategy
every stored candidate, so it proposes what the uninterrupted one would have.

Strategies: `RandomStrategy` (every child a fresh random layer: the baseline) and
`EvolutionStrategy` (Pareto tournament over the aging population, then one move); with
the paper's settings (`engine = "paper"`, the default) the latter is the paper's engine
exactly.
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Container, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

from evonorm_search.graph import INITIAL_NODES, LayerGraph
from evonorm_search.search.budget import counts_toward_budget
from evonorm_search.search.moves import (
    MUTATIONS, RECOMBINATIONS, adaptive_weights, apply_move, random_graph,
)
from evonorm_search.search.scan import LocalScan
from evonorm_search.search.selection import Fitness, Ranking, StallClock, tournament

if TYPE_CHECKING:
    from db.records import CandidateRecord
    from evonorm_search.config import SearchConfig


@dataclass(frozen=True)
class Proposal:
    """A child to try: its graph, the parent it came from (None: a fresh layer), how it
    was made (`move`: a `moves.MUTATIONS` name, "known" or "random" for a fresh layer)
    and the island it belongs to (None: one population). Stored with the candidate."""

    graph: LayerGraph
    parent: CandidateRecord | None = None
    move: str | None = None
    island: int | None = None


class Strategy(Protocol):
    """Proposes children from the candidates it has been told about."""

    def tell(self, candidate: CandidateRecord) -> None:
        """A candidate was stored or changed (finished, re-evaluated): its latest record."""

    def ask(self, rng: random.Random, seen: Container[str]) -> Proposal:
        """The next child to try; `seen` holds the structural hashes the search has
        stored. The controller asks again, with the same `rng`, while the proposal's
        structure is in `seen`."""

    @property
    def population(self) -> list[CandidateRecord]:
        """The members children are drawn from, by number (the fidelity rules read it)."""


class AgingPopulation:
    """The P most recent done candidates, by number (aging: beyond P the oldest leaves).

    Kept in step with `tell` in any order: a member is inserted by number, and one older
    than every kept member when the population is full is dropped at once, so the list
    always equals the store's `population(search, P)` query.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.members: list[CandidateRecord] = []

    def tell(self, candidate: CandidateRecord) -> None:
        members = self.members
        for index, member in enumerate(members):
            if member.id == candidate.id:  # a re-evaluation changed its scores
                if candidate.status == "done":
                    members[index] = candidate
                else:
                    del members[index]
                return
        if candidate.status != "done":
            return
        bisect.insort(members, candidate, key=lambda member: member.number)
        del members[: max(0, len(members) - self.size)]

    def replace(self, candidate: CandidateRecord) -> None:
        """A member's new record (a re-evaluation), if it is a member."""
        for index, member in enumerate(self.members):
            if member.id == candidate.id:
                self.members[index] = candidate
                return

    @property
    def full(self) -> bool:
        return len(self.members) >= self.size


class _Fresh:
    """Fresh layers: the configured initial layers (`--init`: known and discovered layers,
    layer graph files) the search has not seen, in order, then random layers of the
    search space."""

    def __init__(self, config: SearchConfig) -> None:
        self._known = config.init_layers()
        self._space = config.space
        self._num_nodes = config.num_nodes

    def __call__(self, rng: random.Random, seen: Container[str]) -> Proposal:
        for graph in self._known:
            if graph.structural_hash() not in seen:
                return Proposal(graph, move="known")
        return Proposal(random_graph(rng, self._space, self._num_nodes), move="random")


class RandomStrategy:
    """Every child is a fresh layer (known ones first, as configured): the baseline."""

    def __init__(self, config: SearchConfig) -> None:
        self._fresh = _Fresh(config)
        self._population = AgingPopulation(config.population)

    def tell(self, candidate: CandidateRecord) -> None:
        self._population.tell(candidate)

    def ask(self, rng: random.Random, seen: Container[str]) -> Proposal:
        return self._fresh(rng, seen)

    @property
    def population(self) -> list[CandidateRecord]:
        return list(self._population.members)


# Moves that are not mutation operators (stored in `candidates.move`).
RESTART = "restart"  # the first fresh layer of a restarted island
SCAN = "scan"  # a single edit of an elite, proposed by the local scan
SWEEP = "sweep"  # a macro edit of a layer the scan reached down the ranking (`scan_sweep`)
# The latest finished children whose outcomes credit their moves (adaptive weights).
CREDIT_WINDOW = 1000
# With `scan_sweep`, the deep layers are looked for among this many times `scan_depth`
# best (each score once): a bound on the walk, far beyond what the ranking needs.
DEEP_WINDOW = 50
UNFINISHED = ("pending", "running")


class Island:
    """One population of a search with islands: its aging members since its latest
    restart (`start`, a candidate number), its elites by rank, its stall clock, and its
    rows (all, and those in flight) for sharing the executor between islands."""

    def __init__(self, index: int, size: int) -> None:
        self.index, self.size = index, size
        self.rows = 0
        self.unfinished: set[int] = set()
        self.start = 0
        self.reset()

    def reset(self) -> None:
        self.population = AgingPopulation(self.size)
        self.elites = Ranking()
        self.clock = StallClock()


class EvolutionStrategy:
    """Regularized evolution (PAPER.md section 3) with the engine settings of
    `SearchConfig` (docs/method.md); with the "paper" engine, the paper's exactly.

    Per child: the island with the fewest candidates in flight (then the fewest rows)
    gets it (one island per share of the executor's slots); if the search's best has
    stalled for `scan_after` evaluations, the local scan proposes an unseen single edit
    of the best distinct layers (the hall of fame; with `scan_sizes`, the best and the
    best of each smaller size; once those are exhausted, the next of the `scan_depth`
    best), at most `scan_limit` per stall; with `scan_sweep`, the layers down the ranking
    are the best of each larger size that scores above the best, then one per score
    (scores without the size penalty), and each has every one of its macro edits
    proposed, whatever improves meanwhile, so the best of them wins (best improvement),
    before the scan tries their single edits (with `scan_deferred` "last", the free
    and hoisted layers of every layer the scan edits come between the two, the best
    score's first, instead of after each layer's own); if the island lags behind the best
    and has stalled for `island_restart` of its evaluations, it restarts from a fresh
    layer; until it is full, it gets fresh layers; otherwise a parent is drawn by
    multi-objective tournament over its aging members plus its `elites` best (or, with
    probability `migration_rate`, from the hall of fame's best: migration), and one move
    is applied (weights adapted to the moves' credit with `adaptive_moves`; a graft's
    donor is a second tournament winner).

    Scalar fitness (elites, hall of fame, stall clocks, credit): the mean score over the
    proxies on the `fitness` scale minus `size_penalty` per live node, equal within the
    scale's quantum (`selection.Fitness`); tournaments compare the per-proxy values on
    the same scale, less the same penalty. Ties rank
    the smaller layer first, then the newer (`neutral_drift`: a child equal to its parent
    takes its place) or the older. A graft's child joins its island only if it is not
    worse than its parent (GP-GOMEA's acceptance).

    State: every record told, by id; the structures above are built from them in number
    order, incrementally for new records and again from scratch when a re-evaluation
    changes a done member's scores, so they are a function of the records' latest values.
    """

    def __init__(self, config: SearchConfig) -> None:
        self._config = config
        self._fitness_scale = Fitness(config.fitness, config.size_penalty)
        self._fresh = _Fresh(config)
        self._scan = LocalScan(config.space, config.scan_macros,
                               deferred_apart=config.scan_deferred == "last",
                               macros_first=config.scan_order == "macros-first") \
            if config.scan_after else None
        # Whether anything reads scalar fitness (elites, hall of fame, stall clocks,
        # credit, a graft's acceptance); the paper's engine reads only the aging members.
        self._ranked = bool(config.elites or config.scan_after or config.island_restart
                            or config.migration_rate or config.adaptive_moves
                            or RECOMBINATIONS.intersection(config.mutations))
        self._records: dict[int, CandidateRecord] = {}
        self._graphs: dict[int, LayerGraph] = {}
        self._sizes: dict[int, int] = {}  # id -> live nodes (computed once)
        self._reset()

    def _reset(self) -> None:
        # The islands share the population: sizes differ by at most one.
        count, size = self._config.islands, self._config.population
        self._islands = [Island(i, size // count + (i < size % count)) for i in range(count)]
        self._fitness: dict[int, float] = {}  # done id -> scalar fitness
        self._raw_scores: dict[int, int] = {}  # done id -> quantized fitness without the penalty
        self._hall = Ranking()  # every done member: the hall of fame is its top
        self._by_size: dict[int, Ranking] = {}  # the same, per live node count
        self._clock = StallClock()  # the search's
        self._scans: list[int] = []  # numbers of the scan's proposals, sorted
        self._sweep: tuple[int, int] | None = None  # the latest sweep proposal: number, parent id
        # Finished children of moves, by number, with whether each improved on its parent;
        # `_credit` counts (children, improved) per move over the latest CREDIT_WINDOW.
        self._children: list[tuple[int, str, bool]] = []
        self._credit: dict[str, list[int]] = {}
        self._dirty = False

    # ---- told --------------------------------------------------------------------

    def tell(self, candidate: CandidateRecord) -> None:
        previous = self._records.get(candidate.id)
        self._records[candidate.id] = candidate
        if previous is not None and previous.status == "done":
            # A re-evaluation: the aging members take the new record in place; if its
            # fitness changed, ranked structures are rebuilt before the next question
            # (O(stored): negligible beside the training a re-evaluation is).
            if self._ranked and self._fitness.get(candidate.id) is not None and \
                    self._quantized(self._scalar(candidate)) != \
                    self._quantized(self._fitness[candidate.id]):
                self._dirty = True
            elif not self._dirty:
                self._island(candidate).population.replace(candidate)
        elif not self._dirty:
            self._absorb(candidate, previous)

    def _island(self, record: CandidateRecord) -> Island:
        return self._islands[(record.island or 0) % len(self._islands)]

    def _rebuild(self) -> None:
        self._reset()
        for record in sorted(self._records.values(), key=lambda r: r.number):
            self._absorb(record, None)

    def _absorb(self, record: CandidateRecord, previous: CandidateRecord | None) -> None:
        island = self._island(record)
        if record.status in UNFINISHED:
            island.unfinished.add(record.id)
        else:
            island.unfinished.discard(record.id)
        if previous is None:
            island.rows += 1
            if record.move == RESTART and record.number > island.start:
                island.start = record.number
                island.reset()
            if record.move in (SCAN, SWEEP):
                bisect.insort(self._scans, record.number)
            if record.move == SWEEP and (self._sweep is None or record.number > self._sweep[0]):
                self._sweep = (record.number, record.parent_id)
            if counts_toward_budget(record):
                self._clock.evaluated(record.number)
                if record.number >= island.start:
                    island.clock.evaluated(record.number)
        if record.status == "done" and not self._ranked:
            if record.number >= island.start:
                island.population.tell(record)
            return
        score = None
        if record.status == "done":
            self._fitness[record.id] = self._scalar(record)
            self._raw_scores[record.id] = self._quantized(
                self._fitness_scale.scalar(self._scores(record), 0))
            score = self._quantized(self._fitness[record.id])
        finished_now = record.status not in UNFINISHED and (
            previous is None or previous.status in UNFINISHED)
        if finished_now and record.move in MUTATIONS and record.parent_id in self._fitness:
            parent = self._quantized(self._fitness[record.parent_id])
            self._credit_child(record.number, record.move, score is not None and score > parent)
        if score is None:
            return
        key = (-score, self._size(record),
               -record.number if self._config.neutral_drift else record.number)
        self._hall.add(record.id, key)
        self._by_size.setdefault(self._size(record), Ranking()).add(record.id, key)
        self._clock.scored(record.number, score)
        if record.number >= island.start and self._kept(record, score):
            island.population.tell(record)
            island.elites.add(record.id, key)
            island.clock.scored(record.number, score)

    def _credit_child(self, number: int, move: str, improved: bool) -> None:
        """Insert a finished child by number and keep the window's counts in step: an
        insertion inside the latest CREDIT_WINDOW pushes the oldest one out of it."""
        children = self._children
        index = bisect.bisect(children, (number,))
        children.insert(index, (number, move, improved))
        if index < len(children) - CREDIT_WINDOW:
            return  # older than the window
        counts = self._credit.setdefault(move, [0, 0])
        counts[0] += 1
        counts[1] += improved
        if len(children) > CREDIT_WINDOW:
            _, old_move, old_improved = children[-CREDIT_WINDOW - 1]
            old = self._credit[old_move]
            old[0] -= 1
            old[1] -= old_improved

    def _kept(self, record: CandidateRecord, score: int) -> bool:
        """A recombination's child joins its island only if not worse than its parent."""
        if record.move not in RECOMBINATIONS or record.parent_id not in self._fitness:
            return True
        return score >= self._quantized(self._fitness[record.parent_id])

    # ---- asked -------------------------------------------------------------------

    def ask(self, rng: random.Random, seen: Container[str]) -> Proposal:
        if self._dirty:
            self._rebuild()
        config = self._config
        island = min(self._islands, key=lambda i: (len(i.unfinished), i.rows, i.index))
        label = island.index if len(self._islands) > 1 else None
        swept = self._open_sweep(seen)
        if swept is not None:
            return replace(swept, island=label)
        if self._scan_due():
            scanned, first = self._scanned()
            elites = [self._records[i] for i in scanned]
            layers = [self._graph(e) for e in elites]
            if config.scan_sweep:
                found = self._scan.next(layers[:first], seen)
                if found is None:
                    # Down the ranking, the first improving edit is often a partial one
                    # (docs/RESULTS.md, "A sweep where the scan goes deep"): every macro
                    # edit of each layer there, in rank order, before any single edit.
                    for rank in range(first, len(layers)):
                        macro = self._scan.sweep(layers[rank], seen)
                        if macro is not None:
                            return Proposal(macro, elites[rank], SWEEP, label)
                    if config.scan_deferred == "last":
                        found = self._deferred_last(elites, layers, seen)
                    if found is None:
                        found = self._scan.next(layers, seen)
            else:
                found = self._scan.next(layers, seen)
            if found is not None:
                rank, child = found
                return Proposal(child, elites[rank], SCAN, label)
        if self._restart_due(island):
            return replace(self._fresh(rng, seen), move=RESTART, island=label)
        if not island.population.full:
            return replace(self._fresh(rng, seen), island=label)
        pool = self._pool(island)
        parent = None
        if config.migration_rate and rng.random() < config.migration_rate:
            parent = self._records[rng.choice(self._hall.top(config.islands))]
        if parent is None:
            parent = self._tournament(pool, rng)
        donor = None
        if RECOMBINATIONS.intersection(config.mutations):
            donor = self._graph(self._tournament(pool, rng))
        weights = self._move_weights() if config.adaptive_moves else None
        move, child = apply_move(self._graph(parent), rng, config.space, config.mutations,
                                 weights, donor)
        return Proposal(child, parent, move, label)

    def _deferred_last(self, elites: list[CandidateRecord], layers: list[LayerGraph],
                       seen: Container[str]) -> tuple[int, LayerGraph] | None:
        """With `scan_deferred` "last": an unseen layer of a scanned layer's deferred
        families, the best-scoring layer's first (scores without the size penalty, then
        rank): the penalty ranks a stall's small stand-ins above larger layers that score
        better, and a large layer holds more cores to cut back to (docs/RESULTS.md,
        "Deferred edits last")."""
        order = sorted(range(len(layers)), key=lambda rank: -self._raw_scores[elites[rank].id])
        for rank in order:
            child = self._scan.deferred(layers[rank], seen)
            if child is not None:
                return rank, child
        return None

    def _open_sweep(self, seen: Container[str]) -> Proposal | None:
        """The next macro edit of the layer the latest sweep proposal came from, until
        all of them are stored (a function of the records: resume sweeps on)."""
        if self._sweep is None or self._sweep[1] not in self._records:
            return None
        parent = self._records[self._sweep[1]]
        macro = self._scan.sweep(self._graph(parent), seen)
        return None if macro is None else Proposal(macro, parent, SWEEP)

    def _scanned(self) -> tuple[list[int], int]:
        """The layers the scan edits, in the order it edits them, and how many come
        first: the `scan_elites` best distinct ones or, with `scan_sizes`, the best one
        and then the best of each smaller size, by rank; then the rest of the
        `scan_depth` best (with `scan_sweep`, those `_deep` picks), which the scan
        reaches only once every neighbour of the layers before them is stored."""
        count = self._config.scan_elites
        if not self._config.scan_sizes:
            first = self._hall.top(count)
        else:
            if not len(self._hall):
                return [], 0
            best = [self._head(self._hall)]
            size = self._sizes[best[0]]
            heads = [self._head(ranking) for s, ranking in self._by_size.items() if s < size]
            heads.sort(key=self._hall.key)
            first = [*best, *heads[: count - 1]]
        depth = self._config.scan_depth
        if not self._config.scan_sweep:
            chosen = set(first)
            return [*first, *(i for i in self._hall.top(depth) if i not in chosen)], len(first)
        return [*first, *self._deep(first, depth)], len(first)

    def _head(self, ranking: Ranking) -> int:
        """The best member of `ranking` (the hall or one size's) as the scan edits it:
        with `scan_ties` "oldest", the oldest of those tied with it in score and size
        (hall keys are (-score, size, order)), so that an equal-scoring variant the scan
        proposed does not take its parent's place before the parent's walk is done."""
        if self._config.scan_ties == "oldest":
            return min(ranking.tied_with_best(2), key=lambda i: self._records[i].number)
        return ranking.top(1)[0]

    def _deep(self, first: list[int], depth: int) -> list[int]:
        """With `scan_sweep`, the layers after `first` (best first) up to `depth` in all:
        the best layer of each larger size that scores above the best (PySR keeps its
        hall of fame per complexity): the size penalty ranks a stall's small variants
        above them, and they are where the scan has not been; then one layer per score,
        down the ranking: below a stall it fills with near-equivalent variants of it
        (`v0 + v0` for `v0`, an rms of an rms), whose edits are its own. Scores here
        are without the size penalty."""
        if not first:
            return []
        leader = first[0]
        heads = []
        for size, ranking in self._by_size.items():
            head = self._head(ranking)
            if size > self._sizes[leader] and self._raw_scores[head] > self._raw_scores[leader]:
                heads.append(head)
        heads.sort(key=self._hall.key)
        chosen, scores, deep = set(first), {self._raw_scores[i] for i in first}, []
        for i in itertools.chain(heads, self._hall.top(DEEP_WINDOW * depth)):
            if len(first) + len(deep) >= depth:
                break
            if i not in chosen and self._raw_scores[i] not in scores:
                scores.add(self._raw_scores[i])
                deep.append(i)
        return deep

    def _scan_due(self) -> bool:
        """The search's best has stalled for `scan_after` evaluations and the scan has
        made fewer than `scan_limit` proposals since the stall began."""
        if self._scan is None or self._clock.stalled_for() < self._config.scan_after:
            return False
        limit = self._config.scan_limit
        return not limit or \
            len(self._scans) - bisect.bisect_right(self._scans, self._clock.since) < limit

    def _restart_due(self, island: Island) -> bool:
        """A full island that has not improved for `island_restart` of its evaluations
        and does not hold the search's best score."""
        limit = self._config.island_restart
        return bool(limit) and island.population.full and island.clock.best is not None \
            and island.clock.best < (self._clock.best or 0) \
            and island.clock.stalled_for() >= limit

    def _pool(self, island: Island) -> list[CandidateRecord]:
        """Parents come from the island's aging members and its elites (by number)."""
        members = island.population.members
        if not self._config.elites:
            return members
        ids = {member.id for member in members}
        elites = [self._records[i] for i in island.elites.top(self._config.elites) if i not in ids]
        return sorted([*members, *elites], key=lambda member: member.number) if elites else members

    def _tournament(self, pool: list[CandidateRecord], rng: random.Random) -> CandidateRecord:
        config = self._config
        return tournament(pool, rng, config.tournament_fraction, config.tournament_min_size,
                          objectives=self._objectives)

    def _move_weights(self) -> list[float]:
        """Weights of `config.mutations` from the credit of the latest finished children:
        a child improved when its fitness beats its parent's."""
        outcomes = {move: (n, k) for move, (n, k) in self._credit.items()}
        return adaptive_weights(self._config.mutations, outcomes, self._config.adaptive_moves)

    @property
    def population(self) -> list[CandidateRecord]:
        if self._dirty:
            self._rebuild()
        if len(self._islands) == 1:
            return self._pool(self._islands[0]) if self._config.elites else \
                list(self._islands[0].population.members)
        members = {m.id: m for island in self._islands for m in self._pool(island)}
        return sorted(members.values(), key=lambda member: member.number)

    # ---- scores and graphs ---------------------------------------------------------

    def _scores(self, record: CandidateRecord) -> list[float]:
        return [record.accuracies.get(proxy, 0.0) for proxy in self._config.proxies]

    def _objectives(self, record: CandidateRecord) -> Sequence[float]:
        if self._config.fitness == "score" and not self._config.size_penalty:
            return self._scores(record)  # the paper's: the scores themselves
        return self._fitness_scale.objectives(self._scores(record), self._size(record))

    def _scalar(self, record: CandidateRecord) -> float:
        """The mean score over the proxies on the fitness scale, less the size penalty."""
        return self._fitness_scale.scalar(self._scores(record), self._size(record))

    def _quantized(self, fitness: float) -> int:
        return self._fitness_scale.quantized(fitness)

    def _size(self, record: CandidateRecord) -> int:
        """Live intermediate nodes."""
        size = self._sizes.get(record.id)
        if size is None:
            size = self._sizes[record.id] = self._graph(record).size
        return size

    def _graph(self, record: CandidateRecord) -> LayerGraph:
        """The member's graph, parsed once (the cache is bounded: members age out)."""
        graph = self._graphs.get(record.id)
        if graph is None:
            if len(self._graphs) > 4 * self._config.population + 64:
                self._graphs.clear()
            graph = LayerGraph.from_json(record.graph_json)
            self._graphs[record.id] = graph
        return graph


def make_strategy(config: SearchConfig) -> Strategy:
    """The strategy `config.strategy` names, set up with the search's settings."""
    if config.strategy == "random":
        return RandomStrategy(config)
    return EvolutionStrategy(config)
