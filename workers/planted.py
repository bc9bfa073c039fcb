"""Evaluation of the planted task: how well a candidate reproduces a planted target layer.

`evaluate_planted(task) -> EvalResult` is the planted counterpart of proxy training
(`workers.evaluate` dispatches to it). Per regime of `evonorm_search.planted.REGIMES`:

1. Inputs: feature maps with the statistics a norm layer sees inside a real network. The
   embedded digits images go through a fixed random conv stack (spatially correlated
   activations), are pooled to the regime's map size, get a heavy-tailed per-sample
   scale (a log-normal scale mixture) and a per-channel offset and scale. Fit batches and
   held-out batches are disjoint images. Everything is deterministic and cached per process.
2. Target: the target layer with fixed non-trivial per-channel v0, v1, gamma, beta, run
   in training mode (batch statistics from the batch) on every batch.
3. Fit: the candidate's gamma and beta are the per-channel least-squares solution for its
   pre-affine output; its v0 and v1 (when it uses them) are fitted by L-BFGS on the fit
   batches with gamma and beta projected out (variable projection: the loss is the
   residual of the best affine fit, so the gradient sees only what v0 and v1 can change).
4. Score: R^2 of the fitted candidate against the target on the held-out batches, with
   the per-channel held-out mean as the baseline, clipped below at 0. NaN or inf output
   (before or after the fit) rejects the candidate.

Per-regime R^2 takes the place of per-proxy accuracy, so Pareto selection, fronts and
reports work unchanged.
"""

from __future__ import annotations

import math
import time
import zlib
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor

from evonorm_search.compile import compile_layer
from evonorm_search.graph import LayerGraph
from evonorm_search.planted import get_regime
from evonorm_search.task import EvalResult, EvalTask

FEATURE_SEED = 20201107
FIT_BATCHES = 2
HELD_OUT_BATCHES = 2
HIDDEN_CHANNELS = 16
# L-BFGS iterations for v0/v1 (each one or a few forward and backward passes).
FIT_ITERATIONS = 5
# v0/v1 are fitted only where the layer at the planted values already explains this share
# of the target's variance: below it, 5 iterations never lifted a layer near recovery,
# and skipping them halves the cost of a search (docs/method.md).
FIT_GATE = 0.5
FIT_STAGE = "planted"
# Added to per-channel output variances: a constant channel gets gamma = 0, not NaN.
VARIANCE_FLOOR = 1e-12
V0_RANGE, V1_RANGE = (-1.0, 1.0), (0.5, 2.0)
GAMMA_RANGE, BETA_RANGE = (0.5, 1.5), (-1.0, 1.0)


@dataclass(frozen=True)
class RegimeData:
    """Inputs of one regime: lists of batches of shape (N, C, H, W)."""

    fit: tuple[Tensor, ...]
    held_out: tuple[Tensor, ...]


def _generator(*parts: object) -> torch.Generator:
    key = ":".join(str(part) for part in (FEATURE_SEED, *parts))
    return torch.Generator().manual_seed(zlib.crc32(key.encode()))


@lru_cache(maxsize=None)
def _digits() -> Tensor:
    from sklearn.datasets import load_digits

    images = torch.tensor(load_digits().images, dtype=torch.float32) / 16.0
    return images.unsqueeze(1)  # (1797, 1, 8, 8)


@lru_cache(maxsize=None)
def regime_data(name: str) -> RegimeData:
    """The fixed inputs of regime `name` (see the module docstring)."""
    regime = get_regime(name)
    rng = _generator("features", regime.name)
    count = (FIT_BATCHES + HELD_OUT_BATCHES) * regime.batch
    images = _digits()[torch.randperm(len(_digits()), generator=rng)[:count]]
    conv1 = torch.randn(HIDDEN_CHANNELS, 1, 3, 3, generator=rng) / 3.0
    conv2 = torch.randn(regime.channels, HIDDEN_CHANNELS, 3, 3, generator=rng) / 12.0
    with torch.no_grad():
        hidden = torch.relu(torch.nn.functional.conv2d(images, conv1, padding=1) - 0.1)
        features = torch.nn.functional.conv2d(hidden, conv2, padding=1)
        if regime.tokens:
            # The first `size` positions in raster order as tokens: (N, C, T, 1).
            features = features.flatten(2)[:, :, :regime.size, None]
        else:
            features = torch.nn.functional.adaptive_avg_pool2d(features, regime.size)
        features = (features - features.mean((0, 2, 3), keepdim=True)) / (
            features.std((0, 2, 3), keepdim=True) + 1e-6)
        if regime.tokens:
            # A heavy-tailed scale per token, shared by its channels (what LayerNorm and
            # RMSNorm remove).
            features = features * torch.exp(0.5 * torch.randn(count, 1, regime.size, 1,
                                                               generator=rng))
        # Heavy tails: a log-normal scale per sample and channel (a Gaussian scale mixture).
        features = features * torch.exp(0.5 * torch.randn(count, regime.channels, 1, 1,
                                                           generator=rng))
        offset = torch.empty(1, regime.channels, 1, 1).uniform_(-1.5, 1.5, generator=rng)
        scale = torch.exp(torch.empty(1, regime.channels, 1, 1).uniform_(-1.0, 1.0,
                                                                         generator=rng))
        features = features * scale + offset
    batches = features.split(regime.batch)
    return RegimeData(tuple(batches[:FIT_BATCHES]), tuple(batches[FIT_BATCHES:]))


def _uniform(shape: tuple[int, ...], bounds: tuple[float, float],
             rng: torch.Generator) -> Tensor:
    return torch.empty(shape).uniform_(*bounds, generator=rng)


@lru_cache(maxsize=None)
def target_parameters(regime_name: str) -> dict[str, Tensor]:
    """The planted target's fixed per-channel parameters on a regime: v1 and |gamma| away
    from 1, v0 and beta away from 0, gamma of either sign (cached: read, never written)."""
    regime = get_regime(regime_name)
    rng = _generator("target", regime.name)
    shape = (1, regime.channels, 1, 1)
    sign = torch.where(torch.rand(shape, generator=rng) < 0.5, -1.0, 1.0)
    return {
        "v0": _uniform(shape, V0_RANGE, rng),
        "v1": _uniform(shape, V1_RANGE, rng),
        "gamma": sign * _uniform(shape, GAMMA_RANGE, rng),
        "beta": _uniform(shape, BETA_RANGE, rng),
    }


@dataclass(frozen=True)
class TargetOutputs:
    """The target's outputs on a regime's fit and held-out batches (each concatenated
    over its batches), with their sums of squares about the per-channel means."""

    fit: Tensor
    held_out: Tensor
    fit_total: float
    held_out_total: float


def _total(t: Tensor) -> float:
    centred = t - t.mean((0, 2, 3), keepdim=True)
    return float((centred * centred).sum())


@lru_cache(maxsize=16)
def target_outputs(target_json: str, regime_name: str) -> TargetOutputs:
    """The target's outputs on the regime's inputs (cached: a search compares every
    candidate with the same target)."""
    regime = get_regime(regime_name)
    layer = compile_layer(LayerGraph.from_json(target_json), regime.channels).train()
    with torch.no_grad():
        for name, value in target_parameters(regime_name).items():
            if getattr(layer, name) is not None:  # v0/v1 exist only where the layer uses them
                getattr(layer, name).copy_(value)
        data = regime_data(regime_name)
        fit = torch.cat([layer(x) for x in data.fit])
        held_out = torch.cat([layer(x) for x in data.held_out])
    for name, t in (("fit", fit), ("held-out", held_out)):
        if not torch.isfinite(t).all():
            raise ValueError(f"the target is not finite on the {name} inputs of {regime_name}")
    return TargetOutputs(fit, held_out, _total(fit), _total(held_out))


def _affine_fit(y: Tensor, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per-channel least squares t ~ gamma * y + beta over (N, H, W): gamma, beta and the
    residual sum of squares (a differentiable function of y)."""
    dims = (0, 2, 3)
    y_mean, t_mean = y.mean(dims, keepdim=True), t.mean(dims, keepdim=True)
    yc, tc = y - y_mean, t - t_mean
    syy, syt = (yc * yc).sum(dims, keepdim=True), (yc * tc).sum(dims, keepdim=True)
    gamma = syt / (syy + VARIANCE_FLOOR)
    beta = t_mean - gamma * y_mean
    residual = ((tc * tc).sum(dims, keepdim=True) - gamma * syt).clamp_min(0.0).sum()
    return gamma, beta, residual


@dataclass(frozen=True)
class RegimeScore:
    r2: float
    iterations: int
    finite: bool
    reason: str | None = None


def _r2(prediction: Tensor, target: Tensor, total: float) -> float:
    """R^2 against the per-channel mean baseline, whose squared error is `total`."""
    error = float(((target - prediction) ** 2).sum())
    return max(0.0, 1.0 - error / total) if total > 0 else 0.0


def score_regime(graph: LayerGraph, target_json: str, regime_name: str,
                 iterations: int | None = None) -> RegimeScore:
    """Fit `graph`'s parameters to the target on one regime and score it on held-out data
    (`iterations` of L-BFGS, default FIT_ITERATIONS)."""
    iterations = FIT_ITERATIONS if iterations is None else iterations
    regime = get_regime(regime_name)
    data, target = regime_data(regime_name), target_outputs(target_json, regime_name)
    layer = compile_layer(graph, regime.channels).train()
    layer.gamma.requires_grad_(False)  # identity: the affine is solved in closed form
    layer.beta.requires_grad_(False)
    fit_t = target.fit
    # The layer has v0/v1 only where its output uses them: those are fitted.
    free = [p for p in (layer.v0, layer.v1) if p is not None]
    planted = target_parameters(regime_name)
    with torch.no_grad():
        for name in ("v0", "v1"):
            if getattr(layer, name) is not None:
                getattr(layer, name).copy_(planted[name])

    def fit_output() -> Tensor:
        return torch.cat([layer(x) for x in data.fit])

    with torch.no_grad():
        y = fit_output()
    if not torch.isfinite(y).all():
        return RegimeScore(0.0, 0, False, f"{regime_name}: NaN or inf output before fitting")
    done = 0
    # The loss is 1 - R^2 on the fit batches, so L-BFGS's tolerances are relative.
    scale = 1.0 / max(target.fit_total, VARIANCE_FLOOR)
    best = float(_affine_fit(y, fit_t)[2]) * scale
    if free and 1.0 - best >= FIT_GATE:
        kept = [p.detach().clone() for p in free]
        optimizer = torch.optim.LBFGS(free, lr=1.0, max_iter=iterations,
                                      line_search_fn="strong_wolfe")

        def closure() -> Tensor:
            optimizer.zero_grad()
            residual = _affine_fit(fit_output(), fit_t)[2] * scale
            residual.backward()
            return residual

        try:
            optimizer.step(closure)
        except RuntimeError:  # e.g. a NaN in the line search: keep the best finite point
            pass
        done = optimizer.state[free[0]].get("n_iter", 0)
        with torch.no_grad():
            y = fit_output()
            residual = float(_affine_fit(y, fit_t)[2]) * scale
            if not (math.isfinite(residual) and residual <= best):
                for parameter, value in zip(free, kept):
                    parameter.copy_(value)
                y = fit_output()
    with torch.no_grad():
        gamma, beta, _ = _affine_fit(y, fit_t)
        predictions = [layer(x) * gamma + beta for x in data.held_out]
        if not all(torch.isfinite(p).all() for p in predictions):
            return RegimeScore(0.0, done, False,
                               f"{regime_name}: NaN or inf output on held-out inputs")
        r2 = _r2(torch.cat(predictions), target.held_out, target.held_out_total)
    return RegimeScore(r2, done, True)


def evaluate_planted(task: EvalTask) -> EvalResult:
    """Score `task`'s layer against its planted target on every regime in `task.proxies`.
    Never raises: NaN/inf is a rejection, anything else unexpected a failure."""
    started = time.perf_counter()
    scores: dict[str, float] = {}
    steps: dict[str, int] = {}

    def result(status: str, stage: str | None = None, reason: str | None = None) -> EvalResult:
        return EvalResult(status, dict(scores), stage, reason, dict(steps),  # type: ignore[arg-type]
                          {FIT_STAGE: round(time.perf_counter() - started, 4)})

    try:
        if task.target_json is None:
            raise ValueError("a planted task needs a target layer")
        graph = LayerGraph.from_json(task.graph_json)
        with torch.enable_grad():
            for regime_name in task.proxies:
                score = score_regime(graph, task.target_json, regime_name)
                steps[regime_name] = score.iterations
                if not score.finite:
                    return result("rejected", FIT_STAGE, score.reason)
                scores[regime_name] = score.r2
    except Exception as error:  # a candidate's own failure is a value, as in `evaluate`
        return result("failed", FIT_STAGE, f"{type(error).__name__}: {error}")
    return result("done")
