"""GET /user/<name> as plain WSGI before Flask: the lookups that make up the load, at two thirds of the CPU.

Under gunicorn on one core a lookup cost ~700 us of CPU, ~210 us of it Flask's request context,
routing, hooks and response object (docs/decisions.md "The hot path"). This answers the plain
lookups with the same Reply the Flask route builds (api/answer.py), and hands Flask every request
it would not answer identically: another method, path or port, a query string (min_since), a
Cache-Control that forces a fresh read, a name holding "/" or one Name() refuses (Flask's 400),
headers past the app's limit (Flask's 431).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from werkzeug.exceptions import InternalServerError
from werkzeug.http import HTTP_STATUS_CODES

from adapters.settings import Settings
from api import fresh
from api.answer import lookup_reply
from api.finder import Finder
from api.limits import MAX_HEADER_BYTES, header_bytes
from api.metrics import ApiMetrics
from api.reply import Reply, problem_reply
from domain import DomainError, Name

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication

log = logging.getLogger(__name__)

PREFIX = "/user/"
USER_RULE = "/user/<name:name>"  # the Flask route's rule: both count under one label in /metrics


class HotPath:
    """WSGI middleware in front of Flask (inside admission control): plain lookups, answered directly."""

    def __init__(
        self, app: WSGIApplication, finder: Finder, settings: Settings, metrics: ApiMetrics, ops_port: str
    ) -> None:
        self.app, self.finder, self.settings, self.metrics, self.ops_port = app, finder, settings, metrics, ops_port

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        name = self.plain_lookup(environ)
        if name is None:
            return self.app(environ, start_response)
        started = time.perf_counter()
        try:
            reply = lookup_reply(lambda: self.finder.find(name), self.settings, None, environ.get("HTTP_IF_NONE_MATCH"))
        except Exception:
            # What Flask does with an exception in a view: logged, and a 500 through the app's problem handler.
            log.exception("Exception on %s [GET]", environ.get("PATH_INFO"))
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
        # Flask's 414 cannot apply: a name Name() accepts (at most 32 characters) keeps the path far below MAX_PATH.
        if not path.startswith(PREFIX) or "/" in path[len(PREFIX) :]:
            return None
        if environ.get("SERVER_PORT") == self.ops_port or fresh.forces_mysql(environ.get("HTTP_CACHE_CONTROL")):
            return None
        if header_bytes(environ) > MAX_HEADER_BYTES:
            return None
        try:
            # werkzeug's decoding of PATH_INFO (UTF-8, errors replaced), so the name is the one Flask would see.
            return Name(path[len(PREFIX) :].encode("latin-1").decode("utf-8", "replace"))
        except DomainError:
            return None


def status_line(status: int) -> str:
    """The status line werkzeug sends: "404 NOT FOUND"."""
    return f"{status} {HTTP_STATUS_CODES.get(status, 'UNKNOWN').upper()}"


def wsgi_headers(reply: Reply) -> list[tuple[str, str]]:
    """The reply's headers as werkzeug sends them: Content-Length last, none for a 304 (it has no body)."""
    if reply.status == 304:
        return reply.headers
    return [*reply.headers, ("Content-Length", str(len(reply.body)))]
