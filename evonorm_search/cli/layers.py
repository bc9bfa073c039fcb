"""`evonorm show` and `evonorm export`: inspect a layer and write it as a stand-alone module."""

from __future__ import annotations

from pathlib import Path

import click

from db.store import DEFAULT_DB_PATH
from evonorm_search.errors import EvonormError
from evonorm_search.export import to_source
from evonorm_search.graph import INITIAL_NODES, NUM_INITIAL, LayerGraph
from evonorm_search.layer_spec import load_graph_spec

DB_HELP = "Database for a candidate ID argument (see `evonorm front NAME`)."


def resolve_layer(layer: str, db_path: Path) -> tuple[LayerGraph, str | None]:
    """The graph LAYER names, and a line about the candidate when LAYER is a database ID."""
    if not layer.isdecimal():
        return load_graph_spec(layer), None
    from db.store import SearchStore
    from evonorm_search.api import candidate_graph  # imports torch: only when needed

    with SearchStore.open(db_path, readonly=True) as store:
        record, graph = candidate_graph(store, int(layer))
        search = next(s for s in store.list_searches() if s.id == record.search_id)
    scores = ", ".join(f"{proxy} {acc:.4f}" for proxy, acc in sorted(record.accuracies.items()))
    about = f"candidate {record.id}: search {search.name!r} number {record.number}, {record.status}"
    return graph, f"{about}{'; ' + scores if scores else ''}"

def describe(graph: LayerGraph) -> str:
    """Formula, space, hash and node list of `graph`, dead nodes marked."""
    live = graph.live_nodes()
    lines = [
        f"formula: {graph.formula()}",
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
@click.option("--json", "as_json", is_flag=True, help="Print the layer's JSON graph instead.")
@click.option("--db", "db_path", type=click.Path(path_type=Path, dir_okay=False),
              default=DEFAULT_DB_PATH, show_default=True, help=DB_HELP)
def show(layer: str, as_json: bool, db_path: Path) -> None:
    """Print a layer's formula, search space (B/S), hash and nodes.

    NAME_OR_JSON_FILE_OR_ID: a known layer (e.g. evonorm_s0, bn_relu), a layer graph JSON
    file (as written by `evonorm show NAME --json`), or an integer: a candidate ID in the
    database given by --db.
    """
    graph, about = resolve_layer(layer, db_path)
    if as_json:
        click.echo(graph.to_json())
        return
    click.echo(describe(graph) if about is None else f"{about}\n{describe(graph)}")


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
