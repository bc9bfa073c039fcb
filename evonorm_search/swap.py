"""Drop-in use of a discovered layer: swap the BatchNorm2d + ReLU pairs of an existing CNN
(`swap_norm_act`), or the LayerNorm/RMSNorm modules of a Transformer (`swap_layernorm`).

`swap_layernorm(model, factory)` replaces every `nn.LayerNorm`, `nn.RMSNorm` and timm norm
module over the last dimension (`timm.layers` LayerNorm, RmsNorm, SimpleNorm and their
Fp32 forms; recognized by class, timm is not imported) by `factory(num_features)`, e.g.
`evonorm_search.tokens.token_layer_factory(graph)` or an exported class. The original's
weight and bias become the new layer's gamma and beta (an exported `layernorm` then
computes exactly what the original did). Channels-first norms (timm's LayerNorm2d,
RmsNorm2d) and norms over more than the last dimension are left alone, with a SwapWarning.

Owns `swap_norm_act(model, factory)`. A "pair" is a `nn.BatchNorm2d` call whose output feeds
nothing but a ReLU (`nn.ReLU`, `F.relu`, `torch.relu`, `Tensor.relu` and their in-place
forms). Each pair becomes one `factory(num_features)` module, which is both norm and
activation, as in the paper.

How "followed by" is detected, per module and on its own `forward` only (children are
treated as opaque leaves, so every level of the model is looked at once):
- a plain `nn.Sequential` (its `forward` not overridden): adjacency of its children;
- any other module: its `forward` is traced with `torch.fx`; the data flow, not the
  attribute names or declaration order, decides what follows what.

How a pair is rewritten:
- in place, keeping the model's classes, when the ReLU is a module called only there
  (BN slot -> the new layer, ReLU slot -> `nn.Identity`);
- otherwise (a ReLU module shared with other call sites, e.g. torchvision's `BasicBlock`
  applies `self.relu` after `bn1` and again after the residual addition; or a functional
  relu) the owning module is replaced, in its parent, by an `fx.GraphModule` with the
  BN node retargeted and the relu node removed. It keeps the owner's submodules at the
  same attribute paths (so `state_dict` keys of the parameters it calls are unchanged) but
  is no longer an instance of the owner's class.

Limits (each reported by a `SwapWarning`, nothing is silently left half-done):
- a forward that fx cannot trace (data-dependent control flow) is not inspected; its
  BatchNorm2d children are left alone;
- a pair needing a rewrite in the root model's own forward cannot be done in place;
- a BatchNorm2d module called from several places is left alone;
- a pair split across module boundaries (BN as the last child of one module, ReLU in the
  caller) is not seen.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import fx, nn

NormActFactory = Callable[[int], nn.Module]

_RELU_FUNCTIONS = (F.relu, torch.relu, torch.relu_, F.relu_)
_RELU_METHODS = ("relu", "relu_")


class SwapWarning(UserWarning):
    """A BatchNorm2d that may precede a ReLU could not be swapped (see the module limits)."""


@dataclass(frozen=True)
class _Pair:
    bn_name: str  # attribute name of the BN child in its owner
    relu_module: str | None  # attribute name of a ReLU child removable in place, else None
    relu_node: str | None  # fx node name of the relu call to remove, None in place


class _OwnForwardTracer(fx.Tracer):
    """Traces only the root's own forward: every submodule is an opaque call."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return m is not self.root


def _is_relu_node(node: fx.Node, owner: nn.Module) -> bool:
    if node.op == "call_module":
        return isinstance(owner.get_submodule(str(node.target)), nn.ReLU)
    if node.op == "call_function":
        return node.target in _RELU_FUNCTIONS
    if node.op == "call_method":
        return node.target in _RELU_METHODS
    return False


def _module_refcounts(model: nn.Module) -> dict[int, int]:
    """How many attribute paths reach each module object (sharing makes in-place unsafe)."""
    counts: dict[int, int] = {}
    for _, module in model.named_modules(remove_duplicate=False):
        counts[id(module)] = counts.get(id(module), 0) + 1
    return counts


def _sequential_children(seq: nn.Sequential) -> list[tuple[str, nn.Module]]:
    """Children in call order, repeats included (`named_children` drops repeats)."""
    return [
        (name, module)
        for name, module in seq.named_modules(remove_duplicate=False)
        if name and "." not in name
    ]


def _sequential_pairs(seq: nn.Sequential, refcounts: dict[int, int]) -> list[_Pair]:
    pairs = []
    children = _sequential_children(seq)
    for (bn_name, bn), (relu_name, relu) in zip(children, children[1:]):
        if not (isinstance(bn, nn.BatchNorm2d) and isinstance(relu, nn.ReLU)):
            continue
        if refcounts[id(bn)] > 1:
            warnings.warn(f"{bn_name}: BatchNorm2d shared by several paths, left alone", SwapWarning)
            continue
        if refcounts[id(relu)] > 1:
            # Sequential applies children by position, so a shared ReLU is another call site.
            pairs.append(_Pair(bn_name, None, None))
        else:
            pairs.append(_Pair(bn_name, relu_name, None))
    return pairs


def _traced_pairs(
    owner: nn.Module, graph: fx.Graph, refcounts: dict[int, int], owner_name: str
) -> list[_Pair]:
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[str(node.target)] = calls.get(str(node.target), 0) + 1
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module":
            continue
        target = str(node.target)
        if not isinstance(owner.get_submodule(target), nn.BatchNorm2d):
            continue
        users = list(node.users)
        if len(users) != 1 or not _is_relu_node(users[0], owner) or users[0].args[:1] != (node,):
            continue
        bn = owner.get_submodule(target)
        if "." in target:
            warnings.warn(
                f"{owner_name or '<root>'}: calls the nested BatchNorm2d {target} directly, "
                "left alone (swap only handles a module's own children)",
                SwapWarning,
            )
            continue
        if calls[target] > 1 or refcounts[id(bn)] > 1:
            warnings.warn(
                f"{owner_name or '<root>'}.{target}: BatchNorm2d called from several places, "
                "left alone",
                SwapWarning,
            )
            continue
        relu = users[0]
        relu_target = str(relu.target) if relu.op == "call_module" else None
        if (
            relu_target is not None
            and "." not in relu_target
            and calls[relu_target] == 1
            and refcounts[id(owner.get_submodule(relu_target))] == 1
        ):
            pairs.append(_Pair(target, relu_target, None))
        else:
            pairs.append(_Pair(target, None, relu.name))
    return pairs


def _new_layer(bn: nn.BatchNorm2d, factory: NormActFactory) -> nn.Module:
    layer = factory(bn.num_features)
    reference = bn.weight if bn.weight is not None else bn.running_mean
    if reference is not None:
        layer = layer.to(device=reference.device, dtype=reference.dtype)
    return layer


def _depth(name: str) -> int:
    return 0 if not name else name.count(".") + 1


def swap_norm_act(model: nn.Module, factory: NormActFactory) -> int:
    """Replace every BatchNorm2d -> ReLU pair of `model` by `factory(num_features)`.

    Modifies `model` in place (an owner whose forward must be rewritten is replaced in
    its parent by an `fx.GraphModule`, see the module docstring) and returns the number
    of pairs swapped. Pairs that cannot be swapped raise a `SwapWarning`.
    """
    refcounts = _module_refcounts(model)
    # Deepest owners first: a parent rewritten as a GraphModule must capture its
    # children after they themselves were rewritten.
    owners = sorted(model.named_modules(), key=lambda item: -_depth(item[0]))
    swapped = 0
    for owner_name, owner in owners:
        if not any(isinstance(child, nn.BatchNorm2d) for child in owner.children()):
            continue
        graph: fx.Graph | None = None
        if type(owner) is nn.Sequential:
            pairs = _sequential_pairs(owner, refcounts)
        else:
            tracer = _OwnForwardTracer()
            try:
                graph = tracer.trace(owner)
            except Exception as error:  # fx raises many types; all mean "not traceable"
                warnings.warn(
                    f"{owner_name or '<root>'} ({type(owner).__name__}): forward not traceable "
                    f"by torch.fx ({type(error).__name__}: {error}); its BatchNorm2d children "
                    "were not swapped",
                    SwapWarning,
                )
                continue
            pairs = _traced_pairs(owner, graph, refcounts, owner_name)
        needs_rewrite = [pair for pair in pairs if pair.relu_module is None]
        if needs_rewrite and not owner_name:
            names = ", ".join(pair.bn_name for pair in needs_rewrite)
            warnings.warn(
                f"BatchNorm2d -> ReLU pairs in the root model's own forward ({names}) need a "
                "forward rewrite, which cannot be done in place: wrap the model in a "
                "container module and swap that instead",
                SwapWarning,
            )
            pairs = [pair for pair in pairs if pair.relu_module is not None]
            needs_rewrite = []
        for pair in pairs:
            setattr(owner, pair.bn_name, _new_layer(getattr(owner, pair.bn_name), factory))
            if pair.relu_module is not None:
                setattr(owner, pair.relu_module, nn.Identity())
            swapped += 1
        if needs_rewrite:
            _replace_with_rewritten(model, owner_name, owner, graph, needs_rewrite)
    return swapped


# timm's norm classes over the last dim (timm.layers.norm), by class name; their
# channels-first forms normalize dim 1 of NCHW maps, which a token layer does not.
_TIMM_TOKEN_NORMS = frozenset({
    "LayerNorm", "LayerNormFp32", "RmsNorm", "RmsNormFp32", "SimpleNorm", "SimpleNormFp32",
})
_TIMM_CHANNELS_FIRST = frozenset({
    "LayerNorm2d", "LayerNorm2dFp32", "LayerNormExp2d", "RmsNorm2d", "RmsNorm2dFp32", "SimpleNorm2d",
    "SimpleNorm2dFp32",
})


def _is_timm(module: nn.Module, names: frozenset[str]) -> bool:
    cls = type(module)
    return cls.__module__.startswith("timm.") and cls.__name__ in names


def _token_norm_features(module: nn.Module) -> int | None:
    """The normalized size of a norm over the last dim; None for anything else (warning
    for norms this cannot replace)."""
    if _is_timm(module, _TIMM_CHANNELS_FIRST):
        warnings.warn(f"{type(module).__name__} normalizes channels first (NCHW): left alone",
                      SwapWarning)
        return None
    if not (isinstance(module, (nn.LayerNorm, nn.RMSNorm)) or _is_timm(module, _TIMM_TOKEN_NORMS)):
        return None
    shape = getattr(module, "normalized_shape", None)
    shape = (shape,) if isinstance(shape, int) else tuple(shape or ())
    if len(shape) != 1:
        warnings.warn(f"{type(module).__name__} over {shape} (not one last dimension): left alone",
                      SwapWarning)
        return None
    return int(shape[0])


def swap_layernorm(model: nn.Module, factory: Callable[[int], nn.Module]) -> int:
    """Replace every LayerNorm/RMSNorm over the last dim in `model` (see the module
    docstring) by `factory(num_features)`, on the original's device and dtype, with its
    weight and bias copied into the new layer's `gamma` and `beta` where both exist.

    Modifies `model` in place (its root too, if it is such a norm it is not replaced:
    wrap it) and returns the number of modules replaced."""
    swapped = 0
    for _, parent in list(model.named_modules()):
        for name, child in list(parent.named_children()):
            features = _token_norm_features(child)
            if features is None:
                continue
            layer = factory(features)
            reference = next(iter(child.parameters()), None)
            if reference is not None:
                layer = layer.to(device=reference.device, dtype=reference.dtype)
            _copy_affine(child, layer)
            setattr(parent, name, layer)
            swapped += 1
    return swapped


def _copy_affine(original: nn.Module, layer: nn.Module) -> None:
    with torch.no_grad():
        for source, target in (("weight", "gamma"), ("bias", "beta")):
            value, slot = getattr(original, source, None), getattr(layer, target, None)
            if isinstance(value, torch.Tensor) and isinstance(slot, torch.Tensor) \
                    and value.numel() == slot.numel():
                slot.copy_(value.reshape(slot.shape))


def _sequential_graph(seq: nn.Sequential) -> fx.Graph:
    graph = fx.Graph()
    value = graph.placeholder("input")
    for name, _ in _sequential_children(seq):
        value = graph.call_module(name, (value,))
    graph.output(value)
    return graph


def _replace_with_rewritten(
    model: nn.Module,
    owner_name: str,
    owner: nn.Module,
    graph: fx.Graph | None,
    pairs: list[_Pair],
) -> None:
    """Drop the relu calls of `pairs` from the owner's forward and install the result."""
    if graph is None:
        graph = _sequential_graph(owner)
    nodes = {node.name: node for node in graph.nodes}
    if isinstance(owner, nn.Sequential):
        # A Sequential's relu follows its BN by position: find it from the BN node.
        for pair in pairs:
            bn_node = next(n for n in graph.nodes if n.op == "call_module" and n.target == pair.bn_name)
            relu = next(iter(bn_node.users))
            relu.replace_all_uses_with(bn_node)
            graph.erase_node(relu)
    else:
        for pair in pairs:
            relu = nodes[str(pair.relu_node)]
            source = relu.args[0]
            assert isinstance(source, fx.Node)
            relu.replace_all_uses_with(source)
            graph.erase_node(relu)
    graph.lint()
    rewritten = fx.GraphModule(owner, graph, class_name=type(owner).__name__)
    parent_name, _, attribute = owner_name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attribute, rewritten)


__all__ = ["NormActFactory", "SwapWarning", "swap_layernorm", "swap_norm_act"]
