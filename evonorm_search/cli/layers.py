"""`evonorm show` and `evonorm export`: inspect a layer and write it as a stand-alone module.

Also owns presenting one layer or candidate, as text and as JSON (docs/json.md), for the
inspection commands of cli/inspect.py.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from db.store import DEFAULT_DB_PATH
from evonorm_search.errors import EvonormError
from evonorm_search.export import to_source
from evonorm_search.graph import INITIAL_NODES, NUM_INITIAL, LayerGraph
from evonorm_search.known import KNOWN_LAYERS, formula_label, known_name
from evonorm_search.layer_spec import load_graph_spec

if TYPE_CHECKING:
    from db.store import CandidateRecord

DB_HELP = "Database for a candidate ID argument (see `evonorm front NAME`)."
JSON_VERSION = 1  # of every `--json` document (docs/json.md); bump on incompatible changes


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


def layer_json(graph: LayerGraph) -> dict[str, Any]:
    """What `describe` prints, plus the layer graph file form under "graph"."""
    live = graph.live_nodes()
    return {
        "formula": graph.formula(),
        "known_name": known_name(graph.structural_hash()),
        "space": graph.space,
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
    }


def _resolve(layer: str, db_path: Path) -> tuple[LayerGraph, CandidateRecord | None, str]:
    """The graph LAYER names, its candidate record when LAYER is a database ID, and that
    candidate's search name ("" otherwise)."""
    if not layer.isdecimal():
        return load_graph_spec(layer), None, ""
    from db.store import SearchStore
    from evonorm_search.api import candidate_graph  # imports torch: only when needed

    with SearchStore.open(db_path, readonly=True) as store:
        record, graph = candidate_graph(store, int(layer))
        search = next(s for s in store.list_searches() if s.id == record.search_id)
    return graph, record, search.name


def _about(record: CandidateRecord, search_name: str) -> str:
    """The line about a candidate that `show ID` prints above the layer."""
    scores = ", ".join(f"{proxy} {acc:.4f}" for proxy, acc in sorted(record.accuracies.items()))
    about = f"candidate {record.id}: search {search_name!r} number {record.number}, {record.status}"
    return f"{about}{'; ' + scores if scores else ''}"


def resolve_layer(layer: str, db_path: Path) -> tuple[LayerGraph, str | None]:
    """The graph LAYER names, and a line about the candidate when LAYER is a database ID."""
    graph, record, search_name = _resolve(layer, db_path)
    return graph, None if record is None else _about(record, search_name)

def describe(graph: LayerGraph) -> str:
    """Formula (with the known layer's name), space, hash and node list of `graph`, dead
    nodes marked."""
    live = graph.live_nodes()
    lines = [
        f"formula: {formula_label(graph)}",
        f"space:   {graph.space} ({'uses' if graph.uses_batch_stats else 'no'} batch statistics)",
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
    """Print a layer's formula (and known-layer name), search space (B/S), hash and nodes.

    NAME_OR_JSON_FILE_OR_ID: a known layer (e.g. evonorm_s0, bn_relu), a layer graph JSON
    file (as written by `evonorm show NAME --graph`), or an integer: a candidate ID in the
    database given by --db.
    """
    if as_json and as_graph:
        raise EvonormError("--json and --graph each choose the output; give one of them")
    graph, record, search_name = _resolve(layer, db_path)
    if as_graph:
        click.echo(graph.to_json())
        return
    if as_json:
        source = "candidate" if record is not None else "known" if layer in KNOWN_LAYERS else "file"
        echo_json("show", {
            "argument": layer,
            "source": source,
            "candidate": None if record is None else candidate_json(record, search_name),
            "layer": layer_json(graph),
        })
        return
    click.echo(describe(graph) if record is None else f"{_about(record, search_name)}\n{describe(graph)}")


@click.command("export")
@click.argument("layer", metavar="NAME_OR_JSON_FILE_OR_ID")
@click.option("--db", "db_path", type=click.Path(path_type=Path, dir_okay=False),
              default=DEFAULT_DB_PATH, show_default=True, help=DB_HELP)
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="File to write the module to (default: standard output).",
)
@click.option("--class-name", default="EvolvedNormAct", show_default=True,
              help="Name of the generated nn.Module class.")
def export(layer: str, db_path: Path, output: Path | None, class_name: str) -> None:
    """Write a layer as a stand-alone PyTorch module that imports only torch.

    NAME_OR_JSON_FILE_OR_ID: a known layer (e.g. evonorm_s0, bn_relu), a layer graph JSON
    file, or an integer: a candidate ID in the database given by --db. The class takes
    (num_channels, groups=32, eps=1e-5, momentum=0.1).
    """
    source = to_source(resolve_layer(layer, db_path)[0], class_name=class_name)
    if output is None:
        click.echo(source, nl=False)
        return
    try:
        output.write_text(source, encoding="utf-8")
    except OSError as error:
        raise EvonormError(
            f"cannot write {str(output)!r} ({error.strerror}); choose a writable path with -o"
        ) from None
    click.echo(f"wrote {class_name} to {output}", err=True)


COMMANDS: list[click.Command] = [show, export]
