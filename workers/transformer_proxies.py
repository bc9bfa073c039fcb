"""The Transformer proxies: small pre-norm Transformers with the candidate in every norm slot.

`vit`: a Vision Transformer on 4x4 = 16 patches of the image (patch side = image side / 4:
4 on 16x16 CIFAR-10, 2 on the 8x8 digits) plus a class token. `charlm`: a causal
character-level language model on a text corpus (`workers.corpus`), predicting every next
character of a context window. Both are pre-norm (x + attn(norm1(x)), x + mlp(norm2(x)))
with a final norm, width `width` (the token dimension), `depth` blocks, `HEADS` heads and
an MLP of ratio `MLP_RATIO`, as the Transformers whose norms the search replaces.

`norm(num_features)` builds each norm slot (a `evonorm_search.tokens.TokenLayer`
factory) and gets (B, T, C) tensors. The language model returns logits as
(B, vocabulary, T), so that `cross_entropy(logits, next_characters)` scores every position.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

Norm = Callable[[int], nn.Module]

HEADS = 4
MLP_RATIO = 2
PATCH_GRID = 4  # the ViT sees PATCH_GRID x PATCH_GRID patches
CONTEXT = 64  # characters per language-model window


class Attention(nn.Module):
    """Multi-head self-attention (scaled dot product), causal or not."""

    def __init__(self, dim: int, heads: int, causal: bool) -> None:
        super().__init__()
        self.heads = heads
        self.causal = causal
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(x).reshape(b, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        return self.proj(y.transpose(1, 2).reshape(b, t, c))


class Block(nn.Module):
    """Pre-norm Transformer block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, norm: Norm, dim: int, heads: int, causal: bool) -> None:
        super().__init__()
        self.norm1 = norm(dim)
        self.attn = Attention(dim, heads, causal)
        self.norm2 = norm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, MLP_RATIO * dim), nn.GELU(),
                                 nn.Linear(MLP_RATIO * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def _check(width: int, depth: int, heads: int = HEADS) -> None:
    if width < heads or width % heads or depth < 1:
        raise ValueError(f"Transformer proxies need a width divisible by {heads} heads and "
                         f"depth >= 1, got width={width}, depth={depth}")


def _init(module: nn.Module) -> None:
    """Small normal weights for linears and embeddings (as GPT-2 and timm's ViT)."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)


class VisionTransformer(nn.Module):
    """Patches -> tokens (+ class token, learned positions) -> blocks -> norm -> head."""

    def __init__(self, norm: Norm, num_classes: int, in_channels: int, image_size: int,
                 width: int, depth: int) -> None:
        super().__init__()
        _check(width, depth)
        if image_size % PATCH_GRID:
            raise ValueError(f"vit cuts images into {PATCH_GRID}x{PATCH_GRID} patches: the "
                             f"image side must be a multiple of {PATCH_GRID}, got {image_size} "
                             "(use --image-size, e.g. 16)")
        patch = image_size // PATCH_GRID
        self.patch = nn.Conv2d(in_channels, width, patch, stride=patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, width))
        self.position = nn.Parameter(torch.zeros(1, PATCH_GRID**2 + 1, width))
        self.blocks = nn.Sequential(*(Block(norm, width, HEADS, causal=False)
                                      for _ in range(depth)))
        self.norm = norm(width)
        self.head = nn.Linear(width, num_classes)
        _init(self)
        nn.init.normal_(self.position, std=0.02)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        tokens = self.patch(images).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls.expand(len(images), -1, -1), tokens], dim=1)
        x = self.blocks(tokens + self.position)
        return self.head(self.norm(x)[:, 0])


class CharTransformer(nn.Module):
    """Characters -> embeddings (+ learned positions) -> causal blocks -> norm -> logits."""

    def __init__(self, norm: Norm, vocabulary: int, width: int, depth: int,
                 context: int = CONTEXT) -> None:
        super().__init__()
        _check(width, depth)
        self.embed = nn.Embedding(vocabulary, width)
        self.position = nn.Parameter(torch.zeros(1, context, width))
        self.blocks = nn.Sequential(*(Block(norm, width, HEADS, causal=True)
                                      for _ in range(depth)))
        self.norm = norm(width)
        self.head = nn.Linear(width, vocabulary)
        _init(self)
        nn.init.normal_(self.position, std=0.02)

    def forward(self, characters: torch.Tensor) -> torch.Tensor:
        x = self.embed(characters) + self.position[:, :characters.shape[1]]
        logits = self.head(self.norm(self.blocks(x)))
        return logits.transpose(1, 2)  # (B, vocabulary, T): cross_entropy over positions
