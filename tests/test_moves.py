"""Random layers and mutation: validity, the space's ops, and reachability."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evonorm_search.errors import GraphError
from evonorm_search.graph import INITIAL_NODES, MAX_INTERMEDIATE, LayerGraph
from evonorm_search.known import KNOWN_LAYERS
from evonorm_search.search.moves import apply_move, is_valid, mutate, random_graph
from primitives import SPACES, get_op, op_names

FIRST = len(INITIAL_NODES)
spaces = st.sampled_from(sorted(SPACES))


def assert_valid(graph: LayerGraph, space: str) -> None:
    assert 1 <= len(graph.nodes) <= MAX_INTERMEDIATE
    assert 0 in graph.live_nodes()  # the output depends on x
    assert LayerGraph.from_json(graph.to_json()) == graph  # passes the validator
    allowed = set(op_names(space))  # type: ignore[arg-type]
    for position, node in enumerate(graph.nodes):
        assert node.op in allowed
        assert len(node.inputs) == get_op(node.op).arity
        assert all(0 <= i < FIRST + position for i in node.inputs)


@given(seed=st.integers(0, 2**32), space=spaces, num_nodes=st.integers(1, MAX_INTERMEDIATE))
@settings(max_examples=150, deadline=None)
def test_random_graphs_are_valid(seed: int, space: str, num_nodes: int) -> None:
    graph = random_graph(random.Random(seed), space, num_nodes)  # type: ignore[arg-type]
    assert len(graph.nodes) == num_nodes
    assert_valid(graph, space)


@given(seed=st.integers(0, 2**32), space=spaces, steps=st.integers(1, 20))
@settings(max_examples=100, deadline=None)
def test_mutation_keeps_validity_and_changes_one_node(seed: int, space: str, steps: int) -> None:
    rng = random.Random(seed)
    graph = random_graph(rng, space)  # type: ignore[arg-type]
    for _ in range(steps):
        child = mutate(graph, rng, space)  # type: ignore[arg-type]
        assert_valid(child, space)
        assert len(child.nodes) == len(graph.nodes)
        assert sum(a != b for a, b in zip(child.nodes, graph.nodes)) <= 1
        graph = child


@pytest.mark.parametrize("name", sorted(KNOWN_LAYERS))
def test_known_layers_mutate_within_their_space(name: str) -> None:
    layer = KNOWN_LAYERS[name]
    rng = random.Random(0)
    for _ in range(50):
        assert_valid(mutate(layer, rng, layer.space), layer.space)


def test_same_seed_same_layers() -> None:
    def walk(seed: int) -> list[LayerGraph]:
        rng = random.Random(seed)
        graphs = [random_graph(rng, "B")]
        for _ in range(10):
            graphs.append(mutate(graphs[-1], rng, "B"))
        return graphs

    assert walk(3) == walk(3)
    assert walk(3) != walk(4)


@pytest.mark.parametrize("space", ["B", "S"])
def test_every_op_and_input_position_is_reachable(space: str) -> None:
    """A random walk of mutations puts every op of the space, and every earlier node as
    an input, at every position."""
    rng = random.Random(11)
    graph = random_graph(rng, space)  # type: ignore[arg-type]
    ops_at: dict[int, set[str]] = {p: set() for p in range(MAX_INTERMEDIATE)}
    inputs_at: dict[int, set[int]] = {p: set() for p in range(MAX_INTERMEDIATE)}
    for _ in range(6000):
        graph = mutate(graph, rng, space)  # type: ignore[arg-type]
        for position, node in enumerate(graph.nodes):
            ops_at[position].add(node.op)
            inputs_at[position].update(node.inputs)
    for position in range(MAX_INTERMEDIATE):
        assert ops_at[position] == set(op_names(space)), position  # type: ignore[arg-type]
        assert inputs_at[position] == set(range(FIRST + position)), position


def test_s_space_never_reads_batch_statistics() -> None:
    rng = random.Random(5)
    graph = random_graph(rng, "S")
    for _ in range(300):
        graph = mutate(graph, rng, "S")
        assert not any(get_op(n.op).reads_batch_stats for n in graph.nodes)
    with pytest.raises(GraphError, match=r"S space excludes \(no batch statistics\): search it in a space that has them \(B, TB\)"):
        mutate(KNOWN_LAYERS["bn_relu"], rng, "S")
    assert not is_valid(KNOWN_LAYERS["bn_relu"], "S") and is_valid(KNOWN_LAYERS["bn_relu"], "B")


def test_layers_whose_output_ignores_x_are_invalid() -> None:
    with pytest.raises(GraphError, match="depend on x"):
        LayerGraph([("abs", (0,)), ("sigmoid", (3,))])  # output sigmoid(v1)
    # Mutating the only node that reads x must still give a child that reads x.
    rng = random.Random(0)
    single = LayerGraph([("abs", (0,))])
    for _ in range(100):
        assert 0 in mutate(single, rng, "B").live_nodes()


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="space"):
        random_graph(random.Random(0), "C")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="num_nodes"):
        random_graph(random.Random(0), "B", 11)
    with pytest.raises(ValueError, match="num_nodes"):
        random_graph(random.Random(0), "B", 0)


# ---- further operators (ours, off by default) -------------------------------------------

from evonorm_search.search.blocks import (  # noqa: E402
    normalization_axes, normalized_nodes, reads_of,
)
from evonorm_search.search.moves import MUTATIONS, check_mutations  # noqa: E402


@given(seed=st.integers(0, 2**32), space=spaces, operator=st.sampled_from(sorted(MUTATIONS)),
       steps=st.integers(1, 15))
@settings(max_examples=200, deadline=None)
def test_every_operator_keeps_layers_valid(seed: int, space: str, operator: str,
                                           steps: int) -> None:
    """Each move, applied again and again (with a random donor for a recombination),
    keeps layers valid, in the space and within the node limit."""
    rng = random.Random(seed)
    graph = random_graph(rng, space, rng.randint(1, MAX_INTERMEDIATE))  # type: ignore[arg-type]
    for _ in range(steps):
        donor = random_graph(rng, space, rng.randint(1, MAX_INTERMEDIATE))  # type: ignore[arg-type]
        name, graph = apply_move(graph, rng, space, (operator, "node"), donor=donor)  # type: ignore[arg-type]
        assert name in (operator, "node")
        assert_valid(graph, space)


def test_the_default_is_the_papers_operator_draw_for_draw() -> None:
    """A search stored before the operators existed proposes the same children."""
    ops = op_names("B")
    for seed in range(30):
        parent = random_graph(random.Random(seed), "B")
        rng, expected_rng = random.Random(seed), random.Random(seed)
        child = mutate(parent, rng, "B")
        while True:  # the paper's operator, written out
            index = FIRST + expected_rng.randrange(len(parent.nodes))
            op = expected_rng.choice(ops)
            inputs = tuple(expected_rng.randrange(index) for _ in range(get_op(op).arity))
            try:
                expected = parent.replace_node(index, (op, inputs))
            except GraphError:
                continue
            break
        assert child == expected


def test_operators_change_what_they_say() -> None:
    rng = random.Random(0)
    parent = KNOWN_LAYERS["evonorm_s0"]
    for _ in range(50):
        grown = mutate(parent, rng, "S", ("insert",))
        assert len(grown.nodes) == len(parent.nodes) + 1
        shrunk = mutate(parent, rng, "S", ("delete",))
        assert len(shrunk.nodes) == len(parent.nodes) - 1
        rewired = mutate(parent, rng, "S", ("input",))
        changed = [(a, b) for a, b in zip(parent.nodes, rewired.nodes) if a != b]
        assert len(changed) <= 1 and all(a.op == b.op for a, b in changed)
        if changed:
            (a, b), = changed
            assert sum(x != y for x, y in zip(a.inputs, b.inputs)) == 1
        new_op = mutate(parent, rng, "S", ("op",))
        changed = [(a, b) for a, b in zip(parent.nodes, new_op.nodes) if a != b]
        assert len(changed) <= 1
        for a, b in changed:
            assert b.inputs[: min(len(a.inputs), len(b.inputs))] == \
                a.inputs[: min(len(a.inputs), len(b.inputs))]


def test_insert_splices_into_an_edge_and_delete_hands_over_to_an_input() -> None:
    swish = LayerGraph([("sigmoid", (0,)), ("mul", (0, 4))])  # x * sigmoid(x)
    rng = random.Random(3)
    formulas = {mutate(swish, rng, "S", ("insert",)).formula() for _ in range(200)}
    assert "x * sigmoid(abs(x))" in formulas or "x * abs(sigmoid(x))" in formulas
    deleted = {mutate(swish, rng, "S", ("delete",)).formula() for _ in range(50)}
    assert deleted == {"x * x"}  # sigmoid removed: mul reads sigmoid's input x


def test_a_full_layer_cannot_grow_and_a_single_node_cannot_shrink() -> None:
    rng = random.Random(1)
    full = random_graph(rng, "S", MAX_INTERMEDIATE)
    single = LayerGraph([("sigmoid", (0,))])
    with pytest.raises(GraphError):
        MUTATIONS["insert"](full, rng, op_names("S"))
    with pytest.raises(GraphError):
        MUTATIONS["delete"](single, rng, op_names("S"))
    assert len(mutate(full, rng, "S", ("insert", "node")).nodes) == MAX_INTERMEDIATE


def test_unknown_operators_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown or no mutation operators"):
        check_mutations(("grow",))
    with pytest.raises(ValueError):
        mutate(KNOWN_LAYERS["bn_relu"], random.Random(0), "B", ())


def test_root_wrap_puts_a_new_op_on_top_of_the_output() -> None:
    relu = LayerGraph([("max", (0, 1))])  # max(x, 0)
    rng = random.Random(0)
    children = {apply_move(relu, rng, "S", ("wrap",))[1] for _ in range(3000)}
    assert all(c.nodes[:1] == relu.nodes and c.output in (relu.output + 1, relu.output + 2)
               and relu.output in c.node(c.output).inputs for c in children)
    # EvoNorm-S1's final division by a statistic of x, in one move:
    assert "max(x, 0) / std_group(x)" in {c.formula() for c in children}
    full = random_graph(rng, "S", MAX_INTERMEDIATE)
    wrapped = MUTATIONS["wrap"](full, rng, op_names("S"))  # dead nodes make room
    assert len(wrapped.nodes) <= MAX_INTERMEDIATE and wrapped.structural_hash() != full.structural_hash()


def test_swap_reverses_a_non_commutative_operand_pair() -> None:
    s0 = KNOWN_LAYERS["evonorm_s0"]
    swapped = MUTATIONS["swap"](s0, random.Random(0), op_names("S"))
    assert swapped.formula() == "std_group(x) / (x * sigmoid(v1 * x))"
    with pytest.raises(GraphError, match="no live non-commutative"):
        MUTATIONS["swap"](LayerGraph([("sigmoid", (0,)), ("mul", (0, 4))]), random.Random(0),
                          op_names("S"))


def test_subgraph_replaces_a_node_with_a_chain() -> None:
    """The ReLU of max(x, 0) / std_group(x) is replaced by chains of 1-3 new nodes, each
    reading the one before; the rest of the layer stays."""
    relu = LayerGraph([("max", (0, 1)), ("std_group", (0,)), ("div", (4, 5))])
    rng = random.Random(0)
    grown, formulas = set(), set()
    for _ in range(3000):
        _, child = apply_move(relu, rng, "S", ("subgraph",))
        assert_valid(child, "S")
        formulas.add(child.formula())
        extra = len(child.nodes) - len(relu.nodes)
        assert 0 <= extra <= 2
        tail = (("std_group", (0,)), ("div", (FIRST + extra, FIRST + extra + 1)))
        if extra and child.nodes[extra + 1:] == tail:  # the ReLU (node 4) was replaced
            chain = child.nodes[: extra + 1]
            assert all(FIRST + k - 1 in node.inputs for k, node in enumerate(chain) if k)
            grown.add(extra)
    assert "sigmoid(x) / std_group(x)" in formulas and grown == {1, 2}


def test_graft_copies_a_donor_subexpression_into_the_parent() -> None:
    parent = LayerGraph([("max", (0, 1)), ("std_group", (0,)), ("div", (4, 5))])
    donor = KNOWN_LAYERS["evonorm_s0"]  # x * sigmoid(v1 * x) / std_group(x)
    rng = random.Random(0)
    children = [MUTATIONS["graft"](parent, rng, op_names("S"), donor) for _ in range(300)]
    formulas = {child.formula() for child in children}
    assert "x * sigmoid(v1 * x) / std_group(x)" in formulas  # the donor's numerator grafted
    with pytest.raises(GraphError, match="donor"):
        MUTATIONS["graft"](parent, rng, op_names("S"))


X, V0 = 0, 2


def test_normalize_centres_standardizes_or_scales_a_node_for_its_reads_or_on_top() -> None:
    relu = LayerGraph([("max", (X, V0)), ("mul", (4, X))])  # max(x, v0) * x
    ops = op_names("B")
    assert normalization_axes(ops) == ("layer", "instance", "group", "batch")
    assert normalization_axes(op_names("T")) == ("channel", "channel_group")

    def formula(source: int, reads: list, kind: str, axis: str) -> str:
        return LayerGraph(normalized_nodes(relu, source, reads, kind, axis)).formula()

    assert reads_of(relu, X) == [(4, 0), (5, 1)]
    assert formula(X, [(4, 0)], "standardize", "batch") == \
        "max((x - mean_batch(x)) / std_batch(x), v0) * x"
    assert formula(X, [(4, 0), (5, 1)], "centre", "group") == \
        "max(x - mean_group(x), v0) * (x - mean_group(x))"
    assert formula(4, [(5, 0)], "rms", "layer") == "max(x, v0) / rms_layer(max(x, v0)) * x"
    assert formula(5, [], "std", "instance") == \
        "max(x, v0) * x / std_instance(max(x, v0) * x)"
    # With no read to rewire, the normalized node becomes the output (here max(x, v0)'s).
    assert formula(4, [], "std", "layer") == "max(x, v0) / std_layer(max(x, v0))"
    # The move draws among these, and its children are valid layers of the space.
    rng = random.Random(0)
    children = {MUTATIONS["normalize"](relu, rng, ops).formula() for _ in range(400)}
    assert "max((x - mean_batch(x)) / std_batch(x), v0) * x" in children
    assert "max(x, v0) * x / std_instance(max(x, v0) * x)" in children
    assert all(f.count("(") > relu.formula().count("(") for f in children)
