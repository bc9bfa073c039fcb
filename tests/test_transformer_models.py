"""A found layer in real Transformers: a timm ViT built with it as norm_layer and a
Hugging Face GPT-2 with its LayerNorms swapped, both from configs (random init, no
weights, no download), each running forward and backward. Needs the `transformers`
extra; skipped with the install command when it is absent."""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from evonorm_search.export_tokens import to_token_source
from evonorm_search.known import get_known
from evonorm_search.swap import swap_layernorm
from evonorm_search.tokens import TokenLayer, token_layer_factory
from tests.third_party import import_timm, import_transformers


def _exported(name: str) -> type[nn.Module]:
    """The stand-alone export of known layer `name` (what a user would paste)."""
    namespace: dict = {}
    exec(compile(to_token_source(get_known(name), "FoundNorm"), name, "exec"), namespace)
    return namespace["FoundNorm"]


def _vit(timm, norm_layer) -> nn.Module:
    torch.manual_seed(0)
    # qk_norm: timm also calls norm_layer(head_dim) on (B, heads, T, head_dim) tensors.
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32,
                             patch_size=8, depth=2, num_classes=10, qk_norm=True,
                             norm_layer=norm_layer)


def test_timm_vit_with_an_exported_layer_as_norm_layer() -> None:
    timm = import_timm()
    images = torch.randn(2, 3, 32, 32)
    reference = _vit(timm, functools.partial(nn.LayerNorm, eps=1e-6))
    found = _vit(timm, functools.partial(_exported("layernorm"), eps=1e-6))
    norms = [m for m in found.modules() if type(m).__name__ == "FoundNorm"]
    # norm1, norm2, q_norm, k_norm per block, and the final norm.
    assert len(norms) == 2 * 4 + 1
    assert not any(isinstance(m, nn.LayerNorm) for m in found.modules())
    # The exported LayerNorm is LayerNorm: the same logits as timm's own model.
    torch.testing.assert_close(found(images), reference(images), rtol=1e-5, atol=1e-5)
    # A layer that is not LayerNorm, as a TokenLayer factory, trains: forward and backward.
    dyt = _vit(timm, token_layer_factory(get_known("dyt"), eps=1e-6))
    loss = nn.functional.cross_entropy(dyt(images), torch.tensor([1, 7]))
    loss.backward()
    layers = [m for m in dyt.modules() if isinstance(m, TokenLayer)]
    assert len(layers) == 9 and all(torch.isfinite(m.v1.grad).all() and m.v1.grad.abs().sum() > 0
                                    for m in layers)


def test_swap_layernorm_in_a_default_timm_vit() -> None:
    timm = import_timm()
    model = _vit(timm, None)  # timm's own LayerNorm class
    images = torch.randn(2, 3, 32, 32)
    before = model(images)
    assert swap_layernorm(model, token_layer_factory(get_known("layernorm"), eps=1e-6)) == 9
    torch.testing.assert_close(model(images), before, rtol=1e-5, atol=1e-5)


def test_hugging_face_gpt2_with_swapped_layers() -> None:
    transformers = import_transformers()
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=64,
                                     n_positions=32, bos_token_id=0, eos_token_id=0)
    model = transformers.GPT2LMHeadModel(config).eval()
    tokens = torch.randint(0, 64, (2, 12))
    before = model(tokens).logits
    # The exported LayerNorm (GPT-2's eps) for every ln_1, ln_2 and ln_f: same logits.
    assert swap_layernorm(model, functools.partial(_exported("layernorm"),
                                                   eps=config.layer_norm_epsilon)) == 5
    torch.testing.assert_close(model(tokens).logits, before, rtol=1e-5, atol=1e-5)
    # Then RMSNorm as a TokenLayer for every one of those: forward, loss, backward.
    assert swap_layernorm(model, _exported("rmsnorm")) == 0  # FoundNorm is no LayerNorm
    model = transformers.GPT2LMHeadModel(config).train()
    assert swap_layernorm(model, token_layer_factory(get_known("rmsnorm"))) == 5
    output = model(tokens, labels=tokens)
    assert torch.isfinite(output.loss)
    output.loss.backward()
    grads = [m.gamma.grad for m in model.modules() if isinstance(m, TokenLayer)]
    assert len(grads) == 5 and all(torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)


def test_the_readme_example_runs() -> None:
    """The README's Transformer example, as a user would paste it."""
    import_timm()
    import_transformers()
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    marker = "<!-- transformer example"
    block = readme[readme.index(marker):].split("```python\n", 1)[1].split("```", 1)[0]
    torch.manual_seed(0)
    exec(compile(block, "README.md", "exec"), {})
