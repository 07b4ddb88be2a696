"""What GET /user/<name> answers, framework-free: the Flask route and the hot path send the same Reply."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from adapters.settings import Settings
from api import fresh
from api.finder import MYSQL, Found, SourcesUnavailable
from api.reply import Reply, problem_reply
from api.serialize import iso, user_body
from domain import User

JSON = "application/json"
USER_RULE = "/user/<name:name>"  # the route's rule: the Flask route and the hot path count under it in /metrics


def user_reply(body: bytes, cache_control: str, if_none_match: str | None) -> Reply:
    """200 with a strong ETag (a hash of the body) and `cache_control`, or 304 on If-None-Match.

    If-None-Match compares weakly (RFC 9110 13.1.2): W/"x" matches "x", as a cache that
    weakened our tag sends it back. Written out rather than werkzeug's add_etag/make_conditional:
    they cost a third of the request's time in a profile of this route.
    """
    etag = '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'
    headers = [("ETag", etag), ("Cache-Control", cache_control)]
    if if_none_match and (
        if_none_match.strip() == "*" or etag in (t.strip().removeprefix("W/") for t in if_none_match.split(","))
    ):
        return Reply(304, headers)
    return Reply(200, [("Content-Type", JSON), *headers], body)


def lookup_reply(
    find: Callable[[], Found],
    settings: Settings,
    want: fresh.Wanted | None = None,
    if_none_match: str | None = None,
    min_since: str = "",
) -> Reply:
    """The answer to a valid name: `find` (the finder's or the fresh reads') run and mapped to a reply."""
    try:
        found = find()
    except SourcesUnavailable:
        detail = "neither the projection nor MySQL can answer"
        return problem_reply(503, "unavailable", detail, Retry_After="1", Cache_Control="no-store")
    except fresh.FreshReadLimited:
        detail = "too many fresh reads are waiting on MySQL; retry, or read without min_since/no-cache"
        return problem_reply(503, "fresh-read-limit", detail, Retry_After="1", Cache_Control="no-store")
    except fresh.NotFreshEnough as exc:
        return _not_fresh_enough(exc.available, min_since)
    if found.user is None:
        # Briefly, as the API itself remembers unknown names: a user added now shows soon.
        cache = "no-store" if want else f"public, max-age={int(settings.negative_cache_s)}"
        reply = problem_reply(404, "user-not-found", "no user has this name", Cache_Control=cache)
    else:
        # A forced read is the source of truth of this moment: no cache may keep it. A min_since
        # answer stays true for that min_since, so it is cacheable like any other.
        cache = "no-store" if want and want.forced else f"public, max-age={settings.cache_max_age_s}"
        reply = user_reply(user_body(found.user), cache, if_none_match)
    sources = [("X-Ums-Source", found.source)]
    if found.generation is not None:
        sources.append(("X-Ums-Generation", str(found.generation)))
    return Reply(reply.status, [*reply.headers, *sources], reply.body)


def _not_fresh_enough(available: User, min_since: str) -> Reply:
    """409: even MySQL holds this user with an older `since` than min_since (never shown as fresh)."""
    detail = (
        f"MySQL, the freshest source, holds this user with since {iso(available.since)}, "
        f"before min_since={min_since[:64]}"
    )
    reply = problem_reply(409, "not-fresh-enough", detail, Cache_Control="no-store")
    return Reply(reply.status, [*reply.headers, ("X-Ums-Source", MYSQL)], reply.body)
