"""`evonorm report`: write a search's self-contained HTML report."""

from __future__ import annotations

from pathlib import Path

import click

DEFAULT_DB = "evonorm.db"


@click.command("report")
@click.argument("name")
@click.option("-o", "--output", "out_dir", required=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Directory to write index.html into (created if missing).")
@click.option("--db", "db_path", default=DEFAULT_DB, show_default=True, help="Search database file.")
def report(name: str, out_dir: Path, db_path: str) -> None:
    """Write the HTML report of search NAME to DIR/index.html.

    One self-contained page (pictures embedded, no network needed): settings, progress
    curves, Pareto fronts per pair of proxies with known layers marked, the rejection
    funnel with compute per stage, each front layer's graph and formula, the latest
    re-ranking, and the best layer's lineage. Reads the database only; it may run while
    a search is writing to it.
    """
    from db.store import SearchStore
    from evonorm_search.report import build_report

    with SearchStore.open(Path(db_path).expanduser(), readonly=True) as store:
        store.get_search(name)  # an unknown name fails before any progress output
        click.echo(f"building the report of {name!r}...", err=True)
        path = build_report(store, name, out_dir)
    click.echo(str(path))


COMMANDS: list[click.Command] = [report]
