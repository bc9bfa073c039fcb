"""hypervolume against brute force (inclusion-exclusion) and against known cases."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evonorm_search.hypervolume import hypervolume


def brute_force(points: list[tuple[float, ...]]) -> float:
    """Inclusion-exclusion over subsets: the union of boxes [0, p], reference at 0."""
    kept = [p for p in points if all(v > 0 for v in p)]
    total = 0.0
    for size in range(1, len(kept) + 1):
        for subset in itertools.combinations(kept, size):
            corner = [min(p[k] for p in subset) for k in range(len(kept[0]))]
            total += (-1) ** (size + 1) * math.prod(corner)
    return total


coordinate = st.one_of(
    st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]),  # ties exercise equal levels
    st.floats(min_value=-0.5, max_value=1.0, allow_nan=False),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(coordinate, coordinate, coordinate), min_size=0, max_size=7))
def test_matches_brute_force_in_three_dimensions(points: list[tuple[float, float, float]]) -> None:
    assert hypervolume(points) == pytest.approx(brute_force(points), abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(coordinate, coordinate), min_size=1, max_size=7))
def test_matches_brute_force_in_two_dimensions(points: list[tuple[float, float]]) -> None:
    assert hypervolume(points) == pytest.approx(brute_force(points), abs=1e-9)


def test_known_values() -> None:
    assert hypervolume([]) == 0.0
    assert hypervolume([(0.5, 0.5, 0.5)]) == pytest.approx(0.125)
    # Two boxes overlapping in a 0.5 x 0.5 x 1 slab.
    assert hypervolume([(1.0, 0.5, 1.0), (0.5, 1.0, 1.0)]) == pytest.approx(0.75)
    # A dominated point adds nothing.
    assert hypervolume([(0.9, 0.9, 0.9), (0.1, 0.2, 0.3)]) == pytest.approx(0.729)
    # A point with a zero coordinate dominates no volume.
    assert hypervolume([(0.0, 1.0, 1.0)]) == 0.0
    assert hypervolume([(2.0, 3.0)], reference=(1.0, 1.0)) == pytest.approx(2.0)


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="coordinates"):
        hypervolume([(0.1, 0.2, 0.3), (0.1, 0.2)])
    with pytest.raises(ValueError, match="finite"):
        hypervolume([(0.1, float("nan"), 0.3)])
