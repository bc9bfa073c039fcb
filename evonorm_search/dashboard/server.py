"""Serving the dashboard: binding the port (with clear errors) and Werkzeug's threaded server.

Owns the listening socket. It is bound here, so a port in use or a host that does not
resolve becomes a `DashboardError` (exit 2 in the CLI) instead of Werkzeug's own message
and exit 1; Werkzeug then serves on that socket. Request lines are not logged: the pages
poll every few seconds.
"""

from __future__ import annotations

import errno
import socket

from flask import Flask
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, select_address_family
from werkzeug.serving import make_server as werkzeug_server

from evonorm_search.errors import EvonormError


class DashboardError(EvonormError):
    """The dashboard cannot listen where it was asked to."""


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


def _listen(host: str, port: int) -> socket.socket:
    if not 0 <= port <= 65535:
        raise DashboardError(f"port {port} is out of range; pass --port with 1-65535 (0: any free port)")
    family = select_address_family(host, port)  # the family Werkzeug will assume
    try:
        socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)
    except OSError as error:
        raise DashboardError(
            f"cannot listen on host {host!r} ({error.strerror or error}); pass --host with "
            "an address of this machine, e.g. 127.0.0.1"
        ) from None
    try:
        return socket.create_server((host, port), family=family)
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise DashboardError(
                f"port {port} on {host} is already in use; pass --port with another port "
                "(--port 0 picks a free one)"
            ) from None
        if error.errno == errno.EACCES:
            raise DashboardError(
                f"no permission to listen on port {port}; pass --port with a port above 1023"
            ) from None
        raise DashboardError(
            f"cannot listen on {host}:{port} ({error.strerror or error}); pass --host with an "
            "address of this machine, e.g. 127.0.0.1"
        ) from None


def make_server(app: Flask, host: str = "127.0.0.1", port: int = 8080) -> BaseWSGIServer:
    """A threaded server for `app` listening on host:port (port 0: a free one; the bound
    port is `server.port`). DashboardError when it cannot listen there."""
    listening = _listen(host, port)
    try:
        # Werkzeug duplicates the descriptor; ours is closed once it has its own.
        return werkzeug_server(host, listening.getsockname()[1], app, threaded=True,
                               request_handler=_QuietHandler, fd=listening.fileno())
    finally:
        listening.close()
