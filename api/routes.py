"""HTTP routes: GET /user/<name>, health, metrics and the OpenAPI document."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request

from api.finder import MYSQL, PROJECTION, Finder, SourcesUnavailable
from api.metrics import ApiMetrics
from api.openapi import openapi_document
from api.problems import problem
from api.serialize import user_to_json
from domain import DomainError, Name

bp = Blueprint("users", __name__)


def finder() -> Finder:
    found: Finder = current_app.extensions["ums_finder"]
    return found


# <path:> so that a name holding "/" (sent as %2F) is validated like any other name.
@bp.get("/user/<path:name>")
def get_user(name: str) -> Response:
    try:
        valid = Name(name)
    except DomainError as exc:
        return problem(400, "invalid-name", str(exc))
    try:
        found = finder().find(valid)
    except SourcesUnavailable:
        return problem(503, "unavailable", "neither the projection nor MySQL can answer", Retry_After="1")
    if found.user is None:
        response = problem(404, "user-not-found", "no user has this name")
    else:
        response = jsonify(user_to_json(found.user))
        response.cache_control.public = True
        response.cache_control.max_age = current_app.config["UMS_SETTINGS"].cache_max_age_s
        response.add_etag()  # strong: a hash of the body
        response.make_conditional(request)
    response.headers["X-Ums-Source"] = found.source
    if found.generation is not None:
        response.headers["X-Ums-Generation"] = str(found.generation)
    return response


@bp.get("/livez")
def livez() -> Response:
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> Response:
    sources = finder().readiness()
    ready = sources[PROJECTION] or sources[MYSQL]
    response = jsonify(ready=ready, sources=sources)
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
