"""Rejection protocols (PAPER.md section 4): cheap tests run before full training.

Stability (CNN proxies, the paper's): gradient ascent on the weights maximizing the
gradient norm ||dL/dtheta|| (double backprop), rejecting as soon as the norm exceeds the
threshold or is not finite.
Stability (Transformer proxies, ours): a stress run, a short training run of a copy of
the model at a learning rate far above the proxy's (`StressProbe`), rejecting a loss that
is not finite or has grown to more than `STRESS_GROWTH` times its first value. Without a
normalization (or with batch statistics) a small Transformer diverges there, while
LayerNorm, RMSNorm and DyT stay bounded (docs/RESULTS.md, Transformer proxies).
Quality: validation accuracy after a short training run, against a threshold that is
the paper's 20%-on-10-classes rescaled to the data set's class count; for a language
model, validation bits per character with the same chance-corrected share of a uniform
guess's bits saved.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from evonorm_search.task import TrainSettings
from workers.training import Sampler, make_optimizer

PAPER_CLASSES = 10


@dataclass(frozen=True)
class Verdict:
    """Outcome of one protocol: `value` is the last gradient norm or the accuracy."""

    passed: bool
    steps: int
    value: float
    reason: str | None = None


class StabilityProbe:
    """Worst-case gradient norm search on a copy of a model (the model is left untouched).

    Each ascent step computes g = dL/dtheta with a graph, then moves theta by
    `step_size` along d||g||/dtheta. The norm is checked before every ascent step and
    after the last one, so an explosion is caught at the first step where it shows.
    The probe is resumable: `run(10)` then `run(100)` decides exactly as `run(100)`,
    which lets the evaluation screen cheaply first and finish the ascent later.
    """

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 threshold: float, step_size: float) -> None:
        self.model = copy.deepcopy(model)
        self.model.train()
        self.x, self.y = x, y
        self.threshold = threshold
        self.step_size = step_size
        self.steps_done = 0
        self.last_norm = float("nan")
        self._params = [p for p in self.model.parameters() if p.requires_grad]
        self._verdict: Verdict | None = None

    def _gradient_norm(self, keep_graph: bool) -> torch.Tensor:
        loss = nn.functional.cross_entropy(self.model(self.x), self.y)
        grads = torch.autograd.grad(loss, self._params, create_graph=keep_graph,
                                    allow_unused=True)
        used = [g for g in grads if g is not None]
        norm = torch.sqrt(sum((g * g).sum() for g in used)) if used else loss.new_zeros(())
        return norm if torch.isfinite(loss) else loss.new_full((), float("nan"))

    def _judge(self, norm: torch.Tensor) -> Verdict | None:
        self.last_norm = float(norm.detach())
        if not math.isfinite(self.last_norm):
            return Verdict(False, self.steps_done, self.last_norm,
                           f"non-finite gradient norm after {self.steps_done} ascent steps")
        if self.last_norm > self.threshold:
            return Verdict(False, self.steps_done, self.last_norm,
                           f"gradient norm {self.last_norm:.3g} > {self.threshold:.3g} after "
                           f"{self.steps_done} ascent steps")
        return None

    def run(self, steps: int) -> Verdict:
        """Ascend until `steps` steps are done in all; a failed verdict is final."""
        while self._verdict is None:
            last = self.steps_done >= steps
            norm = self._gradient_norm(keep_graph=not last)
            self._verdict = self._judge(norm)
            if self._verdict is not None or last:
                break
            if not norm.requires_grad:  # nothing depends on the weights: nothing to ascend
                self.steps_done = steps
                continue
            ascent = torch.autograd.grad(norm, self._params, allow_unused=True)
            with torch.no_grad():
                for param, direction in zip(self._params, ascent):
                    if direction is not None:
                        param.add_(direction, alpha=self.step_size)
            self.steps_done += 1
        return self._verdict or Verdict(True, self.steps_done, self.last_norm)


def check_stability(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int,
                    threshold: float, step_size: float) -> Verdict:
    """The stability protocol in one call: up to `steps` ascent steps on a copy."""
    return StabilityProbe(model, x, y, threshold, step_size).run(steps)


def quality_threshold(threshold: float, num_classes: int) -> float:
    """The accuracy bar for `num_classes`, equivalent to `threshold` on 10 classes.

    A raw threshold cannot carry over (20% is chance on 5 classes, and twice chance is
    100% on 2), so we keep the chance-corrected accuracy (acc - chance) / (1 - chance)
    fixed: 20% on 10 classes is 1/9 of the way from chance to perfect, which is 55.6%
    on 2 classes and 12% on 100.
    """
    chance, paper_chance = 1.0 / num_classes, 1.0 / PAPER_CLASSES
    corrected = (threshold - paper_chance) / (1.0 - paper_chance)
    return chance + corrected * (1.0 - chance)


def check_quality(accuracy: float, steps: int, threshold: float, num_classes: int) -> Verdict:
    """Reject when validation `accuracy` after `steps` training steps is below the bar."""
    bar = quality_threshold(threshold, num_classes)
    if accuracy < bar:
        return Verdict(False, steps, accuracy,
                       f"validation accuracy {accuracy:.3f} < {bar:.3f} after {steps} steps")
    return Verdict(True, steps, accuracy)


# A stress run rejects when the mean of its last STRESS_WINDOW losses exceeds STRESS_GROWTH
# times its first loss (the untrained model's): a run that stays bounded, even without
# learning at that rate, passes.
STRESS_GROWTH = 2.0
STRESS_WINDOW = 10
STRESS_WARMUP_FRACTION = 0.1


class StressProbe:
    """A high-learning-rate stress run on a copy of a model (the model is left untouched).

    `run(steps)` trains the copy with the proxy's optimizer at `learning_rate` (linear
    warm-up over the first STRESS_WARMUP_FRACTION of `total_steps`, then constant) on
    batches from `sampler`, until `steps` steps are done in all; resumable like
    `StabilityProbe` (`run(10)` then `run(50)` decides as `run(50)`), a failed verdict
    is final. `value` is the mean of the last losses.
    """

    def __init__(self, model: nn.Module, sampler: Sampler, seed: int, optimizer: str,
                 settings: TrainSettings, learning_rate: float, total_steps: int,
                 loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None) -> None:
        self.model = copy.deepcopy(model)
        self.model.train()
        self.sampler = sampler
        self.generator = torch.Generator().manual_seed(seed)
        self.optimizer = make_optimizer(optimizer, self.model, settings, learning_rate)
        self.learning_rate = learning_rate
        self.total_steps = max(1, total_steps)
        self.loss_fn = loss_fn or nn.functional.cross_entropy
        self.steps_done = 0
        self.losses: list[float] = []
        self._verdict: Verdict | None = None

    def _window(self) -> float:
        recent = self.losses[-STRESS_WINDOW:]
        return sum(recent) / len(recent) if recent else float("nan")

    def run(self, steps: int) -> Verdict:
        warmup = max(1, int(self.total_steps * STRESS_WARMUP_FRACTION))
        while self._verdict is None and self.steps_done < steps:
            for group in self.optimizer.param_groups:
                group["lr"] = self.learning_rate * min(1.0, (self.steps_done + 1) / warmup)
            x, y = self.sampler(self.generator)
            loss = self.loss_fn(self.model(x), y)
            value = float(loss.detach())
            if not math.isfinite(value):
                self._verdict = Verdict(False, self.steps_done, value,
                                        f"non-finite loss at step {self.steps_done + 1} of a "
                                        f"stress run at learning rate {self.learning_rate:g}")
                break
            self.losses.append(value)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.steps_done += 1
            if self.losses and self._window() > STRESS_GROWTH * self.losses[0]:
                self._verdict = Verdict(
                    False, self.steps_done, self._window(),
                    f"loss {self._window():.3g} (mean of the last {min(STRESS_WINDOW, len(self.losses))} "
                    f"steps) > {STRESS_GROWTH:g} x its first value {self.losses[0]:.3g} after "
                    f"{self.steps_done} steps of a stress run at learning rate "
                    f"{self.learning_rate:g}")
        return self._verdict or Verdict(True, self.steps_done, self._window())


def bits_threshold(threshold: float, vocabulary: int) -> float:
    """The bits-per-character bar equivalent to accuracy `threshold` on 10 classes: the
    same chance-corrected share (see `quality_threshold`) of a uniform guess's
    log2(vocabulary) bits saved. 0.2 gives (8/9) log2(V), 6.03 bits/char for 110 ids."""
    paper_chance = 1.0 / PAPER_CLASSES
    corrected = (threshold - paper_chance) / (1.0 - paper_chance)
    return math.log2(vocabulary) * (1.0 - corrected)


def check_bits(bits: float, steps: int, threshold: float, vocabulary: int) -> Verdict:
    """Reject a language model whose validation bits per character after `steps` steps
    are above the bar of `bits_threshold` (it has learned next to nothing)."""
    bar = bits_threshold(threshold, vocabulary)
    if not bits <= bar:
        return Verdict(False, steps, bits,
                       f"validation {bits:.3f} bits/char > {bar:.3f} after {steps} steps")
    return Verdict(True, steps, bits)
