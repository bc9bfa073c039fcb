"""Stand-alone export: Python source of a self-contained `nn.Module` for a layer graph.

The generated module imports only torch. It carries verbatim copies of the primitive
functions the layer uses (the same functions the compiled module calls) and an unrolled
`forward` following the compiler's plan, so it gives the same outputs and has the same
state_dict keys as `compile_layer`. Its class docstring is the formula.
"""

from __future__ import annotations

import inspect
import keyword
import types

from evonorm_search.compile import (
    STATE_VERSION, execution_order, plain_division, reads_zero, relu_input, unused_parameters,
)
from evonorm_search.errors import EvonormError
from evonorm_search.graph import LayerGraph
from primitives import OPS

_INITIAL_EXPRESSIONS = ("x", "self.zero", "self.v0", "self.v1")


def to_source(graph: LayerGraph, class_name: str = "EvolvedNormAct") -> str:
    """Python source defining `class_name(num_channels, groups=32, eps=1e-5, momentum=0.1)`."""
    if not class_name.isidentifier() or keyword.iskeyword(class_name):
        raise EvonormError(
            f"class name {class_name!r} is not a Python identifier; use e.g. EvolvedNormAct"
        )
    order = execution_order(graph)
    formula = graph.formula()
    functions = _function_sources(graph, order)
    return "\n".join([
        f'"""Normalization-activation layer exported by evonorm_search.\n\n{formula}\n"""',
        "",
        "from __future__ import annotations",
        "",
        "import torch",
        "from torch import Tensor, nn",
        "",
        *(f"\n{source}" for source in functions),
        "",
        f"class {class_name}(nn.Module):",
        f'    """y = ({formula}) * gamma + beta',
        "",
        f"    Per-channel parameters {_parameter_summary(graph)}.",
        f"    Graph: {graph.to_json()}",
        '    """',
        "",
        f"    # state_dict format {STATE_VERSION}: v0/v1 exist only where the output uses them.",
        f"    _version = {STATE_VERSION}",
        "",
        *_init_lines(graph, order),
        "",
        *_forward_lines(graph, order),
        *_legacy_load_lines(graph),
        "",
    ])


def _function_sources(graph: LayerGraph, order: list[int]) -> list[str]:
    """Sources of the op functions used (plus the package helpers they call), callees first."""
    wanted: list[types.FunctionType] = []
    for index in order:
        if not plain_division(graph, index) and relu_input(graph, index) is None:
            _add_with_helpers(OPS[graph.node(index).op].fn, wanted)
    return [_def_source(fn) for fn in wanted]


def _add_with_helpers(fn: types.FunctionType, wanted: list[types.FunctionType]) -> None:
    if fn in wanted:
        return
    for name in fn.__code__.co_names:
        helper = fn.__globals__.get(name)
        if isinstance(helper, types.FunctionType) and helper.__module__.startswith("primitives"):
            _add_with_helpers(helper, wanted)
    wanted.append(fn)


def _def_source(fn: types.FunctionType) -> str:
    """The function's source without its registration decorator."""
    lines = inspect.getsource(fn).splitlines()
    start = next(k for k, line in enumerate(lines) if line.startswith("def "))
    return "\n".join(lines[start:]) + "\n"


def _parameter_summary(graph: LayerGraph) -> str:
    unused = unused_parameters(graph)
    used = [f"{name} (init {init})" for name, init in (("v0", 0), ("v1", 1)) if name not in unused]
    return ", ".join([*used, "gamma (init 1)", "beta (init 0)"])


def _legacy_load_lines(graph: LayerGraph) -> list[str]:
    """Where the layer leaves v0/v1 unused, the load hook that drops them from format-1
    checkpoints, as `CompiledLayer` does."""
    unused = unused_parameters(graph)
    if not unused:
        return []
    return [
        "",
        "    def _load_from_state_dict(self, state_dict, prefix, local_metadata, *args):",
        "        # Format-1 checkpoints carry v0/v1 even where unused: drop those, they never",
        "        # affected the output.",
        f"        if local_metadata.get(\"version\", 1) < {STATE_VERSION}:",
        f"            for name in {unused!r}:",
        "                state_dict.pop(prefix + name, None)",
        "        super()._load_from_state_dict(state_dict, prefix, local_metadata, *args)",
    ]


def _init_lines(graph: LayerGraph, order: list[int]) -> list[str]:
    """`__init__`: parameters and buffers as `CompiledLayer` registers them."""
    unused = unused_parameters(graph)
    lines = [
        "    def __init__(",
        "        self, num_channels: int, groups: int = 32, eps: float = 1e-5, momentum: float = 0.1",
        "    ) -> None:",
        "        super().__init__()",
        "        # Group count: lowered until it divides the channel count.",
        "        g = max(1, min(groups, num_channels))",
        "        while num_channels % g:",
        "            g -= 1",
        "        self.num_channels = num_channels",
        "        self.groups = g",
        "        self.eps = eps",
        "        self.momentum = momentum",
        "        shape = (1, num_channels, 1, 1)",
        *(
            f"        self.{name} = nn.Parameter(torch.{init}(shape))"
            for name, init in (("v0", "zeros"), ("v1", "ones"))
            if name not in unused
        ),
        "        self.gamma = nn.Parameter(torch.ones(shape))",
        "        self.beta = nn.Parameter(torch.zeros(shape))",
    ]
    if reads_zero(graph):
        lines.append('        self.register_buffer("zero", torch.zeros(1, 1, 1, 1), persistent=False)')
    for index in order:
        op = OPS[graph.node(index).op]
        if op.reads_batch_stats:
            lines.append(
                f'        self.register_buffer("running_{index}", '
                f"torch.full(shape, {float(op.running_init)!r}))"
            )
    return lines


def _forward_lines(graph: LayerGraph, order: list[int]) -> list[str]:
    names = {i: expr for i, expr in enumerate(_INITIAL_EXPRESSIONS)}
    lines = [
        "    def forward(self, x: Tensor) -> Tensor:",
        "        if x.dim() != 4 or x.shape[1] != self.num_channels:",
        "            raise ValueError(",
        '                f"expected input (N, {self.num_channels}, H, W), got {tuple(x.shape)}"',
        "            )",
    ]
    for index in order:
        node = graph.node(index)
        op = OPS[node.op]
        args = [names[j] for j in node.inputs]
        fn = op.fn.__name__
        if op.reads_batch_stats:
            call = f"{fn}({args[0]}, self.running_{index}, self.training, self.momentum, self.eps)"
        elif op.kind == "statistic":
            call = f"{fn}({args[0]}, self.eps, self.groups)"
        elif plain_division(graph, index):
            call = f"{args[0]} / {args[1]}"
        elif relu_input(graph, index) is not None:
            call = f"torch.relu({names[relu_input(graph, index)]})"
        else:
            call = f"{fn}({', '.join(args)}, self.eps)"
        names[index] = f"t{index}"
        lines.append(f"        t{index} = {call}")
    lines += [
        f"        y = {names[graph.output]} * self.gamma + self.beta",
        "        if y.shape != x.shape:",
        "            y = y.expand(x.shape).contiguous()",
        "        return y",
    ]
    return lines
