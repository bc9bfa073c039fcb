"""Proxy networks (PAPER.md section 5): a registry of small CIFAR-sized conv nets.

Every builder takes `norm_act(num_channels) -> nn.Module` and puts it at each place a
BN-ReLU pair would go, so the candidate layer is both the normalization and the
activation. Three stages (strides 1, 2, 2) with `width`, `2*width`, `4*width` channels
and `depth` blocks each; the stem keeps the resolution, so 8x8 inputs end at 2x2 and
32x32 inputs at 8x8. All builders share one signature:

    builder(norm_act, num_classes, in_channels, width, depth) -> nn.Module

Beside the registry names, a proxy may be the user's own builder named "MODULE:FUNCTION"
(e.g. "mypkg.nets:build_vgg"): `resolve_proxy` imports it, wherever it runs (the
controller, a Ray worker), and `check_proxy` refuses, before a search starts, a builder
whose model would make every candidate score alike or fail (see docs/own_proxy.md).
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable

import torch
from torch import nn

from evonorm_search.errors import EvonormError

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
    """Build proxy `name` (a registry name or MODULE:FUNCTION); `KeyError` naming the
    known proxies if it is neither, `ProxyError` if MODULE:FUNCTION does not resolve."""
    if name not in PROXIES and not is_own_proxy(name):
        raise KeyError(f"unknown proxy {name!r}; choose from {', '.join(PROXIES)}")
    return resolve_proxy(name)(norm_act, num_classes, in_channels, width, depth)


# ------------------------------------------------------------------ the user's own proxies

BUILDER_PARAMETERS = ("norm_act", "num_classes", "in_channels", "width", "depth")
_BUILDER_FORM = f"({', '.join(BUILDER_PARAMETERS)}) -> nn.Module"
# Images in the dummy batch of `check_proxy` (more than one: batch statistics).
CHECK_BATCH = 4


class ProxyError(EvonormError, ValueError):
    """A proxy named MODULE:FUNCTION that cannot be imported or would not work."""


def is_own_proxy(name: str) -> bool:
    """Whether `name` names the user's builder (MODULE:FUNCTION) rather than a registry one."""
    return ":" in name


def resolve_proxy(name: str) -> ProxyBuilder:
    """The builder called `name`: a registry name (`PROXIES`), or "MODULE:FUNCTION", any
    importable callable with the builder signature. MODULE is imported from sys.path
    (PYTHONPATH, installed packages), else from the current directory (Ray adds the
    controller's directory to its workers' sys.path too). `ProxyError` saying what to
    fix for an unknown name, a module that does not import, a missing attribute, one
    that is not callable, or a signature that cannot take the builder's five arguments.
    """
    if name in PROXIES:
        return PROXIES[name]
    if not is_own_proxy(name):
        raise ProxyError(
            f"unknown proxy {name!r}: choose from {', '.join(PROXIES)}, or name your own "
            "builder as MODULE:FUNCTION (e.g. mypkg.nets:build_vgg; see docs/own_proxy.md)"
        )
    module_name, _, attribute = name.partition(":")
    if not module_name or not attribute or ":" in attribute:
        raise ProxyError(
            f"proxy {name!r} is not MODULE:FUNCTION: write the module's import path, one "
            "colon and the builder's name, e.g. mypkg.nets:build_vgg"
        )
    if module_name.endswith(".py") or not all(p.isidentifier() for p in module_name.split(".")):
        raise ProxyError(
            f"proxy {name!r}: {module_name!r} is not a module's import path: write it as "
            "Python imports it, without '.py' or '/' (my_vgg for ./my_vgg.py, mypkg.nets "
            "for mypkg/nets.py)"
        )
    builder: object = _import_module(name, module_name)
    for part in attribute.split("."):
        try:
            builder = getattr(builder, part)
        except AttributeError:
            where = getattr(sys.modules.get(module_name), "__file__", None) or module_name
            raise ProxyError(
                f"proxy {name!r}: module {module_name!r} ({where}) has no attribute "
                f"{attribute!r}: fix the name after the colon, or define "
                f"{attribute}{_BUILDER_FORM.replace(' -> nn.Module', '')} there"
            ) from None
    if not callable(builder):
        raise ProxyError(
            f"proxy {name!r} is not callable (it is of type {type(builder).__name__}): name "
            f"a function (or nn.Module class) taking {_BUILDER_FORM}"
        )
    _check_signature(name, builder)
    return builder  # type: ignore[return-value]


def _import_module(name: str, module_name: str) -> object:
    here = os.getcwd()
    for attempt in range(2):
        try:
            return importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if not _is_missing(error, module_name):
                raise _import_failed(name, module_name, error) from None
        except Exception as error:  # noqa: BLE001 - the user's module failed to import
            raise _import_failed(name, module_name, error) from None
        if attempt or here in sys.path or "" in sys.path:
            break
        sys.path.append(here)  # after everything else: shadows no installed module
        importlib.invalidate_caches()
    raise ProxyError(
        f"proxy {name!r}: no module named {module_name!r} can be imported here (looked in "
        f"sys.path and the current directory {here}): run from the directory holding "
        "it, put that directory on PYTHONPATH or install its package (on every Ray node "
        "too, see docs/cluster.md), or fix the name before the colon"
    )


def _is_missing(error: ModuleNotFoundError, module_name: str) -> bool:
    """Whether `error` says the module itself (or a package above it) is missing, rather
    than something it imports."""
    return error.name is not None and (
        module_name == error.name or module_name.startswith(error.name + ".")
    )


def _import_failed(name: str, module_name: str, error: BaseException) -> ProxyError:
    return ProxyError(
        f"proxy {name!r}: importing module {module_name!r} raised "
        f"{type(error).__name__}: {error}: fix the module (or install what it imports)"
    )


def _check_signature(name: str, builder: Callable[..., object]) -> None:
    try:
        signature = inspect.signature(builder)
    except (TypeError, ValueError):  # e.g. a C function: `check_proxy` will call it
        return
    try:
        signature.bind(*BUILDER_PARAMETERS)
    except TypeError as error:
        raise ProxyError(
            f"proxy {name!r} has the signature {signature}, which cannot take the builder's "
            f"five positional arguments ({error}): define it as "
            f"{name.partition(':')[2]}{_BUILDER_FORM}"
        ) from None


def check_proxy(name: str, images: torch.Tensor, num_classes: int, width: int,
                depth: int) -> None:
    """Build proxy `name` as a search would (with BN-ReLU as the layer) and run it on
    `images` (a few of the data set's, NCHW); `ProxyError` saying what to fix when it
    cannot be resolved (`resolve_proxy`), building or the forward pass raises, it never
    creates a layer with norm_act, keeps one outside its modules (its parameters would
    not train), never runs one in forward, or does not return (batch, num_classes)
    logits. Torch's random state is left as it was."""
    from evonorm_search.compile import layer_factory
    from evonorm_search.known import get_known

    builder = resolve_proxy(name)
    make = layer_factory(get_known("bn_relu"))
    created: list[nn.Module] = []

    def norm_act(channels: int) -> nn.Module:
        layer = make(channels)
        created.append(layer)
        return layer

    knobs = (f"num_classes={num_classes}, in_channels={images.shape[1]}, width={width}, "
             f"depth={depth}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        try:
            model = builder(norm_act, num_classes, int(images.shape[1]), width, depth)
        except Exception as error:  # noqa: BLE001 - the user's code: report it
            raise ProxyError(
                f"proxy {name!r} raised {type(error).__name__}: {error} when building the "
                f"model ({knobs}): fix the builder"
            ) from None
        if not isinstance(model, nn.Module):
            raise ProxyError(
                f"proxy {name!r} returned a {type(model).__name__}, not a torch.nn.Module: "
                "return the model"
            )
        if not created:
            raise ProxyError(
                f"proxy {name!r} never calls norm_act: its model has no candidate layer, so "
                "every candidate would score the same; create each normalization-activation "
                "with norm_act(channels) where a BatchNorm2d + ReLU pair would go"
            )
        owned = {id(module) for module in model.modules()}
        stray = [layer for layer in created if id(layer) not in owned]
        if stray:
            raise ProxyError(
                f"proxy {name!r} keeps {len(stray)} of its {len(created)} norm_act layers "
                "outside the model's modules (e.g. in a plain Python list), so their "
                "parameters would not train: hold them in attributes, nn.Sequential or "
                "nn.ModuleList"
            )
        ran: set[int] = set()
        hooks = [layer.register_forward_hook(lambda module, *_: ran.add(id(module)))
                 for layer in created]
        batch = images[:CHECK_BATCH].detach().to("cpu", torch.float32)
        try:
            with torch.no_grad():
                output = model.train()(batch)
        except Exception as error:  # noqa: BLE001 - the user's code: report it
            raise ProxyError(
                f"proxy {name!r} fails on a batch of shape {tuple(batch.shape)} "
                f"({type(error).__name__}: {error}): its model must take (batch, "
                "in_channels, height, width) images, and each norm_act(channels) layer "
                "takes (batch, channels, height, width) tensors"
            ) from None
        finally:
            for hook in hooks:
                hook.remove()
    if not ran:
        raise ProxyError(
            f"proxy {name!r} creates {len(created)} layer(s) with norm_act but its forward "
            "never runs any of them, so every candidate would score the same: call them "
            "in forward"
        )
    expected = (len(batch), num_classes)
    shape = tuple(output.shape) if isinstance(output, torch.Tensor) else None
    if shape != expected:
        got = f"shape {shape}" if shape is not None else f"a {type(output).__name__}"
        raise ProxyError(
            f"proxy {name!r} returns {got} for a batch of shape {tuple(batch.shape)}: it "
            f"must return logits of shape {expected}, (batch, num_classes)"
        )
