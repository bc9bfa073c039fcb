"""evonorm_search.simplify: shorter layers that compute the same function.

The property test checks simplified random layers on an input shape and parameter
values the simplifier never probed, with its own comparison (not the module's)."""

from __future__ import annotations

import random

import pytest
import torch

from evonorm_search.compile import compile_layer
from evonorm_search.graph import LayerGraph, Node
from evonorm_search.known import KNOWN_LAYERS, get_known
from evonorm_search.search.moves import random_graph
from evonorm_search.simplify import equivalent, simplified_label, simplify
from primitives import SPACES

X, ZERO, V0, V1 = 0, 1, 2, 3


def outputs(graph: LayerGraph, seed: int) -> torch.Tensor | None:
    """The layer on a shape the simplifier does not probe (batch 6, 10 channels in groups
    of 5, 4x2 maps) with random v0/v1 (float64, training mode); None if not finite."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(6, 10, 4, 2, generator=generator, dtype=torch.float64)
    x = x * torch.rand(1, 10, 1, 1, generator=generator, dtype=torch.float64) * 2 + \
        torch.randn(1, 10, 1, 1, generator=generator, dtype=torch.float64)
    layer = compile_layer(graph, 10, groups=2).double().train()
    with torch.no_grad():
        for name in ("v0", "v1"):
            value = torch.randn(1, 10, 1, 1, generator=generator, dtype=torch.float64)
            if getattr(layer, name) is not None:  # only where the output uses it
                getattr(layer, name).copy_(value)
        y = layer(x)
    return y if torch.isfinite(y).all() else None


def affine_residual(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest per-channel share of b's variance that no affine map of a explains."""
    worst = 0.0
    for channel in range(a.shape[1]):
        u, v = a[:, channel].reshape(-1), b[:, channel].reshape(-1)
        design = torch.stack([u, torch.ones_like(u)], 1)
        solution = torch.linalg.lstsq(design, v.unsqueeze(1)).solution
        residual = float(((design @ solution).squeeze(1) - v).pow(2).sum())
        spread = float((v - v.mean()).pow(2).sum())
        if spread <= 1e-24 * len(v) * float(v.abs().max()) ** 2:
            continue  # a constant channel: the affine map's shift explains it
        worst = max(worst, residual / spread)
    return worst


def s0_times_v1() -> LayerGraph:
    """x / std_group(x) * sigmoid(x * v1) * v1: one of the issue-10 recoveries."""
    return LayerGraph([Node("std_group", (X,)), Node("div", (X, 4)), Node("mul", (X, V1)),
                       Node("sigmoid", (6,)), Node("mul", (5, 7)), Node("mul", (8, V1))])


def test_a_factor_that_gamma_absorbs_goes_up_to_the_affine_only() -> None:
    graph = s0_times_v1()
    assert simplify(graph).structural_hash() == graph.structural_hash()
    simple = simplify(graph, up_to_affine=True)
    assert simple.structural_hash() == get_known("evonorm_s0").structural_hash()
    assert simplified_label(graph) == "x * sigmoid(v1 * x) / std_group(x)  (evonorm_s0)"


def test_division_by_the_zero_node_is_a_scale() -> None:
    s1 = get_known("evonorm_s1")
    by_zero = LayerGraph([*s1.nodes, Node("div", (s1.output, ZERO))])
    assert simplify(by_zero).num_nodes == by_zero.num_nodes  # x / eps: not the same output
    assert simplify(by_zero, up_to_affine=True).structural_hash() == s1.structural_hash()
    zero_over = LayerGraph([Node("sigmoid", (X,)), Node("mul", (X, 4)), Node("std_group", (X,)),
                            Node("div", (ZERO, 6)), Node("add", (5, 7))])  # x*sigmoid(x) + 0/std
    assert simplify(zero_over).formula() == "x * sigmoid(x)"


def test_a_looser_tolerance_takes_rewrites_that_differ_only_by_eps() -> None:
    # The batch standardization of x / rms_batch(x) is that of x but for the eps of the
    # statistics (near-eps inputs tell them apart by ~1e-4): the scan's compact edits
    # take it at tolerance 1e-3; the default keeps the rms (read as a scale, x / 0).
    rms_standardized = LayerGraph([
        Node("rms_batch", (X,)), Node("div", (X, 4)), Node("mean_batch", (5,)), Node("neg", (6,)),
        Node("add", (5, 7)), Node("std_batch", (5,)), Node("div", (8, 9))])
    standardized = "(x - mean_batch(x)) / std_batch(x)"
    assert standardized not in simplify(rms_standardized, up_to_affine=True).formula()
    assert simplify(rms_standardized, up_to_affine=True,
                    tolerance=1e-3).formula() == standardized
    # A different function stays apart at the looser tolerance too.
    centred = LayerGraph([Node("mean_batch", (X,)), Node("neg", (4,)), Node("add", (X, 5))])
    assert simplify(centred, up_to_affine=True, tolerance=1e-3).formula() == "x - mean_batch(x)"


def test_constants_stacked_statistics_and_doubled_terms() -> None:
    stacked = LayerGraph([Node("std_instance", (X,)), Node("rms_instance", (4,)),
                          Node("mean_instance", (5,)), Node("div", (X, 6))])
    assert simplify(stacked, up_to_affine=True).formula() == "x / std_instance(x)"
    doubled = LayerGraph([Node("sigmoid", (X,)), Node("mul", (X, 4)), Node("add", (5, 5)),
                          Node("std_group", (X,)), Node("div", (6, 7))])
    assert simplify(doubled, up_to_affine=True) == get_known("evonorm_s1").pruned()
    half = LayerGraph([Node("sigmoid", (ZERO,)), Node("std_group", (X,)), Node("div", (X, 5)),
                       Node("mul", (6, 4))])  # x / std_group(x) * sigmoid(0)
    assert simplify(half).num_nodes == half.num_nodes
    assert simplify(half, up_to_affine=True).formula() == "x / std_group(x)"


def test_exact_rewrites_merge_duplicates_and_drop_redundant_nodes() -> None:
    duplicated = LayerGraph([Node("std_group", (X,)), Node("tanh", (V0,)), Node("std_group", (X,)),
                             Node("sigmoid", (X,)), Node("mul", (7, X)), Node("div", (8, 6))])
    assert simplify(duplicated) == get_known("evonorm_s1").pruned()
    # max(std, std / sigmoid(x)) is always its second argument (sigmoid < 1). The result
    # is EvoNorm-S1 reassociated except where sigmoid(x) is near eps (its guarded
    # division), so it is not replaced by the known form.
    always_second = LayerGraph([Node("std_group", (X,)), Node("sigmoid", (X,)), Node("div", (4, 5)),
                                Node("max", (4, 6)), Node("div", (X, 7))])
    for up_to_affine in (False, True):
        assert simplify(always_second, up_to_affine=up_to_affine).formula() == \
            "x / (std_group(x) / sigmoid(x))"
    twice_negated = LayerGraph([Node("neg", (X,)), Node("neg", (4,)), Node("std_layer", (5,)),
                                Node("div", (5, 6))])
    assert simplify(twice_negated).formula() == "x / std_layer(x)"


def test_known_layers_are_their_own_shortest_form() -> None:
    for name, graph in KNOWN_LAYERS.items():
        for up_to_affine in (False, True):
            assert simplify(graph, up_to_affine=up_to_affine).structural_hash() == \
                graph.structural_hash(), name


def test_equivalence_tells_parameter_values_apart() -> None:
    s0, s1 = get_known("evonorm_s0"), get_known("evonorm_s1")
    assert not equivalent(s0, s1) and not equivalent(s0, s1, up_to_affine=True)
    assert equivalent(s0, s0_times_v1(), up_to_affine=True)
    assert not equivalent(s0, s0_times_v1())


@pytest.mark.parametrize("space", list(SPACES))
def test_simplified_random_layers_compute_the_same_function(space: str) -> None:
    rng = random.Random(f"simplify:{space}")
    checked = shorter = 0
    for index in range(24):
        graph = random_graph(rng, space, rng.randint(3, 6))
        reference = outputs(graph, index)
        if reference is None:
            continue
        checked += 1
        exact, affine = simplify(graph), simplify(graph, up_to_affine=True)
        assert affine.num_nodes <= exact.num_nodes <= graph.pruned().num_nodes
        same = outputs(exact, index)
        assert same is not None and torch.allclose(same, reference, rtol=1e-3, atol=1e-6), (
            graph.formula(), exact.formula())
        up_to = outputs(affine, index)
        assert up_to is not None, (graph.formula(), affine.formula())
        assert affine_residual(up_to, reference) < 1e-5, (graph.formula(), affine.formula())
        assert affine_residual(reference, up_to) < 1e-5, (graph.formula(), affine.formula())
        shorter += affine.num_nodes < graph.pruned().num_nodes
    assert checked >= 6 and shorter >= 2, (checked, shorter)
