"""Proxy builders of a user's own, for tests/test_own_proxy.py: one that works (a tiny
VGG-style net) and one per mistake that `workers.proxies` must refuse."""

from __future__ import annotations

import torch
from torch import nn


class TinyVGG(nn.Module):
    """Conv -> layer blocks, a 2x2 max-pool after each stage, global pooling, linear."""

    def __init__(self, norm_act, num_classes, in_channels, width, depth):  # type: ignore[no-untyped-def]
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_channels
        for stage in range(2):
            cout = width * 2**stage
            for _ in range(depth):
                layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), norm_act(cout)]
                cin = cout
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean(dim=(2, 3)))


def build_vgg(norm_act, num_classes, in_channels, width, depth):  # type: ignore[no-untyped-def]
    return TinyVGG(norm_act, num_classes, in_channels, width, depth)


NOT_CALLABLE = 3


def two_arguments(norm_act, num_classes):  # type: ignore[no-untyped-def]
    return nn.Linear(1, num_classes)


def no_layer(norm_act, num_classes, in_channels, width, depth):  # type: ignore[no-untyped-def]
    """Plain BatchNorm + ReLU: the candidate layer never appears."""
    return nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(width, num_classes))


class _Skips(nn.Module):
    def __init__(self, norm_act, num_classes, in_channels, width):  # type: ignore[no-untyped-def]
        super().__init__()
        self.conv = nn.Conv2d(in_channels, width, 3, padding=1)
        self.act = norm_act(width)  # created, then forgotten in forward
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


def layer_never_run(norm_act, num_classes, in_channels, width, depth):  # type: ignore[no-untyped-def]
    return _Skips(norm_act, num_classes, in_channels, width)


def wrong_output(norm_act, num_classes, in_channels, width, depth):  # type: ignore[no-untyped-def]
    """Forgets the classifier: returns (batch, width) features instead of logits."""
    return nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), norm_act(width),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten())


class _ListHeld(nn.Module):
    def __init__(self, norm_act, num_classes, in_channels, width):  # type: ignore[no-untyped-def]
        super().__init__()
        self.conv = nn.Conv2d(in_channels, width, 3, padding=1)
        self.acts = [norm_act(width)]  # a plain list: not a submodule, never trained
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.acts[0](self.conv(x)).mean(dim=(2, 3)))


def layers_in_a_list(norm_act, num_classes, in_channels, width, depth):  # type: ignore[no-untyped-def]
    return _ListHeld(norm_act, num_classes, in_channels, width)


def raises_on_build(norm_act, num_classes, in_channels, width, depth):  # type: ignore[no-untyped-def]
    raise RuntimeError("this net needs 3 input channels")
