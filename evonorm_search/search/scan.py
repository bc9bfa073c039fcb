"""The single-edit neighbourhood of a layer, and the local scan that walks it.

When evolution stalls one edit away from a better layer, each improving edit has a
probability of about 1/1,000 per child (docs/RESULTS.md, planted recovery); walking the
edits in turn makes finding it a certainty within the neighbourhood's size. The
neighbourhood of a layer is every layer one edit away from its live part: a new op on a
node (same inputs; a binary op gets each earlier node as its second operand), the
operands of a non-commutative op swapped, one input rewired to another earlier node, a
node spliced into an edge, a node deleted (its consumers reading one of its inputs), and
a new op on top of the output (root-wrap; a binary one with an earlier node, or a new
unary node of one, as its other operand, as the `wrap` move does). With macro edits on
(`--scan-macros`, families `MACROS`), the neighbourhood also holds the multi-node edits
no single edit makes (`blocks`): "normalize", every normalization of `x` or a live node
over each axis of the space, for each of its reads, all of them at once, or on top of
the output; "skip", a root-wrap whose other operand is a new `v0 * a` or `v1 * a` of an
earlier node `a` (a learned skip: `tanh(z) + v0 * z` from `tanh(z)`); "guard", a live
std/rms node `d` replaced by `max(d, e)`, or an operand of a live max by `e`, for every
second scale estimate `e` of `x`; "gate", `x` or a live node `a` replaced (per read, or
as the new output) by its self-gated form `g * sigmoid(g)` or `g * tanh(g)`, g in `a`,
`v1 * a`, `v1 * a + v0`; "rectify", `x` or a live node `a` replaced (per read, or as the
new output) by its leaky rectifier `max(a, v0 * a)` or `max(a, v1 * a)` (a floored
`max(x, v0) / rms(x)` is one rectifier from `max(max(x, v1 * x), v0) / rms(x)`);
"hoist", a live node `a` made the output (the layer cut back to `a` and
what it reads: GP's hoist mutation) and, with it, every edit of the other families of
that cut-back layer (a stall whose core is a buried `x / std_batch(x)` is one guard away
from EvoNorm-B0 once the rest is cut off); "free", the layer with every node that reads
v0, v1 or both taken out (what read it reads its other operand: `x + v0` becomes `x`)
and, with it, every edit of the other families of that freed layer (a BN-Swish stall
that spent v0 inside its statistics, `mean_batch(x + v0)`, is one gate `g * sigmoid(g)`,
g = v1 * a + v0, from the target once v0 is free again); "compact", the layer rewritten
shorter where that leaves its function the same up to eps and the affine (`simplify` at
`COMPACT_TOLERANCE`: a standardization of `x / rms_batch(x)` becomes one of `x`) and, with
it, every edit of the other direct families of that compacted layer (a BN-Swish stall
whose core grew past the room the gate needs is one gate from the target once
compacted). The freed, then the hoisted,
layers of a layer are walked after all its other neighbours: they are large jumps, and
searches that never finish a layer's own neighbours propose exactly what they did before
these families existed; the strategy's sweep (`LocalScan.sweep`) leaves them out, and
with `--scan-deferred last` the strategy walks them apart (`LocalScan.deferred`), after
every scanned layer's own neighbours.
Edits that leave the space or make an invalid graph are left out; the rest are
deduplicated by structure. Dead nodes are dropped first: an edit there would change
nothing, and the room they take is what inserts need.

`LocalScan` proposes, for the best layers in rank order, the neighbours the search has
not stored yet, each layer's neighbours in a fixed shuffled order (seeded by its
structure, so the order is a function of the layer: resume proposes the same ones), or
with `macros_first` its direct macro edits in such an order before its single edits.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Container, Iterable, Iterator

from evonorm_search.errors import GraphError
from evonorm_search.graph import MAX_INTERMEDIATE, LayerGraph, Node
from evonorm_search.search.blocks import (
    FIRST, GATE_INPUTS, GATE_OPS, NORMALIZATIONS, V0, V1, X, block_size, gate_block, guard_block,
    guard_terms, normalization_axes, normalization_scopes, normalization_size,
    normalization_sources, normalized_nodes, rectifier_block, scale_statistic_nodes,
    with_block,
)
from evonorm_search.search.moves import is_valid
from evonorm_search.simplify import simplify
from primitives import get_op, op_names

PARAMETERS = (V0, V1)
# Neighbourhoods kept (one per scanned layer); beyond this the oldest are dropped and, if
# scanned again, rebuilt (the cursor then skips what the search has stored since).
CACHED_NEIGHBOURHOODS = 16


def _operand_pairs(operand: int, others: range, commutative: bool) -> Iterator[tuple[int, int]]:
    for other in others:
        yield operand, other
        if not commutative and other != operand:
            yield other, operand


def _edits(graph: LayerGraph, ops: tuple[str, ...]) -> Iterator[list[Node]]:
    """The node lists one edit away from `graph` (some may be invalid graphs)."""
    nodes = list(graph.nodes)
    count = len(nodes)
    for position, node in enumerate(nodes):
        index = FIRST + position
        arity = len(node.inputs)
        for op in ops:  # a new op on this node
            if op == node.op:
                continue
            spec = get_op(op)
            if spec.arity == arity:
                yield [*nodes[:position], Node(op, node.inputs), *nodes[position + 1:]]
            elif spec.arity == 1:
                for kept in dict.fromkeys(node.inputs):
                    yield [*nodes[:position], Node(op, (kept,)), *nodes[position + 1:]]
            else:
                for pair in _operand_pairs(node.inputs[0], range(index), spec.commutative):
                    yield [*nodes[:position], Node(op, pair), *nodes[position + 1:]]
        spec = get_op(node.op)
        if arity == 2 and not spec.commutative and node.inputs[0] != node.inputs[1]:
            yield [*nodes[:position], Node(node.op, node.inputs[::-1]), *nodes[position + 1:]]
        for slot in range(arity):  # one input rewired
            for source in range(index):
                if source != node.inputs[slot]:
                    inputs = list(node.inputs)
                    inputs[slot] = source
                    yield [*nodes[:position], Node(node.op, tuple(inputs)), *nodes[position + 1:]]
        if position < count - 1:  # deleted: what read it reads one of its inputs
            for heir in dict.fromkeys(node.inputs):
                kept = []
                for later in nodes[position + 1:]:
                    inputs = tuple(heir if i == index else i - (i > index) for i in later.inputs)
                    kept.append(Node(later.op, inputs))
                yield [*nodes[:position], *kept]
    if count >= MAX_INTERMEDIATE:
        return
    for position, node in enumerate(nodes):  # a new node spliced into an edge
        index = FIRST + position
        shifted = [Node(n.op, tuple(i + (i >= index) for i in n.inputs)) for n in nodes[position:]]
        for slot, source in enumerate(node.inputs):
            for op in ops:
                spec = get_op(op)
                pairs = ([(source,)] if spec.arity == 1
                         else _operand_pairs(source, range(index), spec.commutative))
                for inputs in pairs:
                    consumer = list(shifted[0].inputs)
                    consumer[slot] = index
                    yield [*nodes[:position], Node(op, tuple(inputs)),
                           Node(node.op, tuple(consumer)), *shifted[1:]]
    output = FIRST + count - 1
    unary = [op for op in ops if get_op(op).arity == 1]
    for op in ops:  # root-wrap: a new op on top of the output
        spec = get_op(op)
        if spec.arity == 1:
            yield [*nodes, Node(op, (output,))]
            continue
        for inputs in _operand_pairs(output, range(output + 1), spec.commutative):
            yield [*nodes, Node(op, inputs)]
        if count + 2 > MAX_INTERMEDIATE:
            continue
        for source in range(output + 1):  # ... whose other operand is a new unary node
            for inner in unary:
                for inputs in _operand_pairs(output, range(output + 1, output + 2),
                                             spec.commutative):
                    yield [*nodes, Node(inner, (source,)), Node(op, inputs)]


def _normalize_edits(graph: LayerGraph, ops: tuple[str, ...]) -> Iterator[list[Node]]:
    """Every normalization of `x` or a live node, over each axis, for each scope."""
    axes = normalization_axes(ops)
    for source in normalization_sources(graph):
        scopes = normalization_scopes(graph, source)
        for kind in NORMALIZATIONS:
            if len(graph.nodes) + normalization_size(kind) > MAX_INTERMEDIATE:
                continue
            for axis in axes:
                for scope in scopes:
                    yield normalized_nodes(graph, source, scope, kind, axis)


def _skip_edits(graph: LayerGraph, ops: tuple[str, ...]) -> Iterator[list[Node]]:
    """Root-wraps whose other operand is a new `v0 * a` or `v1 * a` (a learned skip)."""
    if len(graph.nodes) + 2 > MAX_INTERMEDIATE:
        return
    nodes, output = list(graph.nodes), graph.output
    for op in ops:
        spec = get_op(op)
        if spec.arity != 2:
            continue
        for source in range(output + 1):
            for parameter in PARAMETERS:
                for inputs in _operand_pairs(output, range(output + 1, output + 2),
                                             spec.commutative):
                    yield [*nodes, Node("mul", (parameter, source)), Node(op, inputs)]


def _guard_edits(graph: LayerGraph, ops: tuple[str, ...]) -> Iterator[list[Node]]:
    """A live std/rms node `d` guarded, `max(d, e)`, for each scope of its reads; and
    either operand of a live `max` replaced by a new `e` (`blocks.guard_terms`)."""
    terms = guard_terms(ops)
    room = MAX_INTERMEDIATE - len(graph.nodes)
    for source in scale_statistic_nodes(graph):
        for scope in normalization_scopes(graph, source):
            for term in terms:
                block = guard_block(source, term)
                if block_size(block) <= room:
                    yield with_block(graph, source, scope, block)
    for index in sorted(graph.live_nodes()):
        if index < FIRST or graph.node(index).op != "max":
            continue
        for slot in range(2):
            for term in terms:
                if block_size(term) <= room:
                    yield with_block(graph, X, [(index, slot)], term)


def _gate_edits(graph: LayerGraph, ops: tuple[str, ...]) -> Iterator[list[Node]]:
    """`x` or a live node `a` gated, `g * u(g)` (`blocks.gate_block`), for each scope of
    its reads, or as the new output: then the layer is first cut back to `a` and what
    it reads (the nodes only the old output used go, which makes room for the gate:
    BN-Swish from an 8-node ReLU stand-in built on its standardized x)."""
    room = MAX_INTERMEDIATE - len(graph.nodes)
    gates = [gate for gate in GATE_OPS if gate in ops]
    for source in normalization_sources(graph):
        scopes = normalization_scopes(graph, source)
        base = None if source == graph.output else _cut_back(graph, source)
        for gate_input in GATE_INPUTS:
            for gate in gates:
                block = gate_block(source, gate_input, gate)
                if block_size(block) <= room:
                    for scope in scopes:
                        yield with_block(graph, source, scope, block)
                if base is not None and len(base[0]) + block_size(block) <= MAX_INTERMEDIATE:
                    nodes, at = base
                    yield [*nodes, *gate_block(at, gate_input, gate)(FIRST + len(nodes))]


def _rectify_edits(graph: LayerGraph, ops: tuple[str, ...]) -> Iterator[list[Node]]:
    """`x` or a live node `a` rectified, `max(a, v * a)` (`blocks.rectifier_block`), for
    each scope of its reads (on top when `a` is the output)."""
    if "max" not in ops or "mul" not in ops or len(graph.nodes) + 2 > MAX_INTERMEDIATE:
        return  # a rectifier is two nodes, mul and max
    for source in normalization_sources(graph):
        scopes = normalization_scopes(graph, source)
        for parameter in PARAMETERS:
            block = rectifier_block(source, parameter)
            for scope in scopes:
                yield with_block(graph, source, scope, block)


def _cut_back(graph: LayerGraph, source: int) -> tuple[list[Node], int] | None:
    """The nodes `source` depends on, renumbered, and its index among them (no nodes for
    `x`); None when `source` does not depend on `x` (no valid layer ends there)."""
    if source == X:
        return [], X
    try:
        cut = LayerGraph(graph.nodes[: source - FIRST + 1]).pruned()
    except GraphError:
        return None
    return list(cut.nodes), cut.output


# The scan's multi-node edit families by name (`--scan-macros`; blocks.py says what each
# block is): "normalize" and "skip" make up the memetic-norm engine's macro edits. HOIST
# and FREE are families too, applied on top of the others (`DEFERRED_EDITS`).
MACROS: dict[str, Callable[[LayerGraph, tuple[str, ...]], Iterator[list[Node]]]] = {
    "normalize": _normalize_edits,
    "skip": _skip_edits,
    "guard": _guard_edits,
    "gate": _gate_edits,
    "rectify": _rectify_edits,
}


COMPACT = "compact"
HOIST = "hoist"
FREE = "free"
FAMILIES: tuple[str, ...] = (*MACROS, COMPACT, HOIST, FREE)
# Relative difference per element (up to the affine) a compacted layer may show against
# the layer: ten times simplify's, so that rewrites exact but for the eps of a guard
# (a statistic of `x / rms(x)` against that of `x`, differing by ~1e-4 on the probes'
# near-eps inputs) count; a different function differs far beyond it. Only a proposal
# rests on it: the compacted layer and its edits are scored like any other.
COMPACT_TOLERANCE = 1e-3
# The families whose layers are walked only after all of a layer's own neighbours, in
# this order: each edit is a large jump (a freed or cut-back layer, then edited), and a
# search that never finishes a layer's own neighbours proposes what it did without them.
# FREE first: a layer has about a third as many freed layers as hoisted ones.
DEFERRED: tuple[str, ...] = (FREE, HOIST)


def _hoist_edits(graph: LayerGraph, ops: tuple[str, ...],
                 families: tuple[str, ...]) -> Iterator[list[Node]]:
    """Each live node `a` of `graph` (not `x`, not the output) made the output, the layer
    cut back to what `a` reads; then every edit of `families` of that cut-back layer."""
    for source in sorted(graph.live_nodes()):
        if source < FIRST or source == graph.output:
            continue
        cut = _cut_back(graph, source)
        if cut is not None:
            yield from _and_edited(cut[0], ops, families)


def _free_edits(graph: LayerGraph, ops: tuple[str, ...],
                families: tuple[str, ...]) -> Iterator[list[Node]]:
    """`graph` with its reads of v0, of v1, or of both taken out (`_freed`), then every
    edit of `families` of that freed layer."""
    read = {i for node in graph.nodes for i in node.inputs if i in PARAMETERS}
    for parameters in ((V0,), (V1,), PARAMETERS):
        if set(parameters) <= read:
            freed = _freed(graph, parameters)
            if freed is not None:
                yield from _and_edited(freed, ops, families)


def _freed(graph: LayerGraph, parameters: tuple[int, ...]) -> list[Node] | None:
    """The nodes of `graph` with each node that reads one of `parameters` removed (what
    read it reads its first other operand instead: `x / v0` becomes `x`), dead nodes
    dropped; None where a node reads nothing else (`v1 * v0`) or the output becomes `x`."""
    heirs = {index: index for index in range(FIRST)}
    kept: list[Node] = []
    for position, node in enumerate(graph.nodes):
        others = [heirs[i] for i in node.inputs if i not in parameters]
        if len(others) == len(node.inputs):
            heirs[FIRST + position] = FIRST + len(kept)
            kept.append(Node(node.op, tuple(others)))
        elif others:
            heirs[FIRST + position] = others[0]
        else:
            return None
    output = heirs[graph.output]
    if output < FIRST:
        return None
    try:
        cut = _cut_back(LayerGraph(kept[: output - FIRST + 1]), output)
    except GraphError:
        return None
    return None if cut is None else cut[0]


def _compact_edits(graph: LayerGraph, ops: tuple[str, ...],
                   families: tuple[str, ...]) -> Iterator[list[Node]]:
    """`graph` compacted (`simplify` up to the affine at COMPACT_TOLERANCE), when that
    has fewer nodes, then every edit of the other `families` of the compacted layer."""
    compacted = simplify(graph, up_to_affine=True, tolerance=COMPACT_TOLERANCE).pruned()
    if compacted.num_nodes < graph.num_nodes:
        yield from _and_edited(list(compacted.nodes), ops, families)


def _direct_edits(graph: LayerGraph, ops: tuple[str, ...],
                  families: tuple[str, ...]) -> Iterator[list[Node]]:
    """The node lists each direct family of `families` makes from `graph`, in order."""
    for family in families:
        if family == COMPACT:
            yield from _compact_edits(graph, ops, families)
        else:
            yield from MACROS[family](graph, ops)


def _and_edited(nodes: list[Node], ops: tuple[str, ...],
                families: tuple[str, ...]) -> Iterator[list[Node]]:
    """`nodes`, then every edit of the `families` of MACROS of the layer they make (if
    valid)."""
    yield nodes
    try:
        base = LayerGraph(nodes)
    except GraphError:
        return
    for family in families:
        if family in MACROS:
            yield from MACROS[family](base, ops)


DEFERRED_EDITS = {FREE: _free_edits, HOIST: _hoist_edits}


def check_macros(names: tuple[str, ...]) -> None:
    """ValueError naming unknown or repeated macro families."""
    unknown = [name for name in names if name not in FAMILIES]
    if unknown:
        raise ValueError(f"unknown scan macro(s) {', '.join(map(repr, unknown))}: use any of "
                         f"{', '.join(FAMILIES)}")
    if len(set(names)) != len(names):
        raise ValueError(f"scan macros {', '.join(names)} name one twice")


def _families(macros: tuple[str, ...]) -> tuple[str, ...]:
    """The families of `macros` that edit a layer directly (not deferred)."""
    return tuple(name for name in macros if name in MACROS or name == COMPACT)


def _deferred(macros: tuple[str, ...]) -> tuple[str, ...]:
    """The deferred families of `macros`, in walk order."""
    return tuple(name for name in DEFERRED if name in macros)


def neighbourhood(graph: LayerGraph, space: str,
                  macros: tuple[str, ...] = ()) -> list[LayerGraph]:
    """Every valid layer of `space` one edit away from `graph`'s live part (and one edit
    of each of the `macros` families away), one per structure, `graph` itself excluded;
    in generation order, deferred families' layers (`deferred_neighbourhood`) last."""
    pruned = graph.pruned()
    ops = op_names(space)
    families = _families(macros)
    edits = itertools.chain(_edits(pruned, ops), _direct_edits(pruned, ops, families))
    return _with_deferred(pruned, space, macros, _children(pruned, edits, space))


def macro_neighbourhood(graph: LayerGraph, space: str,
                        macros: tuple[str, ...]) -> list[LayerGraph]:
    """The layers of `neighbourhood` that one edit of the `macros` families makes (some
    may also be single edits), in generation order, deferred families' layers last."""
    return _with_deferred(graph.pruned(), space, macros,
                          direct_neighbourhood(graph, space, macros))


def direct_neighbourhood(graph: LayerGraph, space: str,
                         macros: tuple[str, ...]) -> list[LayerGraph]:
    """The layers one edit of the direct (not deferred) `macros` families makes from
    `graph`'s live part, one per structure, in generation order."""
    pruned = graph.pruned()
    return _children(pruned, _direct_edits(pruned, op_names(space), _families(macros)), space)


def single_neighbourhood(graph: LayerGraph, space: str,
                         excluded: Iterable[str] = ()) -> list[LayerGraph]:
    """The layers one single edit makes from `graph`'s live part, one per structure,
    those whose structural hash is in `excluded` left out, in generation order."""
    pruned = graph.pruned()
    return _children(pruned, _edits(pruned, op_names(space)), space, excluded)


def _with_deferred(pruned: LayerGraph, space: str, macros: tuple[str, ...],
                   found: list[LayerGraph]) -> list[LayerGraph]:
    """`found`, then the layers of each deferred family of `macros` not already listed."""
    for family in _deferred(macros):
        found = found + deferred_neighbourhood(pruned, space, macros, family,
                                               [child.structural_hash() for child in found])
    return found


def deferred_neighbourhood(graph: LayerGraph, space: str, macros: tuple[str, ...], family: str,
                           excluded: Iterable[str] = ()) -> list[LayerGraph]:
    """With the deferred `family` (HOIST or FREE) in `macros`, the layers its edits make
    whose structural hash is not in `excluded` (the layer's other neighbours), in
    generation order; else none."""
    if family not in macros:
        return []
    pruned = graph.pruned()
    edits = DEFERRED_EDITS[family](pruned, op_names(space), _families(macros))
    return _children(pruned, edits, space, excluded)


def _children(pruned: LayerGraph, edits: Iterator[list[Node]], space: str,
              excluded: Iterable[str] = ()) -> list[LayerGraph]:
    """The valid layers of `space` the node lists make, one per structure, not `pruned`
    nor `excluded`."""
    seen = {pruned.structural_hash(), *excluded}
    found = []
    for nodes in edits:
        try:
            child = LayerGraph(nodes)
        except GraphError:
            continue
        structural_hash = child.structural_hash()
        if structural_hash in seen or not is_valid(child, space):
            continue
        seen.add(structural_hash)
        found.append(child)
    return found


class LocalScan:
    """Proposes unseen single edits of given layers, layer by layer, first one first.

    `next(layers, seen)` returns (the index in `layers` of the layer edited, the child) or
    None when every neighbour of every layer is in `seen`. A cursor per layer only moves
    past neighbours in `seen`, which only grows, so the answer is a function of `layers`
    and `seen`, whatever was asked before. `sweep(layer, seen)` does the same over one
    layer's macro edits only (the strategy's sweep: all of them, best improvement),
    deferred families' layers left out. With `deferred_apart`, `next` walks no deferred
    families' layers either: `deferred(layer, seen)` walks them, so that the strategy
    can order them after every scanned layer's own edits (`--scan-deferred last`). With
    `macros_first` (`--scan-order macros-first`) a layer's own neighbours are walked as
    its direct macro edits, then its single edits, each part in its own fixed order.
    """

    def __init__(self, space: str, macros: tuple[str, ...] = (),
                 deferred_apart: bool = False, macros_first: bool = False) -> None:
        self._space = space
        self._macros = macros
        self._deferred_apart = deferred_apart
        self._macros_first = macros_first
        self._walks: dict[tuple[str, str], _Walk] = {}
        # (layer, part) whose every neighbour is in `seen`: since `seen` only grows,
        # they stay so, and a deep list of layers (or a finished sweep, asked again)
        # costs no rebuilt neighbourhood.
        self._exhausted: set[tuple[str, str]] = set()

    def next(self, layers: list[LayerGraph], seen: Container[str]) -> tuple[int, LayerGraph] | None:
        part = _OWN if self._deferred_apart else _ALL
        for rank, layer in enumerate(layers):
            child = self._unseen(layer, layer.structural_hash(), part, seen)
            if child is not None:
                return rank, child
        return None

    def sweep(self, layer: LayerGraph, seen: Container[str]) -> LayerGraph | None:
        """An unseen macro edit of `layer`, or None when all of them are in `seen`."""
        return self._unseen(layer, layer.structural_hash(), _MACROS, seen)

    def deferred(self, layer: LayerGraph, seen: Container[str]) -> LayerGraph | None:
        """An unseen layer of `layer`'s deferred families (those not among its own
        neighbours), or None when all of them are in `seen`."""
        return self._unseen(layer, layer.structural_hash(), _DEFERRED, seen)

    def _unseen(self, layer: LayerGraph, key: str, part: str,
                seen: Container[str]) -> LayerGraph | None:
        walk_key = (key, part)
        if walk_key in self._exhausted:
            return None
        walk = self._walks.get(walk_key)
        if walk is None:
            if len(self._walks) >= CACHED_NEIGHBOURHOODS:
                del self._walks[next(iter(self._walks))]
            walk = self._walks[walk_key] = self._walk(layer, key, part)
        while True:
            while walk.cursor < len(walk.neighbours) and walk.neighbours[walk.cursor][0] in seen:
                walk.cursor += 1
            if walk.cursor < len(walk.neighbours):
                return walk.neighbours[walk.cursor][1]
            if not walk.pending:
                break
            # The layer's neighbours so far are all stored: the next deferred family's
            # layers come next, built only now (most layers never get here), in their own
            # shuffled order.
            family, walk.pending = walk.pending[0], walk.pending[1:]
            later = deferred_neighbourhood(layer, self._space, self._macros, family,
                                           [*walk.excluded, *(h for h, _ in walk.neighbours)])
            walk.neighbours.extend(_shuffled(later, key + family))
        del self._walks[walk_key]
        self._exhausted.add(walk_key)
        return None

    def _walk(self, layer: LayerGraph, key: str, part: str) -> _Walk:
        families = _families(self._macros)
        if part == _DEFERRED:
            # Only the deferred layers, each family's built when the walk reaches it; the
            # layer's own neighbours are left out as they are when walked together.
            own = [child.structural_hash() for child in neighbourhood(layer, self._space, families)]
            return _Walk([], _deferred(self._macros), own)
        pending = _deferred(self._macros) if part == _ALL else ()
        if part == _MACROS:
            # A sweep (macros only) walks no deferred layers: it proposes all of a deep
            # layer's macro edits at once, and a thousand hoisted ones more per layer kept
            # it from the layers below (docs/RESULTS.md, "Hoisted edits").
            return _Walk(_shuffled(macro_neighbourhood(layer, self._space, families), key), ())
        if self._macros_first:
            # The direct macro edits first, then the single edits: per edit tried, the
            # gate improved a stalled BN-Swish layer 7.7 times as often as a single edit,
            # the macro families about as often to 3 times as often on other targets
            # (docs/RESULTS.md, "Macro edits first").
            macros = direct_neighbourhood(layer, self._space, families)
            singles = single_neighbourhood(layer, self._space,
                                           [child.structural_hash() for child in macros])
            return _Walk([*_shuffled(macros, key), *_shuffled(singles, key + _SINGLE)], pending)
        return _Walk(_shuffled(neighbourhood(layer, self._space, families), key), pending)


# The parts of a layer's neighbourhood a walk covers: its own neighbours then its deferred
# families' layers (`next`), its macro edits only (`sweep`), its own neighbours only
# (`next` with `deferred_apart`), its deferred families' layers only (`deferred`).
_ALL, _MACROS, _OWN, _DEFERRED = "all", "macros", "own", "deferred"
# Seeds the single edits' order apart from the macro edits' when they are walked after them.
_SINGLE = "single"


def _shuffled(children: list[LayerGraph], key: str) -> list[tuple[str, LayerGraph]]:
    """`children` with their structural hashes in a fixed order seeded by `key`."""
    neighbours = [(child.structural_hash(), child) for child in children]
    random.Random(key).shuffle(neighbours)
    return neighbours


class _Walk:
    """A scanned layer's neighbours (hash, layer) in walk order, how far the walk is, the
    deferred families whose layers are still to be added at the end, in order, and the
    hashes those must leave out besides the walk's own (a deferred-only walk's: the
    layer's own neighbours)."""

    def __init__(self, neighbours: list[tuple[str, LayerGraph]], pending: tuple[str, ...],
                 excluded: tuple[str, ...] | list[str] = ()) -> None:
        self.neighbours = neighbours
        self.cursor = 0
        self.pending = pending
        self.excluded = excluded
