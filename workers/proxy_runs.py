"""One candidate on one proxy: the model built with the layer, how it trains, how its
stability and quality are judged and its score read.

`workers.evaluate` runs the same stages on every proxy (stability screen, quality check,
rest of the stability protocol, full training); what differs between proxies is here:

| proxy | layer in | data | optimizer | stability | score (higher is better) | quality bar |
|---|---|---|---|---|---|---|
| CNNs (resnet, ..., MODULE:FUNCTION) | every BN-ReLU slot, on maps | images | SGD | gradient ascent | validation accuracy | 20% on 10 classes, scaled |
| vit | every norm slot, on tokens | images | AdamW | stress run | validation accuracy | as the CNNs |
| charlm | every norm slot, on tokens | text | AdamW | stress run | 1 - bits/char / 8 | bits/char saved over a uniform guess, scaled as accuracy's bar |

The Transformer proxies compile the candidate with one channel group per attention head
(`*_channel_group` statistics are per head). Their stress run trains at STRESS_FACTOR
times the proxy's learning rate for `stability_steps` steps on `stability_batch_size`.
Both see about as many tokens per step: a batch of `batch_size` images is `batch_size` x
17 tokens for vit, so charlm draws `batch_size` x 17 / 64 windows of 64 characters (17
at the default batch of 64).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from evonorm_search.compile import layer_factory
from evonorm_search.graph import LayerGraph
from evonorm_search.proxy_info import bits_from_score, proxy_info, score_from_bits
from evonorm_search.task import TrainSettings
from evonorm_search.tokens import token_layer_factory
from workers.corpus import TextData, bits_per_character
from workers.datasets import PreparedData
from workers.proxies import resolve_proxy
from workers.rejection import StabilityProbe, StressProbe, Verdict, check_bits, check_quality
from workers.training import Sampler, Trainer
from workers.transformer_proxies import (
    CONTEXT, HEADS, PATCH_GRID, CharTransformer, VisionTransformer,
)

# The stress run's learning rate, in multiples of the proxy's: at 15 x 2e-3 a 4-block
# Transformer without normalization diverges within 50 steps while LayerNorm, RMSNorm and
# DyT stay bounded (measured on both proxies, docs/RESULTS.md).
STRESS_FACTOR = 15.0
# Language-model windows scored per forward pass on the validation text.
EVAL_WINDOWS = 128


@dataclass
class ProxyRun:
    """One proxy's model and protocols for one candidate (see the module docstring)."""

    name: str
    trainer: Trainer
    probe: StabilityProbe | StressProbe
    score: Callable[[str, int | None], float]  # split, max batches -> score
    quality: Callable[[float, int], Verdict]  # early score, steps -> verdict
    describe: Callable[[float], str]  # a score as the proxy reports it


def _image_sampler(data: PreparedData, batch_size: int) -> Sampler:
    def sample(generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.randint(0, len(data.train_y), (min(batch_size, len(data.train_y)),),
                              generator=generator).to(data.train_y.device)
        return data.train_x[index], data.train_y[index]
    return sample


def windows_per_batch(batch_size: int) -> int:
    """charlm's windows per step for a batch of `batch_size` (as many tokens as vit's)."""
    return max(1, batch_size * (PATCH_GRID**2 + 1) // CONTEXT)


def text_sampler(text: torch.Tensor, batch_size: int, context: int = CONTEXT) -> Sampler:
    """Random windows of `context` + 1 characters of `text`: inputs and next characters."""
    offsets = torch.arange(context + 1, device=text.device)

    def sample(generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        starts = torch.randint(0, len(text) - context, (batch_size,), generator=generator)
        windows = text[starts.to(text.device)[:, None] + offsets].long()
        return windows[:, :-1], windows[:, 1:]
    return sample


@torch.no_grad()
def validation_bits(model: nn.Module, text: torch.Tensor, max_batches: int | None = None,
                    context: int = CONTEXT) -> float:
    """Mean bits per character of `model` predicting each next character of `text`,
    cut into consecutive windows of `context` characters (eval mode)."""
    count = (len(text) - 1) // context
    inputs = text[:count * context].long().reshape(count, context)
    targets = text[1:count * context + 1].long().reshape(count, context)
    model.eval()
    total, seen = 0.0, 0
    for batch, start in enumerate(range(0, count, EVAL_WINDOWS)):
        if max_batches is not None and batch >= max_batches:
            break
        x, y = inputs[start:start + EVAL_WINDOWS], targets[start:start + EVAL_WINDOWS]
        loss = F.cross_entropy(model(x), y, reduction="sum")
        total += float(loss)
        seen += y.numel()
    model.train()
    bits = bits_per_character(total / max(1, seen))
    if not math.isfinite(bits):
        from workers.training import NonFiniteError

        raise NonFiniteError("non-finite outputs on the validation text")
    return bits


def _cnn_run(name: str, graph: LayerGraph, data: PreparedData, settings: TrainSettings,
             seed: int) -> ProxyRun:
    model = resolve_proxy(name)(layer_factory(graph), data.num_classes, data.in_channels,
                                settings.width, settings.depth).to(data.train_x.device)
    picker = torch.Generator().manual_seed(seed)
    count = min(settings.stability_batch_size, len(data.train_y))
    index = torch.randperm(len(data.train_y), generator=picker)[:count].to(data.train_y.device)
    probe = StabilityProbe(model, data.train_x[index], data.train_y[index],
                           settings.stability_threshold, settings.stability_step_size)
    trainer = Trainer(model, data, settings, seed)
    return ProxyRun(name, trainer, probe, trainer.accuracy,
                    lambda score, steps: check_quality(score, steps, settings.quality_threshold,
                                                       data.num_classes),
                    lambda score: f"{score:.3f} validation accuracy")


def _stress(model: nn.Module, sampler: Sampler, seed: int, settings: TrainSettings) -> StressProbe:
    return StressProbe(model, sampler, seed + 1, "adamw", settings,
                       STRESS_FACTOR * settings.learning_rate, settings.stability_steps)


def _vit_run(name: str, graph: LayerGraph, data: PreparedData, settings: TrainSettings,
             seed: int) -> ProxyRun:
    norm = token_layer_factory(graph, groups=HEADS)
    model = VisionTransformer(norm, data.num_classes, data.in_channels, data.image_size,
                              settings.width, settings.depth).to(data.train_x.device)
    trainer = Trainer(model, data, settings, seed, optimizer="adamw",
                      sampler=_image_sampler(data, settings.batch_size))
    probe = _stress(model, _image_sampler(data, settings.stability_batch_size), seed, settings)
    return ProxyRun(name, trainer, probe, trainer.accuracy,
                    lambda score, steps: check_quality(score, steps, settings.quality_threshold,
                                                       data.num_classes),
                    lambda score: f"{score:.3f} validation accuracy")


def _charlm_run(name: str, graph: LayerGraph, data: PreparedData, settings: TrainSettings,
                seed: int) -> ProxyRun:
    text: TextData | None = data.text
    if text is None:
        raise ValueError("charlm needs the text corpus: load the data with "
                         "workers.datasets.load_proxy_data")
    norm = token_layer_factory(graph, groups=HEADS)
    model = CharTransformer(norm, text.size, settings.width, settings.depth).to(text.train.device)
    trainer = Trainer(model, data, settings, seed, optimizer="adamw",
                      sampler=text_sampler(text.train, windows_per_batch(settings.batch_size)))
    probe = _stress(model, text_sampler(text.train, windows_per_batch(settings.stability_batch_size)),
                    seed, settings)

    def score(split: str, max_batches: int | None = None) -> float:
        return score_from_bits(validation_bits(model, getattr(text, split), max_batches))

    def quality(value: float, steps: int) -> Verdict:
        return check_bits(bits_from_score(value), steps, settings.quality_threshold, text.size)

    return ProxyRun(name, trainer, probe, score, quality,
                    lambda value: f"{bits_from_score(value):.3f} validation bits/char "
                                  f"(score {value:.3f})")


_TRANSFORMER_RUNS = {"vit": _vit_run, "charlm": _charlm_run}


def start_run(name: str, graph: LayerGraph, data: PreparedData, settings: TrainSettings,
              seed: int) -> ProxyRun:
    """The run of proxy `name` (a registry name or MODULE:FUNCTION) for layer `graph`."""
    if proxy_info(name).slot == "norm":
        return _TRANSFORMER_RUNS[name](name, graph, data, settings, seed)
    return _cnn_run(name, graph, data, settings, seed)
