"""Noise-aware, multi-fidelity fitness decisions of a search (issue 11).

Owns two rules the controller applies to its aging population, as pure functions:
- the *hurdle*: after the quality check, a new candidate trains on to the full budget only
  when its mean early (quality-check) accuracy over the proxies reaches a quantile of the
  population members' mean early accuracies;
- *re-evaluation*: the members on the population's Pareto front (by mean accuracy over
  their seeds) are trained again with further seeds, one at a time, up to R seeds each.
Why the mean over proxies at the quality check: the early accuracies of the proxies move
together, and benchmarks/proxy_fidelity.py measures how well they predict the final one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence, Set
from typing import Protocol

from evonorm_search.search.selection import pareto_front


class Member(Protocol):
    id: int
    number: int
    accuracies: Mapping[str, float]
    early_accuracies: Mapping[str, float]


def mean_early_accuracy(early: Mapping[str, float], proxies: Sequence[str]) -> float | None:
    """The mean quality-check accuracy over `proxies`, or None when one is missing."""
    if not proxies or any(proxy not in early for proxy in proxies):
        return None
    return math.fsum(early[proxy] for proxy in proxies) / len(proxies)


def hurdle_for(population: Sequence[Member], quantile: float | None,
               proxies: Sequence[str], size: int) -> float | None:
    """The hurdle a new candidate must clear: the lower `quantile` (nearest rank) of the
    members' mean early accuracies; None (no hurdle) when the rule is off or the
    population is not full yet (the first members all train: they set the bar)."""
    if quantile is None or len(population) < size:
        return None
    values = sorted(
        value for member in population
        if (value := mean_early_accuracy(member.early_accuracies, proxies)) is not None
    )
    if not values:
        return None
    return values[max(0, math.ceil(quantile * len(values)) - 1)]


def front_members(population: Sequence[Member], proxies: Sequence[str]) -> list[Member]:
    """The population's Pareto front by mean accuracy per proxy, by candidate number."""
    points = [[member.accuracies.get(proxy, 0.0) for proxy in proxies] for member in population]
    return sorted((population[i] for i in pareto_front(points)), key=lambda m: m.number)


def to_reevaluate(population: Sequence[Member], proxies: Sequence[str], seeds: int,
                  trials: Mapping[int, int], busy: Set[int]) -> list[Member]:
    """Front members that need another seed, by number: fewer than `seeds` trials so far
    (`trials` maps candidate id -> trials created, finished or not) and none unfinished
    (`busy` holds their ids): one seed at a time, so a member whose new seeds push it off
    the front gets no more."""
    if seeds <= 1:
        return []
    return [member for member in front_members(population, proxies)
            if trials.get(member.id, 1) < seeds and member.id not in busy]
