"""`evonorm evaluate`: score known layers or graph files on the proxy networks."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from evonorm_search.cli.common import training_default_help
from evonorm_search.cli.options import GroupedCommand, option
from evonorm_search.errors import EvonormError
from evonorm_search.graph import LayerGraph
from evonorm_search.layer_spec import load_graph_spec
from evonorm_search.proxy_info import check_layer_allowed, proxy_info, score_note, score_text
from evonorm_search.task import DatasetSpec, EvalResult, EvalTask, TrainSettings

DEFAULT_PROXIES = "resnet,mobilenetv2,efficientnet"


def format_table(rows: list[tuple[str, EvalResult]], proxies: tuple[str, ...]) -> str:
    """A plain-text table: one row per layer, the score per proxy (validation accuracy, or
    for charlm its score with the bits per character)."""
    header = ["layer", *proxies, "status", "seconds", "note"]
    body = []
    for name, result in rows:
        accuracies = [score_text(p, result.accuracies[p]) if p in result.accuracies else "-"
                      for p in proxies]
        note = "" if result.status == "done" else f"{result.stage}: {result.reason}"
        body.append([name, *accuracies, result.status, f"{sum(result.seconds.values()):.1f}",
                     note])
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header) - 1)]
    lines = []
    for row in [header, *body]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths)] + [row[-1]]
        lines.append("  ".join(cells).rstrip())
    note = score_note(proxies)
    return "\n".join([*lines, *([note] if note else [])])


# The sections of `evonorm evaluate --help`, in order (cli/options.py).
EVALUATE_GROUPS = {
    "scoring": "Scoring (what each layer is scored on)",
    "data": "Data",
    "training": "Training of each proxy",
    "protocols": "Protocols (rejection)",
    "execution": "Execution",
}
SPLITS = ("validation", "test")


@click.command("evaluate", cls=GroupedCommand, groups=EVALUATE_GROUPS)
@click.argument("layers", nargs=-1, required=True, metavar="NAME_OR_JSON_FILE...")
@option("--split", group="scoring", type=click.Choice(SPLITS), default="validation",
        show_default=True,
        help="The held-out images scored: validation (what a search ranks by) or test (never "
             "seen by a search: to confirm a layer, as `evonorm rerank` does; the quality "
             "check then reads it too, --quality-steps 0 turns that off).")
@option("--proxies", group="scoring", default=DEFAULT_PROXIES, show_default=True,
        comma_list=True,
        help="Comma-separated proxy networks of one kind: CNNs (resnet, mobilenetv2, "
             "efficientnet, or your own builder as MODULE:FUNCTION, see docs/own_proxy.md) "
             "or Transformers (vit, charlm).")
@option("--seed", group="scoring", type=int, default=0, show_default=True,
        help="Training seed (initialization and batch order).")
@option("--eval-batches", group="scoring", type=int, default=None,
        help="Score at most this many batches of 256 images (default: all).")
@option("--task", group="scoring", type=click.Choice(["classification", "planted"]),
        default="classification", show_default=True,
        help="planted: score each layer by R^2 against the --target layer on the "
             "planted regimes instead of training proxies (see docs/method.md).")
@option("--target", group="scoring", metavar="NAME_OR_JSON_FILE",
        help="The planted layer of --task planted: a layer name or a graph JSON file.")
@option("--json", "as_json", group="scoring", is_flag=True,
        help="Print one JSON result per line instead (docs/json.md).")
@option("--dataset", group="data", type=click.Choice(["digits", "cifar10", "npz"]),
        default="digits", show_default=True,
        help="Data set: bundled 8x8 digits, CIFAR-10, or an .npz file.")
@option("--data-dir", group="data", default=None,
        help="cifar10: folder of the official python version; npz: the .npz file.")
@option("--download", group="data", is_flag=True,
        help="cifar10: fetch and verify the official archive into --data-dir if missing.")
@option("--image-size", group="data", type=int, default=None,
        help="Resize images to this side (e.g. 16 to make CIFAR-10 cheaper).")
@option("--augment/--no-augment", group="data", default=False, show_default=True,
        help="Random crop and horizontal flip while training.")
@option("--max-train-examples", group="data", type=int, default=None,
        help="Use at most this many training images.")
@option("--corpus", group="data", type=click.Path(dir_okay=False), default=None,
        help="charlm's text: a UTF-8 text file. [default: the pinned corpus every Python "
             "carries (docs/transformers.md)]")
@option("--batch-size", group="training", type=int, default=None,
        help=f"Training batch size. {training_default_help('batch_size')}")
@option("--steps", group="training", type=int, default=None,
        help="Training steps per proxy, quality-check steps included. "
             f"{training_default_help('steps')}")
@option("--width", group="training", type=int, default=None,
        help="Proxy base width (channels of the first stage; Transformers: token "
             f"dimension). {training_default_help('width')}")
@option("--depth", group="training", type=int, default=None,
        help=f"Proxy blocks per stage (Transformers: blocks). {training_default_help('depth')}")
@option("--lr", "learning_rate", group="training", type=float, default=None,
        help="Learning rate (SGD; AdamW for the Transformer proxies), warmup then cosine "
             f"decay. {training_default_help('learning_rate')}")
@option("--quality-steps", group="protocols", type=int, default=None,
        help=f"Steps before the quality check (0 disables it). {training_default_help('quality_steps')}")
@option("--stability-steps", group="protocols", type=int, default=None,
        help="Steps of the stability check (0: off): gradient ascent, or a stress run for "
             f"the Transformer proxies. {training_default_help('stability_steps')}")
@option("--threads", group="execution", type=int, default=None,
        help="Torch threads (default: torch's choice).")
def evaluate_command(layers: tuple[str, ...], split: str, dataset: str,
                     data_dir: str | None, download: bool, image_size: int | None,
                     augment: bool, max_train_examples: int | None, batch_size: int | None,
                     steps: int | None, quality_steps: int | None,
                     stability_steps: int | None, width: int | None, depth: int | None,
                     learning_rate: float | None, corpus: str | None,
                     eval_batches: int | None, proxies: str, seed: int,
                     threads: int | None, task: str, target: str | None,
                     as_json: bool) -> None:
    """Train and score layers on the proxy networks, as the search does.

    NAME_OR_JSON_FILE: a layer name, known (bn_relu, gn_relu, evonorm_b0, evonorm_s0, ...)
    or discovered (swish_group_rmsnorm), or a layer graph JSON file. Each layer passes
    the stability and quality checks, then trains; the table shows the accuracy per
    proxy on the --split (validation unless --split test), or why it was rejected.
    Example: evonorm evaluate evonorm_s0 bn_relu --dataset cifar10 --data-dir DIR
    --batch-size 4. Progress goes to stderr.
    """
    from evonorm_search.rerank import evaluate_on_test
    from workers.datasets import load_proxy_data  # torch import only when the command runs
    from workers.evaluate import check_settings, evaluate
    from workers.proxies import ProxyError, check_proxy, is_own_proxy

    graphs = [(name, load_graph_spec(name)) for name in layers]
    if task == "planted" or target is not None:
        _evaluate_planted(graphs, task, target, seed, as_json)
        return
    given = {"batch_size": batch_size, "steps": steps, "quality_steps": quality_steps,
             "stability_steps": stability_steps, "width": width, "depth": depth,
             "learning_rate": learning_rate}
    proxy_names = tuple(name.strip() for name in proxies.split(",") if name.strip())
    slot = _slot(proxy_names)
    settings = TrainSettings.for_dataset(
        dataset, slot=slot, **{key: value for key, value in given.items() if value is not None},
        eval_batches=eval_batches, threads=threads,
    )
    try:
        check_settings(settings, proxy_names)
    except ProxyError:
        raise  # a MODULE:FUNCTION proxy: its message says what to fix
    except ValueError as error:
        raise EvonormError(f"{error}; fix the option (see `evonorm evaluate --help`)") from None
    for name, graph in graphs:
        check_layer_allowed(graph, proxy_names, name)
    spec = DatasetSpec(name=dataset, data_dir=data_dir, image_size=image_size, augment=augment,
                       max_train_examples=max_train_examples, download=download,
                       corpus=None if corpus is None else str(Path(corpus).expanduser().resolve()))
    click.echo(f"loading {dataset} ...", err=True)
    data = load_proxy_data(spec, proxy_names)
    if data.text is not None:
        click.echo(f"corpus {data.text.name} (sha256 {data.text.digest}): "
                   f"{len(data.text.train)} train / {len(data.text.val)} validation characters, "
                   f"{data.text.size} ids, unigram entropy {data.text.unigram_bits:.3f} bits/char",
                   err=True)
    for proxy in proxy_names:
        if is_own_proxy(proxy):
            check_proxy(proxy, data.train_x, data.num_classes, settings.width, settings.depth)
    scored = len(data.test_y if split == "test" else data.val_y)
    click.echo(f"{dataset}: {len(data.train_y)} train / {len(data.val_y)} validation / "
               f"{len(data.test_y)} test images, {data.in_channels}x{data.image_size}x"
               f"{data.image_size}; scoring on the {split} split", err=True)
    score = evaluate_on_test if split == "test" else evaluate
    rows = []
    for name, graph in graphs:
        task = EvalTask(graph.to_json(), proxy_names, spec, settings, seed)
        started = time.perf_counter()
        result = score(task, data, progress=lambda m, n=name: click.echo(f"[{n}] {m}",
                                                                           err=True))
        click.echo(f"[{name}] {result.status} in {time.perf_counter() - started:.1f}s",
                   err=True)
        if as_json:
            click.echo(json.dumps({"layer": name, "split": split, **result.to_dict()}))
        rows.append((name, result))
    if not as_json:
        click.echo(f"accuracy on the {split} split ({scored} images), seed {seed}:")
        click.echo(format_table(rows, proxy_names))


def _slot(proxies: tuple[str, ...]) -> str:
    """The slot of the proxies' layers ("norm" for Transformers), for default settings;
    names that are not proxies are left to `check_settings` to refuse."""
    kinds = set()
    for name in proxies:
        try:
            kinds.add(proxy_info(name).slot)
        except EvonormError:
            continue
    return "norm" if kinds == {"norm"} else "norm_act"


# Options of `evaluate_command` that only proxy training reads.
_PLANTED_IGNORES = ("split", "dataset", "data_dir", "download", "image_size", "augment",
                    "max_train_examples", "batch_size", "steps", "quality_steps",
                    "stability_steps", "width", "depth", "learning_rate", "eval_batches",
                    "proxies", "threads", "corpus")


def _evaluate_planted(graphs: list[tuple[str, LayerGraph]], task: str, target: str | None,
                      seed: int, as_json: bool) -> None:
    """`evaluate --task planted --target T`: per-regime R^2 against T, and whether each
    layer recovers it."""
    from click.core import ParameterSource

    from evonorm_search.planted import (
        recovered, recovery_kind, regime_names, resolve_target, strictly_recovered,
        target_slot,
    )
    from workers.evaluate import evaluate
    from workers.planted import check_scores

    if task != "planted":
        raise EvonormError("--target only applies to --task planted: add --task planted")
    if target is None:
        raise EvonormError("--task planted needs --target NAME_OR_JSON_FILE (e.g. --target "
                           "evonorm_s0)")
    context = click.get_current_context()
    given = [f"--{name.replace('_', '-')}" for name in _PLANTED_IGNORES
             if context.get_parameter_source(name) == ParameterSource.COMMANDLINE]
    if given:
        raise EvonormError(f"{', '.join(given)} only {'applies' if len(given) == 1 else 'apply'} "
                           "to proxy training, which --task planted does not do: drop "
                           f"{'it' if len(given) == 1 else 'them'}")
    target_graph, _ = resolve_target(target)
    regimes = regime_names(target_slot(target_graph))
    rows = []
    for name, graph in graphs:
        result = evaluate(EvalTask(graph.to_json(), regimes, seed=seed, kind="planted",
                                   target_json=target_graph.to_json()))
        # The strict criterion: the target's formula, or R^2 RECOVERY_R2 here and CHECK_R2
        # on the regime no search scores (fitted only for layers that pass the first part).
        identical = recovery_kind(graph, target_graph) == "identical"
        done = result.status == "done" and (identical or (
            recovered(result.accuracies, regimes) and strictly_recovered(
                result.accuracies, regimes, check_scores(graph, target_graph.to_json()))))
        verdict = recovery_kind(graph, target_graph) if done else "no"
        if as_json:
            click.echo(json.dumps({"layer": name, "recovered": verdict, **result.to_dict()}))
        rows.append((name, result, verdict))
    if not as_json:
        click.echo(f"R^2 against the planted target {target}:")
        click.echo(format_table([(name, result) for name, result, _ in rows], regimes))
        for name, _, verdict in rows:
            click.echo(f"{name}: recovered: {verdict}")


COMMANDS: list[click.Command] = [evaluate_command]
