"""Proxy fidelity: how much of a proxy score is signal (the layer) and how much is noise (the seed).

The search scores a candidate by one evaluation (one seed) of three small proxy nets. This
benchmark trains a fixed panel of layers (known layers plus a few viable mutants of them)
on several seeds under several training protocols and prints, per data set x protocol x
proxy (and for the mean over the proxies, one number per evaluation):

- seed SD: the pooled within-layer SD of the final validation accuracy,
  sqrt(mean over layers of the sample variance over seeds): the noise of ONE evaluation;
- between SD: the sample SD over layers of the per-layer means (means over the seeds);
- SNR = between SD / seed SD. Because each layer mean still holds seed noise of variance
  seed SD^2 / n_seeds, SNR1 = sqrt(max(0, between SD^2 - seed SD^2 / n_seeds)) / seed SD
  is also given: the estimated true spread of the layers in units of one evaluation's noise;
- rho(early, final): Spearman rank correlation of the accuracy at the quality check
  (after `quality_steps`) with the final accuracy, over layers x seeds and over the layer
  means (what a hurdle rule on early accuracy relies on);
- fidelity: Spearman of the layer means with the reference protocol's layer means (CIFAR-10;
  95% percentile bootstrap interval over layers, 2000 resamples), and single-seed fidelity:
  the same for one seed's accuracies (what the search sees), averaged over the seeds;
- CPU s / eval: process CPU seconds of one evaluate() call (all proxies), mean; fidelity
  per 100 CPU s;
- CRN: SD of the paired difference of two layers on the same seed against on different
  seeds (root of the mean variance over layer pairs). All layers use the same seeds, so
  the same initial weights (where shapes agree) and the same data order per seed.

Also: the final accuracy on the first `--val-subset` images of the validation split
(CIFAR-10: 1024 of 5000), computed from the same trained model by wrapping
`Trainer.accuracy` in this process only, as the protocol "<name>@val<N>".

Work runs in `--workers` processes (default 2), each with one torch thread and nice 5;
every finished cell is written to `--out` (JSON) at once, and a rerun with the same `--out`
skips the cells already there (a killed run loses only the cells in flight).

    python benchmarks/proxy_fidelity.py --smoke --out /tmp/pf_smoke.json   # < 1 minute
    python benchmarks/proxy_fidelity.py --out /tmp/pf.json   # digits, then CIFAR-10 (hours)
    # what the 2026-11-30 run did on a loaded 2-core machine (2 seeds, 2x reference):
    python benchmarks/proxy_fidelity.py --out /tmp/pf.json --reference ref600 \
        --cifar-order "default:0,1;short:0;ref600:0;short:1;default:2;short:2;DIGITS2;ref600:1"
    python benchmarks/proxy_fidelity.py --report-only --out /tmp/pf.json --reference ref600 \
        --cifar-order "default:0,1;short:0;ref600:0"      # tables from what is stored

Cost: on the shared 2-core machine (load 3-6) one CIFAR-10 evaluation at the default 64 x 300
took 80-130 process CPU s (the idle-machine figure in docs/RESULTS.md is about 45 s without
the stability probe) and 2-2.5x that in wall time; a digits evaluation 9-13 CPU s. The full
default plan (3 seeds, the 3x reference, img8) takes several hours there.

Not covered: the stability protocol (stability_steps=0; it trains nothing), rejection by
quality (threshold 0), whether a protocol preserves the order of layers the search would
actually meet (random and heavily mutated layers; the panel is 6 known layers and 2
viable mutants), more than a few layers (with 8 layers a Spearman rho of 0.8 has a 95%
interval of about [0.19, 0.96] by Fisher z with variance 1.06 / (n - 3)), the reference
itself being only a longer proxy run (not full-size networks or the paper's schedule),
the test split, and the variance of the train/validation split (split_seed fixed at 0).
Digits validation is 144 images, so its accuracies move in steps of 1/144 = 0.007.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import replace
from itertools import combinations
from pathlib import Path
from typing import Any

from training_budget import bootstrap_spearman, spearman  # benchmarks/ is on sys.path when run as a script

from evonorm_search.graph import LayerGraph
from evonorm_search.known import KNOWN_LAYERS, formula_label
from evonorm_search.search.moves import mutate
from evonorm_search.task import DatasetSpec, EvalTask, TrainSettings

PROXIES = ("resnet", "mobilenetv2", "efficientnet")
CIFAR_LAYERS = ("bn_relu", "gn_relu", "bn_swish", "evonorm_b0", "evonorm_s0", "evonorm_s1")
COMMON = {"stability_steps": 0, "quality_threshold": 0.0, "threads": 1}

# name: (DatasetSpec overrides, TrainSettings overrides on the data set's defaults)
CIFAR_PROTOCOLS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "default": ({}, {}),  # 64 x 300, lr 0.05, quality at 100
    "reference": ({}, {"steps": 900}),
    "ref600": ({}, {"steps": 600}),  # a cheaper reference: 2x the default's steps
    "short": ({}, {"steps": 150, "quality_steps": 50}),
    "b32": ({}, {"batch_size": 32}),
    "img8": ({"image_size": 8}, {}),
    "lr0.1": ({}, {"learning_rate": 0.1}),
    "w8": ({}, {"width": 8}),
}
DIGITS_PROTOCOLS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "default": ({}, {}),  # 32 x 200, quality at 100
    "s40": ({}, {"steps": 40, "quality_steps": 20}),
    "b8": ({}, {"batch_size": 8, "steps": 100, "quality_steps": 50}),
    "w4": ({}, {"width": 4}),
    "n300": ({"max_train_examples": 300}, {}),
}
SMOKE_PROTOCOLS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "default": ({}, {"steps": 30, "quality_steps": 10}),
    "reference": ({}, {"steps": 60, "quality_steps": 10}),
}


# ---------------------------------------------------------------- worker side

_DATA: dict[str, Any] = {}
_SUBSET: list[float] = []
_SUBSET_IMAGES = 0


def _init_worker(subset_images: int) -> None:
    """One torch thread, lower priority, and the validation-subset tap on Trainer.accuracy."""
    global _SUBSET_IMAGES
    os.nice(5)
    import torch

    import workers.training as training

    torch.set_num_threads(1)
    _SUBSET_IMAGES = subset_images
    original = training.Trainer.accuracy

    def accuracy(self: Any, split: str = "val", max_batches: int | None = None) -> float:
        value = original(self, split, max_batches)
        if split == "val" and max_batches is None and _SUBSET_IMAGES:
            batches = max(1, _SUBSET_IMAGES // training.EVAL_BATCH_SIZE)
            _SUBSET.append(original(self, split, batches))
        return value

    training.Trainer.accuracy = accuracy  # type: ignore[method-assign]


def _run_cell(cell: dict[str, Any]) -> dict[str, Any]:
    from workers.datasets import load_dataset
    from workers.evaluate import evaluate

    spec = DatasetSpec.from_dict(cell["dataset"])
    key = json.dumps(cell["dataset"], sort_keys=True)
    if key not in _DATA:
        _DATA[key] = load_dataset(spec)
    task = EvalTask(cell["graph_json"], tuple(cell["proxies"]), dataset=spec,
                    train=TrainSettings.from_dict(cell["train"]), seed=cell["seed"])
    _SUBSET.clear()
    wall, cpu = time.perf_counter(), time.process_time()
    result = evaluate(task, _DATA[key])
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    subset: dict[str, float] = {}
    if result.status == "done" and len(_SUBSET) >= len(task.proxies):
        # the last len(proxies) full-validation calls are the final accuracies, in order
        subset = dict(zip(task.proxies, _SUBSET[-len(task.proxies):]))
    return {"train": cell["train"], "dataset": cell["dataset"],
            "status": result.status, "reason": result.reason,
            "accuracies": result.accuracies, "early": result.early_accuracies,
            "subset": subset, "seconds": result.seconds, "cpu": cpu, "wall": wall}


# ---------------------------------------------------------------- main side

def _save(path: Path, store: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(store, indent=1))
    os.replace(tmp, path)


def _cell_key(dataset: str, protocol: str, layer: str, seed: int) -> str:
    return f"{dataset}|{protocol}|{layer}|{seed}"


def _settings(dataset: str, protocols: dict[str, Any], name: str, data_dir: str | None,
              image_size: int | None) -> tuple[DatasetSpec, TrainSettings]:
    data_over, train_over = protocols[name]
    if dataset == "cifar10":
        spec = DatasetSpec(name="cifar10", data_dir=data_dir, image_size=image_size)
    else:
        spec = DatasetSpec()
    return (replace(spec, **data_over),
            TrainSettings.for_dataset(spec.name, **{**COMMON, **train_over}))


def _run(pool: ProcessPoolExecutor, cells: list[dict[str, Any]], store: dict[str, Any],
         out: Path) -> None:
    todo = [c for c in cells if c["key"] not in store["cells"]]
    print(f"{len(cells) - len(todo)} of {len(cells)} cells already done; running {len(todo)}",
          flush=True)
    start = time.perf_counter()
    pending = {pool.submit(_run_cell, c): c for c in todo}
    done_count = 0
    while pending:
        finished, _ = wait(pending, return_when=FIRST_COMPLETED)
        for future in finished:
            cell = pending.pop(future)
            row = future.result()
            store["cells"][cell["key"]] = row
            _save(out, store)
            done_count += 1
            mean = statistics.mean(row["accuracies"].values()) if row["accuracies"] else math.nan
            early = statistics.mean(row["early"].values()) if row["early"] else math.nan
            print(f"[{done_count}/{len(todo)} {time.perf_counter() - start:6.0f} s] "
                  f"{cell['key']:42s} {row['status']:8s} early {early:.3f} final {mean:.3f} "
                  f"cpu {row['cpu']:5.1f} s wall {row['wall']:5.1f} s", flush=True)


def _choose_mutants(pool: ProcessPoolExecutor, count: int, store: dict[str, Any],
                    minimum: float) -> dict[str, str]:
    """The first `count` mutants of known layers (mutation seed k = 0, 1, ..., parent the
    k-th known layer cyclically) structurally new and with a mean early accuracy of at
    least `minimum` on digits (default protocol, seed 99, not a panel seed)."""
    chosen: dict[str, str] = dict(store.get("mutants", {}))
    if len(chosen) >= count:
        return dict(list(chosen.items())[:count])
    seen = {g.structural_hash() for g in KNOWN_LAYERS.values()}
    seen |= {LayerGraph.from_json(j).structural_hash() for j in chosen.values()}
    parents = list(KNOWN_LAYERS.items())
    spec, train = _settings("digits", DIGITS_PROTOCOLS, "default", None, None)
    k = store.get("mutant_next", 0)
    while len(chosen) < count and k < 200:
        batch = []
        while len(batch) < 4:
            parent_name, parent = parents[k % len(parents)]
            child = mutate(parent, random.Random(k), "B")
            if child.structural_hash() not in seen:
                seen.add(child.structural_hash())
                batch.append((k, parent_name, child))
            k += 1
        cells = [{"graph_json": c.to_json(), "proxies": list(PROXIES),
                  "dataset": spec.to_dict(), "train": train.to_dict(), "seed": 99}
                 for _, _, c in batch]
        for (k_used, parent_name, child), row in zip(batch, pool.map(_run_cell, cells)):
            early = statistics.mean(row["early"].values()) if row["early"] else math.nan
            ok = row["status"] == "done" and early >= minimum
            print(f"mutant k={k_used} of {parent_name}: {row['status']} early {early:.3f} "
                  f"{'kept' if ok and len(chosen) < count else 'skipped'}: "
                  f"{child.formula()}", flush=True)
            if ok and len(chosen) < count:
                chosen[f"mut{k_used}_{parent_name}"] = child.to_json()
    store["mutants"], store["mutant_next"] = chosen, k
    return chosen


def _cells(dataset: str, protocols: dict[str, Any], names: list[str], layers: dict[str, str],
           seeds: list[int], reference_seeds: list[int], data_dir: str | None,
           image_size: int | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The cells of every protocol's first two seeds, and those of the other seeds (run
    later, so that a run cut short still has two seeds everywhere)."""
    first: list[dict[str, Any]] = []
    rest: list[dict[str, Any]] = []
    for name in names:
        spec, train = _settings(dataset, protocols, name, data_dir, image_size)
        proto_seeds = reference_seeds if name == "reference" else seeds
        for index, seed in enumerate(proto_seeds):
            for layer, graph_json in layers.items():
                (first if index < 2 else rest).append({
                    "key": _cell_key(dataset, name, layer, seed), "graph_json": graph_json,
                    "proxies": list(PROXIES), "dataset": spec.to_dict(),
                    "train": train.to_dict(), "seed": seed})
    return first, rest


# ---------------------------------------------------------------- statistics

def _sd(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else math.nan


def _grid(store: dict[str, Any], dataset: str, protocol: str, panel: list[str],
          field: str = "accuracies"
          ) -> tuple[list[str], list[int], dict[str, dict[str, dict[int, float]]]]:
    """{proxy or 'mean': {layer: {seed: accuracy}}} over a complete layer x seed grid of
    the `panel` layers: the seeds on which every panel layer finished, or, when that leaves
    fewer than two seeds, the larger grid of the seeds any layer finished and the layers
    finished on all of them."""
    proto = protocol.split("@")[0]
    rows: dict[tuple[str, int], dict[str, float]] = {}
    for key, row in store["cells"].items():
        d, p, layer, seed = key.split("|")
        if d == dataset and p == proto and layer in panel:
            ok = row["status"] == "done" and row[field]
            rows[(layer, int(seed))] = row[field] if ok else {}
    all_seeds = sorted({s for _, s in rows})
    options = []
    for seeds in ([s for s in all_seeds if all(rows.get((lay, s)) for lay in panel)],
                  all_seeds):
        layers = [lay for lay in panel if seeds and all(rows.get((lay, s)) for s in seeds)]
        options.append((len(layers) * len(seeds) if len(layers) > 1 else 0, layers, seeds))
    best = options[0] if len(options[0][2]) >= 2 or options[0][0] >= options[1][0] else options[1]
    _, layers, seeds = best
    grid: dict[str, dict[str, dict[int, float]]] = {p: {} for p in (*PROXIES, "mean")}
    for lay in layers:
        for s in seeds:
            acc = rows[(lay, s)]
            for p in PROXIES:
                grid[p].setdefault(lay, {})[s] = acc[p]
            grid["mean"].setdefault(lay, {})[s] = statistics.mean(acc[p] for p in PROXIES)
    return layers, seeds, grid



def _cpu(store: dict[str, Any], dataset: str, protocol: str) -> float:
    proto = protocol.split("@")[0]
    values = [row["cpu"] for key, row in store["cells"].items()
              if key.split("|")[:2] == [dataset, proto] and row["status"] == "done"]
    return statistics.mean(values) if values else math.nan


def _f(value: float, digits: int = 3) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def report(store: dict[str, Any], dataset: str, protocols: list[str], panel: list[str],
           reference: str = "reference") -> None:
    title = "CIFAR-10 (16x16)" if dataset == "cifar10" else "digits (8x8)"
    has_reference = reference in protocols
    ref_grid = _grid(store, dataset, reference, panel)[2] if has_reference else {}
    print(f"\n### {title}: signal and noise per protocol\n")
    print("SNR = between SD / seed SD; SNR1 = noise-corrected between SD / seed SD (see the "
          "docstring). rho(e,f): Spearman of quality-check vs final accuracy over layers x "
          "seeds / over layer means. fid: Spearman of layer means with the reference's "
          "[95% bootstrap over layers]; fid1: one seed's accuracies vs the reference means, "
          "mean over seeds. pairs apart: layer pairs whose mean gap exceeds 2 sqrt(2) seed SD."
          "\n")
    print("| protocol | proxy | layers x seeds | mean acc | seed SD | between SD | SNR | SNR1 "
          "| pairs apart | rho(e,f) all | rho(e,f) means | fid [95%] | fid1 | CPU s / eval "
          "| fid / 100 CPU s |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|")
    crn_lines = []
    for protocol in protocols:
        field = "subset" if "@" in protocol else "accuracies"
        layers, seeds, grid = _grid(store, dataset, protocol, panel, field)
        _, _, early = _grid(store, dataset, protocol, layers, "early")
        if len(layers) < 2 or not seeds:
            print(f"| {protocol} | - | {len(layers)} x {len(seeds)} | not enough data |"
                  + " |" * 11)
            continue
        cpu = _cpu(store, dataset, protocol)
        for proxy in (*PROXIES, "mean"):
            g = grid[proxy]
            means = [statistics.mean(g[lay].values()) for lay in layers]
            overall = statistics.mean(means)
            if len(seeds) > 1:
                seed_sd = math.sqrt(statistics.mean(statistics.variance(g[lay].values())
                                                    for lay in layers))
            else:
                seed_sd = math.nan
            between = _sd(means)
            snr = between / seed_sd if seed_sd else math.nan
            corrected = math.sqrt(max(0.0, between ** 2 - seed_sd ** 2 / len(seeds))) \
                if not math.isnan(seed_sd) else math.nan
            snr1 = corrected / seed_sd if seed_sd else math.nan
            e = early[proxy]
            common = [lay for lay in layers if lay in e]
            flat_e = [e[lay][s] for lay in common for s in seeds if s in e[lay]]
            flat_f = [g[lay][s] for lay in common for s in seeds if s in e[lay]]
            rho_all = spearman(flat_e, flat_f) if len(flat_e) > 2 else math.nan
            rho_means = spearman([statistics.mean(e[lay].values()) for lay in common],
                                 [statistics.mean(g[lay].values()) for lay in common]) \
                if len(common) > 2 else math.nan
            fid, lo, hi, fid1 = math.nan, math.nan, math.nan, math.nan
            if has_reference and protocol != reference:
                shared = [lay for lay in layers if lay in ref_grid.get(proxy, {})]
                if len(shared) > 2:
                    ref = [statistics.mean(ref_grid[proxy][lay].values()) for lay in shared]
                    mine = [statistics.mean(g[lay].values()) for lay in shared]
                    fid = spearman(mine, ref)
                    lo, hi = bootstrap_spearman(mine, ref)
                    fid1 = statistics.mean(spearman([g[lay][s] for lay in shared], ref)
                                           for s in seeds)
            elif protocol == reference and len(seeds) > 1:
                # the reference against itself: one seed vs the mean of the others
                fid1 = statistics.mean(spearman(
                    [g[lay][s] for lay in layers],
                    [statistics.mean(v for t, v in g[lay].items() if t != s) for lay in layers])
                    for s in seeds)
            interval = f"{_f(fid, 2)} [{_f(lo, 2)}, {_f(hi, 2)}]" if not math.isnan(fid) else "-"
            # pairs of layers whose mean gap exceeds 2 SD of a difference of two single
            # evaluations (2 * sqrt(2) * seed SD): one evaluation each orders them right
            # with probability >= 0.977 if the gap were the true one
            pairs = list(combinations(range(len(means)), 2))
            resolved = sum(abs(means[a] - means[b]) > 2 * math.sqrt(2) * seed_sd
                           for a, b in pairs) if not math.isnan(seed_sd) else None
            per_cpu = 100 * fid / cpu if not math.isnan(fid) else math.nan
            print(f"| {protocol} | {proxy} | {len(layers)} x {len(seeds)} | {overall:.3f} | "
                  f"{_f(seed_sd, 4)} | {_f(between, 4)} | {_f(snr, 2)} | {_f(snr1, 2)} | "
                  f"{'-' if resolved is None else f'{resolved}/{len(pairs)}'} | "
                  f"{_f(rho_all, 2)} | {_f(rho_means, 2)} | {interval} | {_f(fid1, 2)} | "
                  f"{_f(cpu, 1)} | {_f(per_cpu, 2)} |")
            if len(seeds) > 1 and len(layers) > 1:
                same, diff = [], []
                for a, b in combinations(layers, 2):
                    d_same = [g[a][s] - g[b][s] for s in seeds]
                    d_diff = [g[a][s] - g[b][t] for s in seeds for t in seeds if s != t]
                    same.append(statistics.variance(d_same))
                    diff.append(statistics.variance(d_diff))
                sd_same = math.sqrt(statistics.mean(same))
                sd_diff = math.sqrt(statistics.mean(diff))
                crn_lines.append(f"| {protocol} | {proxy} | {sd_same:.4f} | {sd_diff:.4f} | "
                                 f"{sd_same / sd_diff if sd_diff else math.nan:.2f} |")
    if crn_lines:
        print(f"\n### {title}: common random numbers\n")
        print("SD of the difference of two layers' accuracies, same seed vs different seeds "
              "(root of the mean variance over all layer pairs).\n")
        print("| protocol | proxy | SD same seed | SD different seeds | ratio |")
        print("|---|---|---:|---:|---:|")
        print("\n".join(crn_lines))
    print(f"\n### {title}: layer means (mean over proxies; mean +- SD over seeds)\n")
    print("| layer | " + " | ".join(protocols) + " |")
    print("|---|" + "---:|" * len(protocols))
    grids = {p: _grid(store, dataset, p, panel, "subset" if "@" in p else "accuracies")
             for p in protocols}
    for lay in panel:
        cells = []
        for p in protocols:
            vals = grids[p][2]["mean"].get(lay)
            cells.append("-" if not vals else f"{statistics.mean(vals.values()):.3f} +- "
                                              f"{_f(_sd(list(vals.values())), 3)}")
        print(f"| {lay} | " + " | ".join(cells) + " |")
    bad = [f"{k}: {r['status']} {r['reason']}" for k, r in store["cells"].items()
           if k.startswith(dataset + "|") and k.split("|")[2] in panel
           and r["status"] != "done"]
    if bad:
        print("\nnot done (left out of the statistics):\n" + "\n".join(bad))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="/tmp/proxy_fidelity.json")
    parser.add_argument("--parts", default="digits,cifar")
    parser.add_argument("--data-dir", default="/work/shared/data/cifar-10-batches-py")
    parser.add_argument("--image-size", type=int, default=16)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--reference-seeds", default=None, help="default: --seeds")
    parser.add_argument("--cifar-order",
                        default="default:0,1;reference:0;short:0,1;reference:1;DIGITS2;"
                                "default:2;short:2;img8:0,1;reference:2;img8:2",
                        help="CIFAR-10 cells in the order to run: PROTOCOL:SEEDS groups "
                             "separated by ';' (DIGITS2: digits seeds past the first two)")
    parser.add_argument("--digits-protocols", default="default,s40,b8,n300")
    parser.add_argument("--cifar-layers", default=",".join(CIFAR_LAYERS))
    parser.add_argument("--digits-layers", default=",".join(CIFAR_LAYERS))
    parser.add_argument("--mutants", type=int, default=2)
    parser.add_argument("--mutant-min-early", type=float, default=0.8,
                        help="mean early digits accuracy a mutant needs to join the panel")
    parser.add_argument("--val-subset", type=int, default=1024,
                        help="also score on the first N validation images (CIFAR-10)")
    parser.add_argument("--reference", default="reference",
                        help="the CIFAR-10 protocol whose layer means define fidelity")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--smoke", action="store_true",
                        help="tiny run on digits: 2 known layers + 1 mutant, 2 seeds, 30 steps")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args(argv)
    out = Path(args.out)
    store: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {"cells": {}}
    seeds = [int(s) for s in args.seeds.split(",")]
    reference_seeds = [int(s) for s in (args.reference_seeds or args.seeds).split(",")]
    digits_protocols = dict(DIGITS_PROTOCOLS)
    digits_names = args.digits_protocols.split(",")
    digits_layers = args.digits_layers.split(",")
    parts = args.parts.split(",")
    if args.smoke:
        digits_protocols, digits_names = SMOKE_PROTOCOLS, list(SMOKE_PROTOCOLS)
        digits_layers, parts = ["bn_relu", "evonorm_s0"], ["digits"]
        seeds, reference_seeds = [0, 1], [0, 1]
        args.mutants, args.mutant_min_early = 1, 0.3
    cifar_names = list(dict.fromkeys(g.split(":")[0] for g in args.cifar_order.split(";")
                                     if g != "DIGITS2"))
    if args.reference in cifar_names:  # the reference first in the tables
        cifar_names = [args.reference] + [n for n in cifar_names if n != args.reference]
    started_wall, started_cpu = time.perf_counter(), time.process_time()
    with ProcessPoolExecutor(args.workers, initializer=_init_worker,
                             initargs=(args.val_subset,)) as pool:
        if args.report_only:
            mutants = store.get("mutants", {})
        else:
            mutants = _choose_mutants(pool, args.mutants, store, args.mutant_min_early)
            _save(out, store)
        print("\nmutants in the panel:")
        for name, graph_json in mutants.items():
            print(f"  {name}: {formula_label(LayerGraph.from_json(graph_json))}")
        digits_panel = digits_layers + list(mutants)
        cifar_panel = args.cifar_layers.split(",") + list(mutants)
        digits_first: list[dict[str, Any]] = []
        digits_rest: list[dict[str, Any]] = []
        if "digits" in parts:
            layers = {n: KNOWN_LAYERS[n].to_json() for n in digits_layers} | mutants
            digits_first, digits_rest = _cells("digits", digits_protocols, digits_names, layers,
                                               seeds, reference_seeds, None, None)
        order: list[dict[str, Any]] = list(digits_first)
        if "cifar" in parts:
            layers = {n: KNOWN_LAYERS[n].to_json() for n in args.cifar_layers.split(",")}
            layers |= mutants
            for group in args.cifar_order.split(";"):
                if group == "DIGITS2":
                    order += digits_rest
                    digits_rest = []
                    continue
                name, seed_text = group.split(":")
                group_seeds = [int(x) for x in seed_text.split(",")]
                order += sum(_cells("cifar10", CIFAR_PROTOCOLS, [name], layers, group_seeds,
                                    group_seeds, args.data_dir, args.image_size), [])
        order += digits_rest
        if not args.report_only:
            _run(pool, order, store, out)
    children = os.times()
    print(f"\nwall {time.perf_counter() - started_wall:.0f} s, main-process CPU "
          f"{time.process_time() - started_cpu:.1f} s, worker CPU (finished children) "
          f"{children.children_user + children.children_system:.0f} s")
    if "digits" in parts:
        report(store, "digits", digits_names, digits_panel)
    if "cifar" in parts:
        names = list(cifar_names)
        if "default" in cifar_names and args.val_subset:
            names.append(f"default@val{args.val_subset}")
        report(store, "cifar10", names, cifar_panel, args.reference)


if __name__ == "__main__":
    sys.exit(main())
