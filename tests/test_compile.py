"""compile_layer: modes, state, plan over live nodes, numerics, torch.compile/export."""

from __future__ import annotations

import pickle

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from evonorm_search.compile import (
    CompiledLayer, bounded_positive_nodes, compile_layer, effective_groups, execution_order,
    layer_factory,
)
from evonorm_search.graph import NUM_INITIAL, LayerGraph, Node
from evonorm_search.known import KNOWN_LAYERS, get_known
from tests.test_graph import graphs


def test_parameters_buffers_and_state_dict_round_trip() -> None:
    layer = compile_layer(get_known("evonorm_b0"), 6)
    assert set(layer.state_dict()) == {"v1", "gamma", "beta", "running_4"}  # v0 unused
    assert torch.equal(layer.v1, torch.ones(1, 6, 1, 1)) and layer.v0 is None
    bn_relu = compile_layer(get_known("bn_relu"), 6)
    assert set(bn_relu.state_dict()) == {"v0", "v1", "gamma", "beta", "running_4", "running_7"}
    assert torch.equal(bn_relu.v0, torch.zeros(1, 6, 1, 1))
    x = torch.randn(4, 6, 3, 3)
    for _ in range(3):
        layer(x * 2)
    with torch.no_grad():
        layer.v1.mul_(1.5)
    other = compile_layer(get_known("evonorm_b0"), 6)
    other.load_state_dict(layer.state_dict())
    layer.eval()
    other.eval()
    assert torch.equal(layer(x), other(x))
    assert not torch.equal(layer(x), compile_layer(get_known("evonorm_b0"), 6).eval()(x))


def test_eval_mode_uses_and_keeps_running_statistics() -> None:
    layer = compile_layer(get_known("evonorm_b2"), 4).eval()
    x = torch.randn(2, 4, 3, 3)
    before = layer.running_4.clone()
    y1 = layer(x)
    assert torch.equal(layer.running_4, before)
    # batch-independent in eval mode: a sample's output does not depend on the others
    torch.testing.assert_close(layer(x[:1]), y1[:1])
    layer.train()
    layer(x)
    assert not torch.equal(layer.running_4, before)


def test_dead_nodes_cost_nothing() -> None:
    graph = LayerGraph([Node("std_batch", (0,)), Node("mean_batch", (0,)), Node("tanh", (0,)),
                        Node("std_batch", (6,)), Node("div", (6, 7))])
    layer = compile_layer(graph, 3)
    assert [k for k in layer.state_dict() if k.startswith("running")] == ["running_7"]
    assert len(layer._plan) == 3
    x = torch.randn(5, 3, 2, 2)
    expected = torch.tanh(x) / torch.sqrt(torch.tanh(x).var((0, 2, 3), unbiased=False, keepdim=True) + 1e-5)
    torch.testing.assert_close(layer(x), expected)


@settings(max_examples=100, deadline=None)
@given(graphs())
def test_execution_order_is_topological_over_live_nodes_statistics_first(graph: LayerGraph) -> None:
    order = execution_order(graph)
    assert sorted(order) == sorted(i for i in graph.live_nodes() if i >= NUM_INITIAL)
    assert order[-1] == graph.output
    position = {i: k for k, i in enumerate(order)}
    for i in order:
        assert all(j < NUM_INITIAL or position[j] < position[i] for j in graph.node(i).inputs)


def test_statistics_of_x_run_first() -> None:
    assert execution_order(get_known("evonorm_s0")) == [7, 4, 5, 6, 8]
    assert execution_order(get_known("evonorm_b0")) == [4, 6, 5, 7, 8, 9]


def test_output_constant_over_some_axes_is_expanded_to_the_input_shape() -> None:
    layer = compile_layer(LayerGraph([Node("mean_layer", (0,))]), 5)
    x = torch.randn(2, 5, 3, 4)
    y = layer(x)
    assert y.shape == x.shape and y.is_contiguous()
    torch.testing.assert_close(y, x.mean((1, 2, 3), keepdim=True).expand_as(x))


def test_groups_lowered_until_they_divide_c() -> None:
    assert [effective_groups(c, 32) for c in (64, 24, 48, 7, 1, 96)] == [32, 24, 24, 7, 1, 32]
    assert compile_layer(get_known("evonorm_s0"), 40).groups == 20


def test_division_guard_only_where_denominator_may_vanish() -> None:
    s0 = get_known("evonorm_s0")
    assert 7 in bounded_positive_nodes(s0)  # std_group
    b0 = get_known("evonorm_b0")
    assert 8 in bounded_positive_nodes(b0)  # max(std_batch, ...)
    guarded = LayerGraph([Node("sigmoid", (0,)), Node("div", (0, 4))])
    assert not bounded_positive_nodes(guarded)
    x = torch.full((1, 2, 1, 1), -200.0)  # sigmoid underflows to 0: the guard keeps it finite
    assert torch.isfinite(compile_layer(guarded, 2)(x)).all()


def test_wrong_input_shape_and_channel_count() -> None:
    layer = compile_layer(get_known("evonorm_s0"), 8)
    with pytest.raises(ValueError, match=r"expected input \(N, 8, H, W\)"):
        layer(torch.randn(2, 4, 3, 3))
    with pytest.raises(ValueError, match="num_channels"):
        compile_layer(get_known("evonorm_s0"), 0)


def test_layer_factory_is_a_picklable_norm_act() -> None:
    factory = layer_factory(get_known("evonorm_s1"), groups=4)
    layer = pickle.loads(pickle.dumps(factory))(16)
    assert isinstance(layer, CompiledLayer) and layer.groups == 4 and layer.num_channels == 16


def test_double_precision_and_extra_repr() -> None:
    layer = compile_layer(get_known("bn_swish"), 3).double()
    y = layer(torch.randn(2, 3, 2, 2, dtype=torch.float64))
    assert y.dtype == torch.float64
    assert "std_batch" in repr(layer)


@settings(max_examples=60, deadline=None)
@given(graphs(), st.sampled_from([(4, 24, 3, 3), (2, 24, 1, 1), (1, 6, 2, 2)]))
def test_random_graphs_compile_and_backprop_twice(graph: LayerGraph, shape: tuple) -> None:
    layer = compile_layer(graph, shape[1]).double()
    x = (torch.randn(shape, dtype=torch.float64) * 0.5).requires_grad_()
    y = layer(x)
    assert y.shape == shape
    # Deep random graphs may overflow (exp, repeated squares); the search rejects those.
    assume(bool(torch.isfinite(y).all()))
    params = [p for p in layer.parameters()]
    grads = torch.autograd.grad(y.square().mean(), params + [x], create_graph=True, allow_unused=True)
    grads = [g for g in grads if g is not None and g.requires_grad]
    if grads:  # the stability protocol's double backprop
        norm = sum(g.square().sum() for g in grads)
        torch.autograd.grad(norm, params, allow_unused=True)


def test_torch_export_in_train_and_eval_mode() -> None:
    x = torch.randn(2, 8, 3, 3)
    for name in ("evonorm_b0", "evonorm_s0"):
        layer = compile_layer(get_known(name), 8)
        reference = compile_layer(get_known(name), 8)
        exported = torch.export.export(layer, (x,)).module()
        torch.testing.assert_close(exported(x), reference(x))
        for key, value in reference.state_dict().items():  # running averages updated alike
            torch.testing.assert_close(exported.state_dict()[key], value)
        layer.eval()
        reference.eval()
        torch.testing.assert_close(torch.export.export(layer, (x,)).module()(x), reference(x))


def test_torch_compile_traces_without_graph_breaks() -> None:
    """aot_eager runs dynamo + AOT autograd (what torch.compile needs from the module)
    without the C++ build; the inductor variant is the slow test below."""
    layer = compile_layer(get_known("evonorm_b0"), 8)
    reference = compile_layer(get_known("evonorm_b0"), 8)
    compiled = torch.compile(layer, backend="aot_eager", fullgraph=True)
    x = torch.randn(2, 8, 3, 3, requires_grad=True)
    y = compiled(x)
    y.square().sum().backward()
    torch.testing.assert_close(y, reference(x))
    torch.testing.assert_close(layer.running_4, reference.running_4)
    layer.eval()
    reference.eval()
    torch.testing.assert_close(compiled(x), reference(x))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(KNOWN_LAYERS))
def test_torch_compile_inductor(name: str) -> None:
    layer = compile_layer(get_known(name), 8)
    reference = compile_layer(get_known(name), 8)
    x = torch.randn(2, 8, 3, 3)
    torch.testing.assert_close(torch.compile(layer)(x), reference(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("inputs", [(0, 1), (1, 0)])
def test_max_with_zero_compiles_to_relu(inputs: tuple[int, int]) -> None:
    graph = LayerGraph([Node("max", inputs)])
    layer = compile_layer(graph, 6)
    assert [step.fn for step in layer._plan] == [torch.relu]
    x = torch.randn(3, 6, 4, 4)
    torch.testing.assert_close(layer(x), torch.relu(x), rtol=0, atol=0)


def test_max_of_two_tensors_equals_torch_maximum_with_finite_second_derivatives() -> None:
    layer = compile_layer(LayerGraph([Node("sigmoid", (0,)), Node("max", (0, 4))]), 5)
    x = torch.randn(4, 5, 3, 3, dtype=torch.float64, requires_grad=True)
    layer = layer.double()
    torch.testing.assert_close(layer(x), torch.maximum(x, torch.sigmoid(x)))
    (grad,) = torch.autograd.grad(layer(x).square().sum(), x, create_graph=True)
    (second,) = torch.autograd.grad(grad.sum(), x)
    assert torch.isfinite(second).all()
