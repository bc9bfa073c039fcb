"""swap_norm_act: every BatchNorm2d -> ReLU pair is replaced, nothing else, and the model trains."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from evonorm_search.swap import SwapWarning, swap_norm_act


class BasicBlock(nn.Module):
    """torchvision-style: one ReLU module shared by the bn1 pair and the post-add site."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)  # followed by the addition: not a pair

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + x)


class FunctionalBlock(nn.Module):
    """Functional relu after a BN attribute, and a BN whose output has two users."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bn_a = nn.BatchNorm2d(channels)
        self.conv = nn.Conv2d(channels, channels, 1)
        self.bn_b = nn.BatchNorm2d(channels)  # used by relu AND the skip: not a pair

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn_a(x))
        z = self.bn_b(self.conv(y))
        return z.relu() + z


class SingleUseBlock(nn.Module):
    """Attribute pair whose ReLU is called once: swapped in place, class kept."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.act = nn.ReLU()
        self.norm = nn.BatchNorm2d(channels)  # declared after the ReLU: order must not matter
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class TinyNet(nn.Module):
    def __init__(self, channels: int = 6, classes: int = 3) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU()
        )
        self.layer = nn.Sequential(BasicBlock(channels), FunctionalBlock(channels))
        self.single = SingleUseBlock(channels)
        self.tail = nn.Sequential(nn.BatchNorm2d(channels), nn.Conv2d(channels, channels, 1))
        self.head = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.tail(self.single(self.layer(self.stem(x))))
        return self.head(x.mean(dim=(2, 3)))


class MarkedNormAct(nn.Module):
    """A non-BatchNorm2d layer computing exactly relu(fresh BN(x)) in training mode."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.batch_norm(x, None, None, self.weight, self.bias, training=True, eps=1e-5)
        return torch.relu(y)


class GroupSwish(nn.Module):
    """A different norm-act (batch-independent), as a discovered layer would be."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(1, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(x)
        return y * torch.sigmoid(y)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models: one intra-op thread avoids oversubscription on a shared 2-core box."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


PAIRS = {"stem.1", "layer.0.bn1", "layer.1.bn_a", "single.norm"}
NOT_PAIRS = {"layer.0.bn2", "layer.1.bn_b", "tail.0"}


def batchnorm_names(model: nn.Module) -> set[str]:
    return {name for name, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}


def test_swap_replaces_exactly_the_pairs() -> None:
    torch.manual_seed(0)
    model = TinyNet()
    assert batchnorm_names(model) == PAIRS | NOT_PAIRS
    with warnings.catch_warnings():
        warnings.simplefilter("error", SwapWarning)
        count = swap_norm_act(model, GroupSwish)
    assert count == len(PAIRS)
    assert batchnorm_names(model) == NOT_PAIRS
    swapped = {name for name, m in model.named_modules() if isinstance(m, GroupSwish)}
    assert swapped == PAIRS
    # The in-place path keeps user classes; the shared ReLU stays for the post-add site.
    assert type(model.single) is SingleUseBlock
    assert isinstance(model.single.act, nn.Identity)
    assert isinstance(model.layer[0].relu, nn.ReLU)
    assert model(torch.randn(2, 3, 5, 5)).shape == (2, 3)


def test_swap_preserves_function_when_the_layer_equals_bn_relu() -> None:
    torch.manual_seed(1)
    model = TinyNet()
    swapped = copy.deepcopy(model)
    assert swap_norm_act(swapped, MarkedNormAct) == len(PAIRS)
    x = torch.randn(4, 3, 6, 6)
    model.train()
    swapped.train()
    torch.testing.assert_close(swapped(x), model(x))


def test_swap_removes_the_relu_and_does_not_apply_it_twice() -> None:
    # A layer whose outputs can be negative: if a ReLU were left after it, no output
    # of the stem would be negative.
    model = nn.Sequential(
        nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.ReLU()), nn.Identity()
    )
    assert swap_norm_act(model, GroupSwish) == 1
    assert (model(torch.randn(2, 3, 4, 4)) < 0).any()


def test_sequential_with_a_shared_relu_is_rewritten() -> None:
    relu = nn.ReLU()
    block = nn.Sequential(nn.BatchNorm2d(4), relu, nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4), relu)
    model = nn.Sequential(block)
    assert swap_norm_act(model, GroupSwish) == 2
    assert batchnorm_names(model) == set()
    assert (model(torch.randn(2, 4, 3, 3)) < 0).any()


def test_untraceable_forward_warns_and_is_left_alone() -> None:
    class DataDependent(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bn = nn.BatchNorm2d(2)
            self.relu = nn.ReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.sum() > 0:  # tensor-valued control flow: not traceable
                return self.relu(self.bn(x))
            return x

    model = nn.Sequential(DataDependent())
    with pytest.warns(SwapWarning, match="not traceable"):
        assert swap_norm_act(model, GroupSwish) == 0
    assert batchnorm_names(model) == {"0.bn"}


def test_root_forward_with_functional_relu_warns() -> None:
    class Root(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bn = nn.BatchNorm2d(2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.relu(self.bn(x))

    model = Root()
    with pytest.warns(SwapWarning, match="root model"):
        assert swap_norm_act(model, GroupSwish) == 0
    wrapped = nn.Sequential(Root())
    assert swap_norm_act(wrapped, GroupSwish) == 1
    assert batchnorm_names(wrapped) == set()


def test_swapped_model_still_trains() -> None:
    torch.manual_seed(2)
    model = TinyNet()
    swap_norm_act(model, GroupSwish)
    x = torch.randn(16, 3, 6, 6)
    y = torch.randint(0, 3, (16,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    swapped_params = {id(p) for m in model.modules() if isinstance(m, GroupSwish) for p in m.parameters()}
    assert swapped_params <= {id(p) for p in model.parameters()}
    losses = []
    for _ in range(30):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < 0.5 * losses[0]
    # The swapped layers took part: their parameters moved.
    norm = model.single.norm.norm
    assert not torch.allclose(norm.weight, torch.ones_like(norm.weight))


def test_swap_with_a_compiled_evonorm_layer_trains() -> None:
    from evonorm_search.compile import layer_factory
    from evonorm_search.known import get_known

    torch.manual_seed(3)
    model = TinyNet()
    assert swap_norm_act(model, layer_factory(get_known("evonorm_s0"))) == len(PAIRS)
    assert batchnorm_names(model) == NOT_PAIRS
    x = torch.randn(8, 3, 6, 6)
    y = torch.randint(0, 3, (8,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(25):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
