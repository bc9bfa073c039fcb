"""Parent selection: Pareto fronts and the multi-objective tournament (PAPER.md section 3),
the fitness scale selection compares, and the rankings behind elites, the hall of fame
and stall detection.

Pure functions over score vectors and small containers of member ids; they know nothing
of graphs, the store or training. The populations that use them (aging, islands) are
`evonorm_search.search.strategies`.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

# How selection reads scores (`SearchConfig.fitness`), each with the step below which two
# values are equal (no progress for a stall clock, a tie for the elites):
# - "score": the scores themselves (accuracy, R^2), equal within 1e-6.
# - "log_error": decades of error, -log10(1 - score). Equal steps are equal *relative*
#   gains (0.99 -> 0.999 counts as much as 0.999 -> 0.9999), so near a planted target a
#   per-node size penalty weighs nodes against the share of the residual they remove,
#   and progress means a drop of the residual by about 1% (0.004 decades), not any gain.
FITNESS_QUANTA: dict[str, float] = {"score": 1e-6, "log_error": 0.004}
# Errors below this count as this (a perfect score is 9 decades, not infinity).
ERROR_FLOOR = 1e-9


@dataclass(frozen=True)
class Fitness:
    """A member's scores (higher is better, at most 1) and live node count as selection
    sees them: per-objective values for tournaments, one scalar for rankings, both on
    `scale` and less `size_penalty` per node, and `quantized` (whole quanta) for
    comparisons where a negligible gain must not count."""

    scale: str = "score"
    size_penalty: float = 0.0

    def __post_init__(self) -> None:
        if self.scale not in FITNESS_QUANTA:
            raise ValueError(f"fitness scale {self.scale!r} is unknown: use one of "
                             f"{', '.join(FITNESS_QUANTA)}")

    def _value(self, score: float) -> float:
        if self.scale == "score":
            return score
        return -math.log10(max(1.0 - score, ERROR_FLOOR))

    def objectives(self, scores: Sequence[float], size: int) -> list[float]:
        penalty = self.size_penalty * size
        return [self._value(score) - penalty for score in scores]

    def scalar(self, scores: Sequence[float], size: int) -> float:
        """The mean score on the scale, less the size penalty."""
        return self._value(math.fsum(scores) / len(scores)) - self.size_penalty * size

    def quantized(self, value: float) -> int:
        return round(value / FITNESS_QUANTA[self.scale])


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


class Ranking:
    """Members ranked by a sort key (smallest first: the best), with the key of each
    kept so that a member can be re-ranked; `top(k)` reads the k best in O(k)."""

    def __init__(self) -> None:
        self._keys: dict[int, tuple] = {}
        self._order: list[tuple] = []  # (key, id), sorted

    def __len__(self) -> int:
        return len(self._order)

    def add(self, member_id: int, key: tuple) -> None:
        self.discard(member_id)
        self._keys[member_id] = key
        bisect.insort(self._order, (key, member_id))

    def discard(self, member_id: int) -> None:
        key = self._keys.pop(member_id, None)
        if key is not None:
            del self._order[bisect.bisect_left(self._order, (key, member_id))]

    def key(self, member_id: int) -> tuple:
        """The sort key a member was ranked by."""
        return self._keys[member_id]

    def top(self, count: int) -> list[int]:
        """The ids of the `count` best members, best first."""
        return [member_id for _, member_id in self._order[:count]]

    def tied_with_best(self, width: int) -> list[int]:
        """The ids whose key agrees with the best's in its first `width` entries, best
        first (none when empty)."""
        if not self._order:
            return []
        best = self._order[0][0][:width]
        return list(itertools.takewhile(
            lambda member_id: self._keys[member_id][:width] == best,
            (member_id for _, member_id in self._order)))


class StallClock:
    """Evaluations since the best score was first reached (the stall a local scan or an
    island restart waits for). Scores are whole numbers (quantized: equal within the
    quantum is no progress); the clock is a function of the members and evaluations it
    was given, in any order."""

    def __init__(self) -> None:
        self._evaluated: list[int] = []  # candidate numbers, sorted
        self._best: int | None = None  # the best quantized score
        self._first = -1  # the earliest candidate number that reached it

    def evaluated(self, number: int) -> None:
        bisect.insort(self._evaluated, number)

    def scored(self, number: int, score: int) -> None:
        if self._best is None or score > self._best:
            self._best, self._first = score, number
        elif score == self._best:
            self._first = min(self._first, number)

    @property
    def best(self) -> int | None:
        return self._best

    @property
    def since(self) -> int:
        """The number of the candidate that first reached the best score (-1: none)."""
        return self._first

    def stalled_for(self) -> int:
        """Evaluations numbered after the candidate that first reached the best score."""
        if self._best is None:
            return 0
        return len(self._evaluated) - bisect.bisect_right(self._evaluated, self._first)
