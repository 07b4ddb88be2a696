"""The OpenAPI 3.1 document of the API, written to match what the routes do."""

from __future__ import annotations

from typing import Any

from api.fresh import MAX_EPOCH_MS, MIN_SINCE

# Every string this pattern matches is a valid name (tests/unit/test_openapi.py checks it).
_LETTER = r"A-Za-z0-9\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u00ff"
NAME_PATTERN = rf"^[{_LETTER}][{_LETTER} .'_-]{{6,30}}[{_LETTER}]$"
PROBLEM = {"$ref": "#/components/schemas/Problem"}


def _problem_response(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/problem+json": {"schema": PROBLEM}},
    }
    if headers:
        response["headers"] = headers
    return response


def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ums-find",
            "version": "0.1.0",
            "description": "FindService of the user-management system: users by name, from a Redis "
            "projection of the AddService's events, with MySQL as fallback.",
        },
        "paths": {
            "/user/{name}": {
                "get": {
                    "operationId": "getUser",
                    "summary": "Find a user by name",
                    "parameters": [
                        {
                            "name": "name",
                            "in": "path",
                            "required": True,
                            "description": "The rule: 8 to 32 characters not counting spaces at either "
                            "end, without control or bidi formatting characters; matched as MySQL's collation "
                            "matches it: case and accents ignored, a leading space significant (docs/decisions.md, "
                            "Names). The pattern shows the common "
                            "Latin form; any Unicode name that follows the rule is accepted, and one that "
                            "breaks it gets 400.",
                            "schema": {"type": "string", "pattern": NAME_PATTERN},
                            "example": "KrishnaMohan",
                        },
                        {
                            "name": MIN_SINCE,
                            "in": "query",
                            "required": False,
                            "description": "Read your own write: answer only with a user whose `since` is at "
                            "least this (the `since` of the save just made), as epoch milliseconds or an "
                            "ISO-8601 (RFC 3339) date-time with a time zone. When the projection's answer is "
                            "older or missing, MySQL answers (`X-Ums-Source: mysql`); when MySQL's is older "
                            "too, 409. Any other value: 400.",
                            "schema": {
                                "anyOf": [
                                    {"type": "integer", "minimum": 0, "maximum": MAX_EPOCH_MS},
                                    {"type": "string", "format": "date-time"},
                                ]
                            },
                            "example": "2026-12-02T17:25:04.123Z",
                        },
                        {
                            "name": "Cache-Control",
                            "in": "header",
                            "required": False,
                            "description": "`no-cache` or `max-age=0` asks past the projection: MySQL answers "
                            "(`X-Ums-Source: mysql`) and the response is `no-store`. Other directives change nothing.",
                            "schema": {"type": "string"},
                            "example": "no-cache",
                        },
                    ],
                    "responses": {
                        "200": {
                            "description": "The user",
                            "headers": {
                                "ETag": {"schema": {"type": "string"}},
                                "X-Ums-Source": {"schema": {"type": "string", "enum": ["projection", "mysql"]}},
                                "Cache-Control": {
                                    "description": "`public, max-age=N`; `no-store` for a `Cache-Control: "
                                    "no-cache` read",
                                    "schema": {"type": "string"},
                                },
                            },
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/User"}}},
                        },
                        "304": {"description": "Not modified (If-None-Match matched the ETag)"},
                        "400": _problem_response("Invalid name, or invalid or repeated min_since"),
                        "404": _problem_response("No user has this name"),
                        "409": _problem_response(
                            "min_since asked for a user at least that fresh, and even MySQL holds an older one "
                            "(or its save has not happened): never shown as fresh",
                        ),
                        "414": _problem_response("Request target too long"),
                        "431": _problem_response("Request headers too large"),
                        "503": _problem_response(
                            "Neither the projection nor MySQL can answer; or the API shed the request: over its"
                            " capacity (type .../overloaded) or waited past its deadline (.../deadline-exceeded);"
                            " or, for a min_since or no-cache read that needs MySQL, this worker already has"
                            " UMS_FRESH_READ_LIMIT such reads waiting on it (type .../fresh-read-limit)",
                            {"Retry-After": {"schema": {"type": "string"}}},
                        ),
                    },
                }
            },
        },
        "components": {
            "schemas": {
                "User": {
                    "type": "object",
                    "required": ["name", "phone", "since"],
                    "additionalProperties": False,
                    "properties": {
                        "name": {"type": "string", "minLength": 8, "maxLength": 32},
                        "phone": {"type": "integer", "minimum": 9000000000},
                        "since": {"type": "string", "format": "date-time"},
                    },
                },
                "Problem": {
                    "type": "object",
                    "required": ["type", "title", "status", "detail"],
                    "properties": {
                        "type": {"type": "string", "format": "uri"},
                        "title": {"type": "string"},
                        "status": {"type": "integer"},
                        "detail": {"type": "string"},
                    },
                },
            }
        },
    }
