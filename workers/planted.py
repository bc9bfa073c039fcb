"""Evaluation of the planted task: how well a candidate reproduces a planted target layer.

`evaluate_planted(task) -> EvalResult` is the planted counterpart of proxy training
(`workers.evaluate` dispatches to it); `check_scores` scores a layer on the regimes a
search never scores, which confirms a recovery (`evonorm_search.planted`). Per regime
of `evonorm_search.planted.REGIMES`:

1. Inputs: feature maps with the statistics a norm layer sees inside a real network. The
   embedded digits images go through a fixed random conv stack (spatially correlated
   activations), are pooled to the regime's map size, get a heavy-tailed per-sample
   scale (a log-normal scale mixture) and a per-channel offset and scale; four batches.
   Everything is deterministic and cached per process.
2. Target: the target layer with fixed non-trivial per-channel v0, v1, gamma, beta, run
   in training mode (batch statistics from the batch) on every batch.
3. Fit: the candidate's gamma and beta are the per-channel least-squares solution for its
   pre-affine output (variable projection: they are solved for, never searched). Its v0
   and v1, when it uses them, start from fixed values that do not depend on the target
   (every combination of `FitSettings.starts` is scored per channel in one batched
   forward pass, and the best few per channel are kept), then a per-channel
   Levenberg-Marquardt fit runs from those restarts at once, as one tensor problem,
   and each channel keeps its best end point.
4. Score: R^2 of the fitted candidate against the target, with the per-channel mean as
   the baseline, clipped below at 0. NaN or inf output rejects the candidate.

The fit and the score use the same batches: the task has no noise, and a split left the
target itself short of R^2 0.99999 wherever the fit batches never crossed one of its
thresholds that the scored batches did (a ReLU threshold or a max's floor is not
determined by data that never reach it); with at most 4 parameters per channel against
72-256 values per channel, scoring the fitted batches inflates a layer's R^2 by a few
percent of its residual at most.

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

from evonorm_search.compile import CompiledLayer, compile_layer
from evonorm_search.graph import NUM_INITIAL, LayerGraph
from evonorm_search.planted import (
    RECOVERY_R2, check_regime_names, get_regime, strictly_recovered, target_slot,
)
from evonorm_search.task import EvalResult, EvalTask
from primitives import OPS

FEATURE_SEED = 20201107
BATCHES = 4
HIDDEN_CHANNELS = 16
FIT_STAGE = "planted"
# Added to per-channel output variances: a constant channel gets gamma = 0, not NaN.
VARIANCE_FLOOR = 1e-12
V0_RANGE, V1_RANGE = (-1.0, 1.0), (0.5, 2.0)
GAMMA_RANGE, BETA_RANGE = (0.5, 1.5), (-1.0, 1.0)
# Finite-difference step of the fit's Jacobian, relative to 1 + |parameter|.
DIFFERENCE_STEP = 1e-3
# Largest change of v0 or v1 in one step: the planted values span about 2.
MAX_STEP = 0.5
# Starts whose residuals differ by less than this share count as one plateau.
PLATEAU = 0.01
# Fractions of the Levenberg-Marquardt step tried at once (a batched line search).
STEP_SCALES = (1.0, 0.5, 0.25, 0.1)
# The restarts run together for this many iterations; then each channel goes on from
# its best copy only (the basin is found by then; the rest is refinement).
RESTART_ITERATIONS = 2


@dataclass(frozen=True)
class FitSettings:
    """How a candidate's v0 and v1 are fitted on a regime (docs/method.md, "Fit").

    `starts`: the values tried for each parameter; every combination is scored per
    channel, independently of the target. `restarts`: how many of the best combinations
    per channel the fit runs from (at once, as batched copies; one where channels
    interact). `iterations`: Levenberg-Marquardt iterations (two batched forward passes
    each). `gate`: v0/v1 are fitted only where the layer at its best start already
    explains this share of the target's variance: below it the iterations would cost
    most of the evaluation and hardly ever lift a layer near recovery. Layers below
    `full_gate` get a quick fit (see below); the restarts and all iterations go to the
    layers that may recover.
    """

    starts: tuple[tuple[str, tuple[float, ...]], ...] = (
        ("v0", (-1.0, -0.5, 0.0, 0.5, 1.0)), ("v1", (0.5, 1.0, 2.0)))
    restarts: int = 3
    iterations: int = 8
    gate: float = 0.5
    # Between `gate` and `full_gate` a layer gets one copy and `quick_iterations`: its fit
    # moves its rank little (measured), and most fitted candidates of a search are there.
    full_gate: float = 0.9
    quick_iterations: int = 3
    # The fit stops when an iteration gains less than this share of the target's
    # variance (1e-7 below R^2 0.99999; the quick fit only ranks, so less precisely).
    stop_gain: float = 1e-7
    quick_stop_gain: float = 1e-4
    # The starts are scored on this many of the regime's batches (the fit uses all).
    start_batches: int = BATCHES


DEFAULT_FIT = FitSettings()
# Confirming a recovery on a regime the search never scored: rare, so fitted thoroughly.
CHECK_FIT = FitSettings(restarts=6, iterations=30, gate=0.0, full_gate=0.0, start_batches=BATCHES)


def _generator(*parts: object) -> torch.Generator:
    key = ":".join(str(part) for part in (FEATURE_SEED, *parts))
    return torch.Generator().manual_seed(zlib.crc32(key.encode()))


@lru_cache(maxsize=None)
def _digits() -> Tensor:
    from sklearn.datasets import load_digits

    images = torch.tensor(load_digits().images, dtype=torch.float32) / 16.0
    return images.unsqueeze(1)  # (1797, 1, 8, 8)


@lru_cache(maxsize=None)
def regime_data(name: str) -> tuple[Tensor, ...]:
    """The fixed input batches (N, C, H, W) of regime `name` (see the module docstring)."""
    regime = get_regime(name)
    rng = _generator("features", regime.name)
    count = BATCHES * regime.batch
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
    return tuple(features.split(regime.batch))


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
    """The target's outputs on a regime's batches (concatenated), with their sum of
    squares about the per-channel means."""

    outputs: Tensor
    total: float


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
        outputs = torch.cat([layer(x) for x in regime_data(regime_name)])
    if not torch.isfinite(outputs).all():
        raise ValueError(f"the target is not finite on the inputs of {regime_name}")
    return TargetOutputs(outputs, _total(outputs))


def _affine_fit(y: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel least squares t ~ gamma * y + beta over (N, H, W): gamma and beta."""
    dims = (0, 2, 3)
    y_mean, t_mean = y.mean(dims, keepdim=True), t.mean(dims, keepdim=True)
    yc = y - y_mean
    gamma = (yc * (t - t_mean)).sum(dims, keepdim=True) / (
        (yc * yc).sum(dims, keepdim=True) + VARIANCE_FLOOR)
    return gamma, t_mean - gamma * y_mean


def _channel_residuals(y: Tensor, t: Tensor) -> Tensor:
    """The residual sum of squares of that affine fit per copy and channel: y is
    (R, N, C, H, W) (R parameter copies), t is (N, C, H, W); the result is (R, C), +inf
    where y is not finite."""
    dims = (1, 3, 4)
    yc = y - y.mean(dims, keepdim=True)
    tc = (t - t.mean((0, 2, 3), keepdim=True)).unsqueeze(0)
    syy, syt = (yc * yc).sum(dims), (yc * tc).sum(dims)
    residual = ((tc * tc).sum(dims) - syt * syt / (syy + VARIANCE_FLOOR)).clamp_min(0.0)
    return torch.where(torch.isfinite(residual), residual, torch.inf)


@dataclass(frozen=True)
class RegimeScore:
    """A layer's R^2 on one regime, the fit's iterations, and whether its output was
    finite (else `reason` says where it was not)."""

    r2: float
    iterations: int
    finite: bool
    reason: str | None = None


def channels_interact(graph: LayerGraph) -> bool:
    """Whether a channel's output can depend on another channel's v0/v1: a live layer or
    group statistic reads a node that depends on them."""
    depends = {2, 3}
    for index in sorted(graph.live_nodes()):
        if index < NUM_INITIAL or not depends.intersection(graph.node(index).inputs):
            continue
        if OPS[graph.node(index).op].axes in ("layer", "group"):
            return True
        depends.add(index)
    return False


def _solve_small(system: Tensor, right: Tensor) -> Tensor:
    """Solutions of many 1x1 or 2x2 systems (..., P, P) x = (..., P), in closed form
    (torch.linalg.solve costs far more than the arithmetic at these sizes)."""
    if system.shape[-1] == 1:
        return right / system[..., 0]
    a, b = system[..., 0, 0], system[..., 0, 1]
    c, d = system[..., 1, 0], system[..., 1, 1]
    determinant = a * d - b * c
    return torch.stack([d * right[..., 0] - b * right[..., 1],
                        a * right[..., 1] - c * right[..., 0]], -1) / determinant.unsqueeze(-1)


def _reads_across_channels(graph: LayerGraph) -> bool:
    """Whether a live node is a layer or group statistic (mixes channels)."""
    return any(OPS[graph.node(i).op].axes in ("layer", "group")
               for i in graph.live_nodes() if i >= NUM_INITIAL)


class _Fit:
    """v0/v1 of one layer fitted to the target on one regime's batches.

    Parameters are (P, R, C): the P of v0/v1 that the layer uses, for R copies (restarts
    or trial steps) of every channel. R copies run in one forward pass, each with its own
    parameter values, as R times the samples (every op but a batch statistic works per
    sample, so the copies do not mix), or else as R times the channels (every op but a
    layer or group statistic works per channel), with the regime's batches side by side
    as channels as well, so that one pass computes each batch's statistics (forward
    passes of these small tensors cost their call overhead more than their arithmetic);
    a layer with both kinds runs them one by one, batch by batch. Unless channels interact (`channels_interact`), a channel's output depends
    on its own parameters only, so each channel is its own 1- or 2-parameter problem and
    keeps the best of its copies."""

    def __init__(self, layer: CompiledLayer, names: list[str], batches: tuple[Tensor, ...],
                 target: Tensor) -> None:
        self.layer, self.names, self.batches, self.target = layer, names, batches, target
        self.inputs = torch.cat(batches)
        self.interact = channels_interact(layer.graph)
        self.batch_stats = layer.graph.uses_batch_stats
        self.across_channels = _reads_across_channels(layer.graph)
        self._wide: dict[int, CompiledLayer] = {}  # channels -> the layer on that many
        self._repeated: dict[int, Tensor] = {}  # copies -> the inputs repeated as copies
        tc = target - target.mean((0, 2, 3), keepdim=True)
        self.total = float((tc * tc).sum())

    def outputs(self, theta: Tensor) -> Tensor:
        """The layer's output (R, N, C, H, W) for parameters (P, R, C)."""
        copies, channels = theta.shape[1], theta.shape[2]
        if not self.batch_stats:
            samples = self.inputs.shape[0]
            if copies not in self._repeated:
                self._repeated[copies] = self.inputs.repeat(copies, 1, 1, 1)
            y = self._run(self.layer, self._repeated[copies], self._values(theta, samples))
            return y.reshape(copies, samples, channels, *y.shape[2:])
        if not self.across_channels:
            # The batches side by side as channels too, (N, R * B * C, H, W): one forward
            # pass computes every batch's statistics (the regime's batches are equal).
            count, samples = len(self.batches), len(self.batches[0])
            wide = self._wide_layer(copies * count * channels)
            if copies not in self._repeated:  # (N, R * B * C, H, W)
                side = torch.cat(self.batches, 1)
                self._repeated[copies] = side.repeat(1, copies, 1, 1)
            values = {name: row.reshape(copies, 1, channels).expand(copies, count, channels)
                      .reshape(1, -1, 1, 1) for name, row in zip(self.names, theta)}
            y = self._run(wide, self._repeated[copies], values)
            return y.reshape(samples, copies, count, channels, *y.shape[2:]).permute(
                1, 2, 0, 3, 4, 5).reshape(copies, count * samples, channels, *y.shape[2:])
        return torch.stack([
            torch.cat([self._run(self.layer, x, self._values(theta[:, r:r + 1], 1))
                       for x in self.batches])
            for r in range(copies)])

    def _wide_layer(self, channels: int) -> CompiledLayer:
        if channels not in self._wide:
            self._wide[channels] = compile_layer(self.layer.graph, channels).train()
        return self._wide[channels]

    @staticmethod
    def _run(layer: CompiledLayer, x: Tensor, values: dict[str, Tensor]) -> Tensor:
        """The layer's pre-affine output on `x` with parameter `values`, shaped as `x`
        (gamma and beta, 1 and 0 here, are the affine fit's)."""
        return layer.graph_output(x, values.get("v0"), values.get("v1")).expand(x.shape)

    def _values(self, theta: Tensor, samples: int) -> dict[str, Tensor]:
        copies, channels = theta.shape[1], theta.shape[2]
        return {name: row.reshape(copies, 1, channels, 1, 1)
                .expand(copies, samples, channels, 1, 1).reshape(-1, channels, 1, 1)
                for name, row in zip(self.names, theta)}

    def residuals(self, theta: Tensor) -> Tensor:
        """Per copy and channel affine-fit residuals (R, C)."""
        return _channel_residuals(self.outputs(theta), self.target)

    def starts(self, starts: dict[str, tuple[float, ...]], restarts: int) -> Tensor:
        """Starts chosen without the target's values (P, R, C): each channel's R best of
        every combination of `starts`. Where channels interact, one copy: the best
        single combination for all channels, or the per-channel best if that fits
        better."""
        grid = torch.cartesian_prod(*(torch.tensor(starts[n]) for n in self.names))
        grid = grid.reshape(-1, len(self.names))  # (K, P)
        channels = self.layer.num_channels
        residuals = self.residuals(grid.T.unsqueeze(-1).expand(-1, -1, channels))  # (K, C)
        # Starts that fit a channel (nearly) as well often lie on one plateau (e.g. a
        # ReLU whose threshold almost no data point crosses, where the fit has no
        # gradient): the restarts take one of each, so that they start in other basins.
        order = residuals.argsort(dim=0, stable=True)
        ordered = residuals.gather(0, order)
        same = torch.zeros_like(ordered, dtype=torch.bool)
        same[1:] = (ordered[1:] - ordered[:-1]).abs() <= PLATEAU * ordered[1:].abs() + 1e-30
        ranked = order.gather(0, torch.where(same, torch.inf, ordered).argsort(
            dim=0, stable=True))[:max(1, restarts)]  # (R, C)
        best = grid[ranked].permute(2, 0, 1)  # (P, R, C)
        if not self.interact:
            return best
        mixed = best[:, :1]
        uniform_index = int(residuals.sum(1).argmin())
        uniform = grid[uniform_index].reshape(-1, 1, 1).expand(-1, 1, channels)
        if float(residuals[uniform_index].sum()) < float(self.residuals(mixed).sum()):
            return uniform.clone()
        return mixed.clone()

    def levenberg_marquardt(self, theta: Tensor, iterations: int,
                            stop_gain: float) -> tuple[Tensor, int]:
        """Levenberg-Marquardt on the variable-projection residual (gamma and beta solved
        per channel, Kaufman's Jacobian) from every copy of `theta` (P, R, C): a 1x1 or
        2x2 system per copy and channel. The Jacobian comes from forward differences and
        the step is tried at STEP_SCALES, both as batched copies. Each copy and channel
        keeps its best trial if its residual falls (all channels together where they
        interact). Returns the parameters (P, C), each channel its best copy, and the
        iterations run."""
        count, copies, channels = theta.shape
        dims = (1, 3, 4)  # per copy and channel
        tc = (self.target - self.target.mean((0, 2, 3), keepdim=True)).unsqueeze(0)
        y = self.outputs(theta)
        residual = _channel_residuals(y, self.target)  # (R, C)
        damping = torch.full_like(residual, 1e-2)
        scales = torch.tensor(STEP_SCALES).reshape(-1, 1, 1, 1)
        done = 0
        samples = y[0].numel() // channels
        for done in range(1, iterations + 1):
            yc = y - y.mean(dims, keepdim=True)
            syy = (yc * yc).sum(dims) + VARIANCE_FLOOR  # (R, C)
            gamma = (yc * tc).sum(dims) / syy
            r = tc - gamma.reshape(copies, 1, channels, 1, 1) * yc
            steps = DIFFERENCE_STEP * (1.0 + theta.abs())  # (P, R, C)
            # Copy (k, r) has parameter k of copy r moved by its step: (P, P * R, C).
            shifted = theta.unsqueeze(1) + torch.eye(count).reshape(count, count, 1, 1) * steps
            shifted = shifted.reshape(count, count * copies, channels)
            d = self.outputs(shifted).reshape(count, copies, *y.shape[1:]) - y  # step * dy/dp
            # Kaufman's Jacobian column k is -gamma * (dy/dp_k with the constant and y
            # projected out), from plain sums over the samples, accumulated in float64:
            # the projections subtract nearly equal sums (near the optimum r is tiny, and
            # its float32 sum far from the zero it is in exact arithmetic).
            wide = torch.float64
            total = d.sum((2, 4, 5), dtype=wide)  # (P, R, C)
            along = (d * yc).sum((2, 4, 5), dtype=wide)
            r_total, r_along = r.sum(dims, dtype=wide), (r * yc).sum(dims, dtype=wide)
            projected = ((d * r).sum((2, 4, 5), dtype=wide) - total * r_total / samples
                         - along * r_along / syy)
            jtr = (-gamma * projected / steps).permute(1, 2, 0)  # (R, C, P)
            products = (d.unsqueeze(1) * d.unsqueeze(0)).sum((3, 5, 6), dtype=wide)
            inner = (products - total.unsqueeze(1) * total.unsqueeze(0) / samples
                     - along.unsqueeze(1) * along.unsqueeze(0) / syy)  # (P, P, R, C)
            jtj = (gamma * gamma * inner / (steps.unsqueeze(1) * steps.unsqueeze(0))
                   ).permute(2, 3, 0, 1)  # (R, C, P, P)
            jtj, jtr = torch.nan_to_num(jtj), torch.nan_to_num(jtr)
            # Levenberg's damping, isotropic: v0 and v1 can be nearly redundant (e.g.
            # relu(v1 * z + v0) depends on v0 / v1 only, gamma takes the scale), and a
            # damping scaled per parameter would let the step run along that valley.
            size = torch.diagonal(jtj, dim1=-2, dim2=-1).mean(-1) + 1e-20 * self.total
            delta = _solve_small(jtj + torch.diag_embed((damping * size).unsqueeze(-1)
                                                        .expand(jtr.shape)), -jtr)
            # A singular system (a parameter without effect on a channel) gives no step.
            delta = torch.nan_to_num(delta.float(), nan=0.0, posinf=0.0, neginf=0.0).permute(2, 0, 1)
            trials = theta + scales * delta.clamp(-MAX_STEP, MAX_STEP)  # (S, P, R, C)
            flat = trials.permute(1, 0, 2, 3).reshape(count, -1, channels)
            outputs = self.outputs(flat).reshape(len(STEP_SCALES), copies, *y.shape[1:])
            trial_residuals = _channel_residuals(outputs.flatten(0, 1), self.target).reshape(
                len(STEP_SCALES), copies, channels)
            if self.interact:  # one copy; a step counts only if the total falls
                pick = trial_residuals.sum(-1).argmin(0).reshape(1, 1).expand(copies, channels)
            else:
                pick = trial_residuals.argmin(0)  # (R, C)
            chosen = trial_residuals.gather(0, pick.unsqueeze(0))[0]
            better = chosen < residual
            if self.interact:
                better = torch.full_like(better, float(chosen.sum()) < float(residual.sum()))
            gain = float(torch.where(better, residual - chosen, 0.0).sum())
            theta = torch.where(better, trials.gather(0, pick.expand(count, -1, -1).unsqueeze(0))[0],
                                theta)
            index = pick.reshape(1, copies, 1, channels, 1, 1).expand(
                1, copies, y.shape[1], channels, *y.shape[3:])
            y = torch.where(better.reshape(copies, 1, channels, 1, 1),
                            outputs.gather(0, index)[0], y)
            residual = torch.where(better, chosen, residual)
            damping = torch.where(better & (pick == 0), damping / 3.0,
                                  torch.where(better, damping, (damping * 8.0).clamp_max(1e8)))
            if gain <= stop_gain * self.total and (bool(better.any()) or float(damping.min()) >= 1e8):
                break
            if done == RESTART_ITERATIONS and copies > 1:  # each channel: its best copy on
                keep = residual.argmin(0).reshape(1, channels)
                theta = theta.gather(1, keep.unsqueeze(0).expand(count, 1, channels))
                y = y.gather(0, keep.reshape(1, 1, channels, 1, 1).expand(1, *y.shape[1:]))
                residual, damping = residual.gather(0, keep), damping.gather(0, keep)
                copies = 1
        if self.interact:
            return theta[:, 0], done
        pick = residual.argmin(0)  # each channel: its best copy
        return theta.gather(1, pick.reshape(1, 1, channels).expand(count, 1, channels))[:, 0], done


def score_regime(graph: LayerGraph, target_json: str, regime_name: str,
                 fit: FitSettings | None = None) -> RegimeScore:
    """Fit `graph`'s parameters to the target on one regime and score it (with `fit`,
    default DEFAULT_FIT)."""
    fit = DEFAULT_FIT if fit is None else fit
    regime = get_regime(regime_name)
    batches, target = regime_data(regime_name), target_outputs(target_json, regime_name)
    layer = compile_layer(graph, regime.channels).train()
    for parameter in layer.parameters():  # gamma/beta: solved in closed form
        parameter.requires_grad_(False)
    # The layer has v0/v1 only where its output uses them: those are fitted.
    names = [name for name in ("v0", "v1") if getattr(layer, name) is not None]
    done = 0
    with torch.no_grad():
        if names:
            fitter = _Fit(layer, names, batches, target.outputs)
            rows = sum(len(x) for x in batches[:fit.start_batches])
            scout = fitter if fit.start_batches >= len(batches) else _Fit(
                layer, names, batches[:fit.start_batches], target.outputs[:rows])
            theta = scout.starts(dict(fit.starts), fit.restarts)
            start = fitter.residuals(theta[:, :1]).sum()
            explained = 1.0 - float(start) / max(target.total, VARIANCE_FLOOR)
            if not torch.isfinite(start) or explained < fit.gate:
                theta = theta[:, 0]
            elif explained < fit.full_gate:
                theta, done = fitter.levenberg_marquardt(theta[:, :1], fit.quick_iterations,
                                                         fit.quick_stop_gain)
            else:
                theta, done = fitter.levenberg_marquardt(theta, fit.iterations, fit.stop_gain)
            for name, row in zip(names, theta):
                getattr(layer, name).copy_(row.reshape(1, -1, 1, 1))
        y = torch.cat([layer(x) for x in batches])
        if not torch.isfinite(y).all():
            return RegimeScore(0.0, done, False, f"{regime_name}: NaN or inf output")
        gamma, beta = _affine_fit(y, target.outputs)
        error = float(((y * gamma + beta - target.outputs) ** 2).sum())
    r2 = max(0.0, 1.0 - error / target.total) if target.total > 0 else 0.0
    return RegimeScore(r2 if math.isfinite(r2) else 0.0, done, True)


def strictly_recovers(graph: LayerGraph, target_json: str, regimes: tuple[str, ...]) -> bool:
    """Whether `graph`, its parameters fitted, recovers the target by the strict criterion
    (`evonorm_search.planted.strictly_recovered`) on `regimes`; the first scored regime
    below the threshold ends the check (what `reduce_recovery` asks of each rewrite)."""
    scores = {}
    for name in regimes:
        score = score_regime(graph, target_json, name)
        if not score.finite or score.r2 < RECOVERY_R2:
            return False
        scores[name] = score.r2
    return strictly_recovered(scores, regimes, check_scores(graph, target_json))


def check_scores(graph: LayerGraph, target_json: str) -> dict[str, float]:
    """R^2 of `graph` against the target on the regimes no search scores (thoroughly
    fitted: CHECK_FIT) in the target's slot, for the strict recovery criterion; 0.0 where
    it is not finite."""
    scores = {}
    for name in check_regime_names(target_slot(LayerGraph.from_json(target_json))):
        score = score_regime(graph, target_json, name, CHECK_FIT)
        scores[name] = score.r2 if score.finite else 0.0
    return scores


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
        for regime_name in task.proxies:
            score = score_regime(graph, task.target_json, regime_name)
            steps[regime_name] = score.iterations
            if not score.finite:
                return result("rejected", FIT_STAGE, score.reason)
            scores[regime_name] = score.r2
    except Exception as error:  # a candidate's own failure is a value, as in `evaluate`
        return result("failed", FIT_STAGE, f"{type(error).__name__}: {error}")
    return result("done")
