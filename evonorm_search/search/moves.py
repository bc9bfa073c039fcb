"""Random layers and moves (mutation operators), each a small function over `LayerGraph`.

A random layer draws its intermediate nodes one after another, each with a uniformly
drawn primitive of the space whose inputs are drawn uniformly from the nodes before it.
The paper's mutation ("node", PAPER.md section 3) picks one intermediate node uniformly,
gives it a uniformly drawn primitive and redraws its inputs uniformly from the nodes
before it; its successors are untouched. Further operators (ours, off by default; see
`MUTATIONS` and docs/method.md) change only the op or only one input of a node, splice a
node into an edge or delete one, put a new op on top of the output (root-wrap), swap the
operands of a non-commutative op, replace a node by a small random chain, graft a
donor layer's subexpression into the parent (recombination), or normalize a node by a
statistic (centre it, standardize it or divide it by its std or rms: the 2-5 coordinated
nodes every BatchNorm/GroupNorm/LayerNorm-based layer is built of, which no single-node
edit adds; `blocks.normalized_nodes`).
Draws that the graph validator refuses (e.g. an output that does not depend on the
input `x`, or more than `MAX_INTERMEDIATE` nodes) are thrown away and drawn again. All
randomness comes from the `random.Random` passed in, so a seeded generator reproduces
the same layers. Ops and spaces come from `primitives`; the normalization's blocks
(`evonorm_search.search.blocks`) are the only code that names ops.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from evonorm_search.errors import GraphError
from evonorm_search.graph import INITIAL_NODES, MAX_INTERMEDIATE, LayerGraph, Node
from evonorm_search.search.blocks import (
    NORMALIZATIONS, normalization_axes, normalization_scopes, normalization_size,
    normalization_sources, normalized_nodes, shifted,
)
from primitives import SPACES, get_op, get_space, op_names

Space = str  # a name of `primitives.SPACES`

# A valid draw always exists (any op fed with `x`), so hitting this cap means a bug.
_MAX_DRAWS = 10_000


def is_valid(graph: LayerGraph, space: Space) -> bool:
    """Whether a layer the validator accepted (so its output depends on `x`) belongs to
    `space`: every node (live or dead, so no later mutation revives one outside it) is an
    op of the space (e.g. in S, none reads batch statistics)."""
    allowed = get_space(space)
    return all(allowed.allows(get_op(node.op)) for node in graph.nodes)


def in_space(graph: LayerGraph, space: Space) -> bool:
    """Whether every live op of `graph` belongs to `space` (what a known layer or a planted
    target needs to be searched there; dead nodes do not matter for its function)."""
    allowed = get_space(space)
    return all(allowed.allows(get_op(graph.node(i).op))
               for i in graph.live_nodes() if i >= len(INITIAL_NODES))


def _check_space(space: str) -> None:
    get_space(space)


def _draw_node(rng: random.Random, ops: tuple[str, ...], index: int) -> Node:
    """A node at absolute position `index`: uniform op, inputs uniform over earlier nodes."""
    op = rng.choice(ops)
    return Node(op, tuple(rng.randrange(index) for _ in range(get_op(op).arity)))


def random_graph(rng: random.Random, space: Space, num_nodes: int | None = None) -> LayerGraph:
    """A random valid layer with `num_nodes` intermediate nodes.

    Our default (the paper gives none) is the maximum, 10 nodes: mutation never changes
    the node count, and dead nodes are material that later mutations can reconnect.
    """
    _check_space(space)
    count = MAX_INTERMEDIATE if num_nodes is None else num_nodes
    if not 1 <= count <= MAX_INTERMEDIATE:
        raise ValueError(f"num_nodes must be in 1..{MAX_INTERMEDIATE}, got {count}")
    ops = op_names(space)
    first = len(INITIAL_NODES)
    for _ in range(_MAX_DRAWS):
        nodes = [_draw_node(rng, ops, first + i) for i in range(count)]
        try:
            graph = LayerGraph(nodes)
        except GraphError:
            continue
        if is_valid(graph, space):
            return graph
    raise RuntimeError(f"no valid random layer in {_MAX_DRAWS} draws (a bug in the op table?)")


def _replace_node(graph: LayerGraph, rng: random.Random, ops: tuple[str, ...]) -> LayerGraph:
    """The paper's mutation: one node, uniformly, gets a new op and new inputs."""
    index = len(INITIAL_NODES) + rng.randrange(len(graph.nodes))
    return graph.replace_node(index, _draw_node(rng, ops, index))


def _change_op(graph: LayerGraph, rng: random.Random, ops: tuple[str, ...]) -> LayerGraph:
    """One node gets a new op and keeps its inputs (an added second input is drawn)."""
    index = len(INITIAL_NODES) + rng.randrange(len(graph.nodes))
    op = rng.choice(ops)
    inputs = list(graph.node(index).inputs)
    while len(inputs) < get_op(op).arity:
        inputs.append(rng.randrange(index))
    return graph.replace_node(index, Node(op, tuple(inputs[: get_op(op).arity])))


def _rewire_input(graph: LayerGraph, rng: random.Random, ops: tuple[str, ...]) -> LayerGraph:
    """One input of one node is redrawn uniformly from the nodes before it."""
    index = len(INITIAL_NODES) + rng.randrange(len(graph.nodes))
    node = graph.node(index)
    inputs = list(node.inputs)
    inputs[rng.randrange(len(inputs))] = rng.randrange(index)
    return graph.replace_node(index, Node(node.op, tuple(inputs)))


def _insert_node(graph: LayerGraph, rng: random.Random, ops: tuple[str, ...]) -> LayerGraph:
    """A new node spliced into one edge: consumer c read s; now a new node reads s (and,
    for a binary op, a uniformly drawn earlier node) and c reads the new node."""
    if len(graph.nodes) >= MAX_INTERMEDIATE:
        raise GraphError("no room for another node")
    first = len(INITIAL_NODES)
    consumer = first + rng.randrange(len(graph.nodes))
    slot = rng.randrange(len(graph.node(consumer).inputs))
    source = graph.node(consumer).inputs[slot]
    op = rng.choice(ops)
    extra = tuple(rng.randrange(consumer) for _ in range(get_op(op).arity - 1))
    inputs = (source, *extra)
    if get_op(op).arity == 2 and rng.random() < 0.5:
        inputs = inputs[::-1]
    nodes = list(graph.nodes)
    moved = [shifted(n, consumer, 1) for n in nodes[consumer - first:]]
    rewired = list(moved[0].inputs)
    rewired[slot] = consumer
    moved[0] = Node(moved[0].op, tuple(rewired))
    return LayerGraph([*nodes[: consumer - first], Node(op, inputs), *moved])


def _delete_node(graph: LayerGraph, rng: random.Random, ops: tuple[str, ...]) -> LayerGraph:
    """A node other than the output is removed; what read it reads one of its inputs."""
    if len(graph.nodes) < 2:
        raise GraphError("a layer needs at least one node")
    first = len(INITIAL_NODES)
    victim = first + rng.randrange(len(graph.nodes) - 1)
    heir = rng.choice(graph.node(victim).inputs)
    kept = []
    for index in range(first, graph.num_nodes):
        if index == victim:
            continue
        node = graph.node(index)
        node = Node(node.op, tuple(heir if i == victim else i for i in node.inputs))
        kept.append(shifted(node, victim + 1, -1))
    return LayerGraph(kept)


def _with_room(graph: LayerGraph, extra: int) -> LayerGraph:
    """`graph`, or its pruned form when `extra` more nodes do not fit otherwise (dead
    nodes are given up to make room); GraphError when even that is too big."""
    if len(graph.nodes) + extra <= MAX_INTERMEDIATE:
        return graph
    pruned = graph.pruned()
    if len(pruned.nodes) + extra > MAX_INTERMEDIATE:
        raise GraphError("no room for more nodes")
    return pruned


def _root_wrap(graph: LayerGraph, rng: random.Random, ops: tuple[str, ...]) -> LayerGraph:
    """A new output node: a drawn op applied to the old output. A binary op's other
    operand (on a random side) is a uniformly drawn earlier node or, half of the time, a
    new node applying a drawn unary op to one: so EvoNorm-S0's final division by
    `std_group(x)` is one move."""
    op = rng.choice(ops)
    if get_op(op).arity == 1:
        graph = _with_room(graph, 1)
        return LayerGraph([*graph.nodes, Node(op, (graph.output,))])
    fresh_operand = rng.random() < 0.5
    graph = _with_room(graph, 2 if fresh_operand else 1)
    output, extra = graph.output, []
    operand = rng.randrange(output + 1)
    if fresh_operand:
        unary = [name for name in ops if get_op(name).arity == 1]
        extra = [Node(rng.choice(unary), (operand,))]
        operand = output + 1
    inputs = (output, operand) if rng.random() < 0.5 else (operand, output)
    return LayerGraph([*graph.nodes, *extra, Node(op, inputs)])


def _swap_operands(graph: LayerGraph, rng: random.Random, ops: tuple[str, ...]) -> LayerGraph:
    """The two operands of a live non-commutative binary node change places (a / b
    becomes b / a)."""
    swappable = [i for i in sorted(graph.live_nodes()) if i >= len(INITIAL_NODES)
                 and get_op(graph.node(i).op).arity == 2
                 and not get_op(graph.node(i).op).commutative
                 and len(set(graph.node(i).inputs)) == 2]
    if not swappable:
        raise GraphError("no live non-commutative binary node to swap")
    index = rng.choice(swappable)
    node = graph.node(index)
    return graph.replace_node(index, Node(node.op, node.inputs[::-1]))


def _replace_subexpression(graph: LayerGraph, rng: random.Random,
                           ops: tuple[str, ...]) -> LayerGraph:
    """A live node is replaced by a random chain of 1-3 new nodes: each new node reads
    the one before it (the first reads earlier nodes) and, if binary, a uniformly drawn
    earlier node; the last takes the old node's place (e.g. max(x, 0) -> x * sigmoid(x)
    in one move)."""
    first = len(INITIAL_NODES)
    live = [i for i in sorted(graph.live_nodes()) if i >= first]
    index = rng.choice(live)
    length = rng.randint(1, 3)
    graph_nodes = list(graph.nodes)
    if len(graph_nodes) + length - 1 > MAX_INTERMEDIATE:
        raise GraphError("no room for the new nodes")
    chain: list[Node] = []
    for step in range(length):
        position = index + step  # absolute index of this new node
        op = rng.choice(ops)
        inputs = [rng.randrange(position) for _ in range(get_op(op).arity)]
        if step:
            inputs[0] = position - 1
            if len(inputs) == 2 and rng.random() < 0.5:
                inputs.reverse()
        chain.append(Node(op, tuple(inputs)))
    shift = length - 1
    moved = [shifted(node, index + 1, shift) for node in graph_nodes[index - first + 1:]]
    moved = [Node(n.op, tuple(index + shift if i == index else i for i in n.inputs))
             for n in moved]
    return LayerGraph([*graph_nodes[: index - first], *chain, *moved])


def _graft(graph: LayerGraph, rng: random.Random, ops: tuple[str, ...],
           donor: LayerGraph | None = None) -> LayerGraph:
    """Recombination: a live node of `donor` is copied with every node it depends on, in
    front of the parent's nodes, and one input of a live parent node is rewired to the
    copy (GP-GOMEA's "copy a donor's node group"). The strategy keeps the child only if
    it is not worse than its parent."""
    if donor is None:
        raise GraphError("graft needs a donor layer")
    first = len(INITIAL_NODES)
    root = rng.choice([i for i in sorted(donor.live_nodes()) if i >= first])
    needed = {root}
    for index in range(root, first - 1, -1):
        if index in needed:
            needed.update(j for j in donor.node(index).inputs if j >= first)
    copied = sorted(needed)
    graph = _with_room(graph, len(copied))
    new_index = {old: first + k for k, old in enumerate(copied)}
    block = [Node(donor.node(old).op,
                  tuple(new_index.get(j, j) for j in donor.node(old).inputs)) for old in copied]
    moved = [shifted(node, first, len(copied)) for node in graph.nodes]
    position = rng.choice([i for i in sorted(graph.live_nodes()) if i >= first]) - first
    node = moved[position]
    inputs = list(node.inputs)
    inputs[rng.randrange(len(inputs))] = new_index[root]
    moved[position] = Node(node.op, tuple(inputs))
    return LayerGraph([*block, *moved])


def _normalize(graph: LayerGraph, rng: random.Random, ops: tuple[str, ...]) -> LayerGraph:
    """A live node (or `x`) normalized by a drawn statistic (`NORMALIZATIONS`, over a drawn
    axis) for one of its reads, for all of them, or, for the output, on top of it."""
    axes = normalization_axes(ops)
    if not axes:
        raise GraphError("the space has no statistics to normalize with")
    kind = rng.choice(NORMALIZATIONS)
    graph = _with_room(graph, normalization_size(kind))
    source = rng.choice(normalization_sources(graph))
    scope = rng.choice(normalization_scopes(graph, source))
    return LayerGraph(normalized_nodes(graph, source, scope, kind, rng.choice(axes)))


# Moves by name. "node" is the paper's; the others are ours (docs/method.md). Each takes
# (parent, rng, the space's ops); a recombination (in `RECOMBINATIONS`) also a donor.
MUTATIONS: dict[str, Callable[..., LayerGraph]] = {
    "node": _replace_node,
    "op": _change_op,
    "input": _rewire_input,
    "insert": _insert_node,
    "delete": _delete_node,
    "wrap": _root_wrap,
    "swap": _swap_operands,
    "subgraph": _replace_subexpression,
    "graft": _graft,
    "normalize": _normalize,
}
RECOMBINATIONS = frozenset({"graft"})
PAPER_MUTATIONS: tuple[str, ...] = ("node",)


def check_mutations(names: tuple[str, ...]) -> None:
    """ValueError naming an unknown operator and the known ones."""
    unknown = [name for name in names if name not in MUTATIONS]
    if unknown or not names:
        raise ValueError(f"unknown or no mutation operators {unknown}: use a comma-separated "
                         f"subset of {', '.join(MUTATIONS)}")


def mutate(graph: LayerGraph, rng: random.Random, space: Space,
           operators: tuple[str, ...] = PAPER_MUTATIONS) -> LayerGraph:
    """One mutated child of `graph` (which is left unchanged), by an operator drawn
    uniformly from `operators` (names of `MUTATIONS`; default: the paper's).

    The child may equal its parent structurally (same op drawn, or a dead node changed):
    the controller skips such children (neutral skips).
    """
    return apply_move(graph, rng, space, operators)[1]


def apply_move(graph: LayerGraph, rng: random.Random, space: Space,
               operators: tuple[str, ...] = PAPER_MUTATIONS,
               weights: Sequence[float] | None = None,
               donor: LayerGraph | None = None) -> tuple[str, LayerGraph]:
    """`mutate`, also naming the operator that made the child. `weights` (one per
    operator) draws the operator in proportion to them instead of uniformly; `donor` is
    the second parent of a recombination (without one, recombinations are not drawn).
    A draw that the operator cannot apply (e.g. no room to insert) or that leaves the
    space is thrown away and both the operator and its change are drawn again."""
    _check_space(space)
    check_mutations(operators)
    if not is_valid(graph, space):
        outside = sorted({node.op for node in graph.nodes
                          if not get_space(space).allows(get_op(node.op))})
        raise GraphError(
            f"layer {graph.formula()} uses {', '.join(outside)}, which the {space} space "
            f"excludes ({get_space(space).doc}): search it in a space that has them "
            f"({', '.join(name for name in SPACES if is_valid(graph, name))})"
        )
    ops = op_names(space)
    for _ in range(_MAX_DRAWS):
        if weights is not None:
            name = rng.choices(operators, weights)[0]
        else:
            name = operators[0] if len(operators) == 1 else rng.choice(operators)
        try:
            if name in RECOMBINATIONS:
                child = MUTATIONS[name](graph, rng, ops, donor)
            else:
                child = MUTATIONS[name](graph, rng, ops)
        except GraphError:
            continue
        if is_valid(child, space):
            return name, child
    raise RuntimeError(f"no valid mutation in {_MAX_DRAWS} draws of {graph.formula()}")


# Pseudo-children at the overall success rate that every move's credit starts from, so a
# move with few children keeps a weight near its base weight.
CREDIT_PRIOR = 20.0


def adaptive_weights(operators: Sequence[str], outcomes: dict[str, tuple[int, int]],
                     strength: float) -> list[float]:
    """Move weights from credit (as SymbolicRegression.jl v2 adapts its mutation weights):
    `outcomes[move]` = (children, children that improved on their parent). A move's
    weight is (its success rate / the overall rate) ** `strength`, its rate smoothed by
    `CREDIT_PRIOR` pseudo-children at the overall rate; with the base weights uniform,
    `strength` 0.5 pulls a move halfway (in log space) from its credit back toward them."""
    children = sum(n for n, _ in outcomes.values())
    improved = sum(k for _, k in outcomes.values())
    overall = (improved + 1.0) / (children + 2.0)
    weights = []
    for name in operators:
        n, k = outcomes.get(name, (0, 0))
        rate = (k + CREDIT_PRIOR * overall) / (n + CREDIT_PRIOR)
        weights.append((rate / overall) ** strength)
    return weights
