"""The FindService HTTP API: a Flask app factory for gunicorn (`api:create_app()`)."""

from __future__ import annotations

from flask import Flask, Response
from werkzeug.exceptions import HTTPException

from api import routes
from api.finder import Finder
from api.problems import problem
from ums_find.mysql import MySQLUsers, make_pool
from ums_find.settings import Settings
from ums_find.store import ProjectionStore, make_redis


def create_app(settings: Settings | None = None, finder: Finder | None = None) -> Flask:
    """Build the app; clients are created here (per gunicorn worker), never at import."""
    settings = settings or Settings.from_env()
    app = Flask(__name__)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.config["UMS_SETTINGS"] = settings
    app.extensions["ums_finder"] = finder or Finder(
        ProjectionStore(make_redis(settings), settings.key_prefix),
        MySQLUsers(make_pool(settings)),
        settings,
    )
    app.register_blueprint(routes.bp)
    app.register_error_handler(HTTPException, _http_problem)
    return app


def _http_problem(exc: HTTPException) -> Response:
    status = exc.code or 500
    slug = {404: "not-found", 405: "method-not-allowed"}.get(status, f"http-{status}")
    response = problem(status, slug, exc.description or "")
    if status == 405 and exc.response is None:
        allowed = getattr(exc, "valid_methods", None)
        if allowed:
            response.headers["Allow"] = ", ".join(allowed)
    return response
