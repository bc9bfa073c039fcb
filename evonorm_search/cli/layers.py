"""`evonorm show` and `evonorm export`: inspect a layer and write it as a stand-alone module.

Also owns presenting one layer or candidate (with its trials), as text and as JSON
(docs/json.md), and the aligned text table, for the inspection commands of cli/inspect.py.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from db.store import DEFAULT_DB_PATH
from evonorm_search.errors import EvonormError
from evonorm_search.export import to_source
from evonorm_search.graph import INITIAL_NODES, NUM_INITIAL, LayerGraph
from evonorm_search.known import (
    DISCOVERED_LAYERS, HOME_LABELS, KNOWN_HOMES, KNOWN_LAYERS, formula_label, known_name,
)
from evonorm_search.layer_spec import load_graph_spec
from evonorm_search.output import write_text_file
from evonorm_search.simplify import simplify

if TYPE_CHECKING:
    from db.store import CandidateRecord, TrialRecord

DB_HELP = "Database for a candidate ID argument (see `evonorm front NAME`)."
JSON_VERSION = 1  # of every `--json` document (docs/json.md); bump on incompatible changes


def table(header: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool]) -> str:
    """Rows aligned under `header`; columns flagged in `right` are right-aligned (numbers)."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        padded = [
            cell.rjust(width) if align else cell.ljust(width)
            for cell, width, align in zip(cells, widths, right, strict=True)
        ]
        return "  ".join(padded).rstrip()

    return "\n".join([line(header), *(line(row) for row in rows)])


def iso_time(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC (`2024-05-01T12:00:00.123456+00:00`), None for None."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat()


def echo_json(kind: str, document: dict[str, Any]) -> None:
    """One strict JSON document on stdout, headed by its format name and version."""
    whole = {"format": f"evonorm-{kind}", "version": JSON_VERSION, **document}
    click.echo(json.dumps(whole, indent=2, allow_nan=False))


def _simplified_json(graph: LayerGraph) -> dict[str, Any]:
    return {"formula": graph.formula(), "known_name": known_name(graph.structural_hash()),
            "structural_hash": graph.structural_hash(), "graph": graph.to_dict()}


def layer_json(graph: LayerGraph) -> dict[str, Any]:
    """What `describe` prints, plus the layer graph file form under "graph"."""
    live = graph.live_nodes()
    return {
        "formula": graph.formula(),
        "simplified": _simplified_json(simplify(graph)),
        "simplified_up_to_affine": _simplified_json(simplify(graph, up_to_affine=True)),
        "known_name": known_name(graph.structural_hash()),
        "space": graph.space,
        "spaces": list(graph.spaces),
        "home": None if known_name(graph.structural_hash()) is None
        else KNOWN_HOMES[known_name(graph.structural_hash())],
        "uses_batch_stats": graph.uses_batch_stats,
        "structural_hash": graph.structural_hash(),
        "initial_nodes": list(INITIAL_NODES),
        "output": graph.output,
        "nodes": [
            {
                "index": index,
                "op": graph.node(index).op,
                "inputs": list(graph.node(index).inputs),
                "role": "output" if index == graph.output else "live" if index in live else "dead",
            }
            for index in range(NUM_INITIAL, graph.num_nodes)
        ],
        "graph": graph.to_dict(),
    }


def candidate_json(record: CandidateRecord, search_name: str) -> dict[str, Any]:
    """A stored candidate's fields (per-proxy dicts sorted by proxy)."""
    return {
        "id": record.id,
        "search_id": record.search_id,
        "search": search_name,
        "number": record.number,
        "parent_id": record.parent_id,
        "status": record.status,
        "stage": record.stage,
        "reason": record.reason,
        "seed": record.seed,
        "attempts": record.attempts,
        "duplicate_of": record.duplicate_of,
        "structural_hash": record.structural_hash,
        "fingerprint": record.fingerprint,
        "accuracies": dict(sorted(record.accuracies.items())),
        "seconds": dict(sorted(record.seconds.items())),
        "steps": dict(sorted(record.steps.items())),
        "created_at": iso_time(record.created_at),
        "started_at": iso_time(record.started_at),
        "finished_at": iso_time(record.finished_at),
        "seed_count": record.seed_count,
        "standard_errors": dict(sorted(record.standard_errors.items())),
        "early_accuracies": dict(sorted(record.early_accuracies.items())),
        "hurdle": record.hurdle,
        "move": record.move,
        "island": record.island,
        "hash_skips": record.hash_skips,
        "neutral_skips": record.neutral_skips,
    }


def trial_json(trial: TrialRecord) -> dict[str, Any]:
    """One training of a candidate with one seed (trial 0: its first evaluation)."""
    return {
        "trial": trial.trial,
        "seed": trial.seed,
        "status": trial.status,
        "stage": trial.stage,
        "reason": trial.reason,
        "attempts": trial.attempts,
        "accuracies": dict(sorted(trial.accuracies.items())),
        "early_accuracies": dict(sorted(trial.early_accuracies.items())),
        "seconds": dict(sorted(trial.seconds.items())),
        "steps": dict(sorted(trial.steps.items())),
        "created_at": iso_time(trial.created_at),
        "finished_at": iso_time(trial.finished_at),
    }


def accuracy_text(record: CandidateRecord, proxy: str) -> str:
    """`0.4512 ± 0.0061` (mean ± standard error over the candidate's seeds) when the
    candidate has a standard error for `proxy`, else `0.4512`."""
    text = f"{record.accuracies[proxy]:.4f}"
    error = record.standard_errors.get(proxy)
    return text if error is None else f"{text} ± {error:.4f}"


def seeds_text(count: int) -> str:
    return f"{count} seed{'' if count == 1 else 's'}"


def _resolve(
    layer: str, db_path: Path
) -> tuple[LayerGraph, CandidateRecord | None, str, list[TrialRecord]]:
    """The graph LAYER names, its candidate record when LAYER is a database ID, that
    candidate's search name ("" otherwise) and its trials ([] otherwise)."""
    if not layer.isdecimal():
        return load_graph_spec(layer), None, "", []
    from db.store import SearchStore
    from evonorm_search.api import candidate_graph  # imports torch: only when needed

    with SearchStore.open(db_path, readonly=True) as store:
        record, graph = candidate_graph(store, int(layer))
        search = next(s for s in store.list_searches() if s.id == record.search_id)
        trials = store.trials(record.id)
    return graph, record, search.name, trials


def _about(record: CandidateRecord, search_name: str) -> str:
    """The line about a candidate that `show ID` prints above the layer: its accuracies
    (mean ± standard error over its seeds when it has several)."""
    scores = ", ".join(f"{proxy} {accuracy_text(record, proxy)}" for proxy in sorted(record.accuracies))
    if scores and record.seed_count > 1:
        scores += f" (mean over {seeds_text(record.seed_count)})"
    about = f"candidate {record.id}: search {search_name!r} number {record.number}, {record.status}"
    return f"{about}{'; ' + scores if scores else ''}"


def _evaluation(record: CandidateRecord, trials: list[TrialRecord]) -> list[str]:
    """The lines `show ID` prints below the layer: seed count, early (quality-check)
    accuracies, hurdle, and one table row per trial (training with one seed)."""
    lines = [f"seeds:   {record.seed_count} counted in the mean accuracy"]
    if record.move is not None:
        parent = "" if record.parent_id is None else f" of candidate {record.parent_id}"
        island = "" if record.island is None else f", island {record.island}"
        lines.append(f"made by: {record.move}{parent}{island}")
    if record.stage is not None or record.reason is not None:
        lines.append(f"stage:   {record.stage or '-'}{': ' + record.reason if record.reason else ''}")
    if record.early_accuracies:
        early = ", ".join(f"{p} {a:.4f}" for p, a in sorted(record.early_accuracies.items()))
        lines.append(f"early:   {early} (quality check of trial 0)")
    if record.hurdle is not None:
        lines.append(f"hurdle:  {record.hurdle:.4f}")
    if not trials:
        return lines
    proxies = sorted({p for t in trials for p in t.accuracies} | set(record.accuracies))
    rows = [
        [str(t.trial), str(t.seed), t.status + (f" ({t.stage})" if t.stage else ""),
         *(f"{t.accuracies[p]:.4f}" if p in t.accuracies else "-" for p in proxies),
         f"{sum(t.seconds.values()):.1f}" if t.seconds else "-"]
        for t in trials
    ]
    header = ["TRIAL", "SEED", "STATUS", *proxies, "SECONDS"]
    lines += ["trials:", table(header, rows, [True, True, False, *([True] * len(proxies)), True])]
    return lines


def resolve_layer(layer: str, db_path: Path) -> tuple[LayerGraph, str | None]:
    """The graph LAYER names, and a line about the candidate when LAYER is a database ID."""
    graph, record, search_name, _ = _resolve(layer, db_path)
    return graph, None if record is None else _about(record, search_name)

def describe(graph: LayerGraph) -> str:
    """Formula (with the layer's name when it is a named one, and the origin of a
    discovered one), space, hash and node list of `graph`, dead nodes marked."""
    live = graph.live_nodes()
    name = known_name(graph.structural_hash())
    exact, affine = simplify(graph), simplify(graph, up_to_affine=True)
    lines = [f"formula: {formula_label(graph)}"]
    if name in DISCOVERED_LAYERS:
        lines.append("origin:  discovered by evonorm searches (docs/RESULTS.md, Discovered layers)")
    if exact.structural_hash() != graph.structural_hash():
        lines.append(f"simplified: {formula_label(exact)}  (the same output for every "
                     "parameter value; what `evonorm export` writes)")
    if affine.structural_hash() != exact.structural_hash():
        lines.append(f"up to the affine: {formula_label(affine)}  (the same up to the "
                     "per-channel * gamma + beta; `evonorm export --simplify affine`)")
    lines += [
        f"space:   {graph.space or 'none'} ({'uses' if graph.uses_batch_stats else 'no'} batch "
        f"statistics; in {', '.join(graph.spaces) or 'no space'}"
        f"{'' if name is None else f'; made for the {HOME_LABELS[KNOWN_HOMES[name]]} slot'})",
        f"hash:    {graph.structural_hash()}",
        "nodes:",
    ]
    lines += [f"  {i:>2}  {name}" for i, name in enumerate(INITIAL_NODES)]
    for index in range(NUM_INITIAL, graph.num_nodes):
        node = graph.node(index)
        mark = "  (output)" if index == graph.output else "" if index in live else "  (dead)"
        lines.append(f"  {index:>2}  {node.op}({', '.join(map(str, node.inputs))}){mark}")
    return "\n".join(lines)


@click.command("show")
@click.argument("layer", metavar="NAME_OR_JSON_FILE_OR_ID")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON document instead: the candidate record (for an ID) and the "
              "layer, its graph file form included (docs/json.md).")
@click.option("--graph", "as_graph", is_flag=True,
              help="Print only the layer graph JSON file form (what NAME_OR_JSON_FILE reads).")
@click.option("--db", "db_path", type=click.Path(path_type=Path, dir_okay=False),
              default=DEFAULT_DB_PATH, show_default=True, help=DB_HELP)
def show(layer: str, as_json: bool, as_graph: bool, db_path: Path) -> None:
    """Print a layer's formula (and its name), search space, hash and nodes.

    NAME_OR_JSON_FILE_OR_ID: a layer name, known (e.g. evonorm_s0, bn_relu) or discovered
    (swish_group_rmsnorm), a layer graph JSON
    file (as written by `evonorm show NAME --graph`), or an integer: a candidate ID in the
    database given by --db. For a candidate it also prints its accuracies (mean ± standard
    error over its seeds once re-evaluated), seed count, early (quality-check) accuracies,
    hurdle, and one row per trial (training with one seed).
    """
    if as_json and as_graph:
        raise EvonormError("--json and --graph each choose the output; give one of them")
    graph, record, search_name, trials = _resolve(layer, db_path)
    if as_graph:
        click.echo(graph.to_json())
        return
    if as_json:
        source = ("candidate" if record is not None else "known" if layer in KNOWN_LAYERS
                  else "discovered" if layer in DISCOVERED_LAYERS else "file")
        echo_json("show", {
            "argument": layer,
            "source": source,
            "candidate": None if record is None else candidate_json(record, search_name),
            "layer": layer_json(graph),
            "trials": None if record is None else [trial_json(t) for t in trials],
        })
        return
    if record is None:
        click.echo(describe(graph))
        return
    click.echo("\n".join([_about(record, search_name), describe(graph), *_evaluation(record, trials)]))


@click.command("export")
@click.argument("layer", metavar="NAME_OR_JSON_FILE_OR_ID")
@click.option("--db", "db_path", type=click.Path(path_type=Path, dir_okay=False),
              default=DEFAULT_DB_PATH, show_default=True, help=DB_HELP)
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="File to write the module to (default: standard output).",
)
@click.option("--class-name", default=None,
              help="Name of the generated nn.Module class. [default: EvolvedNormAct, or "
                   "EvolvedNorm with --transformer]")
@click.option("--transformer/--maps", "transformer", default=None,
              help="--transformer: a Transformer norm over the last dim of (B, T, C) "
                   "tensors (timm's norm_layer constructor); --maps: a layer on (N, C, H, W) "
                   "maps. [default: --transformer for a Transformer layer (a known one made "
                   "for that slot, or a candidate of a T/TB search), else --maps]")
@click.option("--simplify", "simplification", type=click.Choice(["exact", "affine", "off"]),
              default="exact", show_default=True,
              help="Write the layer simplified: 'exact' keeps the output for every parameter "
              "value (so it trains the same) and drops only redundant nodes; 'affine' writes "
              "the shortest form that is the same up to the per-channel * gamma + beta (e.g. "
              "without a factor v1 or a division by the zero node), which starts from another "
              "output at initialisation; 'off' writes the graph as stored.")
def export(layer: str, db_path: Path, output: Path | None, class_name: str | None,
           transformer: bool | None, simplification: str) -> None:
    """Write a layer as a stand-alone PyTorch module that imports only torch.

    NAME_OR_JSON_FILE_OR_ID: a layer name, known (e.g. evonorm_s0, bn_relu, layernorm) or
    discovered (swish_group_rmsnorm), a layer graph JSON file, or an integer: a candidate ID
    in the database given by --db. The maps class takes (num_channels, groups=32,
    eps=1e-5, momentum=0.1); the Transformer class (--transformer) takes (num_features,
    eps=1e-5, groups=32, momentum=0.1, device=None, dtype=None) and normalizes the last
    dim of (B, T, C) or (B, heads, T, head_dim) tensors. By default the layer is
    simplified without changing its function (see --simplify); its node numbering, and so
    the names of batch-statistic buffers, are then the simplified graph's.
    """
    graph, record, _, _ = _resolve(layer, db_path)
    if transformer is None:
        transformer = _is_transformer_layer(layer, record, db_path)
    if simplification != "off":
        graph = simplify(graph, up_to_affine=simplification == "affine")
    if transformer:
        from evonorm_search.export_tokens import DEFAULT_CLASS_NAME, to_token_source

        class_name = class_name or DEFAULT_CLASS_NAME
        source = to_token_source(graph, class_name=class_name)
    else:
        class_name = class_name or "EvolvedNormAct"
        source = to_source(graph, class_name=class_name)
    if output is None:
        click.echo(source, nl=False)
        return
    write_text_file(output, source, what="the layer module",
                    fix="choose another path with -o")
    click.echo(f"wrote {class_name} to {output}", err=True)


def _is_transformer_layer(layer: str, record: CandidateRecord | None, db_path: Path) -> bool:
    """Whether LAYER was made for a Transformer norm slot: a known layer whose home that
    is, or a candidate of a search in a "norm" space (T, TB)."""
    from evonorm_search.known import KNOWN_HOMES
    from primitives import SPACES

    if record is None:
        return KNOWN_HOMES.get(layer) == "norm"
    from db.store import SearchStore

    with SearchStore.open(db_path, readonly=True) as store:
        search = next(s for s in store.list_searches() if s.id == record.search_id)
    space = SPACES.get(str(search.config.get("space", "B")))
    return space is not None and space.slot == "norm"


COMMANDS: list[click.Command] = [show, export]
