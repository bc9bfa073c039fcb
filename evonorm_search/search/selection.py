"""Parent selection: Pareto fronts and the multi-objective tournament (PAPER.md section 3).

Pure functions over score vectors; they know nothing of graphs, the store or training.
Aging (the population is the P most recent finished members) is the store's
`population` query, so it is not repeated here.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """True when `a` is at least as good as `b` everywhere and better somewhere (maximizing)."""
    return all(x >= y for x, y in zip(a, b, strict=True)) and any(
        x > y for x, y in zip(a, b, strict=True)
    )


def pareto_front(points: Sequence[Sequence[float]]) -> list[int]:
    """Indices (ascending) of the points no other point dominates, maximizing every coordinate.

    Equal points are all kept: none dominates another. Runs in O(n log n + n * front)
    by visiting points in descending lexicographic order, where a dominator always comes
    before what it dominates, so each point need only be compared with the front so far.
    Raises ValueError for NaN coordinates or points of different lengths.
    """
    if not points:
        return []
    width = len(points[0])
    for index, point in enumerate(points):
        if len(point) != width:
            raise ValueError(f"point {index} has {len(point)} coordinates, expected {width}")
        if any(math.isnan(value) for value in point):
            raise ValueError(f"point {index} has a NaN coordinate: {list(point)}")
    order = sorted(range(len(points)), key=lambda i: tuple(points[i]), reverse=True)
    front: list[int] = []
    for index in order:
        if not any(dominates(points[kept], points[index]) for kept in front):
            front.append(index)
    return sorted(front)


def tournament_size(population_size: int, fraction: float = 0.05, min_size: int = 2) -> int:
    """How many members a tournament samples: `fraction` of them, at least `min_size`."""
    return min(population_size, max(min_size, round(fraction * population_size)))


def tournament(
    population: Sequence[T],
    rng: random.Random,
    fraction: float = 0.05,
    min_size: int = 2,
    *,
    objectives: Callable[[T], Sequence[float]] | None = None,
) -> T:
    """Sample `fraction` of `population` (at least `min_size`) without replacement, and
    return a member drawn uniformly from the sample's Pareto front.

    `objectives(member)` gives the member's score vector (one accuracy per proxy); by
    default a member is its own score vector. All randomness comes from `rng`.
    """
    if not population:
        raise ValueError("tournament needs a non-empty population")
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"tournament fraction must be in (0, 1], got {fraction}")
    if min_size < 1:
        raise ValueError(f"tournament min_size must be at least 1, got {min_size}")
    score = objectives if objectives is not None else (lambda member: member)  # type: ignore[assignment,return-value]
    size = tournament_size(len(population), fraction, min_size)
    sample = rng.sample(range(len(population)), size)
    front = pareto_front([score(population[i]) for i in sample])
    return population[sample[rng.choice(front)]]
