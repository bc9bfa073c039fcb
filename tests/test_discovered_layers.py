"""Discovered layers (`evonorm_search.known.DISCOVERED_LAYERS`): each computes its
documented formula (checked against a hand-written module) on the inputs of the slot it
was made for (its home: (N, C, H, W) maps for "norm_act", channel-last tokens for
"norm"), is finite where the layers of that slot must be, is usable by name wherever a
known layer is (a Transformer one also exported for and swapped into Transformers), and
stays out of `--init known` (the default start of a search)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from evonorm_search import load_layer
from evonorm_search.compile import compile_layer
from evonorm_search.config import ConfigError, SearchConfig
from evonorm_search.export_tokens import to_token_source
from evonorm_search.fingerprint import fingerprint
from evonorm_search.known import (
    DISCOVERED_HOMES, DISCOVERED_LAYERS, KNOWN_HOMES, KNOWN_LAYERS, get_known, known_name,
    known_names,
)
from evonorm_search.swap import SwapWarning, swap_layernorm
from evonorm_search.tokens import TokenLayer, token_layer_factory
from primitives import SPACES
from tests.cli_runner import run_evonorm
from tests.test_export import assert_same_layer
from tests.test_known_layers import EPS, group_std
from tests.test_transformer_layers import TinyEncoder
from tests.third_party import import_timm, import_transformers

T_PROXIES = ("vit", "charlm")  # a T search's own proxies (its SearchConfig needs them)


def _swish(x: Tensor) -> Tensor:
    return x * torch.sigmoid(x)


def _pushed(b: Tensor) -> Tensor:
    """The graph's `div` guard on a denominator: eps away from 0, keeping its sign."""
    return torch.where(b >= 0, b + EPS, b - EPS)


def _floored_square_layernorm(x: Tensor, v0: Tensor) -> Tensor:
    """max(x - mean, v0) / (std^2 / (x - mean)) over the channels (last dim) of each
    token, std = sqrt(biased var + eps), both divisions guarded as the graph's are."""
    centred = x - x.mean(-1, keepdim=True)
    std = torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + EPS)
    return torch.maximum(centred, v0) / _pushed(std * std / _pushed(centred))


# Each discovered layer written from its formula (before the compiled affine), by home:
# a CNN layer takes (N, C, H, W) maps; a Transformer layer takes channel-last tokens and
# its v0 (one value per channel, the last dim).
MAPS_REFERENCES: dict[str, Callable[[Tensor], Tensor]] = {
    "swish_group_rmsnorm": lambda x: _swish(x) / group_std(_swish(x), rms=True),
}
TOKEN_REFERENCES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "floored_square_layernorm": _floored_square_layernorm,
}
FORMULAS = {
    "swish_group_rmsnorm": "x * sigmoid(x) / rms_group(x * sigmoid(x))",
    "floored_square_layernorm":
        "max(x - mean_channel(x), v0) / (std_channel(x) * std_channel(x) / (x - mean_channel(x)))",
}
# Batch 1 and 1x1 maps (S-space layers must be finite there), and 35 channels, which 32
# groups do not divide (lowered to 7 groups of 5).
SHAPES = [(4, 24, 5, 5), (1, 24, 1, 1), (1, 24, 4, 4), (2, 35, 3, 3), (3, 64, 1, 1)]
# (B, T, C); (B, heads, T, head_dim) as timm's qk_norm calls a norm; (N, C) tokens; batch 1
# with one token (a norm slot must be finite there: nothing is reduced over tokens).
TOKEN_SHAPES = [(4, 9, 24), (2, 3, 5, 16), (6, 24), (1, 1, 24), (1, 7, 35)]
MAPS_NAMES = sorted(MAPS_REFERENCES)
TOKEN_NAMES = sorted(TOKEN_REFERENCES)


def test_every_discovered_layer_is_documented_here_and_apart_from_the_known() -> None:
    assert set(MAPS_REFERENCES) | set(TOKEN_REFERENCES) == set(FORMULAS) == set(DISCOVERED_LAYERS)
    # Each is tested on the inputs of its home, and its home is the slot of its space.
    assert set(MAPS_REFERENCES) == {n for n, home in DISCOVERED_HOMES.items() if home == "norm_act"}
    assert set(TOKEN_REFERENCES) == {n for n, home in DISCOVERED_HOMES.items() if home == "norm"}
    assert not set(DISCOVERED_LAYERS) & set(KNOWN_LAYERS)
    for name, graph in DISCOVERED_LAYERS.items():
        assert graph.formula() == FORMULAS[name]
        assert known_name(graph.structural_hash()) == name and get_known(name) is graph
        assert SPACES[graph.space].slot == DISCOVERED_HOMES[name] == KNOWN_HOMES[name]


@pytest.mark.parametrize("name", MAPS_NAMES)
@pytest.mark.parametrize("shape", SHAPES)
def test_compiled_layer_equals_its_formula_and_is_finite(name: str, shape: tuple) -> None:
    c = shape[1]
    layer = compile_layer(get_known(name), c)
    gen = torch.Generator().manual_seed(c)
    with torch.no_grad():
        for parameter in layer.parameters():  # v0/v1 unused: they must change nothing
            parameter.copy_(1 + 0.5 * torch.randn(parameter.shape, generator=gen))
    x = torch.randn(shape, generator=gen, requires_grad=True)
    expected = MAPS_REFERENCES[name](x) * layer.gamma + layer.beta
    for training in (True, False):
        layer.train(training)
        out = layer(x)
        torch.testing.assert_close(out, expected)
        assert torch.isfinite(out).all()
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def _token_layer(name: str, c: int, seed: int, eps: float = EPS) -> TokenLayer:
    """The named layer as a Transformer norm, with random parameters: v0 of either sign
    (so the floor is above z for some channels and below for others)."""
    layer = TokenLayer(c, eps, graph=get_known(name))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, parameter in layer.named_parameters():
            scale = torch.randn(parameter.shape, generator=gen)
            parameter.copy_(scale if key == "v0" else 1 + 0.5 * scale)
    return layer


def _per_channel(parameter: Tensor) -> Tensor:
    """A (1, C, 1, 1) parameter as the last dim of channel-last tokens."""
    return parameter.reshape(-1)


@pytest.mark.parametrize("name", TOKEN_NAMES)
@pytest.mark.parametrize("shape", TOKEN_SHAPES)
def test_token_layer_equals_its_formula_and_is_finite(name: str, shape: tuple) -> None:
    c = shape[-1]
    layer = _token_layer(name, c, seed=len(shape) + c)
    gen = torch.Generator().manual_seed(c)
    x = (torch.randn(shape, generator=gen) * 2 + 0.5).requires_grad_()
    expected = (TOKEN_REFERENCES[name](x, _per_channel(layer.v0)) * _per_channel(layer.gamma)
                + _per_channel(layer.beta))
    for training in (True, False):  # no batch statistics: both modes compute the same
        layer.train(training)
        out = layer(x)
        assert out.shape == x.shape
        torch.testing.assert_close(out, expected)
        assert torch.isfinite(out).all()
    out.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert layer.v0.grad is not None and layer.v0.grad.abs().sum() > 0  # the floor is live


@pytest.mark.parametrize("name", TOKEN_NAMES)
def test_token_layer_is_finite_on_constant_tokens(name: str) -> None:
    """Tokens equal over their channels: the centred input is 0 and the std sqrt(eps), where
    an unguarded division would give 0/0. 0.5 keeps the mean exact, so the centred input
    is exactly 0 in the layer and in the reference."""
    layer = _token_layer(name, 24, seed=5)
    x = torch.full((2, 3, 24), 0.5, requires_grad=True)
    out = layer(x)
    expected = (TOKEN_REFERENCES[name](x, _per_channel(layer.v0)) * _per_channel(layer.gamma)
                + _per_channel(layer.beta))
    torch.testing.assert_close(out, expected)
    out.sum().backward()
    assert torch.isfinite(out).all() and x.grad is not None and torch.isfinite(x.grad).all()


def _exported_class(name: str, class_name: str = "FoundNorm") -> type[nn.Module]:
    """The stand-alone Transformer export of discovered layer `name`."""
    namespace: dict = {}
    exec(compile(to_token_source(get_known(name), class_name), name, "exec"), namespace)
    return namespace[class_name]


@pytest.mark.parametrize("name", TOKEN_NAMES)
def test_token_export_and_load_by_name_equal_the_token_layer(name: str) -> None:
    # timm's norm_layer constructor: (num_features, eps=..., device=None, dtype=None).
    exported = _exported_class(name)(24, eps=1e-6, device=None, dtype=None)
    layer = _token_layer(name, 24, seed=3, eps=1e-6)
    assert exported.state_dict().keys() == layer.state_dict().keys() == {"v0", "gamma", "beta"}
    exported.load_state_dict(layer.state_dict())
    for shape in TOKEN_SHAPES:
        x = torch.randn(shape[:-1] + (24,)) * 2
        torch.testing.assert_close(exported(x), layer(x), rtol=0, atol=0)
    # Float16/bfloat16 input: computed in float32 (statistics included), returned in its dtype.
    x = torch.randn(4, 7, 24) * 50 + 20  # float16 statistics of such values lose digits
    for dtype in (torch.float16, torch.bfloat16):
        half = x.to(dtype)
        y = exported(half)
        assert y.dtype == dtype
        torch.testing.assert_close(y, layer(half.float()).to(dtype), rtol=0, atol=0)
        torch.testing.assert_close(y, layer(half), rtol=0, atol=0)
    # By name from Python, as a Transformer norm (default eps, EPS): the same function.
    fresh = load_layer(name, transformer=True)(24)
    reference = _token_layer(name, 24, seed=3)
    assert isinstance(fresh, TokenLayer)
    fresh.load_state_dict(reference.state_dict())
    x = torch.randn(2, 5, 24)
    torch.testing.assert_close(fresh(x), reference(x), rtol=0, atol=0)


@pytest.mark.parametrize("name", sorted(DISCOVERED_LAYERS))
def test_exported_and_loaded_by_name_equal_the_compiled_layer(name: str, tmp_path: Path) -> None:
    """The maps form (`evonorm export --maps`, `load_layer(NAME)`), which every layer has."""
    assert_same_layer(get_known(name), (4, 24, 3, 3), tmp_path)
    assert_same_layer(get_known(name), (1, 35, 1, 1), tmp_path)
    x = torch.randn(2, 12, 3, 3)
    torch.testing.assert_close(load_layer(name)(12)(x), compile_layer(get_known(name), 12)(x))
    graph_file = tmp_path / "layer.json"
    graph_file.write_text(get_known(name).to_json())
    torch.testing.assert_close(load_layer(graph_file)(12)(x), compile_layer(get_known(name), 12)(x))


@pytest.mark.parametrize("name", TOKEN_NAMES)
def test_swapped_for_every_layernorm_of_a_model_and_trains(name: str) -> None:
    torch.manual_seed(0)
    model = TinyEncoder(nn.LayerNorm).train()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.LayerNorm) and module.weight.dim() == 1:
                module.weight.uniform_(0.5, 1.5)
    weight = model.encoder.layers[0].norm1.weight.detach().clone()
    with pytest.warns(SwapWarning, match=r"over \(4, 4\)"):
        count = swap_layernorm(model, load_layer(name, transformer=True))  # docs/transformers.md
    assert count == 5  # norm1 and norm2 of 2 layers and the final norm
    swapped = model.encoder.layers[0].norm1
    assert isinstance(swapped, TokenLayer) and swapped.graph is get_known(name)
    torch.testing.assert_close(swapped.gamma.flatten(), weight)  # LayerNorm's weight kept
    x = torch.randn(3, 6, 32)
    v0 = swapped.v0.detach().clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = model(x).square().mean()
    assert torch.isfinite(loss)
    loss.backward()
    optimizer.step()
    assert not torch.equal(swapped.v0, v0)  # the layer's own parameter trains


@pytest.mark.parametrize("name", TOKEN_NAMES)
def test_in_a_timm_vit_and_swapped_into_gpt2(name: str) -> None:
    """As docs/transformers.md shows for the known layers: the export as a timm ViT's
    norm_layer (qk_norm: also on (B, heads, T, head_dim)), and the layer swapped for every
    LayerNorm of a Hugging Face GPT-2; forward and backward, finite, every layer trained."""
    timm = import_timm()
    transformers = import_transformers()
    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32,
                            patch_size=8, depth=1, num_classes=10, qk_norm=True,
                            norm_layer=_exported_class(name))
    vit(torch.randn(2, 3, 32, 32)).logsumexp(1).mean().backward()
    norms = [m for m in vit.modules() if type(m).__name__ == "FoundNorm"]
    assert len(norms) == 4 + 1  # norm1, norm2, q_norm, k_norm and the final norm
    assert all(torch.isfinite(m.v0.grad).all() and m.v0.grad.abs().sum() > 0 for m in norms)
    config = transformers.GPT2Config(n_layer=1, n_head=2, n_embd=32, vocab_size=64,
                                     n_positions=32, bos_token_id=0, eos_token_id=0)
    gpt2 = transformers.GPT2LMHeadModel(config).train()
    assert swap_layernorm(gpt2, token_layer_factory(get_known(name),
                                                    eps=config.layer_norm_epsilon)) == 3
    tokens = torch.randint(0, 64, (2, 12))
    output = gpt2(tokens, labels=tokens)
    assert torch.isfinite(output.loss)
    output.loss.backward()
    grads = [m.v0.grad for m in gpt2.modules() if isinstance(m, TokenLayer)]
    assert len(grads) == 3 and all(torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)


def test_functionally_new_and_not_in_the_default_start() -> None:
    known_prints = {fingerprint(graph).digest for graph in KNOWN_LAYERS.values()}
    for graph in DISCOVERED_LAYERS.values():
        found = fingerprint(graph)
        assert found.finite and found.digest not in known_prints
    for space, proxies, name in (("S", SearchConfig().proxies, "swish_group_rmsnorm"),
                                 ("T", T_PROXIES, "floored_square_layernorm")):
        slot = SPACES[space].slot
        known = [KNOWN_LAYERS[n] for n in known_names(slot) if space in KNOWN_LAYERS[n].spaces]
        assert SearchConfig(space=space, proxies=proxies, init="known").init_layers() == known
        assert SearchConfig(space=space, proxies=proxies, init=f"known,{name}").init_layers() == [
            *known, get_known(name)]


@pytest.mark.parametrize(("space", "proxies", "discovered", "known"), [
    ("S", SearchConfig().proxies, "floored_square_layernorm", "layernorm"),
    ("T", T_PROXIES, "swish_group_rmsnorm", "evonorm_s0"),
])
def test_a_search_of_the_other_slot_refuses_it_as_a_known_layer_of_that_slot(
        space: str, proxies: tuple, discovered: str, known: str) -> None:
    """A layer made for the other slot uses statistics the space excludes: refused with
    the spaces that hold it, word for word as a known layer of its slot is."""
    messages = []
    for name in (discovered, known):
        with pytest.raises(ConfigError, match="use ops the .* space excludes") as error:
            SearchConfig(space=space, proxies=proxies, init=name).init_layers()
        messages.append(str(error.value).replace(name, "NAME"))
    assert messages[0] == messages[1]


# Per discovered layer: its slot as `show` words it, its home, the class `export` writes
# by default, the space it is planted and searched in, and a known layer of that slot.
CLI_CASES = [
    ("swish_group_rmsnorm", "CNN norm-activation", "norm_act", "EvolvedNormAct", "S",
     "evonorm_s0"),
    ("floored_square_layernorm", "Transformer norm", "norm", "EvolvedNorm", "T", "layernorm"),
]


@pytest.mark.parametrize(("name", "slot", "home", "exported_class", "space", "known"),
                         CLI_CASES, ids=[case[0] for case in CLI_CASES])
def test_usable_by_name_in_every_command(name: str, slot: str, home: str, exported_class: str,
                                         space: str, known: str, tmp_path: Path) -> None:
    assert {case[0] for case in CLI_CASES} == set(DISCOVERED_LAYERS)
    code, out, err = run_evonorm("show", name)
    assert code == 0 and f"({name})" in out and "origin:  discovered" in out, err
    assert f"made for the {slot} slot" in out
    code, out, _ = run_evonorm("show", name, "--json")
    document = json.loads(out)
    assert (document["source"], document["layer"]["known_name"]) == ("discovered", name)
    assert document["layer"]["home"] == home
    # The home decides the form `export` writes by default.
    code, _, err = run_evonorm("export", name, "-o", str(tmp_path / "layer.py"))
    assert code == 0 and f"class {exported_class}(" in (tmp_path / "layer.py").read_text(), err
    if home == "norm":
        code, _, err = run_evonorm("export", name, "--transformer", "-o", str(tmp_path / "t.py"))
        assert code == 0 and (tmp_path / "t.py").read_text() == (tmp_path / "layer.py").read_text()
        namespace: dict = {}
        exec(compile((tmp_path / "layer.py").read_text(), "layer.py", "exec"), namespace)
        exported = namespace[exported_class](24, eps=1e-5)
        layer = _token_layer(name, 24, seed=8)
        exported.load_state_dict(layer.state_dict())
        x = torch.randn(2, 5, 24)
        torch.testing.assert_close(exported(x), layer(x), rtol=0, atol=0)
    # Planted in its space (a T layer on the token regimes): it recovers itself, the known
    # layer does not.
    code, out, err = run_evonorm("evaluate", name, known, "--task", "planted", "--target", name)
    assert code == 0 and f"{name}: recovered: identical" in out, err
    assert f"{known}: recovered: no" in out and (home != "norm" or "tokens_b2" in out)
    db = str(tmp_path / "p.db")
    code, out, err = run_evonorm("search", "--db", db, "--task", "planted", "--target", name,
                                 "--space", space, "--init", f"{name},{known}",
                                 "--population", "2", "--budget", "2", "--reevaluate", "1",
                                 "--executor", "inline")
    assert code == 0 and "after 1 evaluations (identical)" in out, err
    # rerank takes it as a baseline: the name passes, the missing database is the error.
    code, _, err = run_evonorm("rerank", "t", "--db", str(tmp_path / "none.db"),
                               "--baselines", f"{known},{name}")
    assert code == 2 and "no evonorm database" in err
