"""GPU throughput: evaluations per GPU-hour with 1, 4 and 16 evaluations sharing one GPU,
next to evaluations per hour of one CPU core, all through `workers.evaluate.evaluate`.

Each sharing level S starts S processes (torch.multiprocessing, spawn), one evaluation at
a time in each, as Ray runs S tasks with `--gpus-per-eval 1/S`: separate processes, each
with its own CUDA context, rather than S threads of one process, whose evaluations would
queue behind one GIL and one context. Every process loads the data set once, moves it to
the device, runs one short warm-up evaluation (CUDA context, kernels, allocator), then
waits; the clock starts when all S are ready and stops at the last of the S * K results
(K = --evals-per-slot). The figures are

    evaluations per GPU-hour = 3600 * S * K / wall seconds

and, in the same run, `--cpu-evals` evaluations in one process forced onto the CPU
(CUDA_VISIBLE_DEVICES="" before CUDA starts) with one torch thread: evaluations per hour
of one CPU core, by wall clock and by the process's CPU time (the better estimate on a
busy machine). Every process uses one torch thread.

On a machine without a GPU the sharing levels run on CPU processes and are labelled so;
that is how the script is tested (`--smoke`, under a minute on a CPU).

Checks: every timed evaluation must end "done" with a finite accuracy for every proxy;
on the CPU the same seed must give the same accuracies in every process (on the GPU the
largest difference from the CPU run is printed, for information). A failed check, a
crashed or hung process (--level-timeout) prints the reason and the exit status is 1.

Run it from the source tree, no install (the GPU image's own Python and torch will do;
it needs torch, numpy, networkx, and scikit-learn for the digits data set):

    PYTHONPATH=. python benchmarks/gpu_throughput.py                       # CIFAR-10 at 16x16
    PYTHONPATH=. python benchmarks/gpu_throughput.py --dataset cifar10 --data-dir DIR \\
        --sharing 1,4,16 --evals-per-slot 2 --cpu-evals 1 --out throughput.json
    PYTHONPATH=. python benchmarks/gpu_throughput.py --smoke               # CPU plumbing test
    PYTHONPATH=. python benchmarks/gpu_throughput.py --proxies vit,charlm  # the Transformers

With the Transformer proxies (--proxies vit,charlm) the layer defaults to layernorm and
the training settings to theirs (AdamW, width 64, depth 4, 600 steps; `TrainSettings.
for_dataset(..., slot="norm")`); charlm trains on the pinned stdlib corpus (or --corpus
FILE), which each process builds once (a few seconds) before its warm-up.

CIFAR-10 is looked for in --data-dir, else shared/data and ../shared/data beside the
repository root; without it a stand-in runs: the embedded digits resized to the same
image size with the same training settings (same per-step cost up to the first
convolution's 1 input channel instead of 3; far smaller validation split). A remote GPU
machine that receives only the working tree gets neither ../shared nor, within a 64 MiB
limit, the 177 MB CIFAR-10 folder: shrink it first, where it is, to all 60,000 images at
16x16 as an .npz (43 MiB) in a git-ignored folder (.git/info/exclude) carried with the
tree, and run on that there (same training settings as cifar10; validation split 4,800 images, not 5,000):

    PYTHONPATH=. python benchmarks/gpu_throughput.py --data-dir ../shared/data \\
        --make-npz .bench/cifar16.npz
    PYTHONUNBUFFERED=1 PYTHONPATH=. python3 benchmarks/gpu_throughput.py --dataset npz \\
        --data-dir .bench/cifar16.npz --level-timeout 240 --out throughput.json

Sizes, to plan a time-limited run: one full CIFAR-10 16x16 evaluation took 105 s of CPU
time on one core here (160 s wall on a busy machine); the defaults run 2 + 8 + 32
evaluations on the GPU plus 1 on the CPU, each level after its processes start and load.

It prints one line per evaluation (level, seed, status, accuracies, seconds), then a table:
sharing, evaluations, wall seconds, evaluations per GPU-hour (per hour of S CPU processes
without a GPU), speed-up over sharing 1, peak GPU memory allocated per process and summed
over processes (CUDA only), and the CPU row in evaluations per core-hour; `--out` writes
the same as JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import queue
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # runnable without PYTHONPATH too; spawned children inherit it
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402

from evonorm_search.known import get_known  # noqa: E402
from evonorm_search.task import DatasetSpec, EvalTask, TrainSettings  # noqa: E402
from evonorm_search.proxy_info import proxy_info  # noqa: E402
from workers.datasets import (  # noqa: E402
    CIFAR10_FOLDER, CIFAR10_TRAIN_FILES, load_dataset, load_proxy_data,
)
from workers.evaluate import evaluate, training_device  # noqa: E402

PROXIES = ("resnet", "mobilenetv2", "efficientnet")
# Where CIFAR-10 may be when --data-dir is not given, relative to the repository root.
CIFAR_PLACES = ("shared/data", "../shared/data")
# A warm-up evaluation: every kernel of a real one (training, double backward of the
# stability probe, validation) in a few steps; the threshold 0 lets it reach training.
WARMUP = {"steps": 2, "quality_steps": 1, "stability_steps": 1, "stability_screen_steps": 1,
          "quality_threshold": 0.0}
# --smoke checks the plumbing, not learning: 10 steps are too few to pass the quality bar.
SMOKE = {"steps": 20, "quality_steps": 10, "stability_steps": 2, "stability_screen_steps": 1,
         "quality_threshold": 0.0}
MIB = 2 ** 20


@dataclasses.dataclass(frozen=True)
class Plan:
    """What every process evaluates: the task (its seed replaced per evaluation)."""

    task: EvalTask
    warmup: bool
    layer: str = "bn_relu"

    def warmup_task(self) -> EvalTask:
        return dataclasses.replace(self.task, seed=10**6,
                                   train=dataclasses.replace(self.task.train, **WARMUP))


@dataclasses.dataclass
class Level:
    """The outcome of one sharing level (or of the CPU figure)."""

    label: str
    slots: int
    device: str = "?"
    device_name: str = ""
    wall: float = math.nan
    cpu_seconds: float = 0.0  # summed over the level's processes, timed part only
    results: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    peaks: list[int] = dataclasses.field(default_factory=list)  # CUDA bytes per process
    load_seconds: list[float] = dataclasses.field(default_factory=list)
    errors: list[str] = dataclasses.field(default_factory=list)

    @property
    def per_hour(self) -> float:
        return 3600 * len(self.results) / self.wall if self.wall > 0 else math.nan

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "evals_per_hour": self.per_hour}


# ----------------------------------------------------------------------------- children


def _slot(slot: int, plan: Plan, seeds: list[int], force_cpu: bool,
          messages: Any, start: Any, wait_seconds: float) -> None:
    """One process: load data, warm up, wait for the start, evaluate `seeds` in turn."""
    try:
        if force_cpu:  # before anything starts CUDA in this process
            os.environ["CUDA_VISIBLE_DEVICES"] = ""
        torch.set_num_threads(1)
        device = training_device()
        if force_cpu and device.type != "cpu":
            raise RuntimeError(f"forced onto the CPU, but training_device() is {device}")
        began = time.perf_counter()
        data = load_proxy_data(plan.task.dataset, plan.task.proxies).to(device)
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        loaded = time.perf_counter() - began
        if plan.warmup:
            warm = evaluate(plan.warmup_task(), data)
            if warm.status != "done":
                raise RuntimeError(f"warm-up evaluation {warm.status} at {warm.stage}: "
                                   f"{warm.reason}")
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        messages.put(("ready", slot, {"device": device.type, "name": name, "load": loaded}))
        if not start.wait(wait_seconds):
            return
        cpu = time.process_time()
        for seed in seeds:
            began = time.perf_counter()
            result = evaluate(dataclasses.replace(plan.task, seed=seed), data)
            row = {**result.to_dict(), "seed": seed, "slot": slot,
                   "wall": time.perf_counter() - began}
            messages.put(("result", slot, row))
        peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
        messages.put(("done", slot, {"cpu": time.process_time() - cpu, "peak": peak}))
    except BaseException:  # noqa: BLE001 - the parent prints it and fails the run
        messages.put(("error", slot, traceback.format_exc()))


@contextlib.contextmanager
def _environment(**values: str) -> Iterator[None]:
    """`values` set in os.environ inside the block (spawned children inherit them)."""
    old = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_level(label: str, slots: int, per_slot: int, plan: Plan, force_cpu: bool,
              timeout: float) -> Level:
    """S = `slots` processes, `per_slot` timed evaluations each (seeds 0..S*K-1)."""
    level = Level(label, slots)
    context = mp.get_context("spawn")
    messages = context.Queue()
    start = context.Event()
    seeds = [[slot * per_slot + k for k in range(per_slot)] for slot in range(slots)]
    env = {"CUDA_VISIBLE_DEVICES": ""} if force_cpu else {}
    with _environment(**env):
        processes = [context.Process(target=_slot, daemon=True,
                                     args=(slot, plan, seeds[slot], force_cpu, messages,
                                           start, timeout))
                     for slot in range(slots)]
        for process in processes:
            process.start()
    deadline = time.perf_counter() + timeout
    ready: set[int] = set()
    finished: set[int] = set()  # done or error

    def receive(until: set[int]) -> None:
        """Read messages until every slot is in `until`, a slot dies, or the deadline."""
        while len(until) < slots and not level.errors:
            try:
                kind, slot, body = messages.get(timeout=0.5)
            except queue.Empty:
                for slot, process in enumerate(processes):
                    if slot not in finished and not process.is_alive():
                        # A last message may still be in the pipe: read once more first.
                        with contextlib.suppress(queue.Empty):
                            handle(*messages.get(timeout=2.0))
                        if slot not in finished:
                            level.errors.append(f"slot {slot}: process exited with code "
                                                f"{process.exitcode} before finishing")
                if time.perf_counter() > deadline:
                    level.errors.append(f"timed out after {timeout:.0f} s (--level-timeout)")
                continue
            handle(kind, slot, body)

    def handle(kind: str, slot: int, body: Any) -> None:
        if kind == "ready":
            ready.add(slot)
            level.device, level.device_name = body["device"], body["name"]
            level.load_seconds.append(round(body["load"], 2))
        elif kind == "result":
            level.results.append(body)
        elif kind == "done":
            finished.add(slot)
            level.cpu_seconds += body["cpu"]
            level.peaks.append(body["peak"])
        else:
            finished.add(slot)
            level.errors.append(f"slot {slot}: {body}")

    receive(ready)
    if not level.errors:
        began = time.perf_counter()
        start.set()
        receive(finished)
        if len(level.results) == slots * per_slot:
            level.wall = time.perf_counter() - began
    for process in processes:
        if level.errors:  # the others would wait for the start or run on: stop them now
            process.terminate()
        process.join(timeout=10)
        if process.is_alive():
            process.kill()
            process.join(timeout=5)
    return level


# ------------------------------------------------------------------------------ parent


def _check(level: Level, proxies: tuple[str, ...]) -> list[str]:
    """Reasons the level's timed evaluations are not all sane."""
    # A traceback was printed in full with the level; its last line says what broke.
    problems = [f"{level.label} {error.strip().splitlines()[-1]}" if "\n" in error.strip()
                else f"{level.label} {error}" for error in level.errors]
    for row in level.results:
        accuracies = row["accuracies"]
        if row["status"] != "done":
            problems.append(f"{level.label} seed {row['seed']}: {row['status']} at "
                            f"{row['stage']}: {row['reason']}")
        elif set(accuracies) != set(proxies) or not all(
                math.isfinite(a) and 0.0 <= a <= 1.0 for a in accuracies.values()):
            problems.append(f"{level.label} seed {row['seed']}: accuracies {accuracies}")
    return problems


def _same_seeds(levels: list[Level], cpu: Level | None) -> tuple[list[str], float | None]:
    """CPU results must not depend on the process (failures); the largest accuracy
    difference of another device from the CPU run, for information."""
    if cpu is None:
        return [], None
    reference = {row["seed"]: row["accuracies"] for row in cpu.results if row["status"] == "done"}
    problems, gap = [], None
    for level in levels:
        for row in level.results:
            ref = reference.get(row["seed"])
            if ref is None or row["status"] != "done":
                continue
            if level.device == "cpu" and row["accuracies"] != ref:
                problems.append(f"{level.label} seed {row['seed']}: accuracies "
                                f"{row['accuracies']} differ from the CPU run's {ref} on "
                                "the same device (not deterministic)")
            elif level.device != "cpu":
                for proxy, value in row["accuracies"].items():
                    if proxy in ref:
                        gap = max(gap or 0.0, abs(value - ref[proxy]))
    return problems, gap


def find_cifar(data_dir: str | None) -> str | None:
    """The folder that holds CIFAR-10 (data_batch_1 in it or its cifar-10-batches-py)."""
    places = [Path(data_dir)] if data_dir else [REPO / place for place in CIFAR_PLACES]
    for place in places:
        for folder in (place, place / CIFAR10_FOLDER):
            if (folder / CIFAR10_TRAIN_FILES[0]).is_file():
                return str(folder.resolve())
    return None


def make_npz(cifar: str, size: int, out: Path) -> None:
    """All 60,000 CIFAR-10 images (train and test batches) area-resized to `size`, as the
    uint8 `x` (N, size, size, 3) and `y` of the npz data set; small enough to carry."""
    spec = DatasetSpec(name="cifar10", data_dir=cifar, image_size=size, normalize=False,
                       validation_fraction=0.5)
    data = load_dataset(spec)  # floats in [0, 1], resized by the loader itself
    x = torch.cat([data.train_x, data.val_x, data.test_x])
    y = torch.cat([data.train_y, data.val_y, data.test_y])
    pixels = (x * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, x=pixels.numpy(), y=y.numpy())
    print(f"wrote {out}: {len(y)} images of {size}x{size}x3, {out.stat().st_size / MIB:.1f} "
          "MiB; run with --dataset npz --data-dir " + str(out))


def build_plan(args: argparse.Namespace) -> tuple[Plan, str]:
    """The task every process evaluates, and a line saying which data it trains on."""
    name, data_dir, size, note = args.dataset, args.data_dir, args.image_size, ""
    settings_of = name
    if args.smoke:
        name, data_dir, size, settings_of = "digits", None, None, "digits"
    elif name == "cifar10":
        data_dir = find_cifar(args.data_dir)
        if data_dir is None:
            looked = args.data_dir or " and ".join(str(REPO / p) for p in CIFAR_PLACES)
            name = "digits"
            note = (f"no CIFAR-10 in {looked}: digits stand-in at {size}x{size} with the "
                    "cifar10 training settings (1 input channel, small validation split)")
    overrides = {key: value for key, value in (
        ("steps", args.steps), ("batch_size", args.batch_size),
        ("quality_steps", args.quality_steps), ("stability_steps", args.stability_steps),
    ) if value is not None}
    if args.smoke:
        overrides = {**SMOKE, **overrides}
    proxies = tuple(args.proxies.split(","))
    slot = proxy_info(proxies[0]).slot  # "norm": the Transformer proxies' own recipe
    settings = TrainSettings.for_dataset(settings_of, slot=slot, threads=1, **overrides)
    if settings.quality_steps > settings.steps:
        settings = dataclasses.replace(settings, quality_steps=settings.steps)
    spec = DatasetSpec(name=name, data_dir=data_dir, image_size=size, corpus=args.corpus)
    layer = args.layer or ("layernorm" if slot == "norm" else "bn_relu")
    task = EvalTask(get_known(layer).to_json(), proxies, spec, settings)
    return Plan(task, warmup=not args.no_warmup, layer=layer), note


def describe(plan: Plan) -> str:
    s, spec = plan.task.train, plan.task.dataset
    size = f" at {spec.image_size}x{spec.image_size}" if spec.image_size else ""
    where = f" from {spec.data_dir}" if spec.data_dir else ""
    return (f"{spec.name}{size}{where}; layer {plan.layer}, proxies "
            f"{','.join(plan.task.proxies)}; batch {s.batch_size}, steps {s.steps} (quality check at {s.quality_steps}), "
            f"stability {s.stability_steps} steps "
            f"({min(s.stability_screen_steps, s.stability_steps)} before the quality check), "
            f"width {s.width}, depth {s.depth}, 1 torch thread per process")


def print_rows(level: Level) -> None:
    for row in sorted(level.results, key=lambda r: r["seed"]):
        accuracies = "".join(f" {p} {a:.3f}" for p, a in row["accuracies"].items())
        why = "" if row["status"] == "done" else f" at {row['stage']}: {row['reason']}"
        print(f"  {level.label:>12s} seed {row['seed']:3d} slot {row['slot']:2d}: "
              f"{row['status']}{why}{accuracies} ({row['wall']:.1f} s)", flush=True)
    for error in level.errors:
        print(f"  {level.label:>12s} ERROR {error}", flush=True)


def table(levels: list[Level], cpu: Level | None, on_gpu: bool) -> list[str]:
    unit = "evals/GPU-hour" if on_gpu else "evals/hour"
    lines = [f"{'sharing':>7s} {'evals':>5s} {'wall s':>8s} {unit:>14s} {'speed-up':>8s} "
             f"{'s/eval':>7s} {'peak MiB/proc':>13s} {'sum MiB':>8s}  device"]
    base = levels[0].per_hour if levels else math.nan
    for level in levels:
        peak = max(level.peaks, default=0) / MIB
        total = sum(level.peaks) / MIB
        memory = f"{peak:13.0f} {total:8.0f}" if level.device == "cuda" else f"{'-':>13s} {'-':>8s}"
        where = level.device_name if level.device == "cuda" else \
            f"{level.slots} CPU process(es), no GPU"
        per_eval = level.wall * level.slots / max(1, len(level.results))
        lines.append(f"{level.slots:7d} {len(level.results):5d} {level.wall:8.1f} "
                     f"{level.per_hour:14.1f} {level.per_hour / base:8.2f} {per_eval:7.1f} "
                     f"{memory}  {where}")
    if cpu is not None:
        by_cpu = 3600 * len(cpu.results) / cpu.cpu_seconds if cpu.cpu_seconds else math.nan
        lines.append(f"{'CPU':>7s} {len(cpu.results):5d} {cpu.wall:8.1f} "
                     f"{cpu.per_hour:14.1f} {'':8s} {cpu.wall / max(1, len(cpu.results)):7.1f} "
                     f"{'-':>13s} {'-':>8s}  1 CPU core, 1 thread: evals/core-hour "
                     f"{cpu.per_hour:.1f} by wall, {by_cpu:.1f} by CPU time")
        if on_gpu and levels and cpu.per_hour > 0:
            best = max(levels, key=lambda level: level.per_hour if level.wall > 0 else 0)
            lines.append(f"one GPU at sharing {best.slots} = {best.per_hour / cpu.per_hour:.1f} "
                         "CPU cores (one thread each) by wall clock")
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="cifar10",
                        help="cifar10 (default; digits stand-in when absent), digits or npz")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--image-size", type=int, default=16)
    parser.add_argument("--layer", default=None,
                        help="known layer evaluated (default: bn_relu; layernorm for the "
                             "Transformer proxies)")
    parser.add_argument("--proxies", default=",".join(PROXIES),
                        help="CNN proxies (default) or the Transformer ones, vit,charlm")
    parser.add_argument("--corpus", default=None,
                        help="charlm's text file (default: the pinned stdlib corpus)")
    parser.add_argument("--sharing", default="1,4,16",
                        help="evaluations sharing the GPU at once, comma-separated")
    parser.add_argument("--evals-per-slot", type=int, default=2,
                        help="timed evaluations per process (K)")
    parser.add_argument("--cpu-evals", type=int, default=1,
                        help="evaluations forced on one CPU core (0: skip the CPU figure)")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--quality-steps", type=int, default=None)
    parser.add_argument("--stability-steps", type=int, default=None)
    parser.add_argument("--no-warmup", action="store_true",
                        help="time each process's first evaluation from a cold start")
    parser.add_argument("--level-timeout", type=float, default=600.0,
                        help="seconds a sharing level may take, start-up included")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as JSON")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny CPU-sized run: digits, 20 steps, sharing 1,2, one eval each")
    parser.add_argument("--make-npz", type=Path, default=None, metavar="FILE",
                        help="write CIFAR-10 (from --data-dir) resized to --image-size as FILE "
                             "(the npz data set) and exit")
    args = parser.parse_args(argv)
    if args.smoke and args.sharing == parser.get_default("sharing"):
        args.sharing = "1,2"
    if args.smoke and args.evals_per_slot == parser.get_default("evals_per_slot"):
        args.evals_per_slot = 1
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)
    if args.make_npz is not None:
        cifar = find_cifar(args.data_dir)
        if cifar is None:
            print(f"no CIFAR-10 in {args.data_dir or CIFAR_PLACES}", file=sys.stderr)
            return 1
        make_npz(cifar, args.image_size, args.make_npz)
        return 0
    sharing = [int(part) for part in args.sharing.split(",") if part.strip()]
    if not sharing or min(sharing) < 1 or args.evals_per_slot < 1 or args.cpu_evals < 0:
        print("--sharing needs counts >= 1, --evals-per-slot >= 1, --cpu-evals >= 0",
              file=sys.stderr)
        return 2
    plan, note = build_plan(args)
    on_gpu = torch.cuda.is_available()  # counts devices; no CUDA context in this process
    print(f"data: {describe(plan)}")
    if note:
        print(f"note: {note}")
    print(f"torch {torch.__version__}, python {sys.version.split()[0]}; "
          + ("GPU present: sharing levels run on it" if on_gpu else
             "NO GPU: the sharing levels run as CPU processes (one thread each), labelled so"),
          flush=True)

    levels: list[Level] = []
    for slots in sharing:
        label = f"share {slots}" if on_gpu else f"cpu-procs {slots}"
        level = run_level(label, slots, args.evals_per_slot, plan, False, args.level_timeout)
        print_rows(level)
        print(f"{label}: {len(level.results)} evaluations in {level.wall:.1f} s on "
              f"{level.device} -> {level.per_hour:.1f} per hour (data loads "
              f"{level.load_seconds} s)", flush=True)
        levels.append(level)
    cpu = None
    if args.cpu_evals:
        cpu = run_level("cpu", 1, args.cpu_evals, plan, True, args.level_timeout)
        print_rows(cpu)
    problems = [p for level in levels + ([cpu] if cpu else [])
                for p in _check(level, plan.task.proxies)]
    seed_problems, gap = _same_seeds(levels, cpu)
    problems += seed_problems

    print()
    print("\n".join(table(levels, cpu, on_gpu)))
    statuses: dict[str, int] = {}
    for level in levels + ([cpu] if cpu else []):
        for row in level.results:
            statuses[row["status"]] = statuses.get(row["status"], 0) + 1
    print("status: " + (", ".join(f"{count} {status}" for status, count in sorted(statuses.items()))
                        or "no evaluation finished")
          + (f"; largest accuracy difference from the CPU run on the same seed: {gap:.3f}"
             if gap is not None else ""))
    if args.out is not None:
        args.out.write_text(json.dumps({
            "settings": plan.task.to_dict(), "gpu": on_gpu, "note": note,
            "levels": [level.to_dict() for level in levels],
            "cpu": cpu.to_dict() if cpu else None, "problems": problems,
        }, indent=1, default=str))
    if problems:
        print(f"FAILED ({len(problems)}):")
        for problem in problems:
            print(f"  {problem}")
        return 1
    print("OK: every evaluation done with finite accuracies")
    return 0


if __name__ == "__main__":
    sys.exit(main())
