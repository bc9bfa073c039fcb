"""What the search must know about a proxy without building it.

A proxy is a network the candidate layer is trained in (`workers.proxies` builds the CNNs,
`workers.transformer_proxies` the Transformers). The search, the CLI and the views need a
few facts about each: which slot the candidate fills there (a CNN's norm-activation pair
or a Transformer's norm), which data it trains on, what its score is, and which statistic
axes it forbids. A causal language model forbids every statistic over the token axis
(batch, layer, instance, group of the (B, C, T, 1) view): with one, the output at position
t would depend on later tokens, and evolution would find and exploit that leak. A search
whose space allows a forbidden axis is refused before it starts, and a worker rejects
such a layer before training it.

The user's own proxies (MODULE:FUNCTION, docs/own_proxy.md) are CNN norm-activation
proxies on images.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from evonorm_search.errors import GraphError
from evonorm_search.graph import NUM_INITIAL, LayerGraph
from primitives import OPS, SPACES, TOKEN_AXIS_SETS, SearchSpace

ACCURACY = "validation accuracy"
# A language model's score: bits per character as a share of 8-bit text saved, so that
# higher is better (as for accuracy), 0 is no better than storing raw bytes, and a failed
# seed counted as 0 is the worst score rather than a perfect one.
BITS_SAVED = "1 - validation bits/char / 8 (higher is better)"
BITS_PER_BYTE = 8.0


def score_from_bits(bits: float) -> float:
    """A language model's score for `bits` bits per character (see BITS_SAVED)."""
    return 1.0 - bits / BITS_PER_BYTE


def bits_from_score(score: float) -> float:
    """Bits per character of a language model's score."""
    return (1.0 - score) * BITS_PER_BYTE


@dataclass(frozen=True)
class ProxyInfo:
    """One proxy as the search sees it."""

    name: str
    slot: Literal["norm_act", "norm"]  # what the candidate replaces (a SearchSpace.slot)
    data: Literal["images", "text"]
    metric: str  # what its score is, for labels
    forbidden_axes: frozenset[str] = frozenset()
    doc: str = ""


PROXY_INFO: dict[str, ProxyInfo] = {
    "resnet": ProxyInfo("resnet", "norm_act", "images", ACCURACY,
                        doc="pre-activation bottleneck ResNet"),
    "mobilenetv2": ProxyInfo("mobilenetv2", "norm_act", "images", ACCURACY,
                             doc="MobileNetV2-style inverted residuals"),
    "efficientnet": ProxyInfo("efficientnet", "norm_act", "images", ACCURACY,
                              doc="EfficientNet-style inverted residuals with squeeze-excite"),
    "vit": ProxyInfo("vit", "norm", "images", ACCURACY,
                     doc="pre-norm Vision Transformer on 4x4 patches (16 tokens + class token)"),
    "charlm": ProxyInfo("charlm", "norm", "text", BITS_SAVED, TOKEN_AXIS_SETS,
                        doc="causal character-level Transformer language model"),
}
OWN_PROXY = ProxyInfo("own", "norm_act", "images", ACCURACY, doc="your MODULE:FUNCTION builder")


def proxy_info(name: str) -> ProxyInfo:
    """The facts about proxy `name`; a MODULE:FUNCTION name is a CNN norm-activation
    proxy on images. GraphError naming the known proxies for anything else."""
    if name in PROXY_INFO:
        return PROXY_INFO[name]
    if ":" in name:
        return OWN_PROXY
    raise GraphError(f"unknown proxy {name!r}; choose from {', '.join(PROXY_INFO)}, or name "
                     "your own builder as MODULE:FUNCTION (docs/own_proxy.md)")


def default_proxies(space: str) -> tuple[str, ...]:
    """The proxies a search in `space` uses when none are named: the paper's three CNNs
    for a norm-activation space, the Transformers that permit the space's axes otherwise."""
    chosen = SPACES[space]
    return tuple(name for name, info in PROXY_INFO.items()
                 if info.slot == chosen.slot and not (chosen.axes & info.forbidden_axes))


def metric_of(name: str) -> str:
    """What proxy `name`'s score is (planted regimes and unknown names: accuracy)."""
    info = PROXY_INFO.get(name)
    return ACCURACY if info is None else info.metric


def score_note(proxies: Iterable[str]) -> str | None:
    """"scores: vit validation accuracy; charlm 1 - ..." when a proxy's score is not
    accuracy (what a table of scores must say), else None."""
    names = list(proxies)
    if all(metric_of(name) == ACCURACY for name in names):
        return None
    return "scores: " + "; ".join(f"{name} {metric_of(name)}" for name in names)


def score_label(task: str, proxies: Iterable[str]) -> str:
    """What a search's per-proxy scores are, for labels of views and plots."""
    from evonorm_search.planted import score_name

    return score_name(task) if task == "planted" else (score_note(proxies) or ACCURACY)


def score_text(proxy: str, score: float) -> str:
    """A score as a table shows it: `0.4512`, or for a language model with its bits per
    character, `0.6012 (3.191 bits/char)`."""
    if metric_of(proxy) == BITS_SAVED:
        return f"{score:.4f} ({bits_from_score(score):.3f} bits/char)"
    return f"{score:.4f}"


def needs_text(proxies: Iterable[str]) -> bool:
    """Whether any of `proxies` trains on the text corpus."""
    return any(name in PROXY_INFO and PROXY_INFO[name].data == "text" for name in proxies)


def forbidden_ops(graph: LayerGraph, proxies: Iterable[str]) -> list[tuple[str, str]]:
    """(proxy, op) for every live statistic of `graph` over axes a proxy forbids."""
    live_ops = sorted({graph.node(i).op for i in graph.live_nodes() if i >= NUM_INITIAL})
    found = []
    for name in proxies:
        forbidden = proxy_info(name).forbidden_axes
        found += [(name, op) for op in live_ops if OPS[op].axes in forbidden]
    return found


def check_layer_allowed(graph: LayerGraph, proxies: Iterable[str], label: str = "") -> None:
    """GraphError when a live statistic of `graph` uses axes one of `proxies` forbids."""
    found = forbidden_ops(graph, proxies)
    if not found:
        return
    proxy = found[0][0]
    ops = ", ".join(op for name, op in found if name == proxy)
    raise GraphError(
        f"layer {label or graph.formula()} uses {ops}, a statistic over the token axis, which "
        f"proxy {proxy} forbids ({proxy_info(proxy).doc}: position t would see later "
        "tokens); use a layer with per-token statistics only (space T), or drop that proxy"
    )


def check_space_for_proxies(space: SearchSpace, proxies: Iterable[str]) -> None:
    """GraphError when a known proxy fills another slot than the space's layers, or
    forbids statistic axes the space allows."""
    slot_spaces = [s.name for s in SPACES.values() if s.slot != space.slot]
    for name in proxies:
        if name not in PROXY_INFO and ":" not in name:
            continue  # an unknown name: the evaluation's settings check names the known ones
        info = proxy_info(name)
        if info.slot != space.slot:
            fitting = [s.name for s in SPACES.values() if s.slot == info.slot]
            raise GraphError(
                f"proxy {name} ({info.doc}) has {_slot_text(info.slot)} slots, but space "
                f"{space.name} holds {_slot_text(space.slot)} layers: use --space "
                f"{' or --space '.join(fitting)}, or proxies for space {space.name} "
                f"({', '.join(default_proxies(space.name)) or 'none'})"
                if fitting else f"proxy {name} fits none of the spaces {slot_spaces}")
        clash = sorted(space.axes & info.forbidden_axes)
        if clash:
            safe = [s.name for s in SPACES.values()
                    if s.slot == space.slot and not (s.axes & info.forbidden_axes)]
            raise GraphError(
                f"proxy {name} is a {info.doc}: statistics over {', '.join(clash)} mix the "
                f"tokens of a sequence, so position t would see later tokens, but space "
                f"{space.name} allows them: use --space {' or --space '.join(safe)}"
            )


def _slot_text(slot: str) -> str:
    return "Transformer norm" if slot == "norm" else "CNN norm-activation"
