"""Proxy training: SGD (CNN proxies) or AdamW (Transformer proxies) with a warmup + cosine
schedule, seeded batches, accuracy.

A `Trainer` is resumable by design: the quality check trains it to `quality_steps`,
reads validation accuracy, and full training continues from that same model, optimizer
and schedule (the schedule spans `TrainSettings.steps`, so nothing restarts). Batches
are images of the prepared data set, or whatever a proxy's `sampler` draws (the language
model's text windows).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from evonorm_search.task import TrainSettings
from workers.datasets import PreparedData, augment_batch

# Evaluation batch size: in eval mode no layer reads the batch (running averages replace
# batch statistics), so this only trades memory for speed.
EVAL_BATCH_SIZE = 256
WARMUP_FRACTION = 0.05


# AdamW's betas for the Transformer proxies (the small-Transformer convention of GPT-style
# recipes; 0.95 reacts faster to loss spikes than 0.999).
ADAMW_BETAS = (0.9, 0.95)
OPTIMIZERS = ("sgd", "adamw")
Sampler = Callable[[torch.Generator], tuple[torch.Tensor, torch.Tensor]]


class NonFiniteError(ArithmeticError):
    """The candidate produced NaN or inf (a rejection, not a crash)."""


def make_optimizer(kind: str, model: nn.Module, settings: TrainSettings,
                   learning_rate: float | None = None) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum over every parameter ("sgd"), or AdamW ("adamw") with
    weight decay on the weights of linear and convolution layers only: embeddings,
    positions, biases and the norm layers' parameters are not decayed (GPT-style)."""
    lr = settings.learning_rate if learning_rate is None else learning_rate
    if kind == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=settings.momentum,
                               weight_decay=settings.weight_decay,
                               nesterov=settings.momentum > 0)
    if kind != "adamw":
        raise ValueError(f"unknown optimizer {kind!r}; use one of {', '.join(OPTIMIZERS)}")
    decayed = {id(m.weight) for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))}
    parameters = list(model.parameters())
    groups = [
        {"params": [p for p in parameters if id(p) in decayed],
         "weight_decay": settings.weight_decay},
        {"params": [p for p in parameters if id(p) not in decayed], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr, betas=ADAMW_BETAS)


def lr_factor(step: int, total: int) -> float:
    """Linear warmup over the first 5% of steps, then cosine decay to zero at `total`."""
    warmup = max(1, int(total * WARMUP_FRACTION))
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


class Trainer:
    """Trains one proxy on one data set; `steps_done` counts optimizer steps so far."""

    def __init__(self, model: nn.Module, data: PreparedData, settings: TrainSettings,
                 seed: int, *, optimizer: str = "sgd", sampler: Sampler | None = None) -> None:
        self.model = model
        self.data = data
        self.settings = settings
        self.steps_done = 0
        self.generator = torch.Generator().manual_seed(seed)
        self.optimizer = make_optimizer(optimizer, model, settings)
        self.loss_fn = nn.CrossEntropyLoss()
        self._sampler = sampler
        self._order = torch.empty(0, dtype=torch.long)
        self._cursor = 0

    def _next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._sampler is not None:
            return self._sampler(self.generator)
        size = min(self.settings.batch_size, len(self.data.train_y))
        if self._cursor + size > len(self._order):
            self._order = torch.randperm(len(self.data.train_y), generator=self.generator)
            self._cursor = 0
        index = self._order[self._cursor:self._cursor + size]
        self._cursor += size
        x = self.data.train_x[index]
        if self.data.augment:
            x = augment_batch(x, self.generator)
        return x, self.data.train_y[index]

    def train_until(self, step: int) -> None:
        """Train until `steps_done == step`; `NonFiniteError` on a NaN/inf loss."""
        self.model.train()
        total = self.settings.steps
        while self.steps_done < step:
            for group in self.optimizer.param_groups:
                group["lr"] = self.settings.learning_rate * lr_factor(self.steps_done, total)
            x, y = self._next_batch()
            loss = self.loss_fn(self.model(x), y)
            if not torch.isfinite(loss):
                raise NonFiniteError(f"non-finite training loss at step {self.steps_done + 1}")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.steps_done += 1

    @torch.no_grad()
    def accuracy(self, split: str = "val", max_batches: int | None = None) -> float:
        """Accuracy on the validation or test split, in eval mode; NaN outputs raise."""
        x_all = getattr(self.data, f"{split}_x")
        y_all = getattr(self.data, f"{split}_y")
        self.model.eval()
        correct = seen = 0
        for batch, start in enumerate(range(0, len(y_all), EVAL_BATCH_SIZE)):
            if max_batches is not None and batch >= max_batches:
                break
            logits = self.model(x_all[start:start + EVAL_BATCH_SIZE])
            if not torch.isfinite(logits).all():
                raise NonFiniteError(f"non-finite outputs on the {split} split")
            y = y_all[start:start + EVAL_BATCH_SIZE]
            correct += int((logits.argmax(dim=1) == y).sum())
            seen += len(y)
        self.model.train()
        return correct / max(1, seen)
