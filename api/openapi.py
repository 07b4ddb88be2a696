"""The OpenAPI 3.1 document of the API, written to match what the routes do."""

from __future__ import annotations

from typing import Any

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
                            "description": "The rule: 8 to 32 characters once surrounding whitespace is "
                            "removed, without control or bidi formatting characters; matched ignoring case "
                            "and surrounding whitespace (docs/decisions.md). The pattern shows the common "
                            "Latin form; any Unicode name that follows the rule is accepted, and one that "
                            "breaks it gets 400.",
                            "schema": {"type": "string", "pattern": NAME_PATTERN},
                            "example": "KrishnaMohan",
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": "The user",
                            "headers": {
                                "ETag": {"schema": {"type": "string"}},
                                "X-Ums-Source": {"schema": {"type": "string", "enum": ["projection", "mysql"]}},
                            },
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/User"}}},
                        },
                        "304": {"description": "Not modified (If-None-Match matched the ETag)"},
                        "400": _problem_response("Invalid name"),
                        "404": _problem_response("No user has this name"),
                        "414": _problem_response("Request target too long"),
                        "431": _problem_response("Request headers too large"),
                        "503": _problem_response(
                            "Neither the projection nor MySQL can answer, or the API shed the request: over its"
                            " capacity (type .../overloaded) or waited past its deadline (.../deadline-exceeded)",
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
