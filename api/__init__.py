"""The FindService HTTP API: a Flask app factory for gunicorn (`api:create_app()`)."""

from __future__ import annotations

import time

from flask import Flask, Response, current_app, g, request
from werkzeug.exceptions import HTTPException

from adapters.clients import Role, mysql_users, projection_store, tracked_reads
from adapters.direct_reads import DirectReads
from adapters.settings import Settings
from api import fresh, routes
from api.admission import Admission, AdmissionMetrics
from api.finder import Finder, Reads
from api.hot import HotPath
from api.limits import MAX_HEADER_BYTES, MAX_PATH, header_bytes
from api.links import Links
from api.metrics import ApiMetrics
from api.problems import problem
from domain import use_collation


def create_app(settings: Settings | None = None, finder: Finder | None = None) -> Flask:
    """Build the app; clients are created here (per gunicorn worker), never at import."""
    settings = settings or Settings.from_env()
    use_collation(settings.name_collation)
    app = Flask(__name__)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.url_map.converters["name"] = routes.NameConverter
    app.config["UMS_SETTINGS"] = settings
    app.config["UMS_OPS_PORT"] = settings.ops_bind.rpartition(":")[2]
    app.extensions["ums_metrics"] = metrics = ApiMetrics.create()
    app.extensions["ums_finder"] = finder or _finder(settings, metrics)
    app.extensions["ums_links"] = Links(app.extensions["ums_finder"], settings.redis_url)
    fresh.init_app(app, settings.fresh_read_limit, settings.fresh_read_wait_s)
    inner = app.wsgi_app
    if settings.api_hot_path:
        # Plain lookups without Flask's request context, routing and hooks (api/hot.py).
        inner = HotPath(inner, app.extensions["ums_finder"], settings, metrics, app.config["UMS_OPS_PORT"])
    # Before Flask: a rejection costs no request context, routing or hooks.
    app.wsgi_app = Admission(inner, settings, AdmissionMetrics.create(metrics.registry))  # type: ignore[method-assign]
    app.register_blueprint(routes.bp)
    app.register_error_handler(HTTPException, _http_problem)
    app.before_request(_limits)
    app.after_request(_observe)
    return app


def _finder(settings: Settings, metrics: ApiMetrics) -> Finder:
    """The finder over this worker's clients: users' values through the read cache if one is set, else on a
    connection per thread (adapters/direct_reads.py), else through redis-py's client."""
    store = projection_store(settings, Role.API)
    reads: Reads | None = tracked_reads(settings, metrics.read_cache_outcome())
    if reads is None and settings.api_direct_reads:
        reads = DirectReads.of(store)
    return Finder(store, mysql_users(settings), settings, reads)


def _limits() -> Response | None:
    g.started = time.perf_counter()
    # Operational endpoints on the ops port only, the API on the public port only. The port is
    # the listening socket's (gunicorn sets SERVER_PORT from it for TCP; no header changes it).
    on_ops = request.environ.get("SERVER_PORT") == current_app.config["UMS_OPS_PORT"]
    if (request.endpoint in routes.OPS_ENDPOINTS) != on_ops and request.endpoint is not None:
        return problem(404, "not-found", "no such resource on this port", Cache_Control="no-store")
    if len(request.full_path) > MAX_PATH:
        return problem(414, "uri-too-long", f"the request target is longer than {MAX_PATH} characters")
    if header_bytes(request.environ) > MAX_HEADER_BYTES:
        return problem(431, "headers-too-large", f"request headers exceed {MAX_HEADER_BYTES} bytes")
    return None


def _observe(response: Response) -> Response:
    metrics: ApiMetrics = current_app.extensions["ums_metrics"]
    route = request.url_rule.rule if request.url_rule else "unmatched"
    source = response.headers.get("X-Ums-Source", "none")
    started = g.get("started")
    metrics.record(
        route,
        request.method,
        response.status_code,
        source,
        time.perf_counter() - started if started is not None else None,
    )
    return response


def _http_problem(exc: HTTPException) -> Response:
    status = exc.code or 500
    slug = {404: "not-found", 405: "method-not-allowed"}.get(status, f"http-{status}")
    response = problem(status, slug, exc.description or "")
    if status == 404:
        response.headers["Cache-Control"] = "public, max-age=60"
    if status == 405:
        allowed = getattr(exc, "valid_methods", None)
        if allowed:
            response.headers["Allow"] = ", ".join(allowed)
    return response
