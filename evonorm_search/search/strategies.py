"""Strategies: what a search tries next, kept apart from the loop that runs it.

A strategy is told the search's candidates (`tell`: every record the controller stores
or changes) and proposes the next child (`ask`), as an Optuna sampler proposes while the
study runs the trials. It never reads the store nor runs an evaluation, so a test drives
it with plain records; the controller (`evonorm_search.search.controller`) filters,
stores and evaluates what it proposes, and asks again when a proposal's structure has
been seen.

Determinism contract (what keeps resume exact): a strategy's state is a function of the
*set* of records it was told, in their latest version, not of the order they came in;
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
import random
from collections.abc import Container, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from evonorm_search.graph import LayerGraph
from evonorm_search.search.moves import apply_move, random_graph
from evonorm_search.search.selection import tournament

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

    @property
    def full(self) -> bool:
        return len(self.members) >= self.size


class _Fresh:
    """Fresh layers: the configured known layers the search has not seen, in order, then
    random layers of the search space."""

    def __init__(self, config: SearchConfig) -> None:
        from evonorm_search.known import get_known

        self._known = [get_known(name) for name in config.init_names()]
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


class EvolutionStrategy:
    """Regularized evolution (PAPER.md section 3): until the aging population is full,
    fresh layers; then a parent by multi-objective tournament and one move drawn from
    `config.mutations`."""

    def __init__(self, config: SearchConfig) -> None:
        self._config = config
        self._fresh = _Fresh(config)
        self._population = AgingPopulation(config.population)
        self._graphs: dict[int, LayerGraph] = {}

    def tell(self, candidate: CandidateRecord) -> None:
        self._population.tell(candidate)

    def ask(self, rng: random.Random, seen: Container[str]) -> Proposal:
        config = self._config
        if not self._population.full:
            return self._fresh(rng, seen)
        parent = tournament(self._population.members, rng, config.tournament_fraction,
                            config.tournament_min_size, objectives=self._scores)
        move, child = apply_move(self._graph(parent), rng, config.space, config.mutations)
        return Proposal(child, parent, move)

    @property
    def population(self) -> list[CandidateRecord]:
        return list(self._population.members)

    def _scores(self, record: CandidateRecord) -> Sequence[float]:
        return [record.accuracies.get(proxy, 0.0) for proxy in self._config.proxies]

    def _graph(self, record: CandidateRecord) -> LayerGraph:
        """The member's graph, parsed once (the cache is bounded: members age out)."""
        graph = self._graphs.get(record.id)
        if graph is None:
            if len(self._graphs) > 4 * self._config.population:
                self._graphs.clear()
            graph = LayerGraph.from_json(record.graph_json)
            self._graphs[record.id] = graph
        return graph


def make_strategy(config: SearchConfig) -> Strategy:
    """The strategy `config.strategy` names, set up with the search's settings."""
    if config.strategy == "random":
        return RandomStrategy(config)
    return EvolutionStrategy(config)
