"""CIFAR-10 table: BN-ReLU, GN-ReLU, EvoNorm-B0, EvoNorm-S0 on the three proxies, at a
large and a tiny batch size. Prints a markdown table for docs/RESULTS.md.

Each row is exactly `evonorm evaluate LAYERS --dataset cifar10 ...` with the options
printed above the table (the same `workers.evaluate.evaluate` call). Usage:

    python benchmarks/cifar_table.py --data-dir ../shared/data/cifar-10-batches-py
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from evonorm_search.known import get_known
from evonorm_search.task import DatasetSpec, EvalResult, EvalTask, TrainSettings
from workers.datasets import load_dataset
from workers.evaluate import evaluate

LAYERS = ("bn_relu", "gn_relu", "evonorm_b0", "evonorm_s0")
PROXIES = ("resnet", "mobilenetv2", "efficientnet")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--image-size", type=int, default=16)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--eval-batches", type=int, default=8)
    parser.add_argument("--runs", default="128:100:0.1,4:400:0.01",
                        help="batch:steps:lr for each run")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    spec = DatasetSpec(name="cifar10", data_dir=args.data_dir, image_size=args.image_size)
    data = load_dataset(spec)
    results: dict[tuple[int, str], EvalResult] = {}
    commands = []
    for run in args.runs.split(","):
        batch, steps, lr = run.split(":")
        settings = TrainSettings(batch_size=int(batch), steps=int(steps), learning_rate=float(lr),
                                 quality_steps=0, width=args.width,
                                 eval_batches=args.eval_batches, threads=1)
        commands.append(
            f"evonorm evaluate {' '.join(LAYERS)} --dataset cifar10 --data-dir {args.data_dir} "
            f"--image-size {args.image_size} --width {args.width} --batch-size {batch} "
            f"--steps {steps} --lr {lr} --quality-steps 0 --eval-batches {args.eval_batches} "
            f"--threads 1 --seed {args.seed}")
        for layer in LAYERS:
            started = time.perf_counter()
            task = EvalTask(get_known(layer).to_json(), PROXIES, spec, settings, args.seed)
            result = evaluate(task, data)
            results[(int(batch), layer)] = result
            print(f"batch {batch} {layer}: {result.status} {result.accuracies} "
                  f"{result.reason or ''} ({time.perf_counter() - started:.0f}s)",
                  file=sys.stderr, flush=True)
    print("Commands:\n")
    for command in commands:
        print(f"    {command}")
    print("\n| layer | batch | " + " | ".join(PROXIES) + " | status |")
    print("|---|---|" + "---|" * len(PROXIES) + "---|")
    for (batch, layer), result in results.items():
        cells = [f"{result.accuracies[p]:.3f}" if p in result.accuracies else "-"
                 for p in PROXIES]
        status = result.status if result.status == "done" else f"{result.status}: {result.reason}"
        print(f"| {layer} | {batch} | " + " | ".join(cells) + f" | {status} |")


if __name__ == "__main__":
    main()
