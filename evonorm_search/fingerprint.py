"""Functional fingerprints: the cheap duplicate and numerics filter run before any training.

A layer is compiled and run, in training mode and in float64, on one fixed probe input
with every parameter (v0, v1, gamma, beta, ...) set to fixed non-trivial values, so
layers that only coincide at initialisation (v0 = 0, v1 = 1) do not collide. The outputs
are rounded to a few significant digits and hashed. Equal fingerprints mean "computes the
same function on the probe"; a NaN or inf on the probe means the layer is numerically
broken. Probe and parameter values come from Python's `random` with fixed seeds, whose
sequence is stable across Python and torch versions, so stored fingerprints stay
comparable when a search is resumed elsewhere.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass
from functools import cache

import torch

from evonorm_search.compile import compile_layer
from evonorm_search.graph import LayerGraph
from evonorm_search.threads import torch_threads

# N > 1 so batch statistics are not degenerate; C = 6 with 3 groups makes the group
# statistics (2 channels) differ from the instance (1) and layer (6) ones.
PROBE_SHAPE = (4, 6, 3, 3)
PROBE_GROUPS = 3
PROBE_SEED = 20200407
SIGNIFICANT_DIGITS = 6
# Below this magnitude a value is rounding noise (e.g. x - mean(x) on a constant input).
ZERO_BELOW = 1e-9
# Training runs in float32: a float64 probe value beyond its range would be inf there.
FLOAT32_MAX = float(torch.finfo(torch.float32).max)


@dataclass(frozen=True)
class Fingerprint:
    """`digest` identifies the layer's function on the probe; `finite` is False when the
    probe output has a NaN or inf (then `reason` says which)."""

    digest: str
    finite: bool
    reason: str | None = None


@cache
def _probe_values() -> tuple[float, ...]:
    """Fixed input with per-channel offsets and scales, so centring and scaling matter."""
    rng = random.Random(PROBE_SEED)
    batch, channels, height, width = PROBE_SHAPE
    values = []
    for _ in range(batch):
        for channel in range(channels):
            offset, scale = 0.5 * (channel - 2), 0.5 + 0.3 * channel
            values.extend(offset + scale * rng.gauss(0.0, 1.0) for _ in range(height * width))
    return tuple(values)


@cache
def _parameter_values(name: str, count: int) -> tuple[float, ...]:
    """Fixed values for the parameter `name`: signed, away from 0 and 1, distinct per name."""
    seed = int.from_bytes(hashlib.sha256(f"{PROBE_SEED}:{name}".encode()).digest()[:8], "big")
    rng = random.Random(seed)
    return tuple(rng.choice((-1.0, 1.0)) * rng.uniform(0.3, 1.7) for _ in range(count))


def _format(value: float) -> str:
    if abs(value) < ZERO_BELOW:
        return "0"
    return f"{value:.{SIGNIFICANT_DIGITS - 1}e}"


def fingerprint(graph: LayerGraph) -> Fingerprint:
    """The functional fingerprint of `graph` on the fixed probe input (see module doc)."""
    # One intra-op thread: on a probe of 216 values more threads only synchronize (a
    # fingerprint took 2.5 ms with 2 threads on a busy 2-core machine, 0.5 ms with 1).
    with torch_threads(1):
        return _fingerprint(graph)


def _fingerprint(graph: LayerGraph) -> Fingerprint:
    probe = torch.tensor(_probe_values(), dtype=torch.float64).reshape(PROBE_SHAPE)
    layer = compile_layer(graph, PROBE_SHAPE[1], groups=PROBE_GROUPS).double().train()
    with torch.no_grad():
        for name, parameter in sorted(layer.named_parameters()):
            values = _parameter_values(name, parameter.numel())
            parameter.copy_(torch.tensor(values, dtype=torch.float64).reshape(parameter.shape))
        output = layer(probe)
    flat = output.detach().reshape(-1).tolist()
    text = ",".join(_format(value) for value in flat)
    digest = hashlib.sha256(f"{tuple(output.shape)}|{text}".encode()).hexdigest()[:32]
    bad = [value for value in flat if not abs(value) <= FLOAT32_MAX]
    if bad:
        kinds = sorted({"NaN" if math.isnan(value) else "inf (in float32)" for value in bad})
        return Fingerprint(
            digest,
            False,
            f"{' and '.join(kinds)} in {len(bad)} of {len(flat)} outputs on the probe input",
        )
    return Fingerprint(digest, True)
