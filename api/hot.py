"""GET /user/<name> as plain WSGI before Flask: the lookups that make up the load, without Flask's cost.

Flask's request context, routing, hooks and response object are a large share of a lookup's CPU
(measured: docs/decisions.md "The hot path"). This answers the plain lookups with the same Reply
the Flask route builds (api/answer.py), and hands Flask every request it would not answer
identically: another method, path or port, a query string (min_since), a Cache-Control that
forces a fresh read, a name holding "/" or one Name() refuses (Flask's 400), a path or headers
past the app's limits (Flask's 414 and 431).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from werkzeug.exceptions import InternalServerError
from werkzeug.http import HTTP_STATUS_CODES

from adapters.settings import Settings
from api import fresh
from api.admission import StartResponse, WsgiApp
from api.answer import USER_RULE, lookup_reply
from api.finder import Finder
from api.limits import MAX_HEADER_BYTES, MAX_PATH, header_bytes
from api.metrics import ApiMetrics
from api.reply import Reply, problem_reply
from domain import DomainError, Name

# Flask's own logger (the app is named after the `api` package): a failed lookup logs as in Flask.
log = logging.getLogger("api")

PREFIX = "/user/"


class HotPath:
    """WSGI middleware in front of Flask (inside admission control): plain lookups, answered directly."""

    def __init__(self, app: WsgiApp, finder: Finder, settings: Settings, metrics: ApiMetrics, ops_port: str) -> None:
        self.app, self.finder, self.settings, self.metrics, self.ops_port = app, finder, settings, metrics, ops_port

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter()  # as Flask's before_request stamps it: the checks count too
        name = self.plain_lookup(environ)
        if name is None:
            return self.app(environ, start_response)
        try:
            reply = lookup_reply(lambda: self.finder.find(name), self.settings, None, environ.get("HTTP_IF_NONE_MATCH"))
        except Exception:
            # What Flask does with an exception in a view: logged, and a 500 through the app's problem handler.
            log.exception("Exception on %s [GET]", decoded_path(environ))
            reply = problem_reply(500, "http-500", InternalServerError.description or "")
        source = reply.header("X-Ums-Source") or "none"
        self.metrics.record(USER_RULE, "GET", reply.status, source, time.perf_counter() - started)
        start_response(status_line(reply.status), wsgi_headers(reply))
        return [reply.body]

    def plain_lookup(self, environ: dict[str, Any]) -> Name | None:
        """The valid name of a lookup this path answers as the Flask route would; None: Flask's."""
        if environ.get("REQUEST_METHOD") != "GET" or environ.get("QUERY_STRING"):
            return None
        path: str = environ.get("PATH_INFO", "")
        # Name() bounds a name's characters, not the spaces around them: Flask's 414 can still apply.
        # PATH_INFO holds the path's bytes as latin-1, never shorter than the decoded path Flask measures.
        if not path.startswith(PREFIX) or "/" in path[len(PREFIX) :] or len(path) + 1 > MAX_PATH:
            return None
        if environ.get("SERVER_PORT") == self.ops_port or fresh.forces_mysql(environ.get("HTTP_CACHE_CONTROL")):
            return None
        if header_bytes(environ) > MAX_HEADER_BYTES:
            return None
        try:
            return Name(decoded_path(environ)[len(PREFIX) :])
        except DomainError:
            return None


def decoded_path(environ: dict[str, Any]) -> str:
    """werkzeug's decoding of PATH_INFO (UTF-8, errors replaced): the path Flask sees."""
    path: str = environ.get("PATH_INFO", "")
    return path.encode("latin-1").decode("utf-8", "replace")


def status_line(status: int) -> str:
    """The status line werkzeug sends: "404 NOT FOUND"."""
    return f"{status} {HTTP_STATUS_CODES.get(status, 'UNKNOWN').upper()}"


def wsgi_headers(reply: Reply) -> list[tuple[str, str]]:
    """The reply's headers as werkzeug sends them: Content-Length last, none for a 304 (it has no body)."""
    if reply.status == 304:
        return reply.headers
    return [*reply.headers, ("Content-Length", str(len(reply.body)))]
