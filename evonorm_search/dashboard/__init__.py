"""The live dashboard: `evonorm dashboard` serves a local, read-only web app on a search
database, which follows a running search without reloading the page.

`app` holds the Flask application (pages and JSON endpoints), `data` the read-only
queries (sharing the static report's data gathering), `server` the listening socket and
the server; templates/ and static/ are the pages and their script. See docs/dashboard.md.
"""

from __future__ import annotations

from evonorm_search.dashboard.app import create_app
from evonorm_search.dashboard.server import DashboardError, make_server

__all__ = ["DashboardError", "create_app", "make_server"]
