"""Replies as Flask responses: problem() for the app's errors, to_response() for any Reply."""

from __future__ import annotations

from flask import Response

from api.reply import Reply, problem_reply


def to_response(reply: Reply) -> Response:
    return Response(reply.body, status=reply.status, headers=reply.headers)


def problem(status: int, slug: str, detail: str, **headers: str) -> Response:
    """An `application/problem+json` response; `slug` makes the stable type URI."""
    return to_response(problem_reply(status, slug, detail, **headers))
