"""Parameters and buffers of compiled and exported layers: only what the graph uses (so
DDP's default find_unused_parameters=False works: tests/test_compat_matrix.py runs it),
stable state-dict names, older checkpoints still loading."""

from __future__ import annotations

import io
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from torch import nn

from evonorm_search.compile import compile_layer
from evonorm_search.export import to_source
from evonorm_search.graph import LayerGraph
from evonorm_search.known import NAMED_LAYERS, get_known
from primitives import OPS
from tests.test_export import load_source
from tests.test_graph import graphs


def expected_state_keys(graph: LayerGraph) -> set[str]:
    """The documented names: v0/v1 where live, gamma, beta, running_<i> per live batch stat."""
    live = graph.live_nodes()
    keys = {"gamma", "beta"} | {name for index, name in ((2, "v0"), (3, "v1")) if index in live}
    return keys | {
        f"running_{i}" for i in live if i >= 4 and OPS[graph.node(i).op].reads_batch_stats
    }


@pytest.mark.parametrize("name", sorted(NAMED_LAYERS))
def test_known_layers_hold_only_what_they_use(name: str, tmp_path: Path) -> None:
    graph = get_known(name)
    compiled = compile_layer(graph, 8)
    exported = load_source(to_source(graph), tmp_path).EvolvedNormAct(8)
    for layer in (compiled, exported):
        assert set(layer.state_dict()) == expected_state_keys(graph)
    # EvoNorm-B0/S0 use v1 only; the other EvoNorms and swish_group_rmsnorm neither; the
    # baselines both; of the Transformer layers DyT and RepBN use v1, Derf both,
    # LayerNorm/RMSNorm/BCN neither; floored_square_layernorm v0 (its floor).
    uses = {n for n in ("v0", "v1") if getattr(compiled, n) is not None}
    assert uses == {
        "bn_relu": {"v0", "v1"}, "gn_relu": {"v0", "v1"}, "bn_swish": {"v0", "v1"},
        "evonorm_b0": {"v1"}, "evonorm_s0": {"v1"},
        "dyt": {"v1"}, "repbn": {"v1"}, "derf": {"v0", "v1"},
        "floored_square_layernorm": {"v0"},
    }.get(name, set())


@settings(max_examples=30, deadline=None)
@given(graphs())
def test_every_parameter_gets_a_gradient(graph: LayerGraph) -> None:
    """What DDP with find_unused_parameters=False needs: no parameter left without a
    gradient by one training step."""
    layer = compile_layer(graph, 6).double().train()
    assert set(layer.state_dict()) == expected_state_keys(graph)
    y = layer(torch.randn(3, 6, 2, 2, dtype=torch.float64))
    y.sum().backward()
    assert all(p.grad is not None for p in layer.parameters())


def format_1_state_dict(graph: LayerGraph, channels: int, prefix: str = "") -> OrderedDict:
    """A state dict as the layers wrote it before they held only what they use: v0 and v1
    always, module version 1 (nn.Module's default) in the metadata."""
    gen = torch.Generator().manual_seed(3)
    state = OrderedDict(
        (prefix + key, torch.randn(1, channels, 1, 1, generator=gen))
        for key in ("v0", "v1", "gamma", "beta")
    )
    for key in sorted(expected_state_keys(graph)):
        if key.startswith("running_"):
            state[prefix + key] = torch.rand(1, channels, 1, 1, generator=gen) + 0.5
    metadata = OrderedDict({prefix.rstrip("."): {"version": 1}})
    state._metadata = metadata  # type: ignore[attr-defined]
    return state


@pytest.mark.parametrize("name", ["evonorm_s0", "evonorm_b1", "bn_relu"])
def test_checkpoints_from_before_still_load_strictly(name: str, tmp_path: Path) -> None:
    graph = get_known(name)
    old = format_1_state_dict(graph, 8)
    buffer = io.BytesIO()
    torch.save(old, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)  # what a user reloads from disk
    exported_class = load_source(to_source(graph), tmp_path).EvolvedNormAct
    x = torch.randn(2, 8, 3, 3)
    outputs = []
    for state in (old, saved, {k: v for k, v in old.items()}):  # the last without metadata
        for layer in (compile_layer(graph, 8), exported_class(8)):
            layer.load_state_dict(state)  # strict
            for key, value in layer.state_dict().items():
                assert torch.equal(value, old[key])
            outputs.append(layer.eval()(x))
    for y in outputs[1:]:
        torch.testing.assert_close(y, outputs[0], rtol=0, atol=0)


def test_old_checkpoint_of_a_whole_model_loads_and_new_stray_keys_are_refused() -> None:
    graph = get_known("evonorm_s0")
    model = nn.Sequential(nn.Conv2d(3, 8, 1), compile_layer(graph, 8))
    state = OrderedDict((f"0.{k}", v) for k, v in model[0].state_dict().items())
    state.update(format_1_state_dict(graph, 8, prefix="1."))
    metadata = OrderedDict((key, {"version": 1}) for key in ("", "0", "1"))
    state._metadata = metadata  # type: ignore[attr-defined]
    model.load_state_dict(state)
    assert torch.equal(model[1].v1, state["1.v1"])
    # A current (format 2) checkpoint with a v0 that this layer does not have is another
    # layer's: refused by torch's strict check, naming the key.
    current = model.state_dict()
    current["1.v0"] = torch.zeros(1, 8, 1, 1)
    with pytest.raises(RuntimeError, match=r'Unexpected key\(s\) in state_dict: "1\.v0"'):
        model.load_state_dict(current)
