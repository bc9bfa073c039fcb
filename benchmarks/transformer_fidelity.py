"""Transformer proxy fidelity: does a short vit/charlm protocol rank norm layers as a
5x longer training does, and how much of a score is the layer rather than the seed?

Trains a panel of known layers (layernorm, rmsnorm, dyt, no_norm, repbn; repbn on vit
only, since charlm forbids its batch statistics over tokens) on each Transformer proxy,
one proxy per evaluation, under several protocols and seeds, with the rejection
protocols off (stability 0 steps, quality bar 0: this measures training, not filtering),
and separately runs each layer's stress run (the proxies' stability protocol) to record
which layers it would reject. Per proxy x protocol it prints:

- per layer: mean score over seeds +- standard error (vit: validation accuracy; charlm:
  validation bits/char, lower is better, as the score 1 - bits/8 ranks);
- seed SD (pooled within-layer SD of one evaluation), between SD (SD of the layer
  means) and SNR = between SD / seed SD;
- rank fidelity: Spearman rho of the layer means with the reference protocol's layer
  means (--reference: "ref", 5x longer, or "d8", depth 8), with a 95% bootstrap interval
  over layers (with 4-5 layers it is wide);
- LayerNorm - no_norm: the mean paired difference over seeds (same seed, same data order
  and initial weights) with a 95% t interval, in the direction the score improves;
- CPU seconds per evaluation (process CPU time, one torch thread).

Every finished cell goes to --out (JSON) at once; a rerun with the same --out skips the
cells already there. One process, one torch thread, nice 10 (the machine is shared).

    python benchmarks/transformer_fidelity.py --out /tmp/tf.json \\
        --data-dir /work/shared/data/cifar-10-batches-py
    python benchmarks/transformer_fidelity.py --out /tmp/tf.json --report-only
    python benchmarks/transformer_fidelity.py --smoke --out /tmp/tf_smoke.json  # < 1 minute

`--layers layernorm,rmsnorm --graph evolved=layer.json` sets the panel: known layers by
name and any layer from a graph file (`evonorm show ID --db DB --graph > layer.json`),
e.g. a search's best layer retrained at the reference protocol beside LayerNorm; the
report then also prints each layer minus LayerNorm, paired by seed, with its 95% t
interval. `--split test` scores the test split instead (to confirm a layer chosen on
validation; a store holds one split).

`--plan "p600:0,1,2;ref:0;..."` orders the cells (protocol:seeds, run left to right), so a
run cut short still holds complete layer panels.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training_budget import bootstrap_spearman, spearman  # noqa: E402  (benchmarks/ is on sys.path as a script)

from evonorm_search.graph import LayerGraph  # noqa: E402
from evonorm_search.known import get_known  # noqa: E402
from evonorm_search.proxy_info import bits_from_score, forbidden_ops  # noqa: E402
from evonorm_search.task import DatasetSpec, EvalTask, TrainSettings  # noqa: E402

LAYERS = ("layernorm", "rmsnorm", "dyt", "no_norm", "repbn")
PROXIES = ("vit", "charlm")
OFF = {"stability_steps": 0, "quality_threshold": 0.0, "threads": 1}
# name: TrainSettings overrides on the Transformer defaults (600 steps, width 64, depth 4).
PROTOCOLS: dict[str, dict[str, Any]] = {
    "p600": {},
    "p300": {"steps": 300, "quality_steps": 75},
    "lr1e-2": {"learning_rate": 1e-2},
    "d8": {"depth": 8},
    "w128": {"width": 128},  # twice as wide: an evolved layer at a width it was not searched at
    "ref": {"steps": 3000},  # the reference: 5x longer
}
SMOKE_PROTOCOLS: dict[str, dict[str, Any]] = {
    "p600": {"steps": 20, "quality_steps": 10, "width": 16, "depth": 1},
    "ref": {"steps": 60, "quality_steps": 10, "width": 16, "depth": 1},
}
DEFAULT_PLAN = "stress:0;p600:0,1,2;ref:0;ref:1;p300:0,1,2;ref:2"


def _key(protocol: str, proxy: str, layer: str, seed: int) -> str:
    return f"{protocol}|{proxy}|{layer}|{seed}"


def _save(path: Path, store: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(store, indent=1))
    os.replace(tmp, path)


def known_panel(names: tuple[str, ...] = LAYERS) -> dict[str, LayerGraph]:
    """The known layers `names`, by name."""
    return {name: get_known(name) for name in names}


def read_panel(layers: str, graphs: list[str]) -> dict[str, LayerGraph]:
    """`--layers` (known names) and `--graph NAME=FILE` (a layer's JSON, validated as
    `evonorm export --json` or `evonorm show --json` writes its graph), in that order."""
    panel = known_panel(tuple(name.strip() for name in layers.split(",") if name.strip()))
    for pair in graphs:
        name, sep, path = pair.partition("=")
        if not sep or not name.strip() or "|" in name:
            raise ValueError(f"--graph {pair!r}: give NAME=FILE (NAME without '|')")
        panel[name.strip()] = LayerGraph.from_json(Path(path).read_text())
    return panel


def _layers_for(proxy: str, panel: dict[str, LayerGraph]) -> list[str]:
    return [name for name, graph in panel.items() if not forbidden_ops(graph, (proxy,))]


class Runner:
    """Loads the data once and runs cells (evaluations and stress runs)."""

    def __init__(self, spec: DatasetSpec, protocols: dict[str, dict[str, Any]],
                 split: str = "validation") -> None:
        import torch

        from workers.datasets import load_proxy_data

        torch.set_num_threads(1)
        self.spec = spec
        self.protocols = protocols
        self.split = split
        self.data = load_proxy_data(spec, PROXIES)

    def settings(self, protocol: str) -> TrainSettings:
        return TrainSettings.for_dataset(self.spec.name, slot="norm",
                                         **{**OFF, **self.protocols[protocol]})

    def evaluate(self, protocol: str, proxy: str, layer: LayerGraph, seed: int) -> dict[str, Any]:
        from evonorm_search.rerank import evaluate_on_test
        from workers.evaluate import evaluate

        task = EvalTask(layer.to_json(), (proxy,), self.spec,
                        self.settings(protocol), seed)
        cpu, wall = time.process_time(), time.perf_counter()
        result = (evaluate_on_test(task, self.data) if self.split == "test"
                  else evaluate(task, self.data))
        return {"status": result.status, "reason": result.reason,
                "score": result.accuracies.get(proxy), "early": result.early_accuracies.get(proxy),
                "cpu": time.process_time() - cpu, "wall": time.perf_counter() - wall}

    def stress(self, proxy: str, layer: LayerGraph, seed: int) -> dict[str, Any]:
        """The proxy's stability protocol alone (its default settings)."""
        from evonorm_search.task import TRANSFORMER_TRAINING
        from workers.evaluate import proxy_seed
        from workers.proxy_runs import start_run

        import torch

        settings = TrainSettings.for_dataset(self.spec.name, slot="norm", threads=1,
                                             **{k: v for k, v in self.protocols["p600"].items()
                                                if k in ("width", "depth")})
        steps = TRANSFORMER_TRAINING["stability_steps"]
        torch.manual_seed(proxy_seed(seed, proxy))
        cpu = time.process_time()
        run = start_run(proxy, layer, self.data, settings, proxy_seed(seed, proxy))
        verdict = run.probe.run(steps)
        return {"status": "passed" if verdict.passed else "rejected", "reason": verdict.reason,
                "value": verdict.value, "steps": verdict.steps, "cpu": time.process_time() - cpu}


def run_plan(runner: Runner, plan: str, store: dict[str, Any], out: Path,
             panel: dict[str, LayerGraph]) -> None:
    for part in plan.split(";"):
        protocol, _, seeds = part.partition(":")
        for seed in (int(s) for s in seeds.split(",")):
            for proxy in PROXIES:
                for layer in _layers_for(proxy, panel):
                    key = _key(protocol, proxy, layer, seed)
                    if key in store["cells"]:
                        continue
                    graph = panel[layer]
                    row = (runner.stress(proxy, graph, seed) if protocol == "stress"
                           else runner.evaluate(protocol, proxy, graph, seed))
                    store["cells"][key] = row
                    _save(out, store)
                    shown = row.get("score", row.get("value"))
                    print(f"{key:34s} {row['status']:8s} {shown if shown is None else round(shown, 4)!s:8s} "
                          f"cpu {row['cpu']:6.1f} s", flush=True)


# ------------------------------------------------------------------------- statistics

def _t95(n: int) -> float:
    """Two-sided 95% t quantile for n - 1 degrees of freedom (small n)."""
    return {2: 12.706, 3: 4.303, 4: 3.182, 5: 2.776, 6: 2.571, 7: 2.447, 8: 2.365}.get(n, 1.96)


def _value(proxy: str, score: float) -> float:
    """What the table shows: accuracy for vit, bits/char for charlm."""
    return bits_from_score(score) if proxy == "charlm" else score


def _grid(store: dict[str, Any], protocol: str, proxy: str) -> dict[str, dict[int, float]]:
    """{layer: {seed: score}} of the done cells."""
    grid: dict[str, dict[int, float]] = {}
    for key, row in store["cells"].items():
        p, x, layer, seed = key.split("|")
        if p == protocol and x == proxy and row["status"] == "done" and row["score"] is not None:
            grid.setdefault(layer, {})[int(seed)] = row["score"]
    return grid



def summarize(store: dict[str, Any], protocol: str, proxy: str, reference: str = "ref",
              panel: dict[str, LayerGraph] | None = None) -> dict[str, Any]:
    grid = _grid(store, protocol, proxy)
    layers = [lay for lay in _layers_for(proxy, panel or known_panel())
              if len(grid.get(lay, {})) >= 1]
    means = {lay: statistics.fmean(grid[lay].values()) for lay in layers}
    ses = {lay: (statistics.stdev(grid[lay].values()) / math.sqrt(len(grid[lay]))
                 if len(grid[lay]) > 1 else math.nan) for lay in layers}
    variances = [statistics.variance(grid[lay].values()) for lay in layers if len(grid[lay]) > 1]
    seed_sd = math.sqrt(statistics.fmean(variances)) if variances else math.nan
    between = statistics.stdev(means.values()) if len(means) > 1 else math.nan
    summary: dict[str, Any] = {
        "layers": layers, "means": means, "ses": ses, "seeds": {lay: len(grid[lay]) for lay in layers},
        "seed_sd": seed_sd, "between_sd": between,
        "snr": between / seed_sd if seed_sd and not math.isnan(seed_sd) else math.nan,
    }
    ref = _grid(store, reference, proxy)
    common = [lay for lay in layers if ref.get(lay)]
    if protocol != reference and len(common) >= 3:
        mine = [means[lay] for lay in common]
        theirs = [statistics.fmean(ref[lay].values()) for lay in common]
        summary["fidelity"] = spearman(mine, theirs)
        summary["fidelity_ci"] = bootstrap_spearman(mine, theirs)
    if "layernorm" in grid and "no_norm" in grid:
        gap = _paired(grid["layernorm"], grid["no_norm"])
        if gap is not None:
            summary["ln_minus_no_norm"] = gap
    # every other layer against LayerNorm, paired by seed
    summary["minus_layernorm"] = {
        lay: gap for lay in layers if lay != "layernorm" and "layernorm" in grid
        and (gap := _paired(grid[lay], grid["layernorm"])) is not None}
    cpus = [row["cpu"] for key, row in store["cells"].items()
            if key.split("|")[:2] == [protocol, proxy] and row["status"] == "done"]
    summary["cpu"] = statistics.fmean(cpus) if cpus else math.nan
    return summary


def _paired(a: dict[int, float], b: dict[int, float]) -> tuple[float, float, float, int] | None:
    """Mean of a - b over the seeds both have, with its 95% t interval and the seed count
    (None under 2 common seeds)."""
    seeds = sorted(set(a) & set(b))
    if len(seeds) < 2:
        return None
    diffs = [a[s] - b[s] for s in seeds]
    mean, sd = statistics.fmean(diffs), statistics.stdev(diffs)
    half = _t95(len(diffs)) * sd / math.sqrt(len(diffs))
    return mean, mean - half, mean + half, len(diffs)


def _f(value: float, digits: int = 3) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def report(store: dict[str, Any], protocols: list[str], reference: str = "ref",
           panel: dict[str, LayerGraph] | None = None) -> None:
    panel = panel or known_panel()
    for proxy in PROXIES:
        split = store.get("split", "validation")
        unit = f"{split} bits/char (lower is better)" if proxy == "charlm" else f"{split} accuracy"
        print(f"\n## {proxy}: {unit}; mean +- SE over seeds\n")
        layers = _layers_for(proxy, panel)
        print("| protocol | " + " | ".join(layers) + f" | seed SD | between SD | SNR | rho vs {reference} [95% CI] "
              "| LN - no_norm [95% CI] | CPU s/eval |")
        print("|---" * (len(layers) + 7) + "|")
        summaries = {protocol: summarize(store, protocol, proxy, reference, panel)
                     for protocol in protocols}
        for protocol, s in summaries.items():
            if not s["layers"]:
                continue
            cells = []
            for lay in layers:
                if lay not in s["means"]:
                    cells.append("-")
                    continue
                mean = _value(proxy, s["means"][lay])
                se = s["ses"][lay] * (8.0 if proxy == "charlm" else 1.0)
                cells.append(f"{mean:.3f} +- {_f(se)} ({s['seeds'][lay]})")
            scale = 8.0 if proxy == "charlm" else 1.0
            rho = "-"
            if "fidelity" in s:
                low, high = s["fidelity_ci"]
                rho = f"{_f(s['fidelity'], 2)} [{_f(low, 2)}, {_f(high, 2)}]"
            gap = "-"
            if "ln_minus_no_norm" in s:
                mean, low, high, n = s["ln_minus_no_norm"]
                # accuracy, or for charlm bits/char saved by LayerNorm (8 x the score gap)
                values = [v * scale for v in (mean, low, high)]
                gap = f"{values[0]:+.3f} [{values[1]:+.3f}, {values[2]:+.3f}] ({n})"
            print(f"| {protocol} | " + " | ".join(cells)
                  + f" | {_f(s['seed_sd'] * scale)} | {_f(s['between_sd'] * scale)} | {_f(s['snr'], 1)} "
                  f"| {rho} | {gap} | {_f(s['cpu'], 1)} |")
        for protocol, s in summaries.items():
            gaps = s["minus_layernorm"]
            if gaps:
                scale = 8.0 if proxy == "charlm" else 1.0  # score gap x 8 = bits/char saved
                shown = ", ".join(
                    f"{lay} {mean * scale:+.3f} [{low * scale:+.3f}, {high * scale:+.3f}] ({n})"
                    for lay, (mean, low, high, n) in gaps.items())
                unit = "bits/char saved" if proxy == "charlm" else "accuracy"
                print(f"{protocol}, each layer minus layernorm ({unit}; paired by seed, 95% t; "
                      f"positive = better): {shown}")
        stress = {key.split("|")[2]: row for key, row in store["cells"].items()
                  if key.startswith(f"stress|{proxy}|")}
        if stress:
            verdicts = ", ".join(f"{lay} {row['status']}" for lay, row in stress.items())
            print(f"\nstress run ({proxy}, seed 0): {verdicts}")
    print("\nLN - no_norm: score difference paired by seed (charlm: 8 x the score, i.e. bits/char "
          "saved by LayerNorm); positive = LayerNorm better.")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data-dir", default=None,
                        help="CIFAR-10 folder (vit at 16x16); without it, the embedded digits")
    parser.add_argument("--corpus", default=None, help="charlm's text (default: stdlib corpus)")
    parser.add_argument("--plan", default=DEFAULT_PLAN)
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--reference", default="ref",
                        help="the protocol the others are ranked against (ref: 5x longer; "
                             "d8: depth 8, a cheaper one)")
    parser.add_argument("--layers", default=",".join(LAYERS),
                        help="known layers of the panel, comma-separated")
    parser.add_argument("--graph", action="append", default=[], metavar="NAME=FILE",
                        help="one more layer from a graph JSON file (repeatable), e.g. an "
                             "evolved layer beside LayerNorm")
    parser.add_argument("--split", choices=("validation", "test"), default="validation",
                        help="the split scored (test: to confirm a layer chosen on "
                             "validation; keep its cells in their own --out)")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args(argv)
    try:
        panel = read_panel(args.layers, args.graph)
    except (OSError, ValueError) as error:  # GraphError is a ValueError; unknown names too
        parser.error(str(error))
    store = json.loads(args.out.read_text()) if args.out.exists() else {"cells": {}}
    if store.get("split", "validation") != args.split and store["cells"]:
        parser.error(f"{args.out} holds {store.get('split', 'validation')}-split cells; give "
                     f"another --out for the {args.split} split")
    store["split"] = args.split
    protocols = SMOKE_PROTOCOLS if args.smoke else PROTOCOLS
    if not args.report_only:
        os.nice(10)
        spec = (DatasetSpec("cifar10", args.data_dir, image_size=16, corpus=args.corpus)
                if args.data_dir else DatasetSpec(corpus=args.corpus))
        store["dataset"] = spec.to_dict()
        runner = Runner(spec, protocols, args.split)
        plan = "p600:0,1;ref:0,1" if args.smoke else args.plan
        run_plan(runner, plan, store, args.out, panel)
    report(store, [p for p in protocols if any(k.startswith(f"{p}|") for k in store["cells"])],
           args.reference, panel)


if __name__ == "__main__":
    main()
