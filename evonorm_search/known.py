"""Layers by name: the paper's (baselines and the EvoNorms, PAPER.md 6), the normalization
layers of Transformers (LayerNorm, RMSNorm, DyT, ...), and the ones this project's
searches discovered and confirmed.

`KNOWN_LAYERS` are the paper's nine (`CNN_LAYERS`) and the Transformer ones
(`TRANSFORMER_LAYERS`). Every named layer has a home, the slot it was made for
(`KNOWN_HOMES`): "norm_act", a CNN's BN-ReLU pair, or "norm", a Transformer's LayerNorm
slot. A known layer's home is that of its dict; a discovered layer's is declared with it
(`DISCOVERED_HOMES`: the slot of the search that found it). `--init known` starts a
search from the known layers of its space's slot, so a B/S search starts from exactly the
paper's nine. The `DISCOVERED_LAYERS` are kept apart so that adding one never changes a
search's default start; `NAMED_LAYERS` holds all and is what a layer name resolves in
(show, export, evaluate, `--init`, `--target`, rerank baselines, `load_layer`).
Transformer layers read (B, T, C) activations viewed as (B, C, T, 1): `*_channel`
statistics are per token.

Every layer ends with the per-channel affine `* gamma + beta` added by the compiler.
The BatchNorm/GroupNorm baselines put their own affine on v1 (scale, init 1) and v0
(shift, init 0) before the activation, so that e.g. `bn_relu` compiled equals
`nn.BatchNorm2d` (weight = v1, bias = v0) followed by ReLU. The constant 1 of EvoNorm-B1
is `exp(0)`: the graph language has no other constants than zero.
"""

from __future__ import annotations

from functools import cache
from typing import Literal

from evonorm_search.errors import GraphError
from evonorm_search.graph import LayerGraph, Node

X, ZERO, V0, V1 = 0, 1, 2, 3


def _normalize_then(stat: str, activation: list[Node]) -> LayerGraph:
    """v1 * (x - mean_stat(x)) / std_stat(x) + v0 (nodes 4..10), then `activation`."""
    mean, std = f"mean_{stat}", f"std_{stat}"
    return LayerGraph([
        Node(mean, (X,)),          # 4
        Node("neg", (4,)),         # 5
        Node("add", (X, 5)),       # 6  x - mean
        Node(std, (X,)),           # 7
        Node("div", (6, 7)),       # 8  normalized x
        Node("mul", (V1, 8)),      # 9
        Node("add", (9, V0)),      # 10 scaled and shifted
        *activation,
    ])


def _evonorm_b(second: list[Node]) -> LayerGraph:
    """x / max(std_batch(x), `second`), `second` starting at node 5 and ending at k."""
    last = 4 + len(second)
    return LayerGraph([
        Node("std_batch", (X,)),   # 4
        *second,
        Node("max", (4, last)),
        Node("div", (X, last + 1)),
    ])


CNN_LAYERS: dict[str, LayerGraph] = {
    "bn_relu": _normalize_then("batch", [Node("max", (10, ZERO))]),
    "gn_relu": _normalize_then("group", [Node("max", (10, ZERO))]),
    "bn_swish": _normalize_then("batch", [Node("sigmoid", (10,)), Node("mul", (10, 11))]),
    # x / max(std_batch(x), v1 * x + std_instance(x))
    "evonorm_b0": _evonorm_b([
        Node("mul", (V1, X)),            # 5
        Node("std_instance", (X,)),      # 6
        Node("add", (5, 6)),             # 7
    ]),
    # x / max(std_batch(x), (x + 1) * rms_instance(x))
    "evonorm_b1": _evonorm_b([
        Node("exp", (ZERO,)),            # 5  the constant 1
        Node("add", (X, 5)),             # 6
        Node("rms_instance", (X,)),      # 7
        Node("mul", (6, 7)),             # 8
    ]),
    # x / max(std_batch(x), rms_instance(x) - x)
    "evonorm_b2": _evonorm_b([
        Node("rms_instance", (X,)),      # 5
        Node("neg", (X,)),               # 6
        Node("add", (5, 6)),             # 7
    ]),
    # x * sigmoid(v1 * x) / std_group(x)
    "evonorm_s0": LayerGraph([
        Node("mul", (V1, X)),            # 4
        Node("sigmoid", (4,)),           # 5
        Node("mul", (X, 5)),             # 6
        Node("std_group", (X,)),         # 7
        Node("div", (6, 7)),             # 8
    ]),
    # x * sigmoid(x) / std_group(x)
    "evonorm_s1": LayerGraph([
        Node("sigmoid", (X,)),           # 4
        Node("mul", (X, 4)),             # 5
        Node("std_group", (X,)),         # 6
        Node("div", (5, 6)),             # 7
    ]),
    # x * sigmoid(x) / rms_group(x)
    "evonorm_s2": LayerGraph([
        Node("sigmoid", (X,)),           # 4
        Node("mul", (X, 4)),             # 5
        Node("rms_group", (X,)),         # 6
        Node("div", (5, 6)),             # 7
    ]),
}

# Transformer norm layers; gamma and beta (the compiler's final affine) are their weight
# and bias. Each equals its reference with these parameters (tests/test_transformer_layers.py).
TRANSFORMER_LAYERS: dict[str, LayerGraph] = {
    # (x - mean_C(x)) / sqrt(var_C(x) + eps): torch.nn.LayerNorm over the last dim.
    "layernorm": LayerGraph([
        Node("mean_channel", (X,)),      # 4
        Node("neg", (4,)),               # 5
        Node("add", (X, 5)),             # 6  x - mean
        Node("std_channel", (X,)),       # 7
        Node("div", (6, 7)),             # 8
    ]),
    # x / sqrt(mean_C(x^2) + eps): torch.nn.RMSNorm (whose weight is gamma; beta starts 0).
    "rmsnorm": LayerGraph([
        Node("rms_channel", (X,)),       # 4
        Node("div", (X, 4)),             # 5
    ]),
    # tanh(alpha * x) with alpha = 0.5 * v1 (per channel, init 0.5): Dynamic Tanh (Zhu et
    # al. 2025), whose alpha is one learnable scalar initialised at 0.5.
    "dyt": LayerGraph([
        Node("sigmoid", (ZERO,)),        # 4  the constant 0.5
        Node("mul", (V1, 4)),            # 5  alpha
        Node("mul", (X, 5)),             # 6
        Node("tanh", (6,)),              # 7
    ]),
    # tanh(v1 * x + v0): a shifted bounded squashing, like Derf's erf(alpha x + s).
    "derf": LayerGraph([
        Node("mul", (V1, X)),            # 4
        Node("add", (4, V0)),            # 5
        Node("tanh", (5,)),              # 6
    ]),
    # x (no normalization: only the affine remains).
    "no_norm": LayerGraph([
        Node("add", (X, ZERO)),          # 4
    ]),
    # BN(x) + v1 * x: SLAB's RepBN (BatchNorm over all tokens plus a learnable share of x).
    "repbn": LayerGraph([
        Node("mean_batch", (X,)),        # 4
        Node("neg", (4,)),               # 5
        Node("add", (X, 5)),             # 6
        Node("std_batch", (X,)),         # 7
        Node("div", (6, 7)),             # 8  BN(x)
        Node("mul", (V1, X)),            # 9
        Node("add", (8, 9)),             # 10
    ]),
    # Batch-Channel Normalization (Qiao et al. 2019): BN(x), then normalized over the
    # channels of each group at each token (GroupNorm per position).
    "bcn": LayerGraph([
        Node("mean_batch", (X,)),        # 4
        Node("neg", (4,)),               # 5
        Node("add", (X, 5)),             # 6
        Node("std_batch", (X,)),         # 7
        Node("div", (6, 7)),             # 8  BN(x)
        Node("mean_channel_group", (8,)),  # 9
        Node("neg", (9,)),               # 10
        Node("add", (8, 10)),            # 11
        Node("std_channel_group", (8,)),   # 12
        Node("div", (11, 12)),           # 13
    ]),
}


Home = Literal["norm_act", "norm"]

# Found by this project's searches and confirmed on seeds the search never used; each
# entry's origin (formula, evidence, commands) is in docs/RESULTS.md, "Discovered layers".
# Each is declared with its home, the slot of the search that found it, so that no
# discovered layer can be added without one.
_DISCOVERED: dict[str, tuple[Home, LayerGraph]] = {
    # x * sigmoid(x) / rms_group(x * sigmoid(x)): Swish (EvoNorm-S1's numerator), then a
    # group RMSNorm of it (the compiled affine completes the RMSNorm). Evolved in the S
    # space on CIFAR-10 at batch 8 (docs/RESULTS.md, "Evolution vs random at equal CPU
    # time, S space, small batch"); on three sets of fresh seeds its mean test accuracy
    # is above EvoNorm-S0's on every proxy (+1.1 +- 0.8 points over proxies, 10 seeds).
    "swish_group_rmsnorm": ("norm_act", LayerGraph([
        Node("sigmoid", (X,)),           # 4
        Node("mul", (X, 4)),             # 5  swish
        Node("rms_group", (5,)),         # 6
        Node("div", (5, 6)),             # 7
    ])),
    # max(x - mean_channel(x), v0) / (std_channel(x) * std_channel(x) / (x - mean_channel(x)))
    # = z * max(z, v0 / std_channel(x)), z = (x - mean_channel(x)) / std_channel(x):
    # LayerNorm's z times a floored copy of itself (at v0 = 0, z * relu(z)), a
    # normalization and a squared-ReLU-like gate in one, for the pre-norm slot. Candidate
    # #702 of the memetic arm of the real space-T search (vit and charlm proxies, width 64,
    # depth 4, 600-step protocol; docs/RESULTS.md, "The memetic arm of the real T
    # search"). At the 5x reference protocol on 4 fresh TEST seeds it is ahead of
    # LayerNorm by +0.015 [+0.005, +0.026] vit accuracy and 0.067 [0.051, 0.082] charlm
    # bits/char, and of RMSNorm by +0.016 [0.005, 0.027] and 0.071 [0.053, 0.090]
    # (paired, 95% t), on every seed; it trains about 2x slower (separate ops, where
    # LayerNorm runs F.layer_norm).
    "floored_square_layernorm": ("norm", LayerGraph([
        Node("mean_channel", (X,)),      # 4
        Node("neg", (4,)),               # 5
        Node("add", (X, 5)),             # 6  x - mean
        Node("std_channel", (X,)),       # 7
        Node("mul", (7, 7)),             # 8  std^2
        Node("div", (8, 6)),             # 9  std^2 / (x - mean) = std / z
        Node("max", (6, V0)),            # 10 x - mean, floored at v0
        Node("div", (10, 9)),            # 11
    ])),
}
DISCOVERED_LAYERS: dict[str, LayerGraph] = {name: graph for name, (_, graph) in _DISCOVERED.items()}
DISCOVERED_HOMES: dict[str, Home] = {name: home for name, (home, _) in _DISCOVERED.items()}

KNOWN_LAYERS: dict[str, LayerGraph] = {**CNN_LAYERS, **TRANSFORMER_LAYERS}
NAMED_LAYERS: dict[str, LayerGraph] = {**KNOWN_LAYERS, **DISCOVERED_LAYERS}
# The slot each named layer (known or discovered) was made for (a
# `primitives.SearchSpace.slot`).
KNOWN_HOMES: dict[str, Home] = {
    **{name: "norm_act" for name in CNN_LAYERS},
    **{name: "norm" for name in TRANSFORMER_LAYERS},
    **DISCOVERED_HOMES,
}
HOME_LABELS: dict[str, str] = {"norm_act": "CNN norm-activation", "norm": "Transformer norm"}


def known_names(home: Home) -> list[str]:
    """The known layers (not the discovered ones) made for slot `home`, in order."""
    return [name for name in KNOWN_LAYERS if KNOWN_HOMES[name] == home]


def get_known(name: str) -> LayerGraph:
    """The named layer (known or discovered) called `name`; GraphError listing the names
    otherwise."""
    try:
        return NAMED_LAYERS[name]
    except (KeyError, TypeError):
        raise GraphError(
            f"unknown layer name {name!r}; use one of: {', '.join(NAMED_LAYERS)}"
        ) from None


@cache
def _names_by_hash() -> dict[str, str]:
    return {graph.structural_hash(): name for name, graph in NAMED_LAYERS.items()}


def known_name(structural_hash: str) -> str | None:
    """The named layer (known or discovered) with this structural hash (so also a
    renumbered copy of it, or one with dead nodes or commuted arguments), or None."""
    return _names_by_hash().get(structural_hash)


def formula_label(graph: LayerGraph) -> str:
    """The formula, followed by the layer's name when `graph` is a named one (by structural
    hash, so also a renumbered copy or one with dead nodes): `x / ...  (evonorm_b0)`."""
    name = known_name(graph.structural_hash())
    return graph.formula() if name is None else f"{graph.formula()}  ({name})"
