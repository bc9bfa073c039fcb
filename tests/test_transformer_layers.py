"""Transformer norm layers: each known one equals its reference on (B, T, C) and
(B, heads, T, head_dim) tokens, through the compiled token layer, its unfused graph path
and its stand-alone export; float32 statistics for half-precision input; swap_layernorm."""

from __future__ import annotations

import copy
import functools
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from evonorm_search.compile import CompiledLayer
from evonorm_search.export_tokens import to_token_source
from evonorm_search.known import TRANSFORMER_LAYERS, get_known
from evonorm_search.swap import SwapWarning, swap_layernorm
from evonorm_search.tokens import TokenLayer, normalize_tokens, token_layer_factory

EPS = 1e-5
GROUPS = 4  # channel groups of bcn's per-token normalization


class Reference(nn.Module):
    """Each Transformer layer written with torch's own modules or its paper's formula."""

    def __init__(self, name: str, c: int) -> None:
        super().__init__()
        self.name = name
        self.alpha = nn.Parameter(torch.ones(c))  # v1: DyT's alpha / 0.5, Derf's scale, RepBN's
        self.shift = nn.Parameter(torch.zeros(c))  # v0: Derf's shift
        self.weight = nn.Parameter(torch.ones(c))
        self.bias = nn.Parameter(torch.zeros(c))
        self.bn = nn.BatchNorm1d(c, eps=EPS, affine=False)
        self.ln = nn.LayerNorm(c, eps=EPS, elementwise_affine=False)
        self.rms = nn.RMSNorm(c, eps=EPS, elementwise_affine=False)

    def _batchnorm(self, x: Tensor) -> Tensor:
        flat = x.reshape(-1, x.shape[-1])  # every token of the batch, per channel
        return self.bn(flat).reshape(x.shape)

    def forward(self, x: Tensor) -> Tensor:
        if self.name == "layernorm":
            y = self.ln(x)
        elif self.name == "rmsnorm":
            y = self.rms(x)
        elif self.name == "dyt":  # Zhu et al.: tanh(alpha x), alpha0 = 0.5
            y = torch.tanh(0.5 * self.alpha * x)
        elif self.name == "derf":
            y = torch.tanh(self.alpha * x + self.shift)
        elif self.name == "no_norm":
            y = x
        elif self.name == "repbn":  # SLAB: BN(x) + alpha x
            y = self._batchnorm(x) + self.alpha * x
        elif self.name == "bcn":  # Qiao et al.: BN, then GroupNorm over each token's channels
            b = self._batchnorm(x)
            y = F.group_norm(b.reshape(-1, x.shape[-1]), GROUPS, eps=EPS).reshape(x.shape)
        else:
            raise AssertionError(name)
        return y * self.weight + self.bias


def _twin(name: str, c: int, seed: int) -> tuple[TokenLayer, Reference]:
    layer = TokenLayer(c, EPS, graph=get_known(name), groups=GROUPS)
    ref = Reference(name, c)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mine, theirs in (("v1", "alpha"), ("v0", "shift"), ("gamma", "weight"), ("beta", "bias")):
            value = torch.rand(c, generator=gen) + 0.5
            if getattr(layer, mine) is not None:  # v0/v1 exist only where the layer uses them
                getattr(layer, mine).copy_(value.reshape(1, c, 1, 1))
            getattr(ref, theirs).copy_(value)
    return layer, ref


SHAPES = [(4, 9, 24), (2, 3, 5, 24), (6, 24), (1, 1, 24)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", sorted(TRANSFORMER_LAYERS))
def test_transformer_layer_equals_reference_in_train_and_eval(name: str, shape: tuple) -> None:
    if TRANSFORMER_LAYERS[name].uses_batch_stats and shape[:-1] in ((1, 1),):
        pytest.skip("batch statistics of one token are undefined (BatchNorm refuses it)")
    layer, ref = _twin(name, shape[-1], seed=len(shape))
    gen = torch.Generator().manual_seed(2)
    opt_l = torch.optim.SGD(layer.parameters(), lr=0.1)
    opt_r = torch.optim.SGD(ref.parameters(), lr=0.1)
    for _ in range(3):  # training steps: batch statistics, running averages, SGD updates
        x = torch.randn(shape, generator=gen) * 2 + 0.5
        target = torch.randn(shape, generator=gen)
        yl, yr = layer(x), ref(x)
        assert yl.shape == x.shape
        torch.testing.assert_close(yl, yr, rtol=1e-5, atol=1e-5)
        # The graph's own ops (no fused kernel) compute the same (on a copy: batch
        # statistics update their running averages).
        twin = copy.deepcopy(layer)
        unfused = normalize_tokens(functools.partial(CompiledLayer.forward, twin), x, shape[-1])
        torch.testing.assert_close(unfused, yr, rtol=1e-5, atol=1e-5)
        for y, opt in ((yl, opt_l), (yr, opt_r)):
            opt.zero_grad()
            ((y - target) ** 2).mean().backward()
            opt.step()
    layer.eval()
    ref.eval()
    x = torch.randn(shape, generator=gen) * 3
    torch.testing.assert_close(layer(x), ref(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", sorted(TRANSFORMER_LAYERS))
def test_export_equals_token_layer(name: str) -> None:
    namespace: dict = {}
    exec(compile(to_token_source(get_known(name), "FoundNorm"), name, "exec"), namespace)
    exported = namespace["FoundNorm"](24, eps=1e-6, groups=GROUPS)
    layer = TokenLayer(24, 1e-6, graph=get_known(name), groups=GROUPS)
    assert exported.state_dict().keys() == layer.state_dict().keys()
    with torch.no_grad():
        for parameter in exported.parameters():
            parameter.uniform_(0.5, 1.5)
    layer.load_state_dict(exported.state_dict())
    for shape in SHAPES[:3]:
        x = torch.randn(shape) * 2
        torch.testing.assert_close(exported(x), layer(x), rtol=0, atol=0)
    exported.eval()
    layer.eval()
    x = torch.randn(2, 5, 24)
    torch.testing.assert_close(exported(x), layer(x), rtol=0, atol=0)


@pytest.mark.parametrize(("name", "module"), [
    ("layernorm", functools.partial(nn.LayerNorm, eps=1e-6)),
    ("rmsnorm", functools.partial(nn.RMSNorm, eps=1e-6)),
])
def test_exported_layernorm_and_rmsnorm_equal_torch_modules(name: str, module) -> None:
    namespace: dict = {}
    exec(compile(to_token_source(get_known(name)), name, "exec"), namespace)
    exported = namespace["EvolvedNorm"](64, eps=1e-6)
    reference = module(64)
    with torch.no_grad():
        weight = torch.rand(64) + 0.5
        exported.gamma.copy_(weight.reshape(exported.gamma.shape))
        reference.weight.copy_(weight)
        if name == "layernorm":
            bias = torch.randn(64)
            exported.beta.copy_(bias.reshape(exported.beta.shape))
            reference.bias.copy_(bias)
    for shape in ((8, 17, 64), (2, 4, 17, 64), (5, 64)):
        x = (torch.randn(shape) * 4 + 1).requires_grad_()
        torch.testing.assert_close(exported(x), reference(x), rtol=1e-5, atol=1e-5)
        (grad_mine,) = torch.autograd.grad(exported(x).square().sum(), x)
        (grad_torch,) = torch.autograd.grad(reference(x).square().sum(), x)
        torch.testing.assert_close(grad_mine, grad_torch, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["layernorm", "dyt", "bcn"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_input_is_computed_in_float32(name: str, dtype: torch.dtype) -> None:
    layer = TokenLayer(32, graph=get_known(name), groups=GROUPS)
    x = torch.randn(4, 7, 32) * 50 + 20  # float16 statistics of such values lose digits
    half = x.to(dtype)
    y = layer(half)
    assert y.dtype == dtype
    expected = layer(half.float()).to(dtype)
    torch.testing.assert_close(y, expected, rtol=0, atol=0)
    # The whole model in half precision: parameters in dtype too, still finite.
    assert torch.isfinite(layer.to(dtype)(half).float()).all()


def test_constructor_takes_timm_norm_layer_arguments() -> None:
    factory = token_layer_factory(get_known("rmsnorm"))
    layer = factory(16, eps=1e-6, device="cpu", dtype=torch.float64)
    assert layer.eps == 1e-6 and layer.gamma.dtype == torch.float64
    with pytest.raises(ValueError, match=r"expected input \(\.\.\., 16\)"):
        layer(torch.randn(2, 3, 8, dtype=torch.float64))


class TinyEncoder(nn.Module):
    def __init__(self, final_norm: type[nn.Module]) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, norm=final_norm(32),
                                             enable_nested_tensor=False)
        self.image_norm = nn.LayerNorm((4, 4))  # over two dims: not a token norm
        self.head = nn.Linear(32, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.encoder(x).mean(1))


@pytest.mark.parametrize(("final_norm", "name"), [(nn.LayerNorm, "layernorm"), (nn.RMSNorm, "rmsnorm")])
def test_swap_layernorm_replaces_every_token_norm_and_keeps_the_function(
        final_norm: type[nn.Module], name: str) -> None:
    torch.manual_seed(0)
    model = TinyEncoder(final_norm).train()
    with torch.no_grad():  # a non-trivial affine, copied into gamma and beta by the swap
        for module in model.modules():
            if isinstance(module, (nn.LayerNorm, nn.RMSNorm)):
                module.weight.uniform_(0.5, 1.5)
    x = torch.randn(3, 6, 32)
    before = model(x)
    with pytest.warns(SwapWarning, match=r"over \(4, 4\)"):
        count = swap_layernorm(model, token_layer_factory(get_known("layernorm")))
    assert count == 5  # norm1 and norm2 of 2 layers and the final norm
    assert isinstance(model.encoder.norm, TokenLayer) and isinstance(model.image_norm, nn.LayerNorm)
    if name == "layernorm":  # LayerNorm for LayerNorm: the same function
        torch.testing.assert_close(model(x), before, rtol=1e-5, atol=1e-5)
    # It trains: a step changes the swapped layers' parameters.
    gamma = model.encoder.layers[0].norm1.gamma.detach().clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model(x).square().mean().backward()
    optimizer.step()
    assert not torch.equal(model.encoder.layers[0].norm1.gamma, gamma)


def test_swap_rmsnorm_for_exported_rmsnorm_keeps_the_function() -> None:
    namespace: dict = {}
    exec(compile(to_token_source(get_known("rmsnorm")), "rmsnorm", "exec"), namespace)
    model = nn.Sequential(nn.Linear(8, 16), nn.RMSNorm(16, eps=1e-5), nn.Linear(16, 2))
    with torch.no_grad():
        model[1].weight.uniform_(0.5, 1.5)
    x = torch.randn(4, 3, 8)
    before = model(x)
    assert swap_layernorm(model, namespace["EvolvedNorm"]) == 1
    assert type(model[1]).__name__ == "EvolvedNorm"
    torch.testing.assert_close(model(x), before, rtol=1e-5, atol=1e-5)
