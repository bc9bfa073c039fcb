"""`LayerGraph`: a candidate normalization-activation layer as an immutable DAG.

Owns the representation only (no tensors): validation with precise errors, live/dead
nodes, pruning, the structural hash, the versioned JSON form and the readable formula.
Node indices: 0 = x, 1 = zero, 2 = v0, 3 = v1, then the intermediate nodes 4, 5, ...;
the last node is the output. Dead nodes (not reaching the output) are kept: a mutation
may reconnect them.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable, NamedTuple

import networkx as nx

from evonorm_search.errors import GraphError
from primitives import OPS, SPACES, UnknownOpError, get_op

INITIAL_NODES: tuple[str, ...] = ("x", "zero", "v0", "v1")
NUM_INITIAL = len(INITIAL_NODES)
MAX_INTERMEDIATE = 10
JSON_FORMAT = "evonorm-layer-graph"
JSON_VERSION = 1

_HASH_SALT = "evonorm-layer-graph-hash-v1"
# Binding strength of formula fragments: sums < products < prefix minus < atoms/calls.
_PRECEDENCE = {"+": 1, "*": 2, "/": 2, "-": 3}
_ATOM = 4


class Node(NamedTuple):
    """One intermediate node: `op` applied to the earlier nodes `inputs`."""

    op: str
    inputs: tuple[int, ...]


class LayerGraph:
    """An immutable, validated layer graph over the intermediate nodes (index 4 on)."""

    __slots__ = ("_nodes", "_live")

    def __init__(self, nodes: Iterable[Node | tuple[str, Iterable[int]]]) -> None:
        checked = tuple(_as_node(n, NUM_INITIAL + i) for i, n in enumerate(nodes))
        _validate(checked)
        object.__setattr__(self, "_nodes", checked)
        object.__setattr__(self, "_live", _live_nodes(checked))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("LayerGraph is immutable; use replace_node()")

    def __reduce__(self) -> tuple[type, tuple[tuple[Node, ...]]]:
        return (LayerGraph, (self._nodes,))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LayerGraph) and self._nodes == other._nodes

    def __hash__(self) -> int:
        return hash(self._nodes)

    def __repr__(self) -> str:
        body = ", ".join(f"{NUM_INITIAL + i}: {n.op}{list(n.inputs)}" for i, n in enumerate(self._nodes))
        return f"LayerGraph({body})"

    @property
    def nodes(self) -> tuple[Node, ...]:
        """The intermediate nodes, node k of the graph being `nodes[k - 4]`."""
        return self._nodes

    @property
    def num_nodes(self) -> int:
        """All nodes, initial ones included."""
        return NUM_INITIAL + len(self._nodes)

    @property
    def output(self) -> int:
        return self.num_nodes - 1

    def node(self, index: int) -> Node:
        """The intermediate node at graph index `index` (>= 4)."""
        if not NUM_INITIAL <= index < self.num_nodes:
            raise GraphError(
                f"node {index} is not an intermediate node; use {NUM_INITIAL}..{self.output}"
            )
        return self._nodes[index - NUM_INITIAL]

    def live_nodes(self) -> frozenset[int]:
        """Indices of the nodes the output depends on (itself and initial ones included)."""
        return self._live

    @property
    def size(self) -> int:
        """Live intermediate nodes: the ops the output depends on (what a size penalty counts)."""
        return sum(1 for index in self._live if index >= NUM_INITIAL)

    def pruned(self) -> LayerGraph:
        """The same layer without dead nodes, renumbered in the same order."""
        keep = [i for i in range(NUM_INITIAL, self.num_nodes) if i in self._live]
        new_index = {i: i for i in range(NUM_INITIAL)}
        new_index.update({old: NUM_INITIAL + k for k, old in enumerate(keep)})
        return LayerGraph(
            Node(self.node(i).op, tuple(new_index[j] for j in self.node(i).inputs)) for i in keep
        )

    def replace_node(self, index: int, node: Node | tuple[str, Iterable[int]]) -> LayerGraph:
        """A new graph with node `index` replaced (validated)."""
        self.node(index)
        nodes = list(self._nodes)
        nodes[index - NUM_INITIAL] = _as_node(node, index)
        return LayerGraph(nodes)

    @property
    def uses_batch_stats(self) -> bool:
        """Whether a live node reads batch statistics."""
        return any(
            OPS[self.node(i).op].reads_batch_stats for i in self._live if i >= NUM_INITIAL
        )

    @property
    def spaces(self) -> tuple[str, ...]:
        """Every search space holding all live ops, in `primitives.SPACES` order (an
        element-wise layer such as DyT is in all of them)."""
        ops = [OPS[self.node(i).op] for i in self._live if i >= NUM_INITIAL]
        return tuple(name for name, space in SPACES.items()
                     if all(space.allows(op) for op in ops))

    @property
    def space(self) -> str:
        """The most specific search space holding every live op: one whose axis sets
        include no other holding space's, the first such in `primitives.SPACES` order. "S"
        unless the layer needs batch statistics ("B"), among the paper's spaces; "T" for
        per-token statistics, "TB" for per-token with batch ones. Empty when no space
        holds the layer (e.g. batch, instance and channel statistics together)."""
        holding = [SPACES[name] for name in self.spaces]
        minimal = [space for space in holding
                   if not any(other.axes < space.axes for other in holding)]
        return minimal[0].name if minimal else ""

    def structural_hash(self) -> str:
        """sha256 hex of the output's expression DAG: ignores node numbering, dead nodes
        and the argument order of commutative ops."""
        digests: dict[int, str] = {
            i: _sha(f"{_HASH_SALT}:{name}") for i, name in enumerate(INITIAL_NODES)
        }
        for i in range(NUM_INITIAL, self.num_nodes):
            node = self.node(i)
            children = [digests[j] for j in node.inputs]
            if OPS[node.op].commutative:
                children.sort()
            digests[i] = _sha(f"{node.op}({','.join(children)})")
        return digests[self.output]

    def formula(self) -> str:
        """A readable formula of the output, e.g. `x * sigmoid(v1 * x) / std_group(x)`."""
        rendered: dict[int, tuple[str, int]] = {
            0: ("x", _ATOM), 1: ("0", _ATOM), 2: ("v0", _ATOM), 3: ("v1", _ATOM)
        }
        for i in range(NUM_INITIAL, self.num_nodes):
            rendered[i] = self._render(self.node(i), rendered)
        return rendered[self.output][0]

    def _render(self, node: Node, done: dict[int, tuple[str, int]]) -> tuple[str, int]:
        op = OPS[node.op]
        args = [done[j] for j in node.inputs]
        if op.symbol is None:
            return f"{node.op}({', '.join(text for text, _ in args)})", _ATOM
        if op.arity == 1:
            text, prec = args[0]
            return "-" + _wrap(text, prec < _PRECEDENCE["-"] or text.startswith("-")), 3
        (left, left_prec), (right, right_prec) = args
        symbol = op.symbol
        if symbol == "+":
            # a + (-b) reads better as a - b.
            if self._is_neg(node.inputs[1]):
                return self._subtraction(left, node.inputs[1], done)
            if self._is_neg(node.inputs[0]):
                return self._subtraction(right, node.inputs[0], done)
        prec = _PRECEDENCE[symbol]
        left_text = _wrap(left, left_prec < prec)
        # Right operands bind tighter: a / (b * c) and a - (b + c) keep their parentheses.
        right_text = _wrap(right, right_prec < prec or (symbol == "/" and right_prec <= prec))
        return f"{left_text} {symbol} {right_text}", prec

    def _is_neg(self, index: int) -> bool:
        return index >= NUM_INITIAL and self.node(index).op == "neg"

    def _subtraction(
        self, left: str, neg_index: int, done: dict[int, tuple[str, int]]
    ) -> tuple[str, int]:
        text, prec = done[self.node(neg_index).inputs[0]]
        return f"{left} - {_wrap(text, prec <= 1 or text.startswith('-'))}", 1

    def to_dict(self) -> dict[str, Any]:
        """The versioned JSON-able form (intermediate nodes only)."""
        return {
            "format": JSON_FORMAT,
            "version": JSON_VERSION,
            "nodes": [{"op": n.op, "inputs": list(n.inputs)} for n in self._nodes],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: Any) -> LayerGraph:
        """Validate a decoded JSON value and build the graph; GraphError on any problem."""
        if not isinstance(data, dict):
            raise GraphError(
                f"a layer graph must be a JSON object, got {type(data).__name__}; "
                f'write {{"format": "{JSON_FORMAT}", "version": {JSON_VERSION}, "nodes": [...]}}'
            )
        _check_keys(data, {"format", "version", "nodes"}, "the layer graph")
        if data["format"] != JSON_FORMAT:
            raise GraphError(
                f"unknown graph format {data['format']!r}; expected \"{JSON_FORMAT}\""
            )
        version = data["version"]
        if not isinstance(version, int) or isinstance(version, bool):
            raise GraphError(f"graph version must be an integer, got {version!r}")
        if version > JSON_VERSION:
            raise GraphError(
                f"graph version {version} is newer than this evonorm_search understands "
                f"(version {JSON_VERSION}); upgrade evonorm-search"
            )
        if version != JSON_VERSION:
            raise GraphError(f"unsupported graph version {version}; expected {JSON_VERSION}")
        nodes = data["nodes"]
        if not isinstance(nodes, list):
            raise GraphError(f'"nodes" must be a list of nodes, got {type(nodes).__name__}')
        parsed = []
        for k, item in enumerate(nodes):
            where = f"node {NUM_INITIAL + k} (nodes[{k}])"
            if not isinstance(item, dict):
                raise GraphError(f'{where} must be an object {{"op": ..., "inputs": [...]}}')
            _check_keys(item, {"op", "inputs"}, where)
            if not isinstance(item["inputs"], list):
                raise GraphError(f'{where}: "inputs" must be a list of node indices')
            parsed.append((item["op"], item["inputs"]))
        return cls(parsed)

    @classmethod
    def from_json(cls, text: str | bytes) -> LayerGraph:
        """Parse and validate the JSON form (never evaluates anything)."""
        try:
            data = json.loads(text)
        except RecursionError:
            raise GraphError(
                "layer graph JSON is nested too deeply to be a layer graph (a graph is an "
                'object whose "nodes" hold flat objects); fix the file or regenerate it'
            ) from None
        except (ValueError, TypeError) as error:
            raise GraphError(
                f"layer graph is not valid JSON ({error}); fix the file or regenerate it "
                "with `evonorm show NAME --graph`"
            ) from None
        return cls.from_dict(data)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _wrap(text: str, parenthesize: bool) -> str:
    return f"({text})" if parenthesize else text


def _check_keys(data: dict[str, Any], expected: set[str], where: str) -> None:
    keys = set(data)
    if keys != expected:
        missing, extra = sorted(expected - keys), sorted(map(str, keys - expected))
        raise GraphError(
            f"{where}: missing keys {missing}, unknown keys {extra}; "
            f"expected exactly {sorted(expected)}"
        )


def _as_node(raw: object, index: int) -> Node:
    """Coerce `(op, inputs)` to a Node, checking the types."""
    if not isinstance(raw, tuple | list) or len(raw) != 2:
        raise GraphError(f"node {index} must be (op, inputs), got {raw!r}")
    op, inputs = raw
    if not isinstance(op, str):
        raise GraphError(f"node {index}: op must be a string, got {op!r}")
    if isinstance(inputs, str | bytes) or not isinstance(inputs, Iterable):
        raise GraphError(f"node {index}: inputs must be a list of node indices, got {inputs!r}")
    inputs = tuple(inputs)
    for j in inputs:
        if not isinstance(j, int) or isinstance(j, bool):
            raise GraphError(f"node {index}: input {j!r} is not an integer node index")
    return Node(op, inputs)


def _validate(nodes: tuple[Node, ...]) -> None:
    if not nodes:
        raise GraphError("a layer graph needs at least one intermediate node (the output)")
    if len(nodes) > MAX_INTERMEDIATE:
        raise GraphError(
            f"too many nodes: {len(nodes)} intermediate nodes, at most {MAX_INTERMEDIATE}; "
            "prune dead nodes or simplify the layer"
        )
    total = NUM_INITIAL + len(nodes)
    for k, node in enumerate(nodes):
        index = NUM_INITIAL + k
        try:
            op = get_op(node.op)
        except UnknownOpError as error:
            raise GraphError(f"node {index}: {error}") from None
        if len(node.inputs) != op.arity:
            raise GraphError(
                f"node {index} ({node.op}) has {len(node.inputs)} inputs; "
                f"{node.op} takes exactly {op.arity}"
            )
        for j in node.inputs:
            if not 0 <= j < total:
                raise GraphError(
                    f"node {index} ({node.op}) reads node {j}, which does not exist; "
                    f"use 0..{index - 1}"
                )
    forward = [
        (NUM_INITIAL + k, j) for k, n in enumerate(nodes) for j in n.inputs if j >= NUM_INITIAL + k
    ]
    if forward:
        _raise_order_error(nodes, forward)
    if 0 not in _live_nodes(nodes):
        raise GraphError(
            f"the output (node {total - 1}) does not depend on x: the layer would ignore "
            "its input; connect x to the output"
        )


def _raise_order_error(nodes: tuple[Node, ...], forward: list[tuple[int, int]]) -> None:
    """Name a cycle if there is one, else the first input that is not earlier."""
    dag = nx.DiGraph()
    dag.add_edges_from(
        (j, NUM_INITIAL + k) for k, n in enumerate(nodes) for j in n.inputs
    )
    try:
        cycle = nx.find_cycle(dag)
    except nx.NetworkXNoCycle:
        index, j = forward[0]
        raise GraphError(
            f"node {index} reads node {j}, which is not earlier; every node may only read "
            "earlier nodes (order the nodes topologically)"
        ) from None
    path = " -> ".join(str(edge[0]) for edge in cycle) + f" -> {cycle[0][0]}"
    raise GraphError(f"the graph has a cycle ({path}); a layer graph must be acyclic")


def _live_nodes(nodes: tuple[Node, ...]) -> frozenset[int]:
    output = NUM_INITIAL + len(nodes) - 1
    live = {output}
    for index in range(output, NUM_INITIAL - 1, -1):
        if index in live:
            live.update(nodes[index - NUM_INITIAL].inputs)
    return frozenset(live)
