"""Pareto fronts and the multi-objective tournament."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evonorm_search.search.selection import (
    ERROR_FLOOR, Fitness, dominates, pareto_front, tournament, tournament_size,
)

scores = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


@st.composite
def point_sets(draw: st.DrawFn) -> list[tuple[float, ...]]:
    width = draw(st.integers(1, 4))
    # Few distinct values so ties and exact duplicates are common.
    value = st.one_of(scores, st.sampled_from([0.0, 0.25, 0.5, 1.0]))
    return draw(st.lists(st.tuples(*[value] * width), max_size=40))


@given(point_sets())
@settings(max_examples=200, deadline=None)
def test_front_is_non_dominated_and_dominates_the_rest(points: list[tuple[float, ...]]) -> None:
    front = pareto_front(points)
    assert front == sorted(set(front))
    for i in front:
        assert not any(dominates(points[j], points[i]) for j in range(len(points)))
    for i in set(range(len(points))) - set(front):
        assert any(dominates(points[j], points[i]) for j in front)


def test_front_examples() -> None:
    assert pareto_front([]) == []
    assert pareto_front([(0.5, 0.5), (0.9, 0.1), (0.1, 0.9), (0.4, 0.4), (0.5, 0.5)]) == [0, 1, 2, 4]
    assert pareto_front([(1.0,), (0.3,), (1.0,)]) == [0, 2]
    with pytest.raises(ValueError, match="NaN"):
        pareto_front([(0.1, float("nan"))])
    with pytest.raises(ValueError, match="coordinates"):
        pareto_front([(0.1, 0.2), (0.3,)])


def test_tournament_size() -> None:
    assert tournament_size(100) == 5
    assert tournament_size(10) == 2  # at least two
    assert tournament_size(1) == 1
    assert tournament_size(1000, 0.05, 2) == 50


def test_tournament_draws_uniformly_from_the_sample_front() -> None:
    # With the whole population sampled, only the front (3 members) can win, all of them.
    population = [(0.9, 0.1), (0.1, 0.9), (0.5, 0.5), (0.4, 0.4), (0.2, 0.2)]
    rng = random.Random(0)
    wins = [tournament(population, rng, fraction=1.0) for _ in range(3000)]
    counts = {member: wins.count(member) for member in set(wins)}
    assert set(counts) == {(0.9, 0.1), (0.1, 0.9), (0.5, 0.5)}
    assert all(800 < n < 1200 for n in counts.values())


def test_tournament_samples_a_fraction() -> None:
    # Member k scores k: a sample's winner is its best member, so small samples rarely
    # find the global best, and the winner is never among the worst `size - 1`.
    population = [(float(k),) for k in range(100)]
    rng = random.Random(1)
    wins = [tournament(population, rng, objectives=lambda m: m)[0] for _ in range(2000)]
    assert min(wins) >= 4  # 5 sampled: the winner beats 4 others
    assert 0.03 < wins.count(99.0) / len(wins) < 0.08  # P(best in sample) = 5%


def test_tournament_with_objectives_and_bad_arguments() -> None:
    members = [{"acc": 0.2}, {"acc": 0.7}]
    best = tournament(members, random.Random(0), objectives=lambda m: [m["acc"]])
    assert best == {"acc": 0.7}
    with pytest.raises(ValueError, match="non-empty"):
        tournament([], random.Random(0))
    with pytest.raises(ValueError, match="fraction"):
        tournament(members, random.Random(0), fraction=0.0)


def test_fitness_on_the_score_scale_is_the_score_less_the_size_penalty() -> None:
    fitness = Fitness("score", 1e-4)
    assert fitness.objectives([0.5, 0.7], 3) == pytest.approx([0.4997, 0.6997])
    assert fitness.scalar([0.5, 0.7], 3) == pytest.approx(0.5997)
    assert fitness.quantized(0.5) == fitness.quantized(0.5 + 4e-7) != fitness.quantized(0.5 + 2e-6)


def test_log_error_fitness_counts_relative_gains_and_trades_nodes_for_them() -> None:
    fitness = Fitness("log_error", 0.1)
    # Decades of error: 0.99 -> 0.999 gains as much as 0.999 -> 0.9999.
    assert fitness.scalar([0.99], 0) == pytest.approx(2.0)
    assert fitness.scalar([0.9999], 0) - fitness.scalar([0.999], 0) == pytest.approx(1.0)
    assert fitness.objectives([0.9, 0.99], 2) == pytest.approx([0.8, 1.8])
    # The scalar is the log error of the mean score, not the mean of the log errors.
    assert fitness.scalar([0.98, 1.0], 0) == pytest.approx(2.0)
    # A perfect score is finite: the error floor.
    assert fitness.scalar([1.0], 0) == pytest.approx(-math.log10(ERROR_FLOOR))
    # Five more nodes (0.5 decades) are worth it only for an error over 3.2x smaller.
    small = fitness.scalar([0.995], 4)
    assert fitness.scalar([0.998], 9) < small < fitness.scalar([0.9985], 9)
    # Progress is a drop of the error by about 1%, not any gain: 0.004 decades a quantum.
    base = fitness.scalar([0.999], 0)  # 3 decades: the middle of a quantum
    assert fitness.quantized(fitness.scalar([1 - 0.001 * 0.996], 0)) == fitness.quantized(base)
    assert fitness.quantized(fitness.scalar([1 - 0.001 * 0.98], 0)) > fitness.quantized(base)


def test_unknown_fitness_scale_is_refused() -> None:
    with pytest.raises(ValueError, match="fitness scale 'log'.*score, log_error"):
        Fitness("log")
