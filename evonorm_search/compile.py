"""Compile a `LayerGraph` into a `torch.nn.Module`: the one path used to train, evaluate
and export candidates, so what was evaluated is what ships.

At construction the live nodes become a flat execution plan (a tuple of (function,
input slots, constant arguments, running buffer)); `forward` only walks that tuple.
Statistics stay at their reduced shape and broadcast; the output is expanded to x's shape
only when the graph does not vary over every axis. A float16/bfloat16 input (autocast)
is computed in float32 and the output returned in the input's dtype.

State (the names are a stable contract, docs/using_a_layer.md "Checkpoints"): `v0`, `v1`
(per channel, init 0 and 1) only where the graph's output depends on them, else the
attribute is None; the final affine `gamma` (init 1), `beta` (init 0) always, all shaped
(1, C, 1, 1); one buffer `running_<node index>` per live batch statistic (and the constant
`zero`, not saved, where the plan reads it). A parameter the output does not use would get
no gradient, which DistributedDataParallel (default find_unused_parameters=False) refuses
on the second step. State dicts written before that rule (format 1, with unused v0/v1)
still load, strict: their unused v0/v1 are dropped.
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import torch
from torch import Tensor, nn

from evonorm_search.graph import INITIAL_NODES, NUM_INITIAL, LayerGraph
from primitives import OPS


ZERO_NODE = INITIAL_NODES.index("zero")
# Initial nodes held as per-channel parameters, by graph index.
PARAMETER_NODES = {INITIAL_NODES.index(name): name for name in ("v0", "v1")}
# `state_dict` format: 1 created v0 and v1 always; 2 only where the output uses them.
STATE_VERSION = 2
# Input dtypes the layer computes in float32 (statistics of half-precision values lose
# most of their digits, and exp/square overflow float16), returning to the input's dtype.
HALF_PRECISION = (torch.float16, torch.bfloat16)


def effective_groups(num_channels: int, groups: int) -> int:
    """The group count actually used: `groups` lowered until it divides C."""
    g = max(1, min(groups, num_channels))
    while num_channels % g:
        g -= 1
    return g


def bounded_positive_nodes(graph: LayerGraph) -> frozenset[int]:
    """Nodes whose value is >= some positive bound for every finite input, so dividing by
    them needs no guard: statistics with eps under the root, a max with such an argument,
    sums and products of such nodes."""
    positive: set[int] = set()
    for index in range(NUM_INITIAL, graph.num_nodes):
        node = graph.node(index)
        args = [j in positive for j in node.inputs]
        if (
            OPS[node.op].positive
            or (node.op == "max" and any(args))
            or (node.op in ("add", "mul") and all(args))
        ):
            positive.add(index)
    return frozenset(positive)


def plain_division(graph: LayerGraph, index: int) -> bool:
    """Whether `div` node `index` may divide without a guard (denominator positive)."""
    node = graph.node(index)
    return node.op == "div" and node.inputs[1] in bounded_positive_nodes(graph)


def relu_input(graph: LayerGraph, index: int) -> int | None:
    """For `max(t, zero)` (in either order), the node t: compiled as `relu(t)`, one op
    instead of three."""
    node = graph.node(index)
    if node.op != "max" or ZERO_NODE not in node.inputs or node.inputs == (ZERO_NODE, ZERO_NODE):
        return None
    return node.inputs[0] if node.inputs[1] == ZERO_NODE else node.inputs[1]


def reads_zero(graph: LayerGraph) -> bool:
    """Whether the compiled plan reads the constant zero (`max(t, zero)` runs as relu)."""
    return any(
        ZERO_NODE in graph.node(index).inputs and relu_input(graph, index) is None
        for index in graph.live_nodes() if index >= NUM_INITIAL
    )


def unused_parameters(graph: LayerGraph) -> tuple[str, ...]:
    """Names of v0/v1 that `graph`'s output does not depend on (so not created)."""
    live = graph.live_nodes()
    return tuple(name for index, name in PARAMETER_NODES.items() if index not in live)


def drop_unused_legacy_parameters(
    state_dict: dict, prefix: str, local_metadata: dict, unused: tuple[str, ...]
) -> None:
    """Remove, in place, the unused v0/v1 entries that a format-1 state dict carries
    (one without a version counts as format 1); they never affected the output."""
    if local_metadata.get("version", 1) < STATE_VERSION:
        for name in unused:
            state_dict.pop(prefix + name, None)


def execution_order(graph: LayerGraph) -> list[int]:
    """Live intermediate nodes in a topological order that runs statistics as early as
    possible (then by index): reducing over x while it is still in cache, as a
    hand-written layer does (measured 5-10% faster on 8x8 maps)."""
    live = graph.live_nodes()
    pending = [i for i in range(NUM_INITIAL, graph.num_nodes) if i in live]
    done = set(range(NUM_INITIAL))
    order: list[int] = []
    while pending:
        ready = [i for i in pending if done.issuperset(graph.node(i).inputs)]
        chosen = min(ready, key=lambda i: (OPS[graph.node(i).op].kind != "statistic", i))
        pending.remove(chosen)
        done.add(chosen)
        order.append(chosen)
    return order


def _divide(a: Tensor, b: Tensor) -> Tensor:
    return a / b


class _Step(NamedTuple):
    fn: Callable[..., Tensor]
    inputs: tuple[int, ...]  # slots in the value list
    constants: tuple[float | int, ...]  # trailing positional arguments (eps, groups, ...)
    buffer: str | None  # running-average buffer of a batch statistic


class CompiledLayer(nn.Module):
    """A layer graph as a module for inputs of shape (N, num_channels, H, W)."""

    _version = STATE_VERSION

    def __init__(
        self,
        graph: LayerGraph,
        num_channels: int,
        *,
        groups: int = 32,
        eps: float = 1e-5,
        momentum: float = 0.1,
    ) -> None:
        super().__init__()
        if not isinstance(num_channels, int) or num_channels < 1:
            raise ValueError(f"num_channels must be a positive integer, got {num_channels!r}")
        self.graph = graph
        self.num_channels = num_channels
        self.groups = effective_groups(num_channels, groups)
        self.eps = eps
        self.momentum = momentum
        shape = (1, num_channels, 1, 1)
        self._unused = unused_parameters(graph)
        for name, init in (("v0", torch.zeros), ("v1", torch.ones)):
            parameter = None if name in self._unused else nn.Parameter(init(shape))
            self.register_parameter(name, parameter)
        self.gamma = nn.Parameter(torch.ones(shape))
        self.beta = nn.Parameter(torch.zeros(shape))
        zero = torch.zeros(1, 1, 1, 1) if reads_zero(graph) else None
        self.register_buffer("zero", zero, persistent=False)
        self._plan = self._build_plan(graph, shape)

    def _build_plan(self, graph: LayerGraph, shape: tuple[int, ...]) -> tuple[_Step, ...]:
        slot = {i: i for i in range(NUM_INITIAL)}
        plan = []
        for index in execution_order(graph):
            node = graph.node(index)
            op = OPS[node.op]
            fn, buffer = op.fn, None
            constants: tuple[float | int, ...] = (self.eps,)
            if op.reads_batch_stats:
                buffer = f"running_{index}"
                self.register_buffer(buffer, torch.full(shape, float(op.running_init)))
                constants = (self.momentum, self.eps)
            elif op.kind == "statistic":
                constants = (self.eps, self.groups)
            elif plain_division(graph, index):
                fn, constants = _divide, ()
            inputs = node.inputs
            relu_of = relu_input(graph, index)
            if relu_of is not None:
                fn, inputs, constants = torch.relu, (relu_of,), ()
            plan.append(_Step(fn, tuple(slot[j] for j in inputs), constants, buffer))
            slot[index] = NUM_INITIAL + len(plan) - 1
        return tuple(plan)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.num_channels:
            raise ValueError(
                f"expected input (N, {self.num_channels}, H, W), got {tuple(x.shape)}"
            )
        dtype = x.dtype
        half = dtype in HALF_PRECISION
        if half:  # e.g. under autocast: see HALF_PRECISION
            x = x.float()
        y = self.graph_output(x, self.v0, self.v1) * self.gamma + self.beta
        if y.shape != x.shape:
            y = y.expand(x.shape).contiguous()
        return y.to(dtype) if half else y

    def graph_output(self, x: Tensor, v0: Tensor | None, v1: Tensor | None) -> Tensor:
        """The graph's output node on `x` with the given v0 and v1 (None where the graph
        does not use them), before the affine and not broadcast to `x`'s shape: how the
        planted fit runs many parameter values through one module without touching its
        own (any shape that broadcasts against the nodes, e.g. one value per sample)."""
        values = [x, self.zero, v0, v1]
        for fn, inputs, constants, buffer in self._plan:
            if buffer is None:
                values.append(fn(*[values[i] for i in inputs], *constants))
            else:
                values.append(
                    fn(values[inputs[0]], self._buffers[buffer], self.training, *constants)
                )
        # Every live node is an ancestor of the output, so the output always runs last.
        return values[-1]

    def _load_from_state_dict(  # type: ignore[no-untyped-def]
        self, state_dict, prefix, local_metadata, *args
    ) -> None:
        drop_unused_legacy_parameters(state_dict, prefix, local_metadata, self._unused)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, *args)

    def extra_repr(self) -> str:
        return f"{self.num_channels}, groups={self.groups}, formula={self.graph.formula()!r}"


def compile_layer(
    graph: LayerGraph,
    num_channels: int,
    *,
    groups: int = 32,
    eps: float = 1e-5,
    momentum: float = 0.1,
) -> CompiledLayer:
    """The module computing `graph` (then `* gamma + beta`) on C = `num_channels`."""
    return CompiledLayer(graph, num_channels, groups=groups, eps=eps, momentum=momentum)


def layer_factory(
    graph: LayerGraph, *, groups: int = 32, eps: float = 1e-5, momentum: float = 0.1
) -> Callable[[int], nn.Module]:
    """`num_channels -> module` for the proxies' `norm_act` argument (picklable)."""
    return functools.partial(compile_layer, graph, groups=groups, eps=eps, momentum=momentum)
