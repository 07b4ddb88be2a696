"""Reads at least as fresh as the caller's own save (issue 23): `?min_since=` and `Cache-Control: no-cache`.

The projection lags MySQL by milliseconds (seconds when the consumer is behind), and the
AddService saves to MySQL before it publishes, so MySQL always holds a save whose `since` the
caller knows. Such reads may reach MySQL on demand; a per-worker limit bounds how many do at
once (docs/decisions.md "Read your own writes").
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import Flask
from prometheus_client import CollectorRegistry, Counter

from api.finder import MYSQL, Finder, Found, SourcesUnavailable
from domain import Name, User

MIN_SINCE = "min_since"
# 9999-12-31T23:59:59.999Z: the last instant a four-digit year names (the OpenAPI maximum).
MAX_EPOCH_MS = 253_402_300_799_999
_EPOCH = datetime(1970, 1, 1)
# RFC 3339 date-time, what OpenAPI's `format: date-time` means: a time zone is required.
_DATE_TIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:[Zz]|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)
_MS_DIGITS = re.compile(r"\d{1,20}", re.ASCII)

# How each fresh read was answered (the `served` label of ums_api_fresh_reads_total).
SERVED_PROJECTION = "projection"
SERVED_MYSQL = "mysql"
NOT_FRESH = "not_fresh"
LIMITED = "limited"
UNAVAILABLE = "unavailable"


class InvalidParameter(ValueError):
    """A request parameter the API cannot use; the message names it."""


class FreshReadLimited(Exception):
    """This worker already has its limit of fresh reads waiting on MySQL."""


class NotFreshEnough(Exception):
    """MySQL, the freshest source, holds the user with a `since` older than asked."""

    def __init__(self, available: User) -> None:
        super().__init__(available.since_ms)
        self.available = available


@dataclass(frozen=True)
class Wanted:
    """What a fresh read asks for: a lowest `since` (epoch ms), and/or MySQL itself (`forced`)."""

    min_since_ms: int | None
    forced: bool

    @property
    def reason(self) -> str:
        return "no_cache" if self.forced else "min_since"


def parse_min_since(raw: str) -> int:
    """Epoch milliseconds from digits or an RFC 3339 date-time with a zone; ValueError otherwise."""
    if _MS_DIGITS.fullmatch(raw):
        value = int(raw)
        if value > MAX_EPOCH_MS:
            raise ValueError(f"more than {MAX_EPOCH_MS} ms")
        return value
    match = _DATE_TIME.fullmatch(raw)
    if not match:
        raise ValueError("neither epoch milliseconds nor an ISO-8601 date-time with a time zone")
    year, month, day, hour, minute, second = (int(part) for part in match.group(1, 2, 3, 4, 5, 6))
    leap = second == 60  # RFC 3339 allows a leap second: it comes after :59.999
    moment = datetime(year, month, day, hour, minute, 59 if leap else second) + timedelta(seconds=leap)
    # Floor to the millisecond, as stored `since` values are.
    ms = (moment - _EPOCH) // timedelta(milliseconds=1) + int((match.group(7) or "0")[:3].ljust(3, "0"))
    if match.group(8):
        hours, minutes = int(match.group(9)), int(match.group(10))
        if hours > 23 or minutes > 59:
            raise ValueError("time zone offset out of range")
        offset = (hours * 60 + minutes) * 60_000
        ms += -offset if match.group(8) == "+" else offset
    return ms


def forces_mysql(cache_control: str | None) -> bool:
    """True when the request's Cache-Control says `no-cache` or `max-age=0` (RFC 9111 5.2.1)."""
    if not cache_control:
        return False
    for directive in cache_control.lower().split(","):
        key, _, value = directive.strip().partition("=")
        if key.strip() == "no-cache" or (key.strip() == "max-age" and value.strip().strip('"') == "0"):
            return True
    return False


def wanted(values: Sequence[str], cache_control: str | None) -> Wanted | None:
    """The fresh read a request asks for (`values`: its min_since values), None for an ordinary one.

    Raises InvalidParameter for a bad or repeated min_since.
    """
    if len(values) > 1:
        raise InvalidParameter(f"{MIN_SINCE} is given {len(values)} times; give it once")
    min_since = None
    if values:
        try:
            min_since = parse_min_since(values[0])
        except (ValueError, OverflowError) as exc:
            raise InvalidParameter(
                f"{MIN_SINCE}={values[0][:64]!r}: {exc}; expected epoch milliseconds (0..{MAX_EPOCH_MS}) "
                "or an ISO-8601 date-time with a time zone, e.g. 2026-12-02T17:25:04.123Z"
            ) from None
    forced = forces_mysql(cache_control)
    if min_since is None and not forced:
        return None
    return Wanted(min_since, forced)


class FreshReads:
    """Answers fresh reads for one worker: the projection when it is fresh enough, else MySQL, bounded."""

    def __init__(self, finder: Finder, limit: int, wait_s: float, registry: CollectorRegistry) -> None:
        self.finder = finder
        # At most `limit` of this worker's threads wait on MySQL for a fresh read; the rest of
        # the pool and of the threads stays for the ordinary fallback.
        self._slots = threading.BoundedSemaphore(limit) if limit > 0 else None
        # A slot is held longer than MariaDB takes (its answer then waits for the GIL), so a
        # short wait lets a burst through: only a slow MySQL or a flood is turned away.
        self.wait_s = wait_s
        self._counter = Counter(
            "ums_api_fresh_reads",
            "Reads that asked for freshness (min_since or Cache-Control: no-cache), by how each was served",
            ["reason", "served"],
            registry=registry,
        )

    def find(self, name: Name, want: Wanted) -> Found:
        """The answer, counted; raises FreshReadLimited, NotFreshEnough or SourcesUnavailable."""
        try:
            found = self._find(name, want)
        except FreshReadLimited:
            self._count(want, LIMITED)
            raise
        except NotFreshEnough:
            self._count(want, NOT_FRESH)
            raise
        except SourcesUnavailable:
            self._count(want, UNAVAILABLE)
            raise
        self._count(want, SERVED_MYSQL if found.source == MYSQL else SERVED_PROJECTION)
        return found

    def _find(self, name: Name, want: Wanted) -> Found:
        generation = None
        if not want.forced:
            generation, found = self.finder.from_projection(name)
            if found is not None and found.user is not None and _fresh(found.user, want.min_since_ms):
                return found
        user = self._from_mysql(name)
        if user is None:
            return Found(None, MYSQL, generation)
        self.finder.forget_unknown(name.canonical)
        if not _fresh(user, want.min_since_ms):
            raise NotFreshEnough(user)
        return Found(user, MYSQL, generation)

    def _from_mysql(self, name: Name) -> User | None:
        slots = self._slots
        if slots is None or not self._take(slots):
            raise FreshReadLimited
        try:
            return self.finder.from_mysql(name)
        finally:
            slots.release()

    def _take(self, slots: threading.BoundedSemaphore) -> bool:
        if self.wait_s > 0:
            return slots.acquire(timeout=self.wait_s)
        return slots.acquire(blocking=False)

    def _count(self, want: Wanted, served: str) -> None:
        self._counter.labels(want.reason, served).inc()


def _fresh(user: User, min_since_ms: int | None) -> bool:
    return min_since_ms is None or user.since_ms >= min_since_ms


def init_app(app: Flask, limit: int, wait_s: float) -> None:
    """Give the app its FreshReads (after its finder and metrics exist)."""
    app.extensions["ums_fresh"] = FreshReads(
        app.extensions["ums_finder"], limit, wait_s, app.extensions["ums_metrics"].registry
    )
