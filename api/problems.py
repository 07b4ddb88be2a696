"""RFC 9457 problem details: every error the API returns, with a stable `type`."""

from __future__ import annotations

from http import HTTPStatus

from flask import Response, json

TYPE_BASE = "https://ums-find.dev/problems/"


def problem(status: int, slug: str, detail: str, **headers: str) -> Response:
    """An `application/problem+json` response; `slug` makes the stable type URI."""
    body = {
        "type": TYPE_BASE + slug,
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    response = Response(json.dumps(body), status=status, mimetype="application/problem+json")
    for name, value in headers.items():
        response.headers[name.replace("_", "-")] = value
    return response
