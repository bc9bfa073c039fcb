"""Forward+backward time of compiled EvoNorm-S0/B0 vs hand-written modules and BN-ReLU.

Prints, per shape, the fastest and the median time of each layer and the ratios
compiled / hand-written (goal: <= 1.1) and compiled / (BatchNorm2d + ReLU), each the
median over rounds of the ratio measured within one round: every round times every layer
back to back, so load from other processes (the machine is shared) cancels out. One
thread by default, since multi-threaded kernels on an overloaded machine mostly measure
scheduling stalls.

    /work/venv/bin/python benchmarks/layer_speed.py [--repeats 40] [--threads 1]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import torch
from torch import Tensor, nn

from evonorm_search.compile import compile_layer, effective_groups
from evonorm_search.known import get_known

EPS = 1e-5
SHAPES = [(128, 64, 16, 16), (8, 256, 8, 8)]


def biased_var(t: Tensor, dims: tuple[int, ...]) -> Tensor:
    """Two-pass biased variance: on CPU faster than torch.var_mean forward+backward, so the
    hand-written baselines use it too (a fair baseline is the fastest obvious code)."""
    centred = t - t.mean(dims, keepdim=True)
    return (centred * centred).mean(dims, keepdim=True)


class HandS0(nn.Module):
    """EvoNorm-S0 written by hand: x * sigmoid(v1 x) / std_group(x) * gamma + beta."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.groups = effective_groups(c, 32)
        self.v1 = nn.Parameter(torch.ones(1, c, 1, 1))
        self.gamma = nn.Parameter(torch.ones(1, c, 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, c, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        n, c = x.shape[:2]
        var = biased_var(x.reshape(n, self.groups, -1), (2,))
        std = torch.sqrt(var + EPS).expand(n, self.groups, c // self.groups).reshape(n, c, 1, 1)
        return x * torch.sigmoid(self.v1 * x) / std * self.gamma + self.beta


class HandB0(nn.Module):
    """EvoNorm-B0 by hand: x / max(std_batch(x), v1 x + std_instance(x)) * gamma + beta."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.v1 = nn.Parameter(torch.ones(1, c, 1, 1))
        self.gamma = nn.Parameter(torch.ones(1, c, 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.register_buffer("running_var", torch.ones(1, c, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        var = biased_var(x, (0, 2, 3))
        n = x.shape[0] * x.shape[2] * x.shape[3]
        with torch.no_grad():
            self.running_var.mul_(0.9).add_(var, alpha=0.1 * n / (n - 1))
        inst = biased_var(x, (2, 3))
        # max(a, b) by a 0/1 mask: torch.maximum's backward is 4-6x slower on CPU.
        a, b = torch.sqrt(var + EPS), self.v1 * x + torch.sqrt(inst + EPS)
        take_a = (a >= b).to(a.dtype)
        denominator = a * take_a + b * (1 - take_a)
        return x / denominator * self.gamma + self.beta


def fwd_bwd_seconds(layer: nn.Module, x: Tensor, grad: Tensor) -> float:
    start = time.perf_counter()
    layer(x).backward(grad)
    return time.perf_counter() - start


def measure(
    layers: dict[str, nn.Module], shape: tuple[int, ...], repeats: int
) -> dict[str, list[float]]:
    """Seconds of forward+backward per layer and round; each round runs every layer
    once in a shuffled order (a fixed order would always give a layer the same, cache-
    warming predecessor: that alone skewed ratios by 10-15% on the small shape)."""
    x = torch.randn(shape, requires_grad=True)
    grad = torch.randn(shape)
    for layer in layers.values():  # warm-up (allocator, first-call overheads)
        for _ in range(3):
            fwd_bwd_seconds(layer, x, grad)
    names = list(layers)
    rng = random.Random(0)
    times: dict[str, list[float]] = {name: [0.0] * repeats for name in names}
    for r in range(repeats):
        rng.shuffle(names)
        for name in names:
            times[name][r] = fwd_bwd_seconds(layers[name], x, grad)
    return times


def aten_op_count(layer: nn.Module, shape: tuple[int, ...]) -> int:
    """Top-level aten ops run by one forward+backward: the work, independent of load."""
    x = torch.randn(shape, requires_grad=True)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        layer(x).sum().backward()
    return sum(
        1 for e in prof.events()
        if e.name.startswith("aten::") and (e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::"))
    )


def call_overhead_us(layer: nn.Module, c: int, calls: int = 500) -> float:
    """Fastest mean forward time on a 2x C x 1x1 input: Python/dispatch overhead per call."""
    x = torch.randn(2, c, 1, 1)
    best = float("inf")
    with torch.no_grad():
        for _ in range(7):
            start = time.perf_counter()
            for _ in range(calls):
                layer(x)
            best = min(best, (time.perf_counter() - start) / calls)
    return best * 1e6


def paired_ratio(times: dict[str, list[float]], a: str, b: str) -> float:
    """Median over rounds of time(a) / time(b): robust to load that varies between rounds."""
    return statistics.median(ta / tb for ta, tb in zip(times[a], times[b]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, {args.repeats} fwd+bwd per layer")
    for shape in SHAPES:
        c = shape[1]
        layers: dict[str, nn.Module] = {
            "compiled S0": compile_layer(get_known("evonorm_s0"), c),
            "hand S0": HandS0(c),
            "compiled B0": compile_layer(get_known("evonorm_b0"), c),
            "hand B0": HandB0(c),
            "BatchNorm2d+ReLU": nn.Sequential(nn.BatchNorm2d(c), nn.ReLU()),
        }
        timings = measure(layers, shape, args.repeats)
        print(f"\nshape N,C,H,W = {shape}")
        for name, seconds in timings.items():
            print(
                f"  {name:<18} min {min(seconds) * 1e3:8.3f} ms   "
                f"median {statistics.median(seconds) * 1e3:8.3f} ms"
            )
        for name, layer in layers.items():
            print(
                f"  {name:<18} aten ops fwd+bwd {aten_op_count(layer, shape):3d}   "
                f"overhead per call {call_overhead_us(layer, c):6.1f} us"
            )
        for kind in ("S0", "B0"):
            compiled = f"compiled {kind}"
            print(
                f"  {kind}: compiled/hand = {paired_ratio(timings, compiled, f'hand {kind}'):.3f}   "
                f"compiled/BN-ReLU = {paired_ratio(timings, compiled, 'BatchNorm2d+ReLU'):.3f}"
            )


if __name__ == "__main__":
    main()
