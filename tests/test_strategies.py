"""Strategies on their own: no store, no executor, only records told to them."""

from __future__ import annotations

import itertools
import random

import pytest
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


def causal_shuffle(rows: list[CandidateRecord], seed: int) -> list[CandidateRecord]:
    """`rows` in a random order in which every parent comes before its children (as in any
    search: a child is proposed from a finished parent)."""
    rng, pending, told, order = random.Random(seed), rows[:], set(), []
    while pending:
        ready = [r for r in pending if r.parent_id is None or r.parent_id in told]
        row = rng.choice(ready)
        pending.remove(row)
        told.add(row.id)
        order.append(row)
    return order


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


# ---- the engine's structures ------------------------------------------------------------

from evonorm_search.graph import Node  # noqa: E402
from evonorm_search.known import get_known  # noqa: E402
from evonorm_search.search.moves import MUTATIONS, adaptive_weights  # noqa: E402
from evonorm_search.search.strategies import RESTART, SCAN, SWEEP  # noqa: E402

ALL_MOVES = tuple(MUTATIONS)


def memetic(**changes: object) -> SearchConfig:
    settings: dict[str, object] = dict(
        population=8, islands=2, migration_rate=0.2, island_restart=6, elites=2,
        neutral_drift=True, scan_after=5, scan_elites=2, adaptive_moves=0.5,
        size_penalty=1e-4, mutations=ALL_MOVES, tournament_fraction=0.5, num_nodes=4)
    settings.update(changes)
    return config(**settings)


def engine_history(count: int, seed: int = 0, islands: int = 2) -> list[CandidateRecord]:
    """Records as a search with islands stores them: round-robin islands, children of
    earlier done members by a move, some rejected, duplicated or left pending."""
    rng = random.Random(seed)
    rows: list[CandidateRecord] = []
    for number in range(count):
        done = [r for r in rows if r.status == "done"]
        parent = rng.choice(done) if done and number >= 8 else None
        status = rng.choice(["done"] * 6 + ["rejected", "duplicate"])
        move = rng.choice(ALL_MOVES) if parent else "random"
        rows.append(record(number, random_graph(rng, "S", 4), status,
                           (rng.random(), rng.random()), island=number % islands,
                           parent_id=parent.id if parent else None, move=move,
                           duplicate_of=1 if status == "duplicate" else None))
    return rows


@pytest.mark.parametrize("scan_after, kinds", [(5, {SCAN}), (1000, set(ALL_MOVES))])
def test_with_every_engine_feature_the_state_is_a_function_of_the_records(
        scan_after: int, kinds: set[str]) -> None:
    """What keeps resume exact: the same records told in any order that tells parents
    first (and re-told with a re-evaluated score) give the same proposals."""
    rows = engine_history(60)
    strategies = []
    for seed in range(3):
        strategy = EvolutionStrategy(memetic(scan_after=scan_after))
        for row in causal_shuffle(rows, seed):
            strategy.tell(row)
        strategies.append(strategy)
    expected = proposals(strategies[0], 15)
    assert all(proposals(s, 15) == expected for s in strategies[1:])
    moves = {strategies[0].ask(random.Random(n), set()).move for n in range(60)}
    assert moves <= kinds and len(moves) >= min(4, len(kinds))
    # A re-evaluation lowers a member's scores: the same as telling the final records.
    changed = rows[:]
    target = next(i for i, r in enumerate(rows) if r.status == "done" and r.number > 30)
    changed[target] = record(rows[target].number, LayerGraph.from_json(rows[target].graph_json),
                             scores=(0.0, 0.0), island=rows[target].island,
                             parent_id=rows[target].parent_id, move=rows[target].move)
    updated, fresh = strategies[0], EvolutionStrategy(memetic(scan_after=scan_after))
    updated.tell(changed[target])
    for row in changed:
        fresh.tell(row)
    assert proposals(updated, 15) == proposals(fresh, 15)
    assert [m.id for m in updated.population] == [m.id for m in fresh.population]


def test_islands_share_the_executor_and_keep_their_own_populations() -> None:
    strategy = EvolutionStrategy(memetic(population=9, islands=3, migration_rate=0.0,
                                         scan_after=0, island_restart=0))
    assert [strategy.ask(random.Random(0), set()).island for _ in range(2)] == [0, 0]
    for row in engine_history(30, islands=3):
        strategy.tell(row)
    # Every island got 10 rows: the next child goes to island 0; one in flight there
    # sends the next to island 1.
    assert strategy.ask(random.Random(0), set()).island == 0
    strategy.tell(record(30, random_graph(random.Random(1), "S", 3), "pending", island=0))
    proposal = strategy.ask(random.Random(0), set())
    assert proposal.island == 1 and proposal.parent is not None
    assert proposal.parent.island == 1  # no migration: parents from its own island
    assert {m.island for m in strategy.population} == {0, 1, 2}


def test_elites_outlive_aging_and_ties_prefer_small_then_new_layers() -> None:
    small = LayerGraph([("std_group", (0,)), ("div", (0, 4))])
    large = LayerGraph([("std_group", (0,)), ("abs", (0,)), ("div", (5, 4))])
    rows = [record(0, small, scores=(0.9, 0.9)), record(1, large, scores=(0.9, 0.9))]
    rows += [record(n, random_graph(random.Random(n), "S", 3), scores=(0.1, 0.1))
             for n in range(2, 12)]
    for drift, first in ((True, 0), (False, 0)):
        strategy = EvolutionStrategy(memetic(islands=1, migration_rate=0.0, population=4,
                                             elites=1, scan_after=0, neutral_drift=drift))
        for row in rows:
            strategy.tell(row)
        # The aging population holds 8..11; the elite (the smaller of two equal layers)
        # is a parent all the same.
        numbers = [m.number for m in strategy.population]
        assert numbers == [first, 8, 9, 10, 11]
    twin = LayerGraph([("abs", (1,)), ("std_group", (0,)), ("div", (0, 5))])  # same size
    # An equal (within 1e-6), equally small child: with neutral drift it is the elite
    # (already among the aging members), without it the older layer stays the elite.
    for drift, numbers in ((True, [9, 10, 11, 12]), (False, [0, 9, 10, 11, 12])):
        strategy = EvolutionStrategy(memetic(islands=1, migration_rate=0.0, population=4,
                                             elites=1, scan_after=0, neutral_drift=drift))
        for row in [*rows, record(12, twin, scores=(0.9 + 4e-7, 0.9))]:
            strategy.tell(row)
        assert [m.number for m in strategy.population] == numbers


def test_on_the_log_error_scale_a_node_must_buy_a_share_of_the_error() -> None:
    small = LayerGraph([("std_group", (0,)), ("div", (0, 4))])  # 2 nodes
    large = LayerGraph([("std_group", (0,)), ("abs", (0,)), ("div", (5, 4))])  # 3 nodes
    # The larger layer removes 10% of the small one's error: 5e-4 of score, worth its node
    # at 1e-4 score units a node, not at 0.1 decades (a 21% smaller error) a node.
    rows = [record(0, small, scores=(0.995, 0.995)), record(1, large, scores=(0.9955, 0.9955))]
    rows += [record(n, random_graph(random.Random(n), "S", 3), scores=(0.1, 0.1))
             for n in range(2, 12)]
    for fitness, penalty, elite in (("score", 1e-4, 1), ("log_error", 0.1, 0)):
        strategy = EvolutionStrategy(memetic(islands=1, migration_rate=0.0, population=4,
                                             elites=1, scan_after=0, fitness=fitness,
                                             size_penalty=penalty))
        for row in rows:
            strategy.tell(row)
        assert [m.number for m in strategy.population] == [elite, 8, 9, 10, 11]


def test_a_stalled_search_scans_single_edits_of_its_best_layers() -> None:
    s1, s0 = get_known("evonorm_s1"), get_known("evonorm_s0")
    rows = [record(0, s1, scores=(0.99, 0.99))]
    rows += [record(n, random_graph(random.Random(n), "S", 3), scores=(0.2, 0.2))
             for n in range(1, 12)]
    strategy = EvolutionStrategy(memetic(islands=1, migration_rate=0.0, scan_after=10,
                                         scan_elites=1))
    for row in rows[:10]:
        strategy.tell(row)
    assert strategy.ask(random.Random(0), set()).move != SCAN  # 9 evaluations since the best
    strategy.tell(rows[10])
    seen: set[str] = set()
    found = []
    for _ in range(3000):  # the whole neighbourhood, each edit once
        proposal = strategy.ask(random.Random(0), seen)
        if proposal.move != SCAN:
            break
        assert proposal.parent is not None and proposal.parent.number == 0
        assert proposal.graph.structural_hash() not in seen
        seen.add(proposal.graph.structural_hash())
        found.append(proposal.graph.structural_hash())
    assert s0.structural_hash() in found  # one insert away from EvoNorm-S1
    assert len(found) > 500
    # An improvement ends the stall: evolution resumes.
    strategy.tell(record(12, s0, scores=(1.0, 1.0)))
    assert strategy.ask(random.Random(0), set()).move != SCAN


def test_the_scan_makes_at_most_scan_limit_proposals_per_stall() -> None:
    s1 = get_known("evonorm_s1")
    rows = [record(0, s1, scores=(0.99, 0.99))]
    rows += [record(n, random_graph(random.Random(n), "S", 3), scores=(0.2, 0.2))
             for n in range(1, 11)]
    strategy = EvolutionStrategy(memetic(islands=1, migration_rate=0.0, scan_after=10,
                                         scan_elites=1, scan_limit=4))
    for row in rows:
        strategy.tell(row)
    number = 11
    for _ in range(4):  # equal to the best: the stall goes on
        proposal = strategy.ask(random.Random(number), set())
        assert proposal.move == SCAN
        strategy.tell(record(number, proposal.graph, scores=(0.99, 0.99), move=SCAN,
                             parent_id=1))
        number += 1
    proposal = strategy.ask(random.Random(number), set())
    assert proposal.move in ALL_MOVES  # the limit: evolution breeds again
    # Progress starts a new stall; after `scan_after` evaluations the scan is due again.
    strategy.tell(record(number, proposal.graph, scores=(0.995, 0.995), move=proposal.move,
                         parent_id=proposal.parent.id if proposal.parent else None))
    for offset in range(1, 11):
        strategy.tell(record(number + offset, random_graph(random.Random(offset), "S", 3),
                             scores=(0.2, 0.2)))
    assert strategy.ask(random.Random(0), set()).move == SCAN
    # The count is a function of the records: a fresh strategy told them agrees.
    again = EvolutionStrategy(memetic(islands=1, migration_rate=0.0, scan_after=10,
                                      scan_elites=1, scan_limit=4))
    for row in strategy._records.values():
        again.tell(row)
    assert again.ask(random.Random(0), set()).move == SCAN


def test_with_scan_sizes_the_scan_edits_the_best_then_the_best_smaller_layers() -> None:
    from evonorm_search.search.scan import neighbourhood

    best = LayerGraph([("std_group", (0,)), ("sigmoid", (0,)), ("mul", (0, 5)),
                       ("div", (6, 4))])  # x * sigmoid(x) / std_group(x): 4 nodes
    twin = LayerGraph([("std_group", (0,)), ("tanh", (0,)), ("mul", (0, 5)),
                       ("div", (6, 4))])  # as good, as large
    smaller = LayerGraph([("std_group", (0,)), ("div", (0, 4))])  # 2 nodes, worse
    larger = LayerGraph([("std_group", (0,)), ("abs", (0,)), ("sigmoid", (5,)),
                         ("mul", (0, 6)), ("div", (7, 4))])  # 5 nodes, as good
    rows = [record(0, best, scores=(0.99, 0.99)), record(1, twin, scores=(0.99, 0.99)),
            record(2, smaller, scores=(0.9, 0.9)), record(3, larger, scores=(0.99, 0.99))]
    rows += [record(n, random_graph(random.Random(n), "S", 3), scores=(0.2, 0.2))
             for n in range(4, 16)]
    seen = {child.structural_hash() for child in neighbourhood(best, "S")}
    for scan_sizes, second in ((False, 1), (True, 2)):
        strategy = EvolutionStrategy(memetic(islands=1, migration_rate=0.0, scan_after=10,
                                             scan_elites=2, neutral_drift=False,
                                             scan_sizes=scan_sizes))
        for row in rows:
            strategy.tell(row)
        assert strategy.ask(random.Random(0), set()).parent.number == 0  # the best first
        # The best's neighbourhood done, the next layer scanned is the twin (the second
        # best distinct layer) or, with scan_sizes, the best smaller one.
        proposal = strategy.ask(random.Random(0), seen)
        assert proposal.move == SCAN and proposal.parent.number == second


def test_with_scan_ties_oldest_an_equal_scoring_variant_does_not_take_its_parents_place() -> None:
    """With neutral drift the newest of equally good layers ranks first; `scan_ties`
    "oldest" keeps the scan on the layer whose walk it started (and on the oldest best
    of each smaller size) instead of restarting on a variant the walk proposed."""
    best = LayerGraph([("std_group", (0,)), ("sigmoid", (0,)), ("mul", (0, 5)),
                       ("div", (6, 4))])  # x * sigmoid(x) / std_group(x): 4 nodes
    variant = LayerGraph([("std_group", (0,)), ("tanh", (0,)), ("mul", (0, 5)),
                          ("div", (6, 4))])  # as good, as large
    smaller = LayerGraph([("std_group", (0,)), ("div", (0, 4))])  # 2 nodes, worse
    smaller_variant = LayerGraph([("rms_group", (0,)), ("div", (0, 4))])
    rows = [record(0, best, scores=(0.99, 0.99)), record(1, smaller, scores=(0.9, 0.9))]
    rows += [record(n, random_graph(random.Random(n), "S", 3), scores=(0.2, 0.2))
             for n in range(2, 14)]
    later = [record(14, variant, scores=(0.99, 0.99), move=SCAN, parent_id=1),
             record(15, smaller_variant, scores=(0.9, 0.9), move=SCAN, parent_id=2)]
    for ties, leader, head in (("newest", 14, 15), ("oldest", 0, 1)):
        strategy = EvolutionStrategy(memetic(islands=1, migration_rate=0.0, scan_after=10,
                                             scan_elites=2, scan_sizes=True, scan_ties=ties))
        for row in rows:
            strategy.tell(row)
        first = strategy.ask(random.Random(0), set())
        assert first.move == SCAN and first.parent.number == 0
        for row in later:
            strategy.tell(row)
        assert strategy._scanned()[0] == [leader + 1, head + 1]  # ids: number + 1
        assert strategy.ask(random.Random(0), set()).parent.number == leader
    with pytest.raises(ValueError, match="scan_ties 'first' is unknown: use newest or oldest"):
        memetic(scan_ties="first")
    with pytest.raises(ValueError,
                       match="scan_order 'first' is unknown: use mixed or macros-first"):
        memetic(scan_order="first")


def test_with_scan_depth_an_exhausted_scan_goes_on_down_the_ranking() -> None:
    from evonorm_search.search.scan import neighbourhood

    best = LayerGraph([("std_group", (0,)), ("sigmoid", (0,)), ("mul", (0, 5)),
                       ("div", (6, 4))])  # 4 nodes
    twin = LayerGraph([("std_group", (0,)), ("tanh", (0,)), ("mul", (0, 5)),
                       ("div", (6, 4))])  # as good, as large
    larger = LayerGraph([("std_group", (0,)), ("abs", (0,)), ("sigmoid", (5,)),
                         ("mul", (0, 6)), ("div", (7, 4))])  # as good, one node more
    smaller = LayerGraph([("std_group", (0,)), ("div", (0, 4))])  # worse
    rows = [record(0, best, scores=(0.99, 0.99)), record(1, twin, scores=(0.99, 0.99)),
            record(2, smaller, scores=(0.9, 0.9)), record(3, larger, scores=(0.99, 0.99))]
    rows += [record(n, random_graph(random.Random(n), "S", 3), scores=(0.2, 0.2))
             for n in range(4, 16)]
    seen = {child.structural_hash() for child in neighbourhood(best, "S")}
    for depth, parents in ((0, []), (3, [1, 3])):
        strategy = EvolutionStrategy(memetic(islands=1, migration_rate=0.0, scan_after=10,
                                             scan_elites=1, neutral_drift=False,
                                             scan_depth=depth))
        for row in rows:
            strategy.tell(row)
        exhausted = set(seen)
        scanned = []
        while (proposal := strategy.ask(random.Random(0), exhausted)).move == SCAN:
            if not scanned or scanned[-1] != proposal.parent.number:
                scanned.append(proposal.parent.number)
            exhausted.add(proposal.graph.structural_hash())
        # Without depth the stall goes back to evolution once the best is exhausted; with
        # it the scan walks the next best (the twin, then the larger layer: the 3 best),
        # never the worse one beyond the depth.
        assert scanned == parents
        assert proposal.move in ALL_MOVES


def test_with_scan_sweep_the_layers_reached_deep_have_all_their_macro_edits_tried() -> None:
    from evonorm_search.search.scan import macro_neighbourhood, neighbourhood

    macros = ("normalize", "gate")
    best = LayerGraph([("std_group", (0,)), ("sigmoid", (0,)), ("mul", (0, 5)),
                       ("div", (6, 4))])
    twin = LayerGraph([("std_group", (0,)), ("tanh", (0,)), ("mul", (0, 5)),
                       ("div", (6, 4))])  # as good, as large: a variant of the best
    second = LayerGraph([("std_group", (0,)), ("div", (0, 4)), ("tanh", (5,))])
    third = LayerGraph([("rms_group", (0,)), ("div", (0, 4)), ("abs", (5,))])
    # Scores above the best, but its 9 nodes rank it below the second (penalty 1e-4).
    larger = LayerGraph([("std_group", (0,)), ("div", (0, 4)), ("tanh", (5,)),
                         ("sigmoid", (5,)), ("mul", (6, 7)), ("abs", (8,)), ("add", (9, 5)),
                         ("sigmoid", (10,)), ("tanh", (11,))])
    rows = [record(0, best, scores=(0.99, 0.99)), record(1, twin, scores=(0.99, 0.99)),
            record(2, second, scores=(0.9895, 0.9895)), record(3, third, scores=(0.989, 0.989)),
            record(4, larger, scores=(0.99001, 0.99001))]
    rows += [record(n, random_graph(random.Random(n), "S", 3), scores=(0.2, 0.2))
             for n in range(5, 16)]
    exhausted = {child.structural_hash() for child in neighbourhood(best, "S", macros)}

    def macro_edits(layer: LayerGraph) -> set[str]:
        return {child.structural_hash() for child in macro_neighbourhood(layer, "S", macros)}

    assert len(macro_edits(second)) > 10

    def engine(on: bool, told: list) -> EvolutionStrategy:
        strategy = EvolutionStrategy(memetic(
            islands=1, migration_rate=0.0, scan_after=10, scan_elites=1, neutral_drift=False,
            scan_depth=4, scan_macros=macros, scan_sweep=on))
        for row in told:
            strategy.tell(row)
        return strategy

    # Without the sweep the scan goes on to the twin (the next distinct structure) and
    # walks its single and macro edits in one shuffled order.
    plain = engine(False, rows)
    proposal = plain.ask(random.Random(0), exhausted)
    assert proposal.move == SCAN and proposal.parent.number == 1
    # With it, the layers down the ranking are the best of each larger size that scores
    # above the best, then one per score (the twin is skipped); every macro edit of
    # each comes first, in that order, then their single edits.
    strategy, stored, told, parents = engine(True, rows), set(exhausted), list(rows), []
    number = 16
    while (proposal := strategy.ask(random.Random(number), stored)).move == SWEEP:
        assert proposal.graph.structural_hash() not in stored
        parents.append(proposal.parent.number)
        row = record(number, proposal.graph, scores=(0.5, 0.5), move=SWEEP,
                     parent_id=proposal.parent.id)
        told.append(row)
        strategy.tell(row)
        stored.add(proposal.graph.structural_hash())
        number += 1
        if number == 20:  # resumed mid-sweep, it proposes the same
            assert engine(True, told).ask(random.Random(number), stored) == \
                strategy.ask(random.Random(number), stored)
    assert stored == exhausted | macro_edits(larger) | macro_edits(second) | macro_edits(third)
    order = [number for number, _ in itertools.groupby(parents)]
    assert order == [4, 2, 3]
    assert proposal.move == SCAN and proposal.parent.number == 4
    # An improving macro edit does not end the sweep (the best of them wins); then the
    # scan goes on from the best, the improvement.
    strategy, stored, number = engine(True, rows), set(exhausted), 16
    while (proposal := strategy.ask(random.Random(number), stored)).move == SWEEP:
        assert proposal.parent.number == 4
        score = 0.995 if number == 18 else 0.5
        strategy.tell(record(number, proposal.graph, scores=(score, score), move=SWEEP,
                             parent_id=proposal.parent.id))
        stored.add(proposal.graph.structural_hash())
        number += 1
    assert stored == exhausted | macro_edits(larger)
    assert proposal.move == SCAN and proposal.parent.number == 18


def test_with_scan_deferred_last_the_best_scoring_layers_hoisted_edits_come_after_the_sweep() -> None:
    """`--scan-deferred last`: once the first layers' own edits and the sweep are done,
    the scan walks the deferred (hoisted) layers of the layer that scores best without
    the size penalty, not the leader's; with "each" it walks the leader's."""
    from evonorm_search.search.scan import deferred_neighbourhood, macro_neighbourhood, neighbourhood

    macros = ("normalize", "gate", "hoist")
    best = LayerGraph([("std_group", (0,)), ("sigmoid", (0,)), ("mul", (0, 5)),
                       ("div", (6, 4))])
    # Scores above the best, but its 9 nodes rank it below (penalty 1e-4).
    larger = LayerGraph([("std_group", (0,)), ("div", (0, 4)), ("tanh", (5,)),
                         ("sigmoid", (5,)), ("mul", (6, 7)), ("abs", (8,)), ("add", (9, 5)),
                         ("sigmoid", (10,)), ("tanh", (11,))])
    rows = [record(0, best, scores=(0.99, 0.99)), record(1, larger, scores=(0.99001, 0.99001))]
    rows += [record(n, random_graph(random.Random(n), "S", 3), scores=(0.2, 0.2))
             for n in range(2, 12)]
    own = {g.structural_hash() for g in neighbourhood(best, "S", ("normalize", "gate"))}

    def engine(deferred: str) -> EvolutionStrategy:
        strategy = EvolutionStrategy(memetic(
            islands=1, migration_rate=0.0, scan_after=10, scan_elites=1, neutral_drift=False,
            scan_depth=2, scan_macros=macros, scan_sweep=True, scan_deferred=deferred))
        for row in rows:
            strategy.tell(row)
        return strategy

    def hoisted(layer: LayerGraph) -> set[str]:
        others = neighbourhood(layer, "S", ("normalize", "gate"))
        return {g.structural_hash() for g in deferred_neighbourhood(
            layer, "S", macros, "hoist", [g.structural_hash() for g in others])}

    # "each": the leader's own edits stored, its hoisted ones come next.
    each = engine("each").ask(random.Random(12), set(own))
    assert each.move == SCAN and each.parent.number == 0
    assert each.graph.structural_hash() in hoisted(best)
    # "last": the sweep of the larger layer's macro edits, then its hoisted layers.
    strategy, stored, number = engine("last"), set(own), 12
    while (proposal := strategy.ask(random.Random(number), stored)).move == SWEEP:
        strategy.tell(record(number, proposal.graph, scores=(0.5, 0.5), move=SWEEP,
                             parent_id=proposal.parent.id))
        stored.add(proposal.graph.structural_hash())
        number += 1
    macro_edits = {g.structural_hash()
                   for g in macro_neighbourhood(larger, "S", ("normalize", "gate"))}
    assert stored == own | macro_edits
    assert proposal.move == SCAN and proposal.parent.number == 1
    assert proposal.graph.structural_hash() in hoisted(larger)


def test_a_lagging_stalled_island_restarts_from_fresh_layers() -> None:
    strategy = EvolutionStrategy(memetic(population=4, islands=2, elites=0, scan_after=0,
                                         migration_rate=0.0, island_restart=3))
    graphs = [random_graph(random.Random(n), "S", 3) for n in range(12)]
    scores = [0.9, 0.5, 0.9, 0.5] + [0.1] * 8  # island 1 lags, then nothing improves
    for number in range(12):
        strategy.tell(record(number, graphs[number], scores=(scores[number],) * 2,
                             island=number % 2))
    proposal = strategy.ask(random.Random(0), set())
    assert proposal.island == 0 and proposal.move in ALL_MOVES  # holds the best: no restart
    strategy.tell(record(12, graphs[0], "pending", island=0))
    proposal = strategy.ask(random.Random(0), set())
    assert (proposal.island, proposal.move, proposal.parent) == (1, RESTART, None)
    strategy.tell(record(13, proposal.graph, "done", (0.3, 0.3), island=1, move=RESTART))
    strategy.tell(record(14, graphs[1], "pending", island=0))
    refill = strategy.ask(random.Random(0), set())
    assert (refill.island, refill.move) == (1, "random")  # its population starts over
    assert [m.number for m in strategy.population if m.island == 1] == [13]


def test_a_graft_joins_its_island_only_if_not_worse_than_its_parent() -> None:
    strategy = EvolutionStrategy(memetic(islands=1, migration_rate=0.0, elites=0,
                                         scan_after=0, population=3))
    graphs = [random_graph(random.Random(n), "S", 3) for n in range(5)]
    strategy.tell(record(0, graphs[0], scores=(0.5, 0.5)))
    strategy.tell(record(1, graphs[1], scores=(0.4, 0.4), parent_id=1, move="graft"))
    strategy.tell(record(2, graphs[2], scores=(0.6, 0.6), parent_id=1, move="graft"))
    strategy.tell(record(3, graphs[3], scores=(0.1, 0.1), parent_id=1, move="node"))
    assert [m.number for m in strategy.population] == [0, 2, 3]


def test_adaptive_weights_follow_credit_and_stay_near_the_base_without_it() -> None:
    names = ("node", "wrap", "op")
    even = adaptive_weights(names, {}, 0.5)
    assert even == [1.0, 1.0, 1.0]
    weights = adaptive_weights(names, {"node": (200, 2), "wrap": (200, 40), "op": (5, 0)}, 0.5)
    assert weights[1] > 1.3 > 1.0 > 0.5 > weights[0] and 0.7 < weights[2] < 1.0
    full = adaptive_weights(names, {"node": (200, 2), "wrap": (200, 40), "op": (5, 0)}, 1.0)
    assert full[1] / full[0] == pytest.approx((weights[1] / weights[0]) ** 2)


def test_move_credit_counts_the_latest_children_in_any_order(monkeypatch: pytest.MonkeyPatch) -> None:
    from evonorm_search.search import strategies

    monkeypatch.setattr(strategies, "CREDIT_WINDOW", 12)
    rows = engine_history(80, seed=3)
    done = {r.id: r for r in rows if r.status == "done"}
    children = [r for r in rows if r.move in ALL_MOVES and r.parent_id in done][-12:]
    expected: dict[str, tuple[int, int]] = {}
    for child in children:
        improved = child.status == "done" and (
            sum(child.accuracies.values()) > sum(done[child.parent_id].accuracies.values()))
        n, k = expected.get(child.move, (0, 0))  # type: ignore[arg-type]
        expected[child.move] = (n + 1, k + improved)  # type: ignore[index]
    for seed in range(3):
        strategy = EvolutionStrategy(memetic(size_penalty=0.0))
        for row in causal_shuffle(rows, seed):
            strategy.tell(row)
        counted = {m: (n, k) for m, (n, k) in strategy._credit.items() if n}
        assert counted == expected
