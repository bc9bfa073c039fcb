"""Multi-node blocks and how one is spliced into a layer: the edits no single-node edit makes.

Each block is a few coordinated nodes that are worthless one at a time, so a search that
adds nodes one by one (and charges each a size penalty) rarely assembles them. Four
families, each built from what the space holds (statistics by their `mean_`/`std_`/`rms_`
prefixes over every axis that has all three; the arithmetic `neg`, `add`, `mul`, `div`,
`max`, and the gates `sigmoid` and `tanh`):

- **normalizations** (`NORMALIZATIONS`) of a node `a` over an axis S: centred
  `a - mean_S(a)`, standardized `(a - mean_S(a)) / std_S(a)`, or `a` divided by `std_S(a)`
  or `rms_S(a)`: what every BatchNorm-, GroupNorm- and LayerNorm-based layer is built of.
- **guards** (`guard_terms`): a scale statistic `d` (a `std_`/`rms_` node) becomes
  `max(d, e)` with `e` a second scale estimate of `x`: `s`, `s + x`, `s - x`, `s + v * x`
  or `s * (x + v)`, `s` any std or rms of `x` and `v` a learned parameter. The paper's
  batch-dependent EvoNorms divide by such a max (B0: `max(std_batch(x), v1 * x +
  std_instance(x))`), a batch statistic guarded by an instance one.
- **gates** (`GATES`): a node `a` becomes `g * u(g)`, `u` a sigmoid or tanh and `g` one of
  `a`, `v1 * a`, `v1 * a + v0`: the self-gated activations (Swish/SiLU, EvoNorm-S0's
  `x * sigmoid(v1 * x)`, the swish of an affine BN-Swish applies).
- **rectifiers** (`rectifier_block`): a node `a` becomes `max(a, v * a)`, `v` a learned
  parameter (v0 or v1): a leaky ReLU (PReLU) with a learned slope, the piecewise-linear
  counterpart of the gates (the plain ReLU `max(a, v0)` is one node: a single edit).

`with_block` splices a block in: after a given node, with chosen reads rewired to the
block's last node, or on top of the layer as its new output.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from evonorm_search.graph import INITIAL_NODES, LayerGraph, Node

Read = tuple[int, int]  # (consumer node index, input slot)
# The nodes of a block whose first node has the index given (their last is its value).
Block = Callable[[int], list[Node]]

FIRST = len(INITIAL_NODES)
X = INITIAL_NODES.index("x")
V0, V1 = INITIAL_NODES.index("v0"), INITIAL_NODES.index("v1")

# Normalizations of a node `s` over a statistic's axis (e.g. "group"), by the nodes they
# add: "centre" s - mean(s); "standardize" (s - mean(s)) / std(s); "std" and "rms" s
# divided by that statistic of s. The last new node is the normalized s.
NORMALIZATIONS: tuple[str, ...] = ("centre", "standardize", "std", "rms")
SCALE_STATISTICS: tuple[str, ...] = ("std", "rms")
GATE_OPS: tuple[str, ...] = ("sigmoid", "tanh")
# What a gate applies its op to: the node, the node scaled by v1, or scaled and shifted.
GATE_INPUTS: tuple[str, ...] = ("a", "v1 * a", "v1 * a + v0")


def normalization_axes(ops: tuple[str, ...]) -> tuple[str, ...]:
    """The axes over which `ops` hold all three statistics (mean, std, rms)."""
    return tuple(op[len("mean_"):] for op in ops if op.startswith("mean_")
                 and f"std_{op[len('mean_'):]}" in ops and f"rms_{op[len('mean_'):]}" in ops)


def normalization_size(kind: str) -> int:
    """How many nodes the normalization `kind` adds."""
    return len(normalization_block(kind, "layer", X)(FIRST))


def normalization_block(kind: str, axis: str, source: int) -> Block:
    """`source` normalized: `kind` (of `NORMALIZATIONS`) over `axis`."""
    def nodes(start: int) -> list[Node]:
        if kind in SCALE_STATISTICS:
            return [Node(f"{kind}_{axis}", (source,)), Node("div", (source, start))]
        centred = [Node(f"mean_{axis}", (source,)), Node("neg", (start,)),
                   Node("add", (source, start + 1))]
        if kind == "centre":
            return centred
        return [*centred, Node(f"std_{axis}", (source,)), Node("div", (start + 2, start + 3))]
    return nodes


def guard_terms(ops: tuple[str, ...]) -> list[Block]:
    """The second scale estimates of `x` a guard takes the max with (module docstring),
    for every std and rms over every axis of `ops`."""
    terms: list[Block] = []
    for axis in normalization_axes(ops):
        for statistic in SCALE_STATISTICS:
            scale = Node(f"{statistic}_{axis}", (X,))
            terms.append(lambda k, s=scale: [s])
            terms.append(lambda k, s=scale: [s, Node("add", (k, X))])
            terms.append(lambda k, s=scale: [s, Node("neg", (X,)), Node("add", (k, k + 1))])
            for v in (V0, V1):
                terms.append(lambda k, s=scale, v=v: [s, Node("mul", (v, X)),
                                                      Node("add", (k, k + 1))])
                terms.append(lambda k, s=scale, v=v: [s, Node("add", (X, v)),
                                                      Node("mul", (k, k + 1))])
    return terms


def guard_block(source: int, term: Block) -> Block:
    """`max(source, term)`: the scale statistic `source` guarded by a second estimate."""
    def nodes(start: int) -> list[Node]:
        second = term(start)
        return [*second, Node("max", (source, start + len(second) - 1))]
    return nodes


def gate_block(source: int, gate_input: str, gate: str) -> Block:
    """`g * gate(g)` with g the `gate_input` form of `source` (of `GATE_INPUTS`)."""
    def nodes(start: int) -> list[Node]:
        pre = {"a": [],
               "v1 * a": [Node("mul", (V1, source))],
               "v1 * a + v0": [Node("mul", (V1, source)), Node("add", (start, V0))]}[gate_input]
        g = start + len(pre) - 1 if pre else source
        return [*pre, Node(gate, (g,)), Node("mul", (g, start + len(pre)))]
    return nodes


def rectifier_block(source: int, parameter: int) -> Block:
    """`max(source, parameter * source)`: a leaky rectifier whose slope is `parameter`."""
    def nodes(start: int) -> list[Node]:
        return [Node("mul", (parameter, source)), Node("max", (source, start))]
    return nodes


def block_size(block: Block) -> int:
    """How many nodes `block` adds."""
    return len(block(FIRST))


def shifted(node: Node, at: int, by: int) -> Node:
    """`node` with its inputs from index `at` on moved by `by` (nodes were added or removed)."""
    return Node(node.op, tuple(i + by if i >= at else i for i in node.inputs))


def with_block(graph: LayerGraph, after: int, reads: Sequence[Read], block: Block) -> list[Node]:
    """The node list of `graph` with `block` spliced in: its nodes follow node `after`
    (the block may read it and anything before it) and the given reads (of intermediate
    nodes after it) read the block's last node instead; with no reads the block goes on
    top and its last node is the new output (the old one is then dead unless the block
    reads it)."""
    nodes = list(graph.nodes)
    if not reads:
        return [*nodes, *block(graph.num_nodes)]
    start = max(after + 1, FIRST)
    new = block(start)
    width = len(new)
    later = [shifted(node, start, width) for node in nodes[start - FIRST:]]
    for consumer, slot in reads:
        node = later[consumer - start]
        inputs = list(node.inputs)
        inputs[slot] = start + width - 1
        later[consumer - start] = Node(node.op, tuple(inputs))
    return [*nodes[: start - FIRST], *new, *later]


def normalized_nodes(graph: LayerGraph, source: int, reads: Sequence[Read], kind: str,
                     axis: str) -> list[Node]:
    """The node list of `graph` with `source` normalized (`kind` over `axis`) for the
    given reads of it, or, with none, on top as the new output."""
    return with_block(graph, source, reads, normalization_block(kind, axis, source))


def reads_of(graph: LayerGraph, source: int) -> list[Read]:
    """Every (consumer, slot) of a live node that reads `source`."""
    return [(index, slot) for index in sorted(graph.live_nodes()) if index >= FIRST
            for slot, read in enumerate(graph.node(index).inputs) if read == source]


def normalization_sources(graph: LayerGraph) -> list[int]:
    """The nodes a block can apply to: `x` and the live intermediate nodes."""
    return [i for i in sorted(graph.live_nodes()) if i == X or i >= FIRST]


def normalization_scopes(graph: LayerGraph, source: int) -> list[list[Read]]:
    """Which reads of `source` a block can rewire: each read alone, all of them (when
    there are several), and, for the output, none (the block on top)."""
    reads = reads_of(graph, source)
    scopes: list[list[Read]] = [[read] for read in reads]
    if len(reads) > 1:
        scopes.append(reads)
    if source == graph.output:
        scopes.append([])
    return scopes


def scale_statistic_nodes(graph: LayerGraph) -> list[int]:
    """The live `std_`/`rms_` nodes: what a guard applies to."""
    return [i for i in sorted(graph.live_nodes()) if i >= FIRST
            and graph.node(i).op.split("_", 1)[0] in SCALE_STATISTICS]
