"""Proxy cost: seconds per 100 training steps and per 100 stability-ascent steps for each
proxy at default sizes, and the cost of a rejection at each stage as a fraction of a
full evaluation (goals: quality rejection <= 10%, stability rejection <= 2%).

Figures are process CPU seconds with one torch thread (on a shared machine they are the
best estimate of wall time on an idle core); wall seconds are printed alongside.

    python benchmarks/proxy_cost.py                      # digits, its default settings
    python benchmarks/proxy_cost.py --dataset cifar10 --data-dir DIR --image-size 16
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable
from typing import Any

import torch

from evonorm_search.compile import layer_factory
from evonorm_search.graph import LayerGraph, Node
from evonorm_search.known import get_known
from evonorm_search.task import DatasetSpec, EvalTask, TrainSettings
from workers.datasets import load_dataset
from workers.evaluate import evaluate
from workers.proxies import PROXIES
from workers.rejection import StabilityProbe
from workers.training import Trainer

# Known-bad layers; the stage that catches each is printed, not assumed.
BAD_LAYERS = (
    ("exp(x)", LayerGraph([Node("exp", (0,))]), "stability"),  # non-finite at once
    ("square(x)", LayerGraph([Node("square", (0,))]), "stability"),  # explodes later
    ("x * 0", LayerGraph([Node("mul", (0, 1))]), "quality"),  # stable, cannot learn
)
GOALS = {"stability": 0.02, "quality": 0.10}


def timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """(result, CPU seconds, wall seconds) of `fn()`."""
    cpu, wall = time.process_time(), time.perf_counter()
    value = fn()
    return value, time.process_time() - cpu, time.perf_counter() - wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--layer", default="bn_relu")
    parser.add_argument("--steps", type=int, default=None,
                        help="training steps per proxy (default: the data set's default)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    spec = DatasetSpec(name=args.dataset, data_dir=args.data_dir, image_size=args.image_size)
    data = load_dataset(spec)
    settings = TrainSettings.for_dataset(args.dataset)
    if args.steps is not None:
        settings = dataclasses.replace(settings, steps=args.steps)
    print(f"data: {args.dataset} {tuple(data.train_x.shape[1:])}; settings: batch "
          f"{settings.batch_size}, steps {settings.steps}, width {settings.width}, depth "
          f"{settings.depth}, stability {settings.stability_steps} steps on "
          f"{settings.stability_batch_size} images, quality at {settings.quality_steps}")
    factory = layer_factory(get_known(args.layer))
    print(f"\nper proxy with {args.layer} (CPU s / wall s per 100 steps):")
    for name, builder in PROXIES.items():
        torch.manual_seed(0)
        model = builder(factory, data.num_classes, data.in_channels, settings.width,
                        settings.depth)
        trainer = Trainer(model, data, settings, 0)
        trainer.train_until(5)  # warm up allocator and kernels
        _, train_cpu, train_wall = timed(lambda: trainer.train_until(105))
        probe = StabilityProbe(model, data.train_x[:8], data.train_y[:8], 1e8, 0.05)
        _, stab_cpu, stab_wall = timed(lambda: probe.run(100))
        print(f"  {name:13s} training {train_cpu:6.2f} / {train_wall:6.2f}   "
              f"stability ascent {stab_cpu:6.2f} / {stab_wall:6.2f}")

    def run(graph: LayerGraph) -> Any:
        return evaluate(EvalTask(graph.to_json(), tuple(PROXIES), spec, settings, 0), data)

    full, full_cpu, full_wall = timed(lambda: run(get_known(args.layer)))
    print(f"\nfull evaluation of {args.layer} on {len(PROXIES)} proxies: {full.status}, "
          f"CPU {full_cpu:.1f}s, wall {full_wall:.1f}s; stages (wall) {full.seconds}")
    for label, graph, expected in BAD_LAYERS:
        result, cpu, wall = timed(lambda: run(graph))
        goal = GOALS.get(result.stage or "", 0.0)
        print(f"{label} (expected at {expected}): {result.status} at {result.stage} "
              f"[{result.reason}]; CPU {cpu:.2f}s = {cpu / full_cpu:.1%} of a full "
              f"evaluation (goal for this stage <= {goal:.0%}); wall {wall:.2f}s = "
              f"{wall / full_wall:.1%}")


if __name__ == "__main__":
    main()
