"""LayerGraph: validation errors, pruning, structural hash, JSON form, formula, space.

Also defines the random-graph hypothesis strategies reused by the export tests.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evonorm_search.errors import GraphError
from evonorm_search.graph import (
    INITIAL_NODES, MAX_INTERMEDIATE, NUM_INITIAL, LayerGraph, Node,
)
from primitives import OPS

OP_NAMES = sorted(OPS)


@st.composite
def raw_nodes(draw: st.DrawFn, max_nodes: int = MAX_INTERMEDIATE) -> list[Node]:
    """Nodes drawn like a random layer: each op reads uniformly drawn earlier nodes."""
    count = draw(st.integers(1, max_nodes))
    nodes = []
    for k in range(count):
        op = draw(st.sampled_from(OP_NAMES))
        inputs = tuple(
            draw(st.integers(0, NUM_INITIAL + k - 1)) for _ in range(OPS[op].arity)
        )
        nodes.append(Node(op, inputs))
    return nodes


def _depends_on_x(nodes: list[Node]) -> bool:
    live = {NUM_INITIAL + len(nodes) - 1}
    for index in range(NUM_INITIAL + len(nodes) - 1, NUM_INITIAL - 1, -1):
        if index in live:
            live.update(nodes[index - NUM_INITIAL].inputs)
    return 0 in live


def graphs(max_nodes: int = MAX_INTERMEDIATE) -> st.SearchStrategy[LayerGraph]:
    """Random valid layer graphs (the output depends on x)."""
    return raw_nodes(max_nodes).filter(_depends_on_x).map(LayerGraph)


@st.composite
def renumbered(draw: st.DrawFn, graph: LayerGraph) -> LayerGraph:
    """The same layer with intermediate nodes in another topological order and the
    arguments of commutative ops randomly swapped; the output stays last."""
    remaining = list(range(NUM_INITIAL, graph.output))
    placed: dict[int, int] = {i: i for i in range(NUM_INITIAL)}
    order: list[int] = []
    while remaining:
        ready = [i for i in remaining if all(j in placed for j in graph.node(i).inputs)]
        chosen = draw(st.sampled_from(ready))
        remaining.remove(chosen)
        placed[chosen] = NUM_INITIAL + len(order)
        order.append(chosen)
    placed[graph.output] = graph.output
    order.append(graph.output)
    nodes = []
    for old in order:
        node = graph.node(old)
        inputs = tuple(placed[j] for j in node.inputs)
        if OPS[node.op].commutative and draw(st.booleans()):
            inputs = inputs[::-1]
        nodes.append(Node(node.op, inputs))
    return LayerGraph(nodes)


S0 = [Node("mul", (3, 0)), Node("sigmoid", (4,)), Node("mul", (0, 5)),
      Node("std_group", (0,)), Node("div", (6, 7))]


@settings(max_examples=200, deadline=None)
@given(graphs())
def test_random_valid_graphs_validate_and_round_trip_json(graph: LayerGraph) -> None:
    again = LayerGraph.from_json(graph.to_json())
    assert again == graph
    assert again.structural_hash() == graph.structural_hash()
    assert LayerGraph.from_dict(json.loads(json.dumps(graph.to_dict()))) == graph
    assert 0 in graph.live_nodes() and graph.output in graph.live_nodes()
    assert isinstance(graph.formula(), str) and "x" in graph.formula()


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_hash_ignores_numbering_commutative_order_and_dead_nodes(data: st.DataObject) -> None:
    graph = data.draw(graphs())
    other = data.draw(renumbered(graph))
    assert other.structural_hash() == graph.structural_hash()
    assert other.formula().count("x") == graph.formula().count("x")
    pruned = graph.pruned()
    assert pruned.structural_hash() == graph.structural_hash()
    assert len(pruned.nodes) == len(graph.live_nodes()) - NUM_INITIAL + sum(
        1 for i in range(NUM_INITIAL) if i not in graph.live_nodes()
    )
    assert pruned.space == graph.space


def test_hash_depends_on_div_argument_order_and_on_ops() -> None:
    a = LayerGraph([Node("std_layer", (0,)), Node("div", (0, 4))])
    b = LayerGraph([Node("std_layer", (0,)), Node("div", (4, 0))])
    c = LayerGraph([Node("std_layer", (0,)), Node("mul", (0, 4))])
    d = LayerGraph([Node("std_layer", (0,)), Node("mul", (4, 0))])
    assert a.structural_hash() != b.structural_hash()
    assert c.structural_hash() == d.structural_hash()
    assert len({a.structural_hash(), b.structural_hash(), c.structural_hash()}) == 3
    assert len(a.structural_hash()) == 64


def test_dead_nodes_are_kept_but_pruned_on_request() -> None:
    g = LayerGraph([Node("exp", (2,)), Node("tanh", (0,)), Node("neg", (5,))])
    assert len(g.nodes) == 3 and g.output == 6
    assert g.live_nodes() == frozenset({0, 5, 6})
    assert g.pruned().nodes == (Node("tanh", (0,)), Node("neg", (4,)))
    assert g.structural_hash() == g.pruned().structural_hash()
    # size counts the live ops only: not the dead exp, nor the inputs x, zero, v0, v1
    assert g.size == 2
    uses_every_input = LayerGraph([Node("add", (2, 3)), Node("mul", (0, 4)), Node("add", (5, 1))])
    assert uses_every_input.size == 3
    # a dead batch statistic does not make the layer a B-space layer
    assert LayerGraph([Node("std_batch", (0,)), Node("tanh", (0,))]).space == "S"
    assert LayerGraph([Node("std_batch", (0,)), Node("div", (0, 4))]).space == "B"


def test_formula_is_readable() -> None:
    assert LayerGraph(S0).formula() == "x * sigmoid(v1 * x) / std_group(x)"
    sub = LayerGraph([Node("rms_instance", (0,)), Node("neg", (0,)), Node("add", (4, 5))])
    assert sub.formula() == "rms_instance(x) - x"
    nested = LayerGraph([Node("add", (0, 3)), Node("add", (0, 2)), Node("div", (4, 5))])
    assert nested.formula() == "(x + v1) / (x + v0)"
    assert LayerGraph([Node("max", (0, 1))]).formula() == "max(x, 0)"
    assert LayerGraph([Node("add", (0, 2)), Node("neg", (4,))]).formula() == "-(x + v0)"


def test_immutable_and_replace_node_validates() -> None:
    g = LayerGraph(S0)
    with pytest.raises(AttributeError):
        g.foo = 1  # type: ignore[attr-defined]
    h = g.replace_node(7, Node("rms_group", (0,)))
    assert h.formula() == "x * sigmoid(v1 * x) / rms_group(x)" and g.nodes == tuple(S0)
    with pytest.raises(GraphError, match=r"cycle \(6 -> 4 -> 5 -> 6\)"):
        g.replace_node(4, Node("neg", (6,)))
    with pytest.raises(GraphError, match="not an intermediate node"):
        g.replace_node(2, Node("neg", (0,)))


@pytest.mark.parametrize(
    ("nodes", "message"),
    [
        ([], "at least one"),
        ([Node("neg", (0,))] * (MAX_INTERMEDIATE + 1), "too many nodes: 11"),
        ([Node("mull", (0, 0))], "unknown op 'mull'"),
        ([Node("add", (0,))], r"node 4 \(add\) has 1 inputs; add takes exactly 2"),
        ([Node("neg", (0, 1))], "neg takes exactly 1"),
        ([Node("neg", (4,))], r"cycle \(4 -> 4\)"),
        ([Node("add", (0, 5)), Node("neg", (4,))], "cycle"),
        ([Node("add", (0, 5)), Node("neg", (0,))], "node 4 reads node 5, which is not earlier"),
        ([Node("neg", (9,))], "reads node 9, which does not exist"),
        ([Node("neg", (-1,))], "does not exist"),
        ([Node("exp", (3,))], "does not depend on x"),
        ([("neg", "0")], "inputs must be a list"),
        ([("neg", (True,))], "not an integer"),
        ([(3, (0,))], "op must be a string"),
        (["neg"], "must be \\(op, inputs\\)"),
    ],
)
def test_invalid_graphs_get_precise_errors(nodes: list, message: str) -> None:
    with pytest.raises(GraphError, match=message):
        LayerGraph(nodes)


GOOD = {"format": "evonorm-layer-graph", "version": 1, "nodes": [{"op": "tanh", "inputs": [0]}]}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        (json.dumps({**GOOD, "extra": 1}), r"unknown keys \['extra'\]"),
        (json.dumps({"format": GOOD["format"], "nodes": []}), r"missing keys \['version'\]"),
        (json.dumps({**GOOD, "format": "other"}), "unknown graph format"),
        (json.dumps({**GOOD, "version": 2}), "newer.*upgrade"),
        (json.dumps({**GOOD, "version": "1"}), "must be an integer"),
        (json.dumps({**GOOD, "nodes": {"op": "x"}}), "must be a list"),
        (json.dumps({**GOOD, "nodes": ["tanh"]}), "must be an object"),
        (json.dumps({**GOOD, "nodes": [{"op": "tanh", "inputs": [0], "x": 1}]}), "unknown keys"),
        (json.dumps({**GOOD, "nodes": [{"op": "tanh", "inputs": 0}]}), "list of node indices"),
        (json.dumps({**GOOD, "nodes": [{"op": "tanh", "inputs": [0.5]}]}), "not an integer"),
        (json.dumps({**GOOD, "nodes": [{"op": "__import__", "inputs": [0]}]}), "unknown op"),
        (json.dumps({**GOOD, "nodes": [{"op": "neg", "inputs": [4]}]}), "cycle"),
    ],
)
def test_malformed_json_gets_graph_error(text: str, message: str) -> None:
    with pytest.raises(GraphError, match=message):
        LayerGraph.from_json(text)


def test_json_form_is_versioned() -> None:
    data = json.loads(LayerGraph(S0).to_json())
    assert data["format"] == "evonorm-layer-graph" and data["version"] == 1
    assert data["nodes"][0] == {"op": "mul", "inputs": [3, 0]}
    assert LayerGraph.from_json(json.dumps(GOOD)).formula() == "tanh(x)"
    assert INITIAL_NODES == ("x", "zero", "v0", "v1")


def test_graphs_pickle_and_compare_by_value() -> None:
    import pickle

    g = LayerGraph(S0)
    assert pickle.loads(pickle.dumps(g)) == g
    assert hash(LayerGraph(S0)) == hash(g)
    assert LayerGraph(S0) != LayerGraph(S0[:4] + [Node("div", (7, 6))])
