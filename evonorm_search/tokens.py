"""A layer graph in a Transformer's norm slot: normalizes the last dimension of
channel-last activations, (B, T, C) or (B, heads, T, head_dim), like `nn.LayerNorm(C)`.

The graph's statistics are defined on (N, C, H, W) maps (`primitives`); a token tensor is
viewed as maps without copying: (..., T, C) -> (N, C, T, 1), N the product of the leading
dims, so `*_channel` statistics are per token (LayerNorm, RMSNorm), `*_channel_group`
per token and group of channels (per head with groups = heads), and batch statistics
per channel over every token of the batch. A 2-D (N, C) input is N tokens of their own.
Float16/bfloat16 input is computed in float32 and returned in its dtype.

`TokenLayer` is the compiled layer (`evonorm_search.compile.CompiledLayer`) behind that
view: same parameters (shaped (1, C, 1, 1)), buffers and state_dict keys. Its constructor
takes timm's norm_layer arguments `(num_features, eps=..., device=None, dtype=None)`.
A layer whose whole function is LayerNorm or RMSNorm (by structural hash, so renumbered
copies and dead nodes included) runs torch's kernel for it instead of its graph's ops:
the same values, a fused forward and backward (8x faster for LayerNorm on CPU).
The functions below are copied verbatim into stand-alone exports
(`evonorm_search.export_tokens`), so an exported layer computes what was evaluated.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from evonorm_search.compile import CompiledLayer
from evonorm_search.graph import LayerGraph
from evonorm_search.known import get_known

# Known layers computed by one torch kernel, by the kernel's name in `fused_norm`.
KERNELS = {"layernorm": "layer_norm", "rmsnorm": "rms_norm"}


def as_maps(x: Tensor) -> Tensor:
    """Channel-last tokens (..., T, C) as maps (N, C, T, 1); (N, C) as (N, C, 1, 1). A view."""
    if x.dim() == 2:
        return x[:, :, None, None]
    return x.reshape(-1, x.shape[-2], x.shape[-1]).permute(0, 2, 1).unsqueeze(-1)


def from_maps(y: Tensor, shape: torch.Size) -> Tensor:
    """The inverse of `as_maps` for an input of shape `shape`."""
    if len(shape) == 2:
        return y[:, :, 0, 0]
    return y.squeeze(-1).permute(0, 2, 1).reshape(shape)


def normalize_tokens(maps_forward: Callable[[Tensor], Tensor], x: Tensor,
                     num_features: int) -> Tensor:
    """`maps_forward` (a layer on (N, C, H, W) maps) applied over the last dim of `x`,
    in float32 for float16/bfloat16 input."""
    if x.dim() < 2 or x.shape[-1] != num_features:
        raise ValueError(
            f"expected input (..., {num_features}) with at least 2 dims, got {tuple(x.shape)}"
        )
    dtype = x.dtype
    half = dtype == torch.float16 or dtype == torch.bfloat16
    y = from_maps(maps_forward(as_maps(x.float() if half else x)), x.shape)
    return y.to(dtype) if half else y


def fused_norm(kernel: str, x: Tensor, num_features: int, gamma: Tensor, beta: Tensor,
               eps: float) -> Tensor:
    """LayerNorm ("layer_norm") or RMSNorm ("rms_norm") over the last dim of `x`, then
    `* gamma + beta`, by torch's kernels, in float32 for float16/bfloat16 input."""
    if x.dim() < 2 or x.shape[-1] != num_features:
        raise ValueError(
            f"expected input (..., {num_features}) with at least 2 dims, got {tuple(x.shape)}"
        )
    dtype = x.dtype
    half = dtype == torch.float16 or dtype == torch.bfloat16
    xf = x.float() if half else x
    weight = gamma.reshape(-1).to(xf.dtype)
    bias = beta.reshape(-1).to(xf.dtype)
    if kernel == "layer_norm":
        y = F.layer_norm(xf, (num_features,), weight, bias, eps)
    else:
        y = F.rms_norm(xf, (num_features,), weight, eps) + bias
    return y.to(dtype) if half else y


def kernel_of(graph: LayerGraph) -> str | None:
    """The torch kernel computing `graph`'s whole function (see KERNELS), or None."""
    digest = graph.structural_hash()
    for name, kernel in KERNELS.items():
        if get_known(name).structural_hash() == digest:
            return kernel
    return None


class TokenLayer(CompiledLayer):
    """`graph` (then `* gamma + beta`) over the last dim of (..., num_features) tensors.
    `graph` is a keyword so that a partial binding it (and eps) is timm's norm_layer
    contract: called with the features first (timm rebinds only a partial's keywords)."""

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        *,
        graph: LayerGraph,
        groups: int = 32,
        momentum: float = 0.1,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(graph, num_features, groups=groups, eps=eps, momentum=momentum)
        self.kernel = kernel_of(graph)
        if device is not None or dtype is not None:
            self.to(device=device, dtype=dtype)

    def forward(self, x: Tensor) -> Tensor:
        if self.kernel is not None:
            return fused_norm(self.kernel, x, self.num_channels, self.gamma, self.beta,
                              self.eps)
        return normalize_tokens(super().forward, x, self.num_channels)


def token_layer_factory(
    graph: LayerGraph, *, groups: int = 32, eps: float = 1e-5, momentum: float = 0.1
) -> Callable[..., TokenLayer]:
    """`num_features -> TokenLayer`, also taking `eps=`, `device=` and `dtype=` as timm's
    `norm_layer` is called (picklable; what the Transformer proxies and
    `swap_layernorm` use)."""
    return functools.partial(TokenLayer, graph=graph, eps=eps, groups=groups, momentum=momentum)
