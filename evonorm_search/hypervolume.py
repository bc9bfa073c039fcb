"""Hypervolume of a set of points under maximization: the volume they dominate.

Owns `hypervolume(points, reference)`. Used to compare Pareto fronts of different searches
(evolution vs random search) with one number per front: the K-dimensional volume of the
union of boxes [reference, p] over the points p. Exact, by slicing along the last axis
and recursing on the remaining ones; O(n^K) at worst, which is plenty for fronts of a few
hundred points with K = 3.
"""

from __future__ import annotations

from collections.abc import Sequence


def _volume(points: list[tuple[float, ...]], reference: tuple[float, ...]) -> float:
    dims = len(reference)
    if not points:
        return 0.0
    if dims == 1:
        return max(p[0] for p in points) - reference[0]
    # Slabs between consecutive distinct levels of the last coordinate: within a slab,
    # the dominated cross-section is that of every point reaching at least the slab's top.
    levels = sorted({p[-1] for p in points}, reverse=True)
    total = 0.0
    for upper, lower in zip(levels, levels[1:] + [reference[-1]]):
        section = [p[:-1] for p in points if p[-1] >= upper]
        total += _volume(section, reference[:-1]) * (upper - lower)
    return total


def hypervolume(points: Sequence[Sequence[float]], reference: Sequence[float] | None = None) -> float:
    """Volume dominated by `points` (maximizing every coordinate) above `reference`.

    `reference` defaults to the origin (accuracies are >= 0). Points that do not strictly
    exceed the reference in every coordinate dominate no volume and are ignored. Raises
    ValueError on ragged input, a dimension mismatch or a non-finite coordinate.
    """
    rows = [tuple(float(v) for v in p) for p in points]
    if not rows:
        return 0.0
    dims = len(rows[0])
    ref = tuple(float(v) for v in reference) if reference is not None else (0.0,) * dims
    if dims == 0 or any(len(r) != dims for r in rows) or len(ref) != dims:
        raise ValueError(f"hypervolume: every point and the reference need {dims} coordinates")
    if any(v != v or v in (float("inf"), float("-inf")) for r in rows + [ref] for v in r):
        raise ValueError("hypervolume: coordinates must be finite")
    kept = [r for r in rows if all(v > q for v, q in zip(r, ref))]
    return _volume(kept, ref)


__all__ = ["hypervolume"]
