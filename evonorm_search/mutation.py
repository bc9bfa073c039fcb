"""Random layers and mutation, exactly as PAPER.md section 3, in the B or S space.

A random layer draws its intermediate nodes one after another, each with a uniformly
drawn primitive of the space whose inputs are drawn uniformly from the nodes before it.
A mutation picks one intermediate node uniformly, gives it a uniformly drawn primitive
and redraws its inputs uniformly from the nodes before it; its successors are untouched.
Draws that the graph validator refuses (e.g. an output that does not depend on the
input `x`) are thrown away and drawn again. All randomness comes
from the `random.Random` passed in, so a seeded generator reproduces the same layers.
"""

from __future__ import annotations

import random
from typing import Literal

from evonorm_search.errors import GraphError
from evonorm_search.graph import INITIAL_NODES, MAX_INTERMEDIATE, LayerGraph, Node
from primitives import get_op, op_names

Space = Literal["B", "S"]

# A valid draw always exists (any op fed with `x`), so hitting this cap means a bug.
_MAX_DRAWS = 10_000


def is_valid(graph: LayerGraph, space: Space) -> bool:
    """Whether a layer the validator accepted (so its output depends on `x`) belongs to
    `space`: in S, no node (live or dead, so no later mutation revives one) reads batch
    statistics."""
    return space == "B" or not any(get_op(node.op).reads_batch_stats for node in graph.nodes)


def _check_space(space: str) -> None:
    if space not in ("B", "S"):
        raise ValueError(f"unknown search space {space!r}: use 'B' or 'S'")


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


def mutate(graph: LayerGraph, rng: random.Random, space: Space) -> LayerGraph:
    """One mutated child of `graph` (which is left unchanged).

    The child may equal its parent structurally (same op drawn, or a dead node changed):
    the controller's structural-hash filter skips such children.
    """
    _check_space(space)
    if space == "S" and any(get_op(node.op).reads_batch_stats for node in graph.nodes):
        raise GraphError(
            f"layer {graph.formula()} reads batch statistics, so it is not in the S space: "
            "search it in the B space"
        )
    ops = op_names(space)
    first = len(INITIAL_NODES)
    for _ in range(_MAX_DRAWS):
        index = first + rng.randrange(len(graph.nodes))
        try:
            child = graph.replace_node(index, _draw_node(rng, ops, index))
        except GraphError:
            continue
        if is_valid(child, space):
            return child
    raise RuntimeError(f"no valid mutation in {_MAX_DRAWS} draws of {graph.formula()}")
