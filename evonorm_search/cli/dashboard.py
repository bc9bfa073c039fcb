"""`evonorm dashboard`: serve the live, read-only web dashboard of a search database."""

from __future__ import annotations

from pathlib import Path

import click

from db.store import DEFAULT_DB_PATH


@click.command("dashboard")
@click.option("--db", "db_path", type=click.Path(path_type=Path, dir_okay=False),
              default=DEFAULT_DB_PATH, show_default=True, help="The search database file.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (127.0.0.1: this machine only).")
@click.option("--port", default=8080, show_default=True, type=int,
              help="Port to listen on (0: any free port).")
def dashboard(db_path: Path, host: str, port: int) -> None:
    """Serve a local web dashboard of the searches in --db, until Ctrl-C.

    Searches, per search its settings, progress, an interactive Pareto front, the
    candidate table, the rejection funnel and re-ranking; per candidate its graph,
    scores, lineage and export command. The pages follow a running search live. The
    database is opened read-only (it is never written or locked against the search),
    and no page loads anything from another host. See docs/dashboard.md.
    """
    from evonorm_search.dashboard import create_app, make_server

    app = create_app(db_path)
    store = app.extensions["evonorm_dashboard"].store
    try:
        server = make_server(app, host, port)
        shown = f"[{host}]" if ":" in host else host
        click.echo(f"evonorm dashboard of {store.path} at http://{shown}:{server.port}/ "
                   "(read-only; Ctrl-C stops it)", err=True)
        try:
            server.serve_forever()  # returns on Ctrl-C (Werkzeug catches KeyboardInterrupt)
        finally:
            server.server_close()
        click.echo("dashboard stopped", err=True)
    finally:
        store.close()


COMMANDS: list[click.Command] = [dashboard]
