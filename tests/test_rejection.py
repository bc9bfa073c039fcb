"""Rejection protocols: the stability ascent and the quality bar, on known-good layers
and on known-bad ones that must be caught by the right protocol."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from evonorm_search.compile import layer_factory
from evonorm_search.graph import LayerGraph, Node
from evonorm_search.known import get_known
from evonorm_search.task import DatasetSpec
from workers.datasets import load_dataset
from workers.proxies import PROXIES, build_proxy
from workers.rejection import StabilityProbe, check_quality, check_stability, quality_threshold

# square(x): finite at initialization, blows up after a couple of ascent steps.
EXPLODING = LayerGraph([Node("square", (0,))])
# x * 0: the output is beta, whatever the input; stable but it cannot learn.
CONSTANT = LayerGraph([Node("mul", (0, 1))])



@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    data = load_dataset(DatasetSpec())
    return data.train_x[:8], data.train_y[:8]


def _model(graph: LayerGraph, proxy: str = "resnet") -> nn.Module:
    torch.manual_seed(1)
    return build_proxy(proxy, layer_factory(graph), 10, 1, 8, 1)


@pytest.mark.parametrize("proxy", sorted(PROXIES))
@pytest.mark.parametrize("layer", ["bn_relu", "evonorm_s0"])
def test_good_layers_pass_stability(batch, proxy: str, layer: str) -> None:
    # 30 steps here; test_evaluate runs the full 100-step protocol on these layers.
    verdict = check_stability(_model(get_known(layer), proxy), *batch, 30, 1e8, 0.05)
    assert verdict.passed and verdict.steps == 30 and verdict.value < 1e8


def test_exploding_layer_is_rejected_by_the_ascent_itself(batch) -> None:
    model = _model(EXPLODING)
    start = StabilityProbe(model, *batch, 1e8, 0.05).run(0)
    assert start.passed and start.value < 1e3  # finite before any ascent
    verdict = check_stability(model, *batch, 100, 1e8, 0.05)
    assert not verdict.passed and 1 <= verdict.steps < 10
    assert "ascent steps" in verdict.reason


def test_constant_layer_is_stable(batch) -> None:
    assert check_stability(_model(CONSTANT), *batch, 20, 1e8, 0.05).passed


def test_probe_is_resumable_and_leaves_model_untouched(batch) -> None:
    model = _model(get_known("bn_relu"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    whole = check_stability(model, *batch, 12, 1e8, 0.05)
    probe = StabilityProbe(model, *batch, 1e8, 0.05)
    probe.run(5)
    split = probe.run(12)
    assert split.passed == whole.passed and split.steps == whole.steps == 12
    assert split.value == pytest.approx(whole.value, rel=1e-5)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # The ascent really moved the probe's weights and raised the gradient norm.
    assert split.value > StabilityProbe(model, *batch, 1e8, 0.05).run(0).value


def test_threshold_decides_early(batch) -> None:
    verdict = check_stability(_model(get_known("bn_relu")), *batch, 100, 1e-3, 0.05)
    assert not verdict.passed and verdict.steps == 0 and ">" in verdict.reason


def test_quality_threshold_matches_paper_on_ten_classes() -> None:
    assert quality_threshold(0.2, 10) == pytest.approx(0.2)
    assert quality_threshold(0.2, 2) == pytest.approx(0.5 + 0.5 / 9)
    assert quality_threshold(0.2, 100) == pytest.approx(0.01 + 0.99 / 9)
    assert not check_quality(0.19, 100, 0.2, 10).passed
    verdict = check_quality(0.5, 100, 0.2, 2)
    assert not verdict.passed and "0.556" in verdict.reason
    assert check_quality(0.6, 100, 0.2, 2).passed


@given(st.floats(0.1, 1.0), st.integers(2, 1000))
def test_quality_threshold_stays_between_chance_and_perfect(threshold: float,
                                                            classes: int) -> None:
    bar = quality_threshold(threshold, classes)
    assert 1.0 / classes - 1e-12 <= bar <= 1.0 + 1e-12
    assert bar <= quality_threshold(min(1.0, threshold + 0.05), classes) + 1e-12
