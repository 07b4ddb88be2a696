"""HTTP routes: GET /user/<name> and the OpenAPI document (public port); health and metrics (ops port).

Which port a request came in on is the listening socket's (gunicorn's SERVER_PORT for a TCP
listener), never a header: api/__init__.py answers 404 to an endpoint asked on the other port.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.routing import PathConverter

from api import fresh
from api.answer import USER_RULE, lookup_reply
from api.finder import MYSQL, PROJECTION, Finder
from api.links import Links
from api.metrics import ApiMetrics
from api.openapi import openapi_document
from api.problems import problem, to_response
from domain import DomainError, Name

bp = Blueprint("users", __name__)
# Endpoints served on the operational port only.
OPS_ENDPOINTS = frozenset({"users.livez", "users.readyz", "users.metrics"})


def finder() -> Finder:
    found: Finder = current_app.extensions["ums_finder"]
    return found


def fresh_reads() -> fresh.FreshReads:
    reads: fresh.FreshReads = current_app.extensions["ums_fresh"]
    return reads


class NameConverter(PathConverter):
    """<path:> that also matches CR, LF and other line breaks, so Name() refuses them with a 400.

    The path converter's `.` stops at a newline: "/user/a%0Ab" would match no route (404).
    A name holding "/" (sent as %2F) is validated like any other name too.
    """

    regex = "[^/](?s:.*?)"


@bp.get(USER_RULE)
def get_user(name: str) -> Response:
    settings = current_app.config["UMS_SETTINGS"]
    try:
        valid = Name(name)
    except DomainError as exc:
        # The same name is refused again: caches may keep the answer as long as a user's.
        return problem(400, "invalid-name", str(exc), Cache_Control=f"public, max-age={settings.cache_max_age_s}")
    try:
        want = fresh.wanted(request.args.getlist(fresh.MIN_SINCE), request.headers.get("Cache-Control"))
    except fresh.InvalidParameter as exc:
        return problem(400, "invalid-parameter", str(exc), Cache_Control="no-store")
    find = (lambda: finder().find(valid)) if want is None else (lambda: fresh_reads().find(valid, want))
    reply = lookup_reply(
        find, settings, want, request.headers.get("If-None-Match"), request.args.get(fresh.MIN_SINCE, "")
    )
    return to_response(reply)


@bp.get("/livez")
def livez() -> Response:
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> Response:
    links: Links = current_app.extensions["ums_links"]
    sources, misconfigured = links.status()
    mismatch = finder().collation_mismatch()
    ready = (sources[PROJECTION] or sources[MYSQL]) and mismatch is None and not misconfigured
    extra: dict[str, object] = {"collation_mismatch": mismatch} if mismatch else {}
    if misconfigured:
        extra["misconfigured"] = misconfigured  # fixed phrases (adapters/diagnose.py), never an error's text
    response = jsonify(ready=ready, sources=sources, **extra)
    response.status_code = 200 if ready else 503
    return response


@bp.get("/metrics")
def metrics() -> Response:
    metrics: ApiMetrics = current_app.extensions["ums_metrics"]
    body, content_type = metrics.exposition()
    return Response(body, content_type=content_type)


@bp.get("/openapi.json")
def openapi() -> Response:
    return jsonify(openapi_document())
