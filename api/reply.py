"""A response before any framework (Reply), and RFC 9457 problem details: every error the API returns."""

from __future__ import annotations

import json
from dataclasses import dataclass
from http import HTTPStatus

TYPE_BASE = "https://ums-find.dev/problems/"
PROBLEM_JSON = "application/problem+json"


@dataclass(frozen=True)
class Reply:
    """Status, headers (Content-Type among them when there is a body) and body; Flask or plain WSGI sends it."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


def problem_reply(status: int, slug: str, detail: str, **headers: str) -> Reply:
    """An `application/problem+json` reply; `slug` makes the stable type URI, `Cache_Control=` a header."""
    body = {"type": TYPE_BASE + slug, "title": HTTPStatus(status).phrase, "status": status, "detail": detail}
    extra = [(name.replace("_", "-"), value) for name, value in headers.items()]
    return Reply(status, [("Content-Type", PROBLEM_JSON), *extra], json.dumps(body).encode())
