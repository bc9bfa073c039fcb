"""The op registry: what a primitive is (name, arity, kind, axes, doc, torch function).

Adding an op is one decorated function (`@register(...)`). The function itself is the
implementation used by the compiled layer and is copied verbatim into exported stand-alone
modules, so op functions must reference only `torch`, their arguments and other functions
of this package.

Calling conventions (what the compiler passes):
- element-wise:      fn(a, eps) or fn(a, b, eps)
- statistic:         fn(t, eps, groups) -> statistic kept with size-1 reduced dims
                     (a `channel_group` statistic is repeated over its group's channels,
                     so it has t's shape)
- batch statistic:   fn(t, running, training, momentum, eps); in training mode it updates
                     the `running` buffer in place (initialised to `running_init`) and
                     returns the statistic of the batch, in eval mode it uses `running`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal


OpKind = Literal["elementwise", "statistic"]
AxisSet = Literal["batch", "layer", "instance", "group", "channel", "channel_group"]
# The paper's four, then the per-position ones: `channel` reduces over C at each (n, h, w),
# `channel_group` over C/g channels at each (n, h, w). A Transformer's (B, T, C) activation
# viewed as (B, C, T, 1) makes them per-token statistics (LayerNorm, RMSNorm, per-head
# norms), while batch/layer/instance/group then reduce over tokens.
PAPER_AXIS_SETS: tuple[AxisSet, ...] = ("batch", "layer", "instance", "group")
AXIS_SETS: tuple[AxisSet, ...] = (*PAPER_AXIS_SETS, "channel", "channel_group")
# Axis sets whose statistics mix the positions (tokens) of a sample: a causal language
# model must not use them, or position t would see later tokens.
TOKEN_AXIS_SETS: frozenset[AxisSet] = frozenset(PAPER_AXIS_SETS)


@dataclass(frozen=True)
class Op:
    """One primitive. `positive` means the output is bounded away from zero for every
    finite input (so dividing by it needs no guard); `symbol` is the infix/prefix operator
    used by readable formulas ("+", "*", "/" for binaries, "-" for negation)."""

    name: str
    arity: int
    kind: OpKind
    axes: AxisSet | None
    commutative: bool
    doc: str
    fn: Callable[..., object]
    positive: bool = False
    symbol: str | None = None
    running_init: float | None = None

    @property
    def reads_batch_stats(self) -> bool:
        return self.axes == "batch"


OPS: dict[str, Op] = {}


def register(
    name: str,
    *,
    arity: int = 1,
    axes: AxisSet | None = None,
    commutative: bool = False,
    positive: bool = False,
    symbol: str | None = None,
    running_init: float | None = None,
    doc: str,
) -> Callable[[Callable[..., object]], Callable[..., object]]:
    """Decorator adding the decorated torch function to `OPS` under `name`."""
    if arity not in (1, 2):
        raise ValueError(f"op {name!r}: arity must be 1 or 2")
    if axes is not None and (arity != 1 or axes not in AXIS_SETS):
        raise ValueError(f"op {name!r}: statistics are unary over one of {AXIS_SETS}")
    if (axes == "batch") != (running_init is not None):
        raise ValueError(f"op {name!r}: batch statistics (only) need running_init")

    def decorate(fn: Callable[..., object]) -> Callable[..., object]:
        if name in OPS:
            raise ValueError(f"op {name!r} registered twice")
        OPS[name] = Op(
            name=name,
            arity=arity,
            kind="elementwise" if axes is None else "statistic",
            axes=axes,
            commutative=commutative,
            doc=doc,
            fn=fn,
            positive=positive,
            symbol=symbol,
            running_init=running_init,
        )
        return fn

    return decorate


class UnknownOpError(ValueError):
    """No primitive has that name (graph validation reports it as a GraphError)."""


def get_op(name: str) -> Op:
    """The op called `name`; UnknownOpError naming the known ops otherwise."""
    try:
        return OPS[name]
    except (KeyError, TypeError):
        raise UnknownOpError(
            f"unknown op {name!r}; use one of: {', '.join(sorted(OPS))}"
        ) from None


SlotKind = Literal["norm_act", "norm"]


@dataclass(frozen=True)
class SearchSpace:
    """A search space: the statistics' axis sets its layers may use (element-wise ops are
    in every space), a one-line description for help texts and errors, and the slot its
    layers fill: "norm_act" (a CNN's BN-ReLU pair, the paper's) or "norm" (a
    Transformer's LayerNorm, with no activation after it)."""

    name: str
    axes: frozenset[AxisSet]
    doc: str
    slot: SlotKind = "norm_act"

    def allows(self, op: Op) -> bool:
        return op.axes is None or op.axes in self.axes


# Search spaces by name. B is the paper's full space of 24 primitives; S leaves out batch
# statistics (layers usable at batch size 1). T is the Transformer norm slot with per-token
# statistics only: its layers see no other token and no other sample, so they are safe in
# causal language models, work at any batch size and sequence length, and behave the same
# in training and inference (LayerNorm, RMSNorm, DyT live here). TB adds batch statistics
# over all tokens (BatchNorm-style Transformer norms: RepBN, BCN), for non-causal proxies.
SPACES: dict[str, SearchSpace] = {
    "B": SearchSpace("B", frozenset(PAPER_AXIS_SETS), "all 24 primitives of the paper"),
    "S": SearchSpace("S", frozenset(PAPER_AXIS_SETS) - {"batch"}, "no batch statistics"),
    "T": SearchSpace("T", frozenset({"channel", "channel_group"}),
                     "Transformer norm slot, per-token statistics only (causal-safe)", "norm"),
    "TB": SearchSpace("TB", frozenset({"channel", "channel_group", "batch"}),
                      "Transformer norm slot, per-token and batch statistics (non-causal "
                      "proxies only)", "norm"),
}


def get_space(name: str) -> SearchSpace:
    """The search space called `name`; ValueError naming the known ones otherwise."""
    try:
        return SPACES[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown search space {name!r}; use one of: {', '.join(SPACES)}"
        ) from None


def op_names(space: str = "B") -> tuple[str, ...]:
    """Op names of a search space, in registry order."""
    allowed = get_space(space)
    return tuple(name for name, op in OPS.items() if allowed.allows(op))
