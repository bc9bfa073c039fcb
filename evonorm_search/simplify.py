"""Simplification: the shortest layer graph that computes the same function.

Searches find bloated or degenerate equivalents of a layer (`t + t`, a division by the
zero node, i.e. by eps, a statistic of a statistic, a factor v1 that gamma absorbs).
`simplify(graph)` removes and collapses nodes as long as the function stays the same,
greedily, always taking the rewrite that leaves the fewest nodes, until none applies:

- dead nodes go, and nodes with the same op and inputs merge;
- a node is redirected to one of its inputs, to an earlier node or to the zero node
  (which folds constant subexpressions: `sigmoid(0) * t` -> `t` up to the affine,
  `0 / t` -> `0`), and what only fed it goes.

"The same function" is decided numerically, in float64, in training mode (batch
statistics from the batch), on three probe shapes (group sizes 2 and 4, 1x1 maps where
instance statistics degenerate; inputs include 0 and values near eps) with two draws of
every parameter each, so that layers which coincide only at one parameter value (e.g.
v1 = 1) stay apart, element by element. Two kinds:

- exact (`up_to_affine=False`): the outputs agree, for every parameter value. The
  simplified layer is a drop-in replacement: same output, same gradients, so it trains
  the same (what `evonorm export` writes by default);
- up to the affine (`up_to_affine=True`): per channel, each output is an affine function
  of the other. Every layer ends in a trainable per-channel `* gamma + beta`, so both
  reach the same functions, but not from the same initialisation: `t * v1 -> t` and
  `t / 0 -> t` (a factor 1/eps) are simplifications of this kind. What reports print
  as a layer's simplified form.

Agreement allows a relative error of `TOLERANCE` per element (or the caller's
`tolerance`: the scan's compact edits use a looser one); up to the affine, also
of the channel's RMS, so that eps-level differences (`rms(std(x))` against `std(x)`, a
guarded division against a plain one) count as the same there. Running averages of batch statistics
(eval mode) are not compared. The stored graph is never replaced: callers show the
simplified form next to it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor

from evonorm_search.compile import compile_layer
from evonorm_search.errors import GraphError
from evonorm_search.graph import NUM_INITIAL, LayerGraph, Node
from evonorm_search.threads import torch_threads
from primitives import OPS

# (N, C, H, W, groups): group sizes 2 and 4 (so group, instance and layer statistics
# differ), and 1x1 maps, where instance statistics degenerate (a rewrite must hold there
# too, for the layer to be the same on every input shape).
PROBE_SHAPES: tuple[tuple[int, int, int, int, int], ...] = (
    (4, 6, 3, 3, 3), (3, 8, 2, 2, 2), (5, 4, 1, 1, 2))
PARAMETER_DRAWS = 2
PROBE_SEED = 20240516
# Largest difference, relative to the value, that still counts as the same output: eps-
# level differences (a guarded against a plain division, rms(std(x)) against std(x))
# pass, a different function does not.
TOLERANCE = 1e-4
# Differences below this share of the output's largest magnitude are rounding.
FLOOR = 1e-10
# Inputs every probe also holds (exact zero and values near the eps of the guards).
SPECIAL_INPUTS = (0.0, 1e-6, -1e-4, 2e-3)


@dataclass(frozen=True)
class _Probe:
    groups: int
    inputs: Tensor  # (N, C, H, W), float64
    parameters: tuple[dict[str, Tensor], ...]  # one set of v0, v1 per draw


def _values(rng: random.Random, count: int) -> list[float]:
    return [rng.choice((-1.0, 1.0)) * rng.uniform(0.3, 1.7) for _ in range(count)]


@lru_cache(maxsize=1)
def _probes() -> tuple[_Probe, ...]:
    """Fixed probe inputs (per-channel offsets and scales) and parameter draws, from
    Python's `random` (stable across versions), as the fingerprint's."""
    rng = random.Random(PROBE_SEED)
    probes = []
    for batch, channels, height, width, groups in PROBE_SHAPES:
        shape = (batch, channels, height, width)
        offsets, scales = _values(rng, channels), [abs(s) for s in _values(rng, channels)]
        noise = torch.tensor([rng.gauss(0.0, 1.0) for _ in range(batch * channels * height * width)],
                             dtype=torch.float64).reshape(shape)
        inputs = noise * torch.tensor(scales, dtype=torch.float64).reshape(1, -1, 1, 1) + \
            torch.tensor(offsets, dtype=torch.float64).reshape(1, -1, 1, 1)
        step = inputs.numel() // len(SPECIAL_INPUTS)
        inputs.view(-1)[::step][:len(SPECIAL_INPUTS)] = torch.tensor(SPECIAL_INPUTS,
                                                                    dtype=torch.float64)
        parameters = tuple(
            {name: torch.tensor(_values(rng, channels), dtype=torch.float64).reshape(1, -1, 1, 1)
             for name in ("v0", "v1")}
            for _ in range(PARAMETER_DRAWS))
        probes.append(_Probe(groups, inputs, parameters))
    return tuple(probes)


def _outputs(graph: LayerGraph, probes: tuple[_Probe, ...]) -> list[Tensor] | None:
    """The graph's outputs (before gamma and beta) on every probe and draw; None when one
    is not finite."""
    outputs = []
    with torch_threads(1), torch.no_grad():
        for probe in probes:
            layer = compile_layer(graph, probe.inputs.shape[1], groups=probe.groups).double().train()
            for parameters in probe.parameters:
                for name, value in parameters.items():
                    if getattr(layer, name) is not None:  # only where the output uses it
                        getattr(layer, name).copy_(value)
                # Two batches (the probe's first two images, then the rest) through the
                # same layer: batch statistics differ between them, so an affine fitted
                # over the whole output (up to the affine) cannot absorb them, as a trained
                # layer's gamma and beta, the same for every batch, cannot either
                # (`(x - mean_batch(x)) / std_batch(x) + v1 * x` is not `x`).
                y = torch.cat([layer(probe.inputs[:2]), layer(probe.inputs[2:])])
                if not torch.isfinite(y).all():
                    return None
                outputs.append(y)
    return outputs


def _close(a: Tensor, b: Tensor, tolerance: float, *, channel_scale: bool = False) -> bool:
    """Element by element within `tolerance` of the larger magnitude (plus a floor far
    below the outputs' scale), so that a rewrite that is wrong only near zero (x / x for
    1, which the eps guard breaks for tiny x, also in the probes) does not pass. With
    `channel_scale`, within `tolerance` of the magnitude plus the channel's RMS: eps-level
    differences near zero pass too (used up to the affine, whose fit spreads them)."""
    scale = max(float(a.abs().max()), float(b.abs().max()))
    bound = torch.maximum(a.abs(), b.abs())
    if channel_scale:
        bound = bound + (b * b).mean((0, 2, 3), keepdim=True).sqrt()
    return bool(((a - b).abs() <= tolerance * bound + FLOOR * scale).all())


def _affine_image(a: Tensor, b: Tensor) -> Tensor:
    """Per channel, the least-squares affine map of a closest to b (b's mean where a is
    constant)."""
    dims = (0, 2, 3)
    ac, bc = a - a.mean(dims, keepdim=True), b - b.mean(dims, keepdim=True)
    saa, sab = (ac * ac).sum(dims, keepdim=True), (ac * bc).sum(dims, keepdim=True)
    varies = saa > (FLOOR * float(a.abs().max())) ** 2 * (a.numel() // a.shape[1])
    slope = torch.where(varies, sab / saa.clamp_min(1e-300), torch.zeros_like(saa))
    return b.mean(dims, keepdim=True) + slope * ac


def _same(a: list[Tensor], b: list[Tensor], up_to_affine: bool,
          tolerance: float = TOLERANCE) -> bool:
    """Whether outputs `a` and `b` (probe by probe) are the same, or, up to the affine,
    each is a per-channel affine map of the other."""
    for ya, yb in zip(a, b, strict=True):
        if ya.shape != yb.shape:
            return False
        if up_to_affine:
            if not (_close(_affine_image(ya, yb), yb, tolerance, channel_scale=True)
                    and _close(_affine_image(yb, ya), ya, tolerance, channel_scale=True)):
                return False
        elif not _close(ya, yb, tolerance):
            return False
    return True


def equivalent(a: LayerGraph, b: LayerGraph, *, up_to_affine: bool = False) -> bool:
    """Whether layers `a` and `b` compute the same function on the probes (see the
    module docstring); False when either is not finite there."""
    ya, yb = _outputs(a, _probes()), _outputs(b, _probes())
    return ya is not None and yb is not None and _same(ya, yb, up_to_affine)


def _merged(graph: LayerGraph) -> LayerGraph:
    """Dead nodes removed and nodes with the same op and inputs (commuted arguments
    included) merged into the first: exact, no check needed."""
    graph = graph.pruned()
    while True:
        seen: dict[tuple[str, tuple[int, ...]], int] = {}
        for index in range(NUM_INITIAL, graph.num_nodes):
            node = graph.node(index)
            key = (node.op, tuple(sorted(node.inputs)) if OPS[node.op].commutative else node.inputs)
            if key in seen:
                redirected = _redirect(graph, index, seen[key])
                if redirected is not None:
                    graph = redirected
                    break
            seen[key] = index
        else:
            return graph


def _redirect(graph: LayerGraph, index: int, replacement: int) -> LayerGraph | None:
    """`graph` with every use of node `index` reading node `replacement` (< index) instead,
    pruned; None when that is no layer (the output would not be an intermediate node or
    would not depend on x)."""
    if index == graph.output:
        if replacement < NUM_INITIAL:
            return None
        nodes = list(graph.nodes[: replacement - NUM_INITIAL + 1])
    else:
        nodes = [Node(node.op, tuple(replacement if j == index else j for j in node.inputs))
                 for node in graph.nodes]
    try:
        return LayerGraph(nodes).pruned()
    except GraphError:
        return None


def smaller_rewrites(graph: LayerGraph) -> list[LayerGraph]:
    """Every smaller graph one redirection away, fewest nodes first (then by the node
    redirected and its replacement, for determinism)."""
    found: dict[str, tuple[int, int, int, LayerGraph]] = {}
    for index in range(NUM_INITIAL, graph.num_nodes):
        for replacement in range(index):
            candidate = _redirect(graph, index, replacement)
            if candidate is None or candidate.num_nodes >= graph.num_nodes:
                continue
            key = candidate.structural_hash()
            if key not in found:
                found[key] = (candidate.num_nodes, index, replacement, candidate)
    return [entry[3] for entry in sorted(found.values(), key=lambda e: e[:3])]


def _matches(candidate: LayerGraph, reference: list[Tensor], up_to_affine: bool,
             tolerance: float) -> bool:
    """Whether `candidate` computes `reference` (the outputs on every probe)."""
    probes = _probes()
    # One probe first: nearly every wrong candidate fails there, at a third of the cost.
    outputs = _outputs(candidate, probes[:1])
    if outputs is None or not _same(reference[:PARAMETER_DRAWS], outputs, up_to_affine, tolerance):
        return False
    outputs = _outputs(candidate, probes)
    return outputs is not None and _same(reference, outputs, up_to_affine, tolerance)


@lru_cache(maxsize=4096)
def _simplify(graph_json: str, up_to_affine: bool, preferred: tuple[str, ...],
              tolerance: float) -> str:
    graph = _merged(LayerGraph.from_json(graph_json))
    reference = _outputs(graph, _probes())
    if reference is None:
        return graph.to_json()
    while True:
        for candidate in smaller_rewrites(graph):
            if _matches(candidate, reference, up_to_affine, tolerance):
                graph = _merged(candidate)
                break
        else:
            break
    for text in preferred:
        form = LayerGraph.from_json(text)
        if form.pruned().num_nodes <= graph.num_nodes and (
                form.structural_hash() == graph.structural_hash()
                or _matches(form, reference, up_to_affine, tolerance)):
            return form.pruned().to_json()
    return graph.to_json()


def simplify(graph: LayerGraph, *, up_to_affine: bool = False,
             prefer: tuple[LayerGraph, ...] = (), tolerance: float = TOLERANCE) -> LayerGraph:
    """The shortest layer found that computes the same function as `graph` (exactly, or
    up to the per-channel affine): `graph` itself, pruned, when nothing simplifies. Among
    equally short forms, a layer of `prefer` (then a known layer, e.g. EvoNorm-S0's
    formula for its reassociated `x / std_group(x) * sigmoid(v1 * x)`) is taken when
    it computes the same. A layer that is not finite on the probes is only pruned and
    merged. A `tolerance` above TOLERANCE also takes rewrites that hold only away from
    inputs near eps (the scan's "compact" edits: `x / rms_batch(x)` standardized as `x`)."""
    from evonorm_search.known import KNOWN_LAYERS

    preferred = tuple(g.to_json() for g in (*prefer, *KNOWN_LAYERS.values()))
    return LayerGraph.from_json(_simplify(graph.to_json(), up_to_affine, preferred, tolerance))


def simplified_label(graph: LayerGraph, *, up_to_affine: bool = True) -> str | None:
    """The formula of `graph` simplified (by default up to the affine; with the known
    layer's name when it is one), what reports print next to the stored formula; None
    when that is the stored formula (the same structural hash)."""
    from evonorm_search.known import formula_label

    simple = simplify(graph, up_to_affine=up_to_affine)
    return None if simple.structural_hash() == graph.structural_hash() else formula_label(simple)
