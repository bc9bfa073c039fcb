"""Known layers compiled from graphs vs independent hand-written implementations.

The reference modules below are written from the PAPER.md section 6 formulas (and
torch's own BatchNorm2d/GroupNorm), not derived from the graphs.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from evonorm_search.compile import compile_layer
from evonorm_search.errors import GraphError
from evonorm_search.known import (
    CNN_LAYERS, DISCOVERED_HOMES, DISCOVERED_LAYERS, KNOWN_HOMES, KNOWN_LAYERS, NAMED_LAYERS,
    TRANSFORMER_LAYERS, get_known,
)

EPS = 1e-5


def lowered_groups(c: int, g: int = 32) -> int:
    while c % g:
        g -= 1
    return g


def group_std(x: Tensor, rms: bool = False) -> Tensor:
    n, c, h, w = x.shape
    g = lowered_groups(c)
    xg = x.reshape(n, g, c // g, h, w)
    second = xg.pow(2).mean((2, 3, 4), keepdim=True) if rms else xg.var((2, 3, 4), unbiased=False, keepdim=True)
    return torch.sqrt(second + EPS).expand_as(xg).reshape(n, c, h, w)


def instance_std(x: Tensor) -> Tensor:
    return torch.sqrt(x.var((2, 3), unbiased=False, keepdim=True) + EPS)


def instance_rms(x: Tensor) -> Tensor:
    return torch.sqrt(x.pow(2).mean((2, 3), keepdim=True) + EPS)


class HandEvoNorm(nn.Module):
    """EvoNorm B0-B2 and S0-S2 written directly from their formulas."""

    def __init__(self, kind: str, c: int) -> None:
        super().__init__()
        self.kind = kind
        self.v1 = nn.Parameter(torch.ones(1, c, 1, 1))
        self.gamma = nn.Parameter(torch.ones(1, c, 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.register_buffer("running_var", torch.ones(1, c, 1, 1))

    def batch_std(self, x: Tensor) -> Tensor:
        if not self.training:
            return torch.sqrt(self.running_var + EPS)
        var = x.var((0, 2, 3), unbiased=False, keepdim=True)
        with torch.no_grad():
            self.running_var.copy_(0.9 * self.running_var + 0.1 * x.var((0, 2, 3), unbiased=True, keepdim=True))
        return torch.sqrt(var + EPS)

    def forward(self, x: Tensor) -> Tensor:
        k = self.kind
        if k == "evonorm_b0":
            y = x / torch.maximum(self.batch_std(x), self.v1 * x + instance_std(x))
        elif k == "evonorm_b1":
            y = x / torch.maximum(self.batch_std(x), (x + 1) * instance_rms(x))
        elif k == "evonorm_b2":
            y = x / torch.maximum(self.batch_std(x), instance_rms(x) - x)
        elif k == "evonorm_s0":
            y = x * torch.sigmoid(self.v1 * x) / group_std(x)
        elif k == "evonorm_s1":
            y = x * torch.sigmoid(x) / group_std(x)
        else:
            y = x * torch.sigmoid(x) / group_std(x, rms=True)
        return y * self.gamma + self.beta


class Reference(nn.Module):
    """BN-ReLU, BN-Swish, GN-ReLU from torch's own norm layers, then the compiled
    layers' final affine."""

    def __init__(self, kind: str, c: int) -> None:
        super().__init__()
        self.kind = kind
        self.norm = nn.GroupNorm(lowered_groups(c), c, eps=EPS) if kind == "gn_relu" else nn.BatchNorm2d(c, eps=EPS)
        self.gamma = nn.Parameter(torch.ones(1, c, 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, c, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        y = self.norm(x)
        y = y * torch.sigmoid(y) if self.kind == "bn_swish" else torch.relu(y)
        return y * self.gamma + self.beta


def _twin(name: str, c: int, seed: int) -> tuple[nn.Module, nn.Module]:
    """(compiled, reference) with the same random parameter values."""
    gen = torch.Generator().manual_seed(seed)
    compiled = compile_layer(get_known(name), c)
    rand = lambda: 1 + 0.5 * torch.randn(1, c, 1, 1, generator=gen)  # noqa: E731
    with torch.no_grad():
        for _, p in sorted(compiled.named_parameters()):
            p.copy_(rand())
    if name.startswith("evonorm"):
        ref: nn.Module = HandEvoNorm(name, c)
        assert compiled.v0 is None  # unused by EvoNorms, so not created
        with torch.no_grad():
            for attr, p in compiled.named_parameters():
                getattr(ref, attr).copy_(p)
    else:
        ref = Reference(name, c)
        with torch.no_grad():  # the baselines' own affine lives on v1/v0
            ref.norm.weight.copy_(compiled.v1.flatten())
            ref.norm.bias.copy_(compiled.v0.flatten())
            ref.gamma.copy_(compiled.gamma)
            ref.beta.copy_(compiled.beta)
    return compiled, ref


def _shapes(name: str) -> list[tuple[int, int, int, int]]:
    shapes = [(4, 24, 5, 5), (4, 24, 1, 1), (3, 64, 4, 4), (2, 48, 3, 3)]
    if CNN_LAYERS[name].space == "S":
        shapes += [(1, 24, 1, 1), (1, 24, 4, 4)]
    if name == "gn_relu":
        # With C=24 each group is one channel; on 1x1 maps torch's GroupNorm refuses
        # (batch 1) or amplifies its rounding by 1/sqrt(eps), so it is no oracle there.
        shapes = [s for s in shapes if s[2] > 1]
    return shapes


# The paper's layers against torch references on maps; the Transformer layers are checked
# on tokens in tests/test_transformer_layers.py.
CASES = [(name, shape) for name in CNN_LAYERS for shape in _shapes(name)]


@pytest.mark.parametrize(("name", "shape"), CASES)
def test_compiled_known_layer_equals_reference_in_train_and_eval(name: str, shape: tuple) -> None:
    compiled, ref = _twin(name, shape[1], seed=len(CASES))
    gen = torch.Generator().manual_seed(1)
    opt_c = torch.optim.SGD(compiled.parameters(), lr=0.1)
    opt_r = torch.optim.SGD(ref.parameters(), lr=0.1)
    for _ in range(3):  # training steps: batch statistics, running averages, SGD updates
        x = torch.randn(shape, generator=gen) * 2 + 0.5
        target = torch.randn(shape, generator=gen)
        yc, yr = compiled(x), ref(x)
        torch.testing.assert_close(yc, yr, rtol=1e-5, atol=1e-5)
        for model, y, opt in ((compiled, yc, opt_c), (ref, yr, opt_r)):
            opt.zero_grad()
            ((y - target) ** 2).mean().backward()
            opt.step()
    compiled.eval()
    ref.eval()
    x = torch.randn(shape, generator=gen) * 3
    torch.testing.assert_close(compiled(x), ref(x), rtol=1e-5, atol=1e-5)
    assert torch.isfinite(compiled(x)).all()


def test_bn_relu_running_statistics_equal_batchnorm() -> None:
    compiled, ref = _twin("bn_relu", 24, seed=0)
    for _ in range(4):
        x = torch.randn(8, 24, 3, 3)
        compiled(x), ref(x)
    state = compiled.state_dict()
    bn = ref.norm
    torch.testing.assert_close(state["running_4"].flatten(), bn.running_mean)  # mean_batch node
    torch.testing.assert_close(state["running_7"].flatten(), bn.running_var)   # std_batch node


def test_known_layers_are_in_their_paper_space() -> None:
    spaces = {name: g.space for name, g in KNOWN_LAYERS.items()}
    assert spaces == {
        "bn_relu": "B", "gn_relu": "S", "bn_swish": "B",
        "evonorm_b0": "B", "evonorm_b1": "B", "evonorm_b2": "B",
        "evonorm_s0": "S", "evonorm_s1": "S", "evonorm_s2": "S",
        # Transformer layers: element-wise ones are in every space (S is the first minimal).
        "layernorm": "T", "rmsnorm": "T", "dyt": "S", "derf": "S", "no_norm": "S",
        "repbn": "B", "bcn": "TB",
    }
    # Every named layer has a home: the known ones that of their dict, the discovered ones
    # the one declared with them (the slot of the search that found them).
    assert {name for name, home in KNOWN_HOMES.items() if home == "norm_act"} == (
        set(CNN_LAYERS) | {"swish_group_rmsnorm"})
    assert {name for name, home in KNOWN_HOMES.items() if home == "norm"} == (
        set(TRANSFORMER_LAYERS) | {"floored_square_layernorm"})
    assert set(DISCOVERED_HOMES) == set(DISCOVERED_LAYERS)
    assert KNOWN_HOMES.keys() == NAMED_LAYERS.keys()
    assert all("T" in TRANSFORMER_LAYERS[name].spaces
               for name in ("layernorm", "rmsnorm", "dyt", "derf", "no_norm"))
    assert get_known("evonorm_s0").formula() == "x * sigmoid(v1 * x) / std_group(x)"
    assert len({g.structural_hash() for g in KNOWN_LAYERS.values()}) == len(KNOWN_LAYERS)


def test_unknown_layer_name() -> None:
    with pytest.raises(GraphError, match="unknown layer name 'evonorm_s9'.*evonorm_s0"):
        get_known("evonorm_s9")


def test_init_known_starts_from_the_layers_of_the_spaces_slot() -> None:
    """B/S searches start from exactly the paper's layers, whatever else is known."""
    from evonorm_search.config import SearchConfig

    def names(config: SearchConfig) -> list[str]:
        by_hash = {g.structural_hash(): n for n, g in KNOWN_LAYERS.items()}
        return [by_hash[g.structural_hash()] for g in config.init_layers()]

    assert names(SearchConfig(space="B")) == list(CNN_LAYERS)
    assert names(SearchConfig(space="S")) == ["gn_relu", "evonorm_s0", "evonorm_s1", "evonorm_s2"]
    assert names(SearchConfig(space="T", proxies=("vit", "charlm"))) == [
        "layernorm", "rmsnorm", "dyt", "derf", "no_norm"]
    assert names(SearchConfig(space="TB", proxies=("vit",))) == list(TRANSFORMER_LAYERS)
