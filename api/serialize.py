"""The one place where a domain User becomes the API's JSON body."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from domain import User


def user_to_json(user: User) -> dict[str, Any]:
    """{"name", "phone", "since"}: the seed's fields, `since` as ISO-8601 UTC with milliseconds."""
    return {"name": user.name.value, "phone": user.phone.value, "since": iso(user.since)}


def iso(moment: datetime) -> str:
    """ISO-8601 UTC with milliseconds: 2022-09-01T10:00:00.250Z."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def user_body(user: User) -> bytes:
    """The 200 body, as bytes (orjson: the route's JSON encoding is on the hot path)."""
    return orjson.dumps(user_to_json(user))
