"""Strategies on their own: no store, no executor, only records told to them."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from db.records import CandidateRecord
from evonorm_search.config import SearchConfig
from evonorm_search.graph import LayerGraph
from evonorm_search.search.moves import random_graph
from evonorm_search.search.strategies import (
    AgingPopulation, EvolutionStrategy, RandomStrategy, make_strategy,
)

PROXIES = ("resnet", "mobilenetv2")
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def record(number: int, graph: LayerGraph, status: str = "done",
           scores: tuple[float, ...] = (0.5, 0.5), **fields: object) -> CandidateRecord:
    """A stored candidate as the store would return it (id = number + 1)."""
    values: dict[str, object] = dict(
        id=number + 1, search_id=1, number=number, parent_id=None,
        graph_json=graph.to_json(), structural_hash=graph.structural_hash(),
        fingerprint=f"fp{number}", status=status, stage=None, reason=None, seed=number,
        attempts=1, duplicate_of=None,
        accuracies=dict(zip(PROXIES, scores, strict=True)) if status == "done" else {},
        seconds={}, steps={}, created_at=NOW, started_at=NOW, finished_at=NOW,
        seed_count=1 if status == "done" else 0)
    values.update(fields)
    return CandidateRecord(**values)  # type: ignore[arg-type]


def history(count: int, seed: int = 0, space: str = "S") -> list[CandidateRecord]:
    rng = random.Random(seed)
    rows = []
    for number in range(count):
        status = "rejected" if number % 5 == 3 else "done"
        rows.append(record(number, random_graph(rng, space, 4), status,
                           (rng.random(), rng.random())))
    return rows


def config(**changes: object) -> SearchConfig:
    return SearchConfig(proxies=PROXIES, population=6, init="random", space="S",
                        reevaluate=1).with_overrides(changes)


def proposals(strategy: object, count: int) -> list[tuple[str, int | None]]:
    out = []
    for number in range(count):
        proposal = strategy.ask(random.Random(number), set())  # type: ignore[attr-defined]
        out.append((proposal.graph.structural_hash(),
                    None if proposal.parent is None else proposal.parent.number))
    return out


def test_aging_population_equals_the_most_recent_done_in_any_order() -> None:
    rows = history(40)
    expected = [r for r in rows if r.status == "done"][-6:]
    for seed in range(5):
        shuffled = rows[:]
        random.Random(seed).shuffle(shuffled)
        population = AgingPopulation(6)
        for row in shuffled:
            population.tell(row)
        assert population.members == expected


def test_evolution_state_is_a_function_of_the_records_not_their_order() -> None:
    rows = history(30)
    in_order, shuffled = EvolutionStrategy(config()), EvolutionStrategy(config())
    for row in rows:
        in_order.tell(row)
    mixed = rows[:]
    random.Random(1).shuffle(mixed)
    for row in mixed:
        shuffled.tell(row)
    assert proposals(in_order, 20) == proposals(shuffled, 20)
    # A re-evaluated member is replaced, not added.
    member = in_order.population[0]
    in_order.tell(record(member.number, LayerGraph.from_json(member.graph_json),
                         scores=(0.0, 0.0)))
    assert [m.number for m in in_order.population] == [m.number for m in shuffled.population]
    assert in_order.population[0].accuracies == dict.fromkeys(PROXIES, 0.0)


def test_evolution_starts_fresh_then_breeds_from_the_population() -> None:
    strategy = EvolutionStrategy(config())
    assert all(parent is None for _, parent in proposals(strategy, 5))
    for row in history(12):
        strategy.tell(row)
    population = {m.number for m in strategy.population}
    assert all(parent in population for _, parent in proposals(strategy, 10))


def test_random_strategy_never_has_a_parent_and_known_layers_come_first() -> None:
    strategy = make_strategy(config(strategy="random", init="evonorm_s0,gn_relu"))
    assert isinstance(strategy, RandomStrategy)
    for row in history(12):
        strategy.tell(row)
    first = strategy.ask(random.Random(0), set())
    from evonorm_search.known import get_known

    assert first.graph == get_known("evonorm_s0") and first.parent is None
    second = strategy.ask(random.Random(0), {get_known("evonorm_s0").structural_hash()})
    assert second.graph == get_known("gn_relu")
