"""Forward+backward time of our EvoNorm-S0/B0 (exported source and compiled module) vs
timm's EvoNorms, hand-written modules and BN-ReLU, eager and under torch.compile;
and exported Transformer norms (layernorm, rmsnorm, dyt) vs torch's modules.

Prints, per shape, the fastest and the median time of each layer and the ratios (each the
median over rounds of the ratio measured within one round: every round times every
layer back to back in a shuffled order, so load from other processes, the machine being
shared, cancels out):
- eager: exported / timm (goal for S0: <= 1.0), compiled module / hand-written (goal
  <= 1.1), and / (BatchNorm2d + ReLU);
- torch.compile (inductor, default mode; compiled once per layer and shape before timing):
  exported / compiled BN-ReLU (goal: <= 1.5), exported / eager BN-ReLU, exported / timm.
timm is an optional extra (`pip install -e ".[bench]"`); without it its columns are left
out. One thread by default, since multi-threaded kernels on an overloaded machine mostly
measure scheduling stalls.

Transformer part (first; --transformer-only skips the rest): on (B, T, C) tokens, the
stand-alone exports (`evonorm export NAME --transformer`, exec'd) of layernorm and rmsnorm
against `torch.nn.LayerNorm` / `torch.nn.RMSNorm` (goal: <= 1.5, and equal outputs to
1e-5), the same layers through their graph's own ops (what an evolved variant costs, no
torch kernel), and DyT against a hand-written DyT module.

    python benchmarks/layer_speed.py [--repeats 40] [--threads 1] [--no-compile]
"""

from __future__ import annotations

import argparse
import functools
import importlib
import importlib.util
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

import torch
from torch import Tensor, nn

from evonorm_search.compat import load_exported_class
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


TOKEN_SHAPES = [(64, 17, 64), (8, 128, 768)]  # the vit proxy's; a GPT-2-small-sized batch


class HandDyT(nn.Module):
    """Dynamic Tanh by hand, per-channel alpha as the graph has it: tanh(alpha x) w + b."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.full((c,), 0.5))
        self.weight = nn.Parameter(torch.ones(c))
        self.bias = nn.Parameter(torch.zeros(c))

    def forward(self, x: Tensor) -> Tensor:
        return torch.tanh(self.alpha * x) * self.weight + self.bias


def exported(name: str, c: int) -> nn.Module:
    """The stand-alone Transformer export of known layer `name`, as a user gets it."""
    from evonorm_search.export_tokens import to_token_source

    namespace: dict = {}
    exec(compile(to_token_source(get_known(name)), name, "exec"), namespace)  # noqa: S102
    return namespace["EvolvedNorm"](c)


class GraphOps(nn.Module):
    """A token layer computed by its graph's ops (no torch kernel): an evolved variant's cost."""

    def __init__(self, name: str, c: int) -> None:
        super().__init__()
        from evonorm_search.tokens import TokenLayer

        self.layer = TokenLayer(c, graph=get_known(name))

    def forward(self, x: Tensor) -> Tensor:
        from evonorm_search.compile import CompiledLayer
        from evonorm_search.tokens import normalize_tokens

        return normalize_tokens(lambda maps: CompiledLayer.forward(self.layer, maps), x,
                                self.layer.num_channels)


def transformer_part(repeats: int) -> None:
    for shape in TOKEN_SHAPES:
        c = shape[-1]
        layers: dict[str, nn.Module] = {
            "exported layernorm": exported("layernorm", c),
            "nn.LayerNorm": nn.LayerNorm(c),
            "graph-ops layernorm": GraphOps("layernorm", c),
            "exported rmsnorm": exported("rmsnorm", c),
            "nn.RMSNorm": nn.RMSNorm(c, eps=1e-5),
            "graph-ops rmsnorm": GraphOps("rmsnorm", c),
            "exported dyt": exported("dyt", c),
            "hand DyT": HandDyT(c),
        }
        x = torch.randn(shape) * 3 + 1
        with torch.no_grad():
            parity = {
                "layernorm": (layers["exported layernorm"](x) - layers["nn.LayerNorm"](x)).abs().max(),
                "rmsnorm": (layers["exported rmsnorm"](x) - layers["nn.RMSNorm"](x)).abs().max(),
                "dyt": (layers["exported dyt"](x) - layers["hand DyT"](x)).abs().max(),
            }
        timings = measure(layers, shape, repeats)
        print(f"\nshape B,T,C = {shape}")
        for name, seconds in timings.items():
            print(f"  {name:<20} min {min(seconds) * 1e3:8.3f} ms   "
                  f"median {statistics.median(seconds) * 1e3:8.3f} ms")
        for name, torch_name in (("layernorm", "nn.LayerNorm"), ("rmsnorm", "nn.RMSNorm")):
            print(f"  {name}: exported/torch = {paired_ratio(timings, f'exported {name}', torch_name):.3f} "
                  f"(goal <= 1.5)   graph-ops/torch = "
                  f"{paired_ratio(timings, f'graph-ops {name}', torch_name):.3f}   "
                  f"max |difference| {float(parity[name]):.2e} (goal <= 1e-5)")
        print(f"  dyt: exported/hand = {paired_ratio(timings, 'exported dyt', 'hand DyT'):.3f}   "
              f"max |difference| {float(parity['dyt']):.2e}")


@functools.cache
def timm_evo_norm() -> ModuleType | None:
    """timm's `timm.layers.evo_norm` module, or None when timm is not installed.

    `import timm` imports torchvision, whose PyPI build (a CUDA build) does not load
    against the CPU build of torch pinned here ("operator torchvision::nms does not
    exist"). evo_norm.py itself needs only torch and two sibling modules, so when the
    package import fails it is imported alone, unmodified, from timm's installed files."""
    spec = importlib.util.find_spec("timm")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    try:
        return importlib.import_module("timm.layers.evo_norm")
    except Exception:  # torchvision missing or broken: see above
        pass
    root = Path(next(iter(spec.submodule_search_locations)))
    for name, path in (("timm", root), ("timm.layers", root / "layers")):
        package = ModuleType(name)
        package.__path__ = [str(path)]
        sys.modules[name] = package
    for name in [m for m in sys.modules if m.startswith("timm.layers.")]:
        del sys.modules[name]  # half-imported by the failed attempt
    return importlib.import_module("timm.layers.evo_norm")


def timm_layers(c: int) -> dict[str, nn.Module]:
    """timm's EvoNorm-S0 and -B0 with our settings (groups lowered to divide C, eps 1e-5),
    or nothing when timm is not installed."""
    evo_norm = timm_evo_norm()
    if evo_norm is None:
        return {}
    return {"timm S0": evo_norm.EvoNorm2dS0(c, groups=effective_groups(c, 32), eps=EPS),
            "timm B0": evo_norm.EvoNorm2dB0(c, eps=EPS)}


def layers_for(c: int, directory: Path) -> dict[str, nn.Module]:
    layers: dict[str, nn.Module] = {}
    for kind, name in (("S0", "evonorm_s0"), ("B0", "evonorm_b0")):
        exported = load_exported_class(get_known(name), directory, f"speed_{name}_{c}")
        layers[f"exported {kind}"] = exported(c)
        layers[f"compiled {kind}"] = compile_layer(get_known(name), c)
        layers[f"hand {kind}"] = HandS0(c) if kind == "S0" else HandB0(c)
    layers.update(timm_layers(c))
    layers["BatchNorm2d+ReLU"] = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU())
    return layers


def torch_compiled(layers: dict[str, nn.Module], shape: tuple[int, ...]) -> dict[str, nn.Module]:
    """torch.compile (inductor) of the exported layers, timm's and BN-ReLU, compiled here
    (one forward+backward each), so that timing sees only compiled code."""
    chosen = [n for n in layers if n.startswith(("exported", "timm")) or n == "BatchNorm2d+ReLU"]
    compiled = {}
    for name in chosen:
        module = torch.compile(layers[name])
        x = torch.randn(shape, requires_grad=True)
        module(x).sum().backward()
        compiled[f"{name} [tc]"] = module
    return compiled


def print_ratio(times: dict[str, list[float]], a: str, b: str, goal: float | None = None) -> None:
    if a in times and b in times:
        ratio = paired_ratio(times, a, b)
        verdict = ""
        if goal is not None:
            verdict = f"  (goal <= {goal:.1f}: {'met' if ratio <= goal else 'MISSED'})"
        print(f"  {a} / {b} = {ratio:.3f}{verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile columns")
    parser.add_argument("--transformer-only", action="store_true",
                        help="only the Transformer norms on (B, T, C) tokens")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, {args.repeats} fwd+bwd per layer")
    transformer_part(args.repeats)
    if args.transformer_only:
        return
    directory = Path(tempfile.mkdtemp())
    for shape in SHAPES:
        c = shape[1]
        layers = layers_for(c, directory)
        if not args.no_compile:
            layers.update(torch_compiled(layers, shape))
        timings = measure(layers, shape, args.repeats)
        print(f"\nshape N,C,H,W = {shape}")
        for name, seconds in timings.items():
            print(
                f"  {name:<26} min {min(seconds) * 1e3:8.3f} ms   "
                f"median {statistics.median(seconds) * 1e3:8.3f} ms"
            )
        for name, layer in layers.items():
            if "[tc]" not in name:
                print(
                    f"  {name:<26} aten ops fwd+bwd {aten_op_count(layer, shape):3d}   "
                    f"overhead per call {call_overhead_us(layer, c):6.1f} us"
                )
        for kind in ("S0", "B0"):
            print(f" {kind}, eager:")
            print_ratio(timings, f"exported {kind}", f"timm {kind}", 1.0 if kind == "S0" else None)
            print_ratio(timings, f"compiled {kind}", f"hand {kind}", 1.1)
            print_ratio(timings, f"exported {kind}", f"compiled {kind}")
            print_ratio(timings, f"exported {kind}", "BatchNorm2d+ReLU")
            print_ratio(timings, f"timm {kind}", "BatchNorm2d+ReLU")
            print(f" {kind}, torch.compile:")
            print_ratio(timings, f"exported {kind} [tc]", "BatchNorm2d+ReLU [tc]", 1.5)
            # Inductor's training-mode BatchNorm is slower than ATen's on CPU: the eager
            # BN-ReLU is the stricter reference.
            print_ratio(timings, f"exported {kind} [tc]", "BatchNorm2d+ReLU")
            print_ratio(timings, f"exported {kind} [tc]", f"timm {kind} [tc]")
            print_ratio(timings, f"timm {kind} [tc]", "BatchNorm2d+ReLU [tc]")
            print_ratio(timings, f"exported {kind} [tc]", f"exported {kind}")


if __name__ == "__main__":
    main()
