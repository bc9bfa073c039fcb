"""The dashboard's Flask application: pages, JSON endpoints and the offline assets.

Owns the URL map. Every route is a GET that reads through `DashboardData` (a read-only
store); pages are HTML shells whose script polls the JSON endpoints, so they follow a
running search without a reload. Every script comes from this app: our own files under
static/ and plotly.js as bundled in the installed `plotly` package. A Content-Security-
Policy of 'self' makes the browser refuse any request to another host.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import plotly
from flask import Flask, Response, abort, jsonify, render_template, request, send_file

from db.store import SearchStore
from evonorm_search.dashboard.data import DashboardData, NotFound
from evonorm_search.errors import EvonormError, StoreError

POLL_SECONDS = 3.0
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
EXTENSION = "evonorm_dashboard"
# plotly.js sets inline styles on the elements it draws; nothing else needs more than 'self'.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def create_app(db_path: str | Path, *, poll_seconds: float = POLL_SECONDS) -> Flask:
    """The dashboard on the search database at `db_path`, opened read-only.

    StoreError when the file is missing or not an evonorm database.
    The open store is `app.extensions["evonorm_dashboard"].store`; close it when done.
    """
    store = SearchStore.open(Path(db_path).expanduser(), readonly=True)
    data = DashboardData(store, str(store.path))  # absolute: the export command works anywhere
    app = Flask(__name__)
    app.extensions[EXTENSION] = data
    app.json.sort_keys = False  # type: ignore[attr-defined]

    def page(template: str, **values: Any) -> str:
        return render_template(template, db=str(store.path), poll_ms=int(poll_seconds * 1000), **values)

    @app.errorhandler(NotFound)
    def not_found(error: NotFound) -> tuple[Response, int]:
        return jsonify(error=str(error)), 404

    @app.errorhandler(EvonormError)
    @app.errorhandler(StoreError)
    def unusable(error: Exception) -> tuple[Response, int]:
        # E.g. the database was replaced by one this version cannot read: the page says so.
        return jsonify(error=str(error)), 500

    @app.after_request
    def headers(response: Response) -> Response:
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        if request.path.startswith("/api/"):
            response.headers["Cache-Control"] = "no-cache"
        return response

    @app.get("/")
    def index() -> str:
        return page("index.html")

    @app.get("/search/<int:search_id>")
    def search_page(search_id: int) -> str:
        data.get_search(search_id)  # 404 before rendering for an unknown id
        return page("search.html", search_id=search_id)

    @app.get("/candidate/<int:candidate_id>")
    def candidate_page(candidate_id: int) -> str:
        data.get_candidate(candidate_id)
        return page("candidate.html", candidate_id=candidate_id)

    @app.get("/api/searches")
    def api_searches() -> Response:
        return jsonify(searches=data.searches())

    @app.get("/api/search/<int:search_id>")
    def api_search(search_id: int) -> Response:
        version = data.version(search_id)
        if version in request.if_none_match:
            response = Response(status=304)  # unchanged since the client's last poll
            response.set_etag(version)
            return response
        version, view = data.search(search_id)
        response = jsonify(view)
        response.set_etag(version)
        return response

    @app.get("/api/candidate/<int:candidate_id>")
    def api_candidate(candidate_id: int) -> Response:
        return jsonify(data.candidate(candidate_id))

    @app.get("/candidate/<int:candidate_id>/graph.png")
    def graph_png(candidate_id: int) -> Response:
        return Response(data.graph_png(candidate_id), mimetype="image/png")

    @app.get("/assets/plotly.min.js")
    def plotly_js() -> Response:
        if not PLOTLY_JS.is_file():
            abort(404)
        return send_file(PLOTLY_JS, mimetype="text/javascript", max_age=86400)

    return app

