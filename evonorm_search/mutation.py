"""Random layers and mutation, exactly as PAPER.md section 3, in the B or S space.

A random layer draws its intermediate nodes one after another, each with a uniformly
drawn primitive of the space whose inputs are drawn uniformly from the nodes before it.
The paper's mutation ("node") picks one intermediate node uniformly, gives it a uniformly
drawn primitive and redraws its inputs uniformly from the nodes before it; its successors
are untouched. Further operators (ours, off by default; see `MUTATIONS`) change only the
op or only one input of a node, or splice a node into an edge or delete one, so that a
layer can grow or shrink.
Draws that the graph validator refuses (e.g. an output that does not depend on the
input `x`) are thrown away and drawn again. All randomness comes
from the `random.Random` passed in, so a seeded generator reproduces the same layers.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from evonorm_search.errors import GraphError
from evonorm_search.graph import INITIAL_NODES, MAX_INTERMEDIATE, LayerGraph, Node
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


def _shifted(node: Node, at: int, by: int) -> Node:
    return Node(node.op, tuple(i + by if i >= at else i for i in node.inputs))


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
    shifted = [_shifted(n, consumer, 1) for n in nodes[consumer - first:]]
    rewired = list(shifted[0].inputs)
    rewired[slot] = consumer
    shifted[0] = Node(shifted[0].op, tuple(rewired))
    return LayerGraph([*nodes[: consumer - first], Node(op, inputs), *shifted])


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
        kept.append(_shifted(node, victim + 1, -1))
    return LayerGraph(kept)


# Mutation operators by name. "node" is the paper's; the others are ours (docs/method.md).
MUTATIONS: dict[str, Callable[[LayerGraph, random.Random, tuple[str, ...]], LayerGraph]] = {
    "node": _replace_node,
    "op": _change_op,
    "input": _rewire_input,
    "insert": _insert_node,
    "delete": _delete_node,
}
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
    the controller's structural-hash filter skips such children.
    """
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
        operator = MUTATIONS[operators[0] if len(operators) == 1 else rng.choice(operators)]
        try:
            child = operator(graph, rng, ops)
        except GraphError:
            continue
        if is_valid(child, space):
            return child
    raise RuntimeError(f"no valid mutation in {_MAX_DRAWS} draws of {graph.formula()}")
