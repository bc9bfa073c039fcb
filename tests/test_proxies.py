"""Proxy registry: every proxy, with BN-ReLU, EvoNorm-S0 and random valid graphs, on 8x8
1-channel and 32x32 3-channel input, runs forward/backward and trains a few steps."""

from __future__ import annotations

import random

import pytest
import torch
from torch import nn

from evonorm_search.compile import CompiledLayer, layer_factory
from evonorm_search.known import get_known
from evonorm_search.search.moves import random_graph
from workers.proxies import PROXIES, build_proxy




INPUTS = {"digits-like": (1, 8), "cifar-like": (3, 32)}


def _train_steps(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> list[float]:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(steps):
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses


@pytest.mark.parametrize("proxy", sorted(PROXIES))
@pytest.mark.parametrize("layer", ["bn_relu", "evonorm_s0"])
@pytest.mark.parametrize("shape", sorted(INPUTS))
def test_proxy_trains_with_known_layer(proxy: str, layer: str, shape: str) -> None:
    channels, size = INPUTS[shape]
    torch.manual_seed(0)
    model = build_proxy(proxy, layer_factory(get_known(layer)), 10, channels, 8, 1)
    assert sum(isinstance(m, CompiledLayer) for m in model.modules()) >= 5
    x = torch.randn(6, channels, size, size)
    y = torch.arange(6) % 10
    assert model(x).shape == (6, 10)
    model(x).sum().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    # Only parameters the layer ignores (v0 in EvoNorm-S0) may lack a gradient.
    assert len(grads) >= len(list(model.parameters())) * 3 // 4
    assert all(torch.isfinite(g).all() for g in grads)
    model.zero_grad()
    # A few steps on one fixed batch must fit it better: the whole net learns.
    losses = _train_steps(model, x, y, 12)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("proxy", sorted(PROXIES))
@pytest.mark.parametrize("space, seed", [("B", 1), ("B", 2), ("S", 3), ("S", 4)])
def test_proxy_runs_with_random_graph(proxy: str, space: str, seed: int) -> None:
    graph = random_graph(random.Random(seed), space)
    torch.manual_seed(seed)
    model = build_proxy(proxy, layer_factory(graph), 10, 1, 4, 1)
    x = torch.randn(4, 1, 8, 8)
    out = model(x)
    assert out.shape == (4, 10)
    # Random layers may produce NaN (the protocols reject those); the pass must still run.
    out.sum().backward()
    _train_steps(model, x, torch.arange(4), 2)


@pytest.mark.parametrize("proxy", sorted(PROXIES))
def test_batch_one_tiny_maps_and_odd_channels_are_finite(proxy: str) -> None:
    # 4x4 input reaches 1x1 maps in the last stage; width 6 gives channel counts that
    # 32 groups do not divide; batch size 1 with an S-space layer.
    torch.manual_seed(0)
    model = build_proxy(proxy, layer_factory(get_known("evonorm_s0")), 3, 2, 6, 2)
    x = torch.randn(1, 2, 4, 4)
    out = model(x)
    assert out.shape == (1, 3) and torch.isfinite(out).all()
    nn.functional.cross_entropy(out, torch.tensor([1])).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("proxy", sorted(PROXIES))
def test_width_and_depth_knobs_grow_the_net(proxy: str) -> None:
    def factory(c: int) -> nn.Module:
        return nn.Sequential(nn.BatchNorm2d(c), nn.ReLU())

    def size(width: int, depth: int) -> int:
        return sum(p.numel() for p in build_proxy(proxy, factory, 10, 3, width, depth).parameters())

    assert size(8, 1) < size(16, 1) and size(8, 1) < size(8, 2)
    norm_count = sum(isinstance(m, nn.BatchNorm2d)
                     for m in build_proxy(proxy, factory, 10, 3, 8, 2).modules())
    assert norm_count >= 2 * 3 * 2  # at least two norm positions per block


def test_unknown_proxy_and_bad_knobs() -> None:
    with pytest.raises(KeyError, match="resnet"):
        build_proxy("vgg", nn.Identity, 10, 3, 8, 1)
    with pytest.raises(ValueError, match="width"):
        build_proxy("resnet", nn.Identity, 10, 3, 0, 1)
