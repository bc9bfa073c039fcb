"""Functional fingerprints: equal functions collide, different ones do not, NaN/inf caught."""

from __future__ import annotations

import random
from itertools import combinations

import pytest

from evonorm_search.fingerprint import fingerprint
from evonorm_search.graph import LayerGraph
from evonorm_search.known import KNOWN_LAYERS
from evonorm_search.search.moves import random_graph

X, ZERO, V0, V1 = 0, 1, 2, 3


def g(*nodes: tuple[str, tuple[int, ...]]) -> LayerGraph:
    return LayerGraph(list(nodes))


def test_known_layers_are_finite_and_pairwise_distinct() -> None:
    prints = {name: fingerprint(layer) for name, layer in KNOWN_LAYERS.items()}
    assert all(p.finite and p.reason is None for p in prints.values())
    assert len({p.digest for p in prints.values()}) == len(prints)
    assert fingerprint(KNOWN_LAYERS["evonorm_s0"]) == prints["evonorm_s0"]  # deterministic


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (g(("square", (X,))), g(("mul", (X, X)))),
        (g(("mul", (X, V1))), g(("mul", (V1, X)))),
        (g(("neg", (X,)), ("neg", (4,))), g(("abs", (X,)), ("add", (X, ZERO)))),  # dead node
        (g(("abs", (V0,)), ("max", (X, X))), g(("max", (X, X)))),
    ],
)
def test_same_function_same_fingerprint(first: LayerGraph, second: LayerGraph) -> None:
    assert fingerprint(first) == fingerprint(second)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        # Equal at initialisation (v0 = 0, v1 = 1), different after training.
        (g(("add", (X, V0))), g(("add", (X, ZERO)))),
        (g(("mul", (X, V1))), g(("max", (X, X)))),
        # Statistics over different axes (group != instance != layer on the probe).
        (g(("std_group", (X,)), ("div", (X, 4))), g(("std_instance", (X,)), ("div", (X, 4)))),
        (g(("std_group", (X,)), ("div", (X, 4))), g(("std_layer", (X,)), ("div", (X, 4)))),
        (g(("mean_batch", (X,))), g(("mean_instance", (X,)))),
        (g(("rms_instance", (X,))), g(("std_instance", (X,)))),
    ],
)
def test_different_functions_differ(first: LayerGraph, second: LayerGraph) -> None:
    assert fingerprint(first).digest != fingerprint(second).digest


def test_random_layers_rarely_collide_unless_equal() -> None:
    """Distinct live structures give distinct fingerprints, except true equivalences."""
    rng = random.Random(2)
    layers = {}
    for _ in range(60):
        layer = random_graph(rng, "B", rng.randint(1, 4))
        layers[layer.structural_hash()] = layer
    digests = {h: fingerprint(layer).digest for h, layer in layers.items()}
    collisions = [(a, b) for a, b in combinations(digests, 2) if digests[a] == digests[b]]
    assert len(collisions) <= len(layers) // 4  # e.g. abs(abs(x)) == abs(x) is allowed


def test_overflow_and_nan_are_detected() -> None:
    exploding = fingerprint(g(("exp", (X,)), ("exp", (4,)), ("exp", (5,))))
    assert not exploding.finite and "inf" in (exploding.reason or "")
    assert fingerprint(g(("exp", (X,)))).finite
