"""Stand-alone export of a layer for Transformer norm slots: Python source of a module
that imports only torch and normalizes the last dimension of (B, T, C) or
(B, heads, T, head_dim) tensors, as `evonorm_search.tokens.TokenLayer` does.

The source is the maps module of `evonorm_search.export.to_source` (the layer's ops on
(N, C, H, W) maps, under the name `_<class>Maps`), verbatim copies of the view functions
of `evonorm_search.tokens` (and its LayerNorm/RMSNorm kernel path where the layer is one
of those), and a subclass with timm's norm_layer constructor
`(num_features, eps=1e-5, groups=32, momentum=0.1, device=None, dtype=None)`. Same
outputs and state_dict keys as `TokenLayer`.
"""

from __future__ import annotations

import inspect
import keyword

from evonorm_search.errors import EvonormError
from evonorm_search.export import to_source
from evonorm_search.graph import LayerGraph
from evonorm_search.tokens import as_maps, from_maps, fused_norm, kernel_of, normalize_tokens

DEFAULT_CLASS_NAME = "EvolvedNorm"


def to_token_source(graph: LayerGraph, class_name: str = DEFAULT_CLASS_NAME) -> str:
    """Python source defining `class_name(num_features, eps=1e-5, groups=32,
    momentum=0.1, device=None, dtype=None)` for channel-last Transformer activations."""
    if not class_name.isidentifier() or keyword.iskeyword(class_name):
        raise EvonormError(
            f"class name {class_name!r} is not a Python identifier; use e.g. {DEFAULT_CLASS_NAME}"
        )
    maps = to_source(graph, class_name=f"_{class_name}Maps")
    kernel = kernel_of(graph)
    helpers = [as_maps, from_maps, normalize_tokens, *([fused_norm] if kernel else [])]
    if kernel:
        maps = maps.replace("\nimport torch\n", "\nimport torch\nimport torch.nn.functional as F\n", 1)
    body = (
        f'return fused_norm("{kernel}", x, self.num_channels, self.gamma, self.beta, self.eps)'
        if kernel else "return normalize_tokens(super().forward, x, self.num_channels)"
    )
    formula = graph.formula()
    return "\n".join([
        maps.replace("Normalization-activation layer exported by evonorm_search.",
                     f"Transformer normalization layer exported by evonorm_search ({class_name}).",
                     1).rstrip("\n"),
        "",
        *(f"\n{inspect.getsource(fn)}" for fn in helpers),
        "",
        f"class {class_name}(_{class_name}Maps):",
        f'    """y = ({formula}) * gamma + beta over the last dim of (..., num_features) tensors,',
        "    e.g. (B, T, C) or (B, heads, T, head_dim), like nn.LayerNorm(num_features): the",
        "    input is viewed as (N, C, T, 1) maps, so *_channel statistics are per token.",
        "    Float16/bfloat16 input is computed in float32. Use as timm's norm_layer, e.g.",
        f"    timm.create_model(..., norm_layer=functools.partial({class_name}, eps=1e-6)).",
        '    """',
        "",
        "    def __init__(",
        "        self, num_features: int, eps: float = 1e-5, groups: int = 32, momentum: float = 0.1,",
        "        device=None, dtype=None,",
        "    ) -> None:",
        "        super().__init__(num_features, groups=groups, eps=eps, momentum=momentum)",
        "        if device is not None or dtype is not None:",
        "            self.to(device=device, dtype=dtype)",
        "",
        "    def forward(self, x: Tensor) -> Tensor:",
        f"        {body}",
        "",
    ])
