"""HTTP routes: GET /user/<name>, health endpoints."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from api.finder import Finder, SourcesUnavailable
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
    response.headers["X-Ums-Source"] = found.source
    if found.generation is not None:
        response.headers["X-Ums-Generation"] = str(found.generation)
    return response


@bp.get("/livez")
def livez() -> Response:
    return jsonify(status="ok")
