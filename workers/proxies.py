"""Proxy networks (PAPER.md section 5): a registry of small CIFAR-sized conv nets.

Every builder takes `norm_act(num_channels) -> nn.Module` and puts it at each place a
BN-ReLU pair would go, so the candidate layer is both the normalization and the
activation. Three stages (strides 1, 2, 2) with `width`, `2*width`, `4*width` channels
and `depth` blocks each; the stem keeps the resolution, so 8x8 inputs end at 2x2 and
32x32 inputs at 8x8. All builders share one signature:

    builder(norm_act, num_classes, in_channels, width, depth) -> nn.Module
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

NormAct = Callable[[int], nn.Module]
ProxyBuilder = Callable[[NormAct, int, int, int, int], nn.Module]

STAGE_STRIDES = (1, 2, 2)


def _conv(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False)


def _stage_channels(width: int) -> list[int]:
    return [width * 2**i for i in range(len(STAGE_STRIDES))]


def _check_knobs(width: int, depth: int) -> None:
    if width < 1 or depth < 1:
        raise ValueError(f"proxy width and depth must be >= 1, got width={width}, depth={depth}")


class _Classifier(nn.Module):
    """Stem, a sequence of blocks, a head, global pooling and a linear classifier."""

    def __init__(self, stem: nn.Module, blocks: list[nn.Module], head: nn.Module,
                 features: int, num_classes: int) -> None:
        super().__init__()
        self.stem = stem
        self.blocks = nn.Sequential(*blocks)
        self.head = head
        self.fc = nn.Linear(features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.blocks(self.stem(x)))
        return self.fc(x.mean(dim=(2, 3)))


# ----------------------------------------------------------------------------- ResNet


class PreActBottleneck(nn.Module):
    """Norm -> Conv1x1 -> Norm -> Conv3x3 -> Norm -> Conv1x1, plus identity skip.

    When the block changes resolution or width, the skip is a strided 1x1 convolution
    of the pre-activated input, as in pre-activation ResNets.
    """

    def __init__(self, norm_act: NormAct, cin: int, mid: int, cout: int, stride: int) -> None:
        super().__init__()
        self.act1 = norm_act(cin)
        self.conv1 = _conv(cin, mid, 1)
        self.act2 = norm_act(mid)
        self.conv2 = _conv(mid, mid, 3, stride)
        self.act3 = norm_act(mid)
        self.conv3 = _conv(mid, cout, 1)
        self.project = _conv(cin, cout, 1, stride) if stride != 1 or cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.act1(x)
        skip = x if self.project is None else self.project(pre)
        out = self.conv1(pre)
        out = self.conv2(self.act2(out))
        out = self.conv3(self.act3(out))
        return out + skip


def build_resnet(norm_act: NormAct, num_classes: int, in_channels: int, width: int = 16,
                 depth: int = 1) -> nn.Module:
    """Pre-activation bottleneck ResNet; bottleneck width per stage, outputs twice that."""
    _check_knobs(width, depth)
    blocks: list[nn.Module] = []
    cin = width
    for mid, stride in zip(_stage_channels(width), STAGE_STRIDES):
        for index in range(depth):
            blocks.append(PreActBottleneck(norm_act, cin, mid, 2 * mid, stride if index == 0 else 1))
            cin = 2 * mid
    return _Classifier(_conv(in_channels, width, 3), blocks, norm_act(cin), cin, num_classes)


# ------------------------------------------------------------ MobileNetV2 / EfficientNet


class SqueezeExcite(nn.Module):
    """Channel gating from globally pooled features (EfficientNet's squeeze-excite)."""

    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, reduced, 1)
        self.expand = nn.Conv2d(reduced, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.mean(dim=(2, 3), keepdim=True)
        scale = torch.sigmoid(self.expand(nn.functional.silu(self.reduce(scale))))
        return x * scale


class InvertedResidual(nn.Module):
    """Conv1x1 -> Norm -> Depthwise kxk -> Norm [-> Squeeze-Excite] -> Conv1x1, plus skip.

    The skip is used when the block keeps resolution and width (MobileNetV2).
    """

    def __init__(self, norm_act: NormAct, cin: int, cout: int, stride: int, expansion: int,
                 kernel: int, squeeze_excite: bool) -> None:
        super().__init__()
        hidden = cin * expansion
        layers: list[nn.Module] = [
            _conv(cin, hidden, 1), norm_act(hidden),
            _conv(hidden, hidden, kernel, stride, groups=hidden), norm_act(hidden),
        ]
        if squeeze_excite:
            layers.append(SqueezeExcite(hidden, max(1, cin // 4)))
        layers.append(_conv(hidden, cout, 1))
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return out + x if self.residual else out


def _inverted_net(norm_act: NormAct, num_classes: int, in_channels: int, width: int,
                  depth: int, expansion: int, kernel: int, squeeze_excite: bool) -> nn.Module:
    _check_knobs(width, depth)
    stem = nn.Sequential(_conv(in_channels, width, 3), norm_act(width))
    blocks: list[nn.Module] = []
    cin = width
    for cout, stride in zip(_stage_channels(width), STAGE_STRIDES):
        for index in range(depth):
            blocks.append(InvertedResidual(norm_act, cin, cout, stride if index == 0 else 1,
                                           expansion, kernel, squeeze_excite))
            cin = cout
    features = 2 * cin
    head = nn.Sequential(_conv(cin, features, 1), norm_act(features))
    return _Classifier(stem, blocks, head, features, num_classes)


def build_mobilenetv2(norm_act: NormAct, num_classes: int, in_channels: int, width: int = 16,
                      depth: int = 1) -> nn.Module:
    """MobileNetV2-style net: inverted residuals, expansion 4, 3x3 depthwise."""
    return _inverted_net(norm_act, num_classes, in_channels, width, depth, 4, 3, False)


def build_efficientnet(norm_act: NormAct, num_classes: int, in_channels: int, width: int = 16,
                       depth: int = 1) -> nn.Module:
    """EfficientNet-style net: inverted residuals with squeeze-excite.

    3x3 depthwise kernels (EfficientNet mixes 3x3 and 5x5): a 5x5 depthwise backward
    pass costs several times more on CPU, and the proxy must stay cheap.
    """
    return _inverted_net(norm_act, num_classes, in_channels, width, depth, 4, 3, True)


PROXIES: dict[str, ProxyBuilder] = {
    "resnet": build_resnet,
    "mobilenetv2": build_mobilenetv2,
    "efficientnet": build_efficientnet,
}


def build_proxy(name: str, norm_act: NormAct, num_classes: int, in_channels: int,
                width: int, depth: int) -> nn.Module:
    """Build proxy `name`; `KeyError` naming the known proxies if it is unknown."""
    if name not in PROXIES:
        raise KeyError(f"unknown proxy {name!r}; choose from {', '.join(PROXIES)}")
    return PROXIES[name](norm_act, num_classes, in_channels, width, depth)
