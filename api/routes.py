"""HTTP routes: GET /user/<name> and the OpenAPI document (public port); health and metrics (ops port).

Which port a request came in on is the listening socket's (gunicorn's SERVER_PORT for a TCP
listener), never a header: api/__init__.py answers 404 to an endpoint asked on the other port.
"""

from __future__ import annotations

import hashlib

from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.routing import PathConverter

from api import fresh
from api.finder import MYSQL, PROJECTION, Finder, SourcesUnavailable
from api.links import Links
from api.metrics import ApiMetrics
from api.openapi import openapi_document
from api.problems import problem
from api.serialize import iso, user_body
from domain import DomainError, Name, User

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


@bp.get("/user/<name:name>")
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
    try:
        found = finder().find(valid) if want is None else fresh_reads().find(valid, want)
    except SourcesUnavailable:
        return problem(
            503, "unavailable", "neither the projection nor MySQL can answer", Retry_After="1", Cache_Control="no-store"
        )
    except fresh.FreshReadLimited:
        detail = "too many fresh reads are waiting on MySQL; retry, or read without min_since/no-cache"
        return problem(503, "fresh-read-limit", detail, Retry_After="1", Cache_Control="no-store")
    except fresh.NotFreshEnough as exc:
        return _not_fresh_enough(exc.available)
    if found.user is None:
        # Briefly, as the API itself remembers unknown names: a user added now shows soon.
        max_age = int(settings.negative_cache_s)
        cache = "no-store" if want else f"public, max-age={max_age}"
        response = problem(404, "user-not-found", "no user has this name", Cache_Control=cache)
    else:
        # A forced read is the source of truth of this moment: no cache may keep it. A min_since
        # answer stays true for that min_since, so it is cacheable like any other.
        cache = "no-store" if want and want.forced else f"public, max-age={settings.cache_max_age_s}"
        response = user_response(user_body(found.user), cache)
    response.headers["X-Ums-Source"] = found.source
    if found.generation is not None:
        response.headers["X-Ums-Generation"] = str(found.generation)
    return response


def _not_fresh_enough(available: User) -> Response:
    """409: even MySQL holds this user with an older `since` than min_since (never shown as fresh)."""
    asked = request.args.get(fresh.MIN_SINCE, "")[:64]
    detail = f"MySQL, the freshest source, holds this user with since {iso(available.since)}, before min_since={asked}"
    response = problem(409, "not-fresh-enough", detail, Cache_Control="no-store")
    response.headers["X-Ums-Source"] = MYSQL
    return response


def user_response(body: bytes, cache_control: str) -> Response:
    """200 with a strong ETag (a hash of the body) and `cache_control`, or 304 on If-None-Match.

    If-None-Match compares weakly (RFC 9110 13.1.2): W/"x" matches "x", as a cache that
    weakened our tag sends it back. Written out rather than werkzeug's add_etag/make_conditional:
    they cost a third of the request's time in a profile of this route.
    """
    etag = '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'
    headers = {"ETag": etag, "Cache-Control": cache_control}
    wanted = request.headers.get("If-None-Match")
    if wanted and (wanted.strip() == "*" or etag in (t.strip().removeprefix("W/") for t in wanted.split(","))):
        return Response(status=304, headers=headers)
    return Response(body, mimetype="application/json", headers=headers)


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
