"""The aggregate primitives: {mean, rms, std} x {batch, layer, instance, group} (the
paper's 12) and x {channel, channel_group} (per position: over C, or over the C/g channels
of a group, at each (n, h, w); LayerNorm and RMSNorm of a Transformer token when its
(B, T, C) activation is viewed as (B, C, T, 1)).

Each statistic keeps its reduced dims with size 1 and is broadcast back by torch's
broadcasting at its consumer, never materialised at full size. std = sqrt(biased var +
eps) (two-pass), rms = sqrt(mean(t^2) + eps), both bounded below by sqrt(eps).
Group statistics use the channel-group count computed by the compiler (32 lowered until
it divides C); a tensor that is constant over channels (C dim 1) uses its whole (C,H,W).
Channel-group statistics use the same count and are repeated over each group's channels
(shape of t); on a tensor constant over channels (C dim 1) they reduce over that one
channel, as `channel` statistics do.
Batch statistics keep a per-channel running average (see `primitives.registry`); for
`std_batch` it is the running variance with BatchNorm's n/(n-1) correction, so that
BN-ReLU written as a graph equals `nn.BatchNorm2d` + ReLU in both modes.
"""

from __future__ import annotations

import torch
from torch import Tensor

from primitives.registry import register

def _grouped(t: Tensor, groups: int) -> Tensor:
    """View `t` as (N, G, rest) for per-group reduction over the last dim."""
    return t.reshape(t.shape[0], groups if t.shape[1] > 1 else 1, -1)


def _ungrouped(stat: Tensor, t: Tensor) -> Tensor:
    """Bring a (N, G, 1) group statistic to (N, C, 1, 1), C being `t`'s channel count."""
    n, g = stat.shape[0], stat.shape[1]
    return stat.expand(n, g, t.shape[1] // g).reshape(n, t.shape[1], 1, 1)


def _biased_var(t: Tensor, dims: tuple[int, ...]) -> Tensor:
    """Biased variance over `dims` (kept), two-pass: mean, then mean squared deviation.
    Written out because `torch.var_mean` is 1.5-3x slower forward+backward on CPU at
    proxy shapes (measured: 480 vs 175 us at (64, 16, 64))."""
    centred = t - t.mean(dims, keepdim=True)
    return (centred * centred).mean(dims, keepdim=True)


def _unbiased_factor(t: Tensor) -> float:
    """BatchNorm's n/(n-1) correction for the running variance (1 when n <= 1), without
    a Python branch on n: torch.export would keep the branch taken on its example input
    (n > 1) and divide by zero at n = 1."""
    n = t.shape[0] * t.shape[2] * t.shape[3]
    return n / torch.sym_max(n - 1, 1)


@register("mean_layer", axes="layer", doc="mean over (C,H,W), per sample")
def op_mean_layer(t: Tensor, eps: float, groups: int) -> Tensor:
    return t.mean((1, 2, 3), keepdim=True)


@register("mean_instance", axes="instance", doc="mean over (H,W), per sample and channel")
def op_mean_instance(t: Tensor, eps: float, groups: int) -> Tensor:
    return t.mean((2, 3), keepdim=True)


@register("mean_group", axes="group", doc="mean over (C/g,H,W), per sample and group")
def op_mean_group(t: Tensor, eps: float, groups: int) -> Tensor:
    return _ungrouped(_grouped(t, groups).mean(2, keepdim=True), t)


@register("rms_layer", axes="layer", positive=True, doc="sqrt(mean_{C,H,W}(t^2) + eps)")
def op_rms_layer(t: Tensor, eps: float, groups: int) -> Tensor:
    return torch.sqrt((t * t).mean((1, 2, 3), keepdim=True) + eps)


@register("rms_instance", axes="instance", positive=True, doc="sqrt(mean_{H,W}(t^2) + eps)")
def op_rms_instance(t: Tensor, eps: float, groups: int) -> Tensor:
    return torch.sqrt((t * t).mean((2, 3), keepdim=True) + eps)


@register("rms_group", axes="group", positive=True, doc="sqrt(mean_{C/g,H,W}(t^2) + eps)")
def op_rms_group(t: Tensor, eps: float, groups: int) -> Tensor:
    tg = _grouped(t, groups)
    return _ungrouped(torch.sqrt((tg * tg).mean(2, keepdim=True) + eps), t)


@register("std_layer", axes="layer", positive=True, doc="sqrt(var_{C,H,W}(t) + eps)")
def op_std_layer(t: Tensor, eps: float, groups: int) -> Tensor:
    return torch.sqrt(_biased_var(t, (1, 2, 3)) + eps)


@register("std_instance", axes="instance", positive=True, doc="sqrt(var_{H,W}(t) + eps)")
def op_std_instance(t: Tensor, eps: float, groups: int) -> Tensor:
    return torch.sqrt(_biased_var(t, (2, 3)) + eps)


@register("std_group", axes="group", positive=True, doc="sqrt(var_{C/g,H,W}(t) + eps)")
def op_std_group(t: Tensor, eps: float, groups: int) -> Tensor:
    return _ungrouped(torch.sqrt(_biased_var(_grouped(t, groups), (2,)) + eps), t)


@register("mean_batch", axes="batch", running_init=0.0, doc="mean over (N,H,W), per channel")
def op_mean_batch(
    t: Tensor, running: Tensor, training: bool, momentum: float, eps: float
) -> Tensor:
    if not training:
        return running
    mean = t.mean((0, 2, 3), keepdim=True)
    with torch.no_grad():
        running.mul_(1.0 - momentum).add_(mean, alpha=momentum)
    return mean


@register(
    "rms_batch", axes="batch", positive=True, running_init=1.0,
    doc="sqrt(mean_{N,H,W}(t^2) + eps), per channel",
)
def op_rms_batch(
    t: Tensor, running: Tensor, training: bool, momentum: float, eps: float
) -> Tensor:
    if not training:
        return torch.sqrt(running + eps)
    square_mean = (t * t).mean((0, 2, 3), keepdim=True)
    with torch.no_grad():
        running.mul_(1.0 - momentum).add_(square_mean, alpha=momentum)
    return torch.sqrt(square_mean + eps)


@register(
    "std_batch", axes="batch", positive=True, running_init=1.0,
    doc="sqrt(var_{N,H,W}(t) + eps), per channel (BatchNorm-like)",
)
def op_std_batch(
    t: Tensor, running: Tensor, training: bool, momentum: float, eps: float
) -> Tensor:
    if not training:
        return torch.sqrt(running + eps)
    var = _biased_var(t, (0, 2, 3))
    with torch.no_grad():
        running.mul_(1.0 - momentum).add_(var, alpha=momentum * _unbiased_factor(t))
    return torch.sqrt(var + eps)


def _channel_grouped(t: Tensor, groups: int) -> Tensor:
    """View `t` as (N, G, C/G, H, W) for per-group reduction over dim 2 (one group when
    t is constant over channels)."""
    g = groups if t.shape[1] > 1 else 1
    return t.reshape(t.shape[0], g, t.shape[1] // g, *t.shape[2:])


def _channel_ungrouped(stat: Tensor, t: Tensor) -> Tensor:
    """Bring an (N, G, 1, H, W) statistic back to t's channels, each group's value repeated."""
    return stat.expand(*stat.shape[:2], t.shape[1] // stat.shape[1], *stat.shape[3:]).reshape(
        stat.shape[0], t.shape[1], *stat.shape[3:])


@register("mean_channel", axes="channel", doc="mean over C, per sample and position")
def op_mean_channel(t: Tensor, eps: float, groups: int) -> Tensor:
    return t.mean(1, keepdim=True)


@register("rms_channel", axes="channel", positive=True,
          doc="sqrt(mean_C(t^2) + eps), per sample and position")
def op_rms_channel(t: Tensor, eps: float, groups: int) -> Tensor:
    return torch.sqrt((t * t).mean(1, keepdim=True) + eps)


@register("std_channel", axes="channel", positive=True,
          doc="sqrt(var_C(t) + eps), per sample and position (LayerNorm-like)")
def op_std_channel(t: Tensor, eps: float, groups: int) -> Tensor:
    return torch.sqrt(_biased_var(t, (1,)) + eps)


@register("mean_channel_group", axes="channel_group",
          doc="mean over C/g, per sample, group and position")
def op_mean_channel_group(t: Tensor, eps: float, groups: int) -> Tensor:
    return _channel_ungrouped(_channel_grouped(t, groups).mean(2, keepdim=True), t)


@register("rms_channel_group", axes="channel_group", positive=True,
          doc="sqrt(mean_{C/g}(t^2) + eps), per sample, group and position")
def op_rms_channel_group(t: Tensor, eps: float, groups: int) -> Tensor:
    tg = _channel_grouped(t, groups)
    return _channel_ungrouped(torch.sqrt((tg * tg).mean(2, keepdim=True) + eps), t)


@register("std_channel_group", axes="channel_group", positive=True,
          doc="sqrt(var_{C/g}(t) + eps), per sample, group and position")
def op_std_channel_group(t: Tensor, eps: float, groups: int) -> Tensor:
    return _channel_ungrouped(torch.sqrt(_biased_var(_channel_grouped(t, groups), (2,)) + eps), t)
