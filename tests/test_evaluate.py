"""`evaluate(task)`: sane, deterministic scores on digits; rejections and crashes are
values with the right stage, never exceptions."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from torch import nn

import workers.proxy_runs as proxy_runs
from evonorm_search.graph import LayerGraph, Node
from evonorm_search.known import get_known
from evonorm_search.task import DatasetSpec, EvalResult, EvalTask, TrainSettings
from workers.datasets import load_dataset
from workers.evaluate import check_settings, evaluate, proxy_seed

# The full protocols at a tenth of the training; stability_steps is cut to 40 to keep
# the suite fast (the slow test below runs the default 100 steps).
TINY = TrainSettings(batch_size=32, steps=40, quality_steps=30, stability_steps=40, width=8)
FAST = TrainSettings(batch_size=16, steps=8, quality_steps=0, stability_steps=2, width=4)



@pytest.fixture(scope="module")
def digits():
    return load_dataset(DatasetSpec())


def _task(layer: str | LayerGraph, settings: TrainSettings = TINY, seed: int = 0,
          proxies: tuple[str, ...] = ("resnet", "mobilenetv2", "efficientnet")) -> EvalTask:
    graph = get_known(layer) if isinstance(layer, str) else layer
    return EvalTask(graph.to_json(), proxies, DatasetSpec(), settings, seed)


@pytest.mark.parametrize("layer", ["bn_relu", "evonorm_s0"])
def test_good_layers_pass_both_protocols_with_sane_accuracy(digits, layer: str) -> None:
    result = evaluate(_task(layer), digits)
    assert result.status == "done", result.reason
    assert set(result.accuracies) == {"resnet", "mobilenetv2", "efficientnet"}
    assert all(0.5 < acc <= 1.0 for acc in result.accuracies.values())
    assert result.steps == {"resnet": 40, "mobilenetv2": 40, "efficientnet": 40}
    assert set(result.seconds) == {"build", "stability", "quality", "training"}


@pytest.mark.slow
@pytest.mark.parametrize("layer", ["bn_relu", "evonorm_s0"])
def test_good_layers_pass_default_protocols(digits, layer: str) -> None:
    result = evaluate(_task(layer, TrainSettings()), digits)
    assert result.status == "done", result.reason
    assert all(acc > 0.9 for acc in result.accuracies.values())


def test_same_seed_same_result(digits) -> None:
    settings = TrainSettings(batch_size=16, steps=20, quality_steps=10, quality_threshold=0.0,
                             stability_steps=3, width=4)
    first = evaluate(_task("evonorm_b0", settings, seed=3, proxies=("resnet", "efficientnet")),
                     digits)
    again = evaluate(_task("evonorm_b0", settings, seed=3, proxies=("resnet", "efficientnet")),
                     digits)
    assert first.status == "done"
    assert first.accuracies == again.accuracies and first.steps == again.steps
    assert proxy_seed(3, "resnet") != proxy_seed(3, "efficientnet")


def test_exploding_layer_rejected_by_stability(digits) -> None:
    result = evaluate(_task(LayerGraph([Node("square", (0,))])), digits)
    assert result.status == "rejected" and result.stage == "stability"
    assert result.reason.startswith("resnet:") and result.accuracies == {}
    assert "quality" not in result.seconds  # decided before any training


def test_layer_that_cannot_learn_rejected_by_quality(digits) -> None:
    result = evaluate(_task(LayerGraph([Node("mul", (0, 1))])), digits)
    assert result.status == "rejected" and result.stage == "quality"
    assert "validation accuracy" in result.reason
    assert result.steps["resnet"] == TINY.quality_steps  # stopped at the check
    assert "training" not in result.seconds


class _Broken(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :1]  # wrong channel count: the next conv raises


class _Nan(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * float("nan")


@pytest.mark.parametrize("module, status, stage", [
    (_Broken, "failed", "stability"),
    (_Nan, "rejected", "stability"),
])
def test_crashes_and_nans_are_values(digits, monkeypatch, module, status, stage) -> None:
    monkeypatch.setattr(proxy_runs, "layer_factory", lambda graph: lambda c: module())
    result = evaluate(_task("bn_relu", FAST), digits)
    assert (result.status, result.stage) == (status, stage)
    assert result.reason


def test_nan_during_training_without_protocols(digits, monkeypatch) -> None:
    monkeypatch.setattr(proxy_runs, "layer_factory", lambda graph: lambda c: _Nan())
    settings = TrainSettings(steps=4, quality_steps=0, stability_steps=0, width=4)
    result = evaluate(_task("bn_relu", settings), digits)
    assert (result.status, result.stage) == ("rejected", "training")
    assert "non-finite" in result.reason


def test_bad_inputs_fail_at_build_without_raising(digits) -> None:
    bad_json = EvalTask("{not json", ("resnet",), DatasetSpec(), FAST)
    assert evaluate(bad_json, digits).stage == "build"
    bad_proxy = _task("bn_relu", FAST, proxies=("vgg",))
    assert evaluate(bad_proxy, digits).status == "failed"
    missing = EvalTask(get_known("bn_relu").to_json(), ("resnet",),
                       DatasetSpec(name="cifar10", data_dir="/nonexistent"), FAST)
    result = evaluate(missing)
    assert result.status == "failed" and "--download" in result.reason


def test_loads_data_itself_restores_threads_and_round_trips(digits) -> None:
    settings = TrainSettings(batch_size=16, steps=4, quality_steps=0, stability_steps=1,
                             width=4, threads=1)
    torch.set_num_threads(2)
    result = evaluate(_task("gn_relu", settings, proxies=("mobilenetv2",)))
    assert torch.get_num_threads() == 2
    assert result.status == "done"
    assert EvalResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result
    task = _task("gn_relu", settings)
    assert EvalTask.from_dict(json.loads(json.dumps(task.to_dict()))) == task
    assert pickle.loads(pickle.dumps(digits)).num_classes == 10


def test_check_settings_names_the_problem() -> None:
    with pytest.raises(ValueError, match="quality_steps"):
        check_settings(TrainSettings(steps=10, quality_steps=20), ("resnet",))
    with pytest.raises(ValueError, match="choose from"):
        check_settings(TrainSettings(), ("resnet", "vgg"))
    with pytest.raises(ValueError, match="batch_size"):
        check_settings(TrainSettings(batch_size=0), ("resnet",))
